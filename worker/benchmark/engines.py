"""CPU engines against eager PyTorch on the same sentences: speed, probability drift, labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker.benchmark.int8 import onnx_int8_engine, torch_int8_engine
from worker.benchmark.modelonly import run_batches
from worker.model.backends import Engine, onnx_engine
from worker.model.classifier import SequenceClassifier

#: Agreement a backend needs (with eager PyTorch, at the decision threshold) to be kept.
MIN_AGREEMENT = 0.995
_BORDERLINE = 0.05


def _engine(name: str, checkpoint: Path, sha256: str, threads: int | None) -> Engine:
    if name == "onnx":
        return onnx_engine(checkpoint, sha256, threads=threads)
    if name == "onnx-int8":
        return onnx_int8_engine(checkpoint, sha256, threads=threads)
    if name == "torch-int8":
        return torch_int8_engine(checkpoint)
    raise ValueError(f"unknown engine {name}")


def compare(
    checkpoint: Path,
    rows: Sequence[Sequence[int]],
    *,
    budget: int,
    backends: Sequence[str],
    threads: int | None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One row per backend; ``torch`` (eager fp32) is the reference."""
    eager = SequenceClassifier.load(checkpoint, device="cpu", threads=threads, backend="torch")
    workers = eager.concurrency
    engine_threads = 1 if workers > 1 else threads
    reference = run_batches(eager.predict_ids, rows, budget, concurrency=workers)
    ref_scores: list[float] = reference.pop("_scores")
    borderline = sum(abs(s - threshold) < _BORDERLINE for s in ref_scores) / len(ref_scores)
    results = [
        {
            "backend": "torch",
            **reference,
            "speedup": 1.0,
            "max_abs_diff": 0.0,
            "label_agreement": 1.0,
            "reference_borderline_share": round(borderline, 4),
        }
    ]
    for name in backends:
        if name == "torch":
            continue
        model = eager.with_engine(_engine(name, checkpoint, eager.info.sha256, engine_threads))
        point = run_batches(model.predict_ids, rows, budget, concurrency=workers)
        scores: list[float] = point.pop("_scores")
        agree = sum(
            (a >= threshold) == (b >= threshold) for a, b in zip(ref_scores, scores, strict=True)
        )
        results.append(
            {
                "backend": name,
                **point,
                "speedup": round(point["sentences_per_s"] / reference["sentences_per_s"], 3),
                "max_abs_diff": max(abs(a - b) for a, b in zip(ref_scores, scores, strict=True)),
                "label_agreement": round(agree / len(scores), 5),
                "accurate": agree / len(scores) >= MIN_AGREEMENT,
            }
        )
    return results
