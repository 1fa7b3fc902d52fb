"""The int8 engines, built only to measure them against eager PyTorch (both are rejected as
worker backends; see docs/PERFORMANCE.md)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from bench.onnx_engine import OnnxEngine, onnx_model_file
from worker.model.backends import TorchEngine


def torch_int8_engine(checkpoint: Path) -> TorchEngine:
    """Dynamic int8 quantisation of every ``nn.Linear`` (``torch.ao.quantization``)."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(checkpoint), dtype=torch.float32, attn_implementation="sdpa"
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation of torch.ao.quantization
        quantize: Any = torch.ao.quantization.quantize_dynamic
        quantized = quantize(model, {torch.nn.Linear}, dtype=torch.qint8)
    engine = TorchEngine(quantized, torch.device("cpu"))
    engine.name = "torch-int8"
    return engine


def onnx_int8_engine(checkpoint: Path, sha256: str, *, threads: int | None) -> OnnxEngine:
    """ONNX Runtime dynamic int8, per channel, after ``quant_pre_process`` (cached)."""
    fp32 = onnx_model_file(checkpoint, sha256)
    target = fp32.with_name("model-int8.onnx")
    if not target.is_file():
        _quantize(fp32, target)
    engine = OnnxEngine(target, threads=threads)
    engine.name = "onnx-int8"
    return engine


def _quantize(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]
    from onnxruntime.quantization.shape_inference import (  # type: ignore[import-untyped]
        quant_pre_process,
    )

    prepared = target.with_name(".prepared.onnx")
    partial = target.with_name(".int8.onnx")
    quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
    options: dict[str, Any] = {"DefaultTensorType": onnx.TensorProto.FLOAT}
    quantize_dynamic(
        str(prepared),
        str(partial),
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options=options,
    )
    partial.rename(target)
    prepared.unlink(missing_ok=True)
