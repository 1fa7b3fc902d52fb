"""Device utilisation and memory while a pass runs (CUDA; nothing to sample on CPU)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import threading
from types import TracebackType
from typing import Any


def _utilisation(index: int) -> float | None:
    """GPU busy percent: torch (needs NVML bindings), else nvidia-smi, else unknown."""
    import torch

    try:
        return float(torch.cuda.utilization(index))
    except Exception:  # NVML bindings missing or unsupported
        pass
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                f"--id={index}",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return float(out.strip().splitlines()[0])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


class DeviceMonitor:
    """Samples utilisation every ``interval`` seconds inside a ``with`` block."""

    def __init__(self, device: str, interval: float = 0.2) -> None:
        self._cuda = device.startswith("cuda")
        self._index = int(device.split(":")[1]) if ":" in device else 0
        self._interval = interval
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-monitor", daemon=True)

    def __enter__(self) -> DeviceMonitor:
        if self._cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self._index)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            value = _utilisation(self._index)
            if value is None:
                return
            self._samples.append(value)

    def summary(self) -> dict[str, Any]:
        if not self._cuda:
            return {"type": "cpu"}
        import torch

        samples = self._samples
        return {
            "type": "cuda",
            "utilisation_mean_pct": round(statistics.mean(samples), 1) if samples else None,
            "utilisation_samples": len(samples),
            "max_memory_allocated_mib": round(torch.cuda.max_memory_allocated(self._index) / 2**20),
            "max_memory_reserved_mib": round(torch.cuda.max_memory_reserved(self._index) / 2**20),
        }
