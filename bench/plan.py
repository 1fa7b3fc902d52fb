"""What one benchmark run measures, and how big each pass is (full or ``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchPlan:
    """Sizes and switches of one run; :meth:`quick` is the smoke-test variant."""

    name: str
    model: str = "default"
    backend: str = "torch"
    dtype: str = "auto"
    threads: int | None = None
    notes: int = 600
    sweep_notes: int = 80
    budgets: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384)
    sweep_repeats: int = 3  # passes per budget, in alternating order; the median pass counts
    sweep_tolerance: float = 0.03  # the smallest budget this close to the fastest is chosen
    paced_share: float = 0.7
    paced_notes: int = 400
    paced_warmup_s: float = 2.0  # lead-in at the paced rate, left out of the percentiles
    paced_passes: int = 3  # one pass's p99 moved 2-4x from pass to pass; the median counts
    warmup_notes: int = 200  # an unmeasured backlog pass first, to warm the broker
    rounds: int = 5  # model-only then backlog, back to back; the median round is reported
    naive_notes: int = 60
    faust_notes: int = 600
    faust_take: int = 16
    backend_notes: int = 100
    backends: tuple[str, ...] = ("torch", "torch-bf16", "torch-int8", "onnx", "onnx-int8")
    scaling: tuple[int, ...] = (1, 2, 3)
    scaling_notes: int = 600
    partitions: int = 6
    max_wait_ms: float = 20.0
    out_dir: Path = field(default_factory=lambda: Path("bench") / "results")
    bootstrap: str | None = None
    charts: bool = True

    @classmethod
    def quick(cls, **overrides: object) -> BenchPlan:
        """About a minute: every pass runs, on a handful of notes."""
        values: dict[str, object] = {
            "notes": 24,
            "sweep_notes": 12,
            "budgets": (1024, 4096),
            "sweep_repeats": 1,
            "paced_notes": 16,
            "paced_passes": 2,
            "warmup_notes": 8,
            "rounds": 1,
            "naive_notes": 4,
            "faust_notes": 24,
            "faust_take": 8,
            "backend_notes": 12,
            "backends": ("torch", "onnx"),
            "scaling": (),
            "scaling_notes": 24,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
