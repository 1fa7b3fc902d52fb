"""Inference engines behind :meth:`SequenceClassifier.predict_ids`.

Every engine takes one padded micro-batch as numpy arrays (``input_ids`` and ``attention_mask``,
int64, rows x width) and returns the softmax probabilities as a float32 array (rows x labels).

* ``torch``: eager PyTorch with SDPA attention, on CUDA (bf16/fp16, pinned host memory,
  non-blocking copies) or CPU.
* ``onnx``: ONNX Runtime on CPU. The graph is exported locally from the loaded checkpoint (eager
  attention so that ONNX Runtime's BERT optimizer fuses it), optimised, and cached under
  ``<cache dir>/onnx/<checkpoint hash>/``; nothing is downloaded. Probabilities equal eager
  PyTorch to about 1e-6.

Measured and rejected (see docs/PERFORMANCE.md): ``torch-int8`` (dynamic int8 quantisation) and
``onnx-int8`` (ONNX Runtime int8) both flip labels of the classifier on real sentences beyond the
0.5% the project accepts; ``torch-int8`` also relies on ``torch.ao.quantization``, which PyTorch
deprecated.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog
import torch

from worker.errors import FatalError

log = structlog.get_logger(__name__)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

#: Engines that can be selected with the ``backend`` setting.
SUPPORTED = ("torch", "onnx")
#: Engines that were measured and rejected, with the reason the error gives.
REJECTED = {
    "torch-int8": "dynamic int8 quantisation flips too many labels (and torch.ao.quantization "
    "is deprecated)",
    "onnx-int8": "ONNX Runtime int8 flips too many labels",
}
_ONNX_OPSET = 17


class Engine(Protocol):
    """One loaded model that turns padded id arrays into class probabilities."""

    name: str

    def probabilities(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray: ...


def check_backend(backend: str, device: torch.device) -> None:
    """Raise :class:`FatalError` for an unknown, rejected or device-incompatible backend."""
    if backend in REJECTED:
        raise FatalError(
            f"backend {backend!r} is not supported: {REJECTED[backend]}; use one of "
            f"{', '.join(SUPPORTED)}"
        )
    if backend not in SUPPORTED:
        raise FatalError(f"unknown backend {backend!r}; use one of {', '.join(SUPPORTED)}")
    if backend == "onnx" and device.type != "cpu":
        raise FatalError("backend 'onnx' runs on CPU only; use backend 'torch' on CUDA")


def _onnxruntime() -> Any:
    """ONNX Runtime, imported on first use (it is only needed by the ``onnx`` backend)."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FatalError("backend 'onnx' needs the onnxruntime package") from exc
    return onnxruntime


class TorchEngine:
    """Eager PyTorch; on CUDA the host arrays go through pinned memory, copied non-blocking."""

    name = "torch"

    def __init__(self, model: Any, device: torch.device) -> None:
        self._model = model
        self._device = device
        self._cuda = device.type == "cuda"

    def _to_device(self, array: IntArray) -> torch.Tensor:
        tensor = torch.from_numpy(array)  # no copy
        if not self._cuda:
            return tensor
        return tensor.pin_memory().to(self._device, non_blocking=True)

    @torch.inference_mode()
    def probabilities(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        logits = self._model(
            input_ids=self._to_device(input_ids), attention_mask=self._to_device(attention_mask)
        ).logits
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.cpu().numpy()


class OnnxEngine:
    """ONNX Runtime CPU session over a locally exported, optimised graph."""

    name = "onnx"

    def __init__(self, model_file: Path, *, threads: int | None) -> None:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: on small machines the Kafka and
        # tokeniser threads need those cores between batches.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probabilities(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        (logits,) = self._session.run(
            ["logits"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )
        shifted = np.asarray(logits, dtype=np.float32)
        shifted = shifted - shifted.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)


def onnx_cache_root() -> Path:
    """``$BIOMARKER_CACHE_DIR/onnx`` or ``~/.cache/biomarker-worker/onnx``."""
    root = os.environ.get("BIOMARKER_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "biomarker-worker"
    return base / "onnx"


def onnx_model_file(checkpoint: Path, sha256: str) -> Path:
    """The optimised ONNX graph of ``checkpoint``, exported once and cached by content hash."""
    ort = _onnxruntime()
    target = onnx_cache_root() / f"{sha256[:24]}-ort{ort.__version__}" / "model.onnx"
    if target.is_file():
        return target
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent.parent))
    try:
        _export(checkpoint, build)
        try:
            build.rename(target.parent)
        except OSError:  # another process won the race
            if not target.is_file():
                raise
    except (OSError, RuntimeError, ValueError) as exc:
        raise FatalError(f"cannot export {checkpoint} to ONNX: {exc}") from exc
    finally:
        shutil.rmtree(build, ignore_errors=True)
    log.info("onnx_exported", sha256=sha256[:12])
    return target


def _export(checkpoint: Path, build: Path) -> None:
    """Export with eager attention (fusable), then run ONNX Runtime's BERT graph optimizer."""
    from onnxruntime.transformers import optimizer  # type: ignore[import-untyped]
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    raw = build / "raw.onnx"
    sample = torch.ones((2, 8), dtype=torch.long)
    axes = {0: "rows", 1: "width"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation chatter
        torch.onnx.export(
            model,
            (sample, sample),
            str(raw),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": {0: "rows"}},
            opset_version=_ONNX_OPSET,
            dynamo=False,
        )
    config = model.config
    optimised = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    optimised.save_model_to_file(str(build / "model.onnx"))
    raw.unlink()


def onnx_engine(checkpoint: Path, sha256: str, *, threads: int | None) -> OnnxEngine:
    return OnnxEngine(onnx_model_file(checkpoint, sha256), threads=threads)
