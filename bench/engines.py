"""CPU engines against eager PyTorch on the same sentences: speed, probability drift, labels.

Every engine gets the same padded, length-sorted batches (sentence packing off): this compares
engines, not batch layouts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.int8 import onnx_int8_engine, torch_int8_engine
from bench.modelonly import run_batches
from bench.onnx_engine import onnx_engine
from worker.model.backends import Engine
from worker.model.classifier import SequenceClassifier

#: Agreement a backend needs (with eager PyTorch, at the decision threshold) to be kept.
MIN_AGREEMENT = 0.995
_BORDERLINE = 0.05


def _variant(
    name: str, eager: SequenceClassifier, checkpoint: Path, threads: int | None
) -> SequenceClassifier:
    """``eager`` (fp32) switched to another engine or dtype, same tokenizer and labels."""
    if name == "torch-bf16":
        return SequenceClassifier.load(
            checkpoint,
            device="cpu",
            dtype="bfloat16",
            threads=threads,
            backend="torch",
            packing=False,
        )
    sha256 = eager.info.sha256
    engine_threads = 1 if eager.concurrency > 1 else threads
    engines: dict[str, Callable[[], Engine]] = {
        "onnx": lambda: onnx_engine(checkpoint, sha256, threads=engine_threads),
        "onnx-int8": lambda: onnx_int8_engine(checkpoint, sha256, threads=engine_threads),
        "torch-int8": lambda: torch_int8_engine(checkpoint),
    }
    if name not in engines:
        raise ValueError(f"unknown backend {name}")
    return with_engine(eager, engines[name]())


def compare(
    checkpoint: Path,
    rows: Sequence[Sequence[int]],
    *,
    budget: int,
    backends: Sequence[str],
    threads: int | None,
    threshold: float = 0.5,
) -> list[dict[str, Any]]:
    """One row per backend or dtype; eager PyTorch fp32 (``torch``) is the reference."""
    eager = SequenceClassifier.load(
        checkpoint, device="cpu", dtype="float32", threads=threads, backend="torch", packing=False
    )
    workers = eager.concurrency
    reference = run_batches(eager.predict_ids, rows, budget, concurrency=workers)
    ref_scores: list[float] = reference.pop("_scores")
    borderline = sum(abs(s - threshold) < _BORDERLINE for s in ref_scores) / len(ref_scores)
    results = [
        {
            "backend": "torch",
            "dtype": "float32",
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
        model = _variant(name, eager, checkpoint, threads)
        point = run_batches(model.predict_ids, rows, budget, concurrency=workers)
        scores: list[float] = point.pop("_scores")
        agree = sum(
            (a >= threshold) == (b >= threshold) for a, b in zip(ref_scores, scores, strict=True)
        )
        results.append(
            {
                "backend": name,
                "dtype": model.info.dtype,
                **point,
                "speedup": round(point["sentences_per_s"] / reference["sentences_per_s"], 3),
                "max_abs_diff": max(abs(a - b) for a, b in zip(ref_scores, scores, strict=True)),
                "label_agreement": round(agree / len(scores), 5),
                "accurate": agree / len(scores) >= MIN_AGREEMENT,
            }
        )
    return results


def with_engine(classifier: SequenceClassifier, engine: Engine) -> SequenceClassifier:
    """The same tokenizer and labels over another engine (to compare engines)."""
    twin = SequenceClassifier(
        model=classifier.model,
        tokenizer=classifier.tokenizer,
        info=replace(classifier.info, backend=engine.name),
        positive_index=classifier.positive_index,
        engine=engine,
        packing=classifier.packs,
    )
    twin.concurrency = classifier.concurrency
    return twin
