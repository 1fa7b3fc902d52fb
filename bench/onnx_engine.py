"""ONNX Runtime engine, for measuring it against eager PyTorch (rejected as a worker backend:
see :data:`worker.model.backends.REJECTED`).

The graph is exported locally from the checkpoint (eager attention, so that ONNX Runtime's BERT
optimizer fuses it), optimised, and cached under ``<cache dir>/onnx/<hash>-ort<version>/``, keyed
by the checkpoint's content hash; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worker.cache import cache_dir
from worker.errors import FatalError
from worker.model.backends import FloatArray, IntArray

_ONNX_OPSET = 17


def _onnxruntime() -> Any:
    """ONNX Runtime, imported on first use (it is only needed by the ``onnx`` backend)."""
    try:
        import onnxruntime  # type: ignore[import-untyped]
    except ImportError as exc:
        raise FatalError(
            "the ONNX measurements need the onnxruntime package (bench extra)"
        ) from exc
    return onnxruntime


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
    """The ``onnx`` folder of the worker's cache."""
    return cache_dir() / "onnx"


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
