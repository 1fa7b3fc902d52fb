"""Score labelled JSONL with a saved checkpoint through the project's classifier wrapper."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.jsonl import LabelledRow
from training.metrics import evaluation_report
from training.predict import length_sorted_batches
from worker.errors import FatalError, UsageError

__all__ = ["evaluate_model", "score_texts"]


def score_texts(
    model_dir: Path,
    texts: list[str],
    *,
    batch_size: int = 32,
    max_length: int = 512,
    threads: int | None = None,
) -> tuple[list[float], dict[str, float]]:
    """Probability of label 1 per text (input order) and timing: load seconds, sentences/s."""
    from worker.model.classifier import SequenceClassifier

    started = time.perf_counter()
    try:
        model = SequenceClassifier.load(
            model_dir, device="cpu", dtype="float32", max_length=max_length, threads=threads
        )
    except FatalError as exc:
        raise UsageError(str(exc)) from exc
    loaded = time.perf_counter()
    encoded = model.encode(texts)
    probs = [0.0] * len(texts)
    batches = length_sorted_batches([len(item.ids) for item in encoded], batch_size)
    for batch in tqdm(batches, desc="evaluate", unit="batch", file=sys.stderr, dynamic_ncols=True):
        scores = model.predict_ids([encoded[index].ids for index in batch])
        for index, score in zip(batch, scores, strict=True):
            probs[index] = score
    done = time.perf_counter()
    timing = {
        "load_seconds": round(loaded - started, 3),
        "sentences_per_second": round(len(texts) / max(done - loaded, 1e-9), 1),
    }
    return probs, timing


def evaluate_model(
    model_dir: Path,
    rows: list[LabelledRow],
    *,
    threshold: float,
    batch_size: int = 32,
    max_length: int = 512,
    threads: int | None = None,
) -> dict[str, Any]:
    """Metrics report (overall and per source) of ``model_dir`` on ``rows``."""
    if not model_dir.is_dir():
        raise UsageError(f"{model_dir} is not a model directory")
    probs, timing = score_texts(
        model_dir,
        [row.text for row in rows],
        batch_size=batch_size,
        max_length=max_length,
        threads=threads,
    )
    report = evaluation_report(
        [row.label for row in rows], probs, [row.source for row in rows], threshold
    )
    report["model"] = str(model_dir)
    report["timing"] = {**timing, "batch_size": batch_size}
    return report
