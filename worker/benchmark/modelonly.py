"""Model-only throughput: the classifier alone on pre-tokenised, length-sorted batches.

This is the ceiling for a machine and model: no Kafka, no JSON, no segmentation, and the whole
corpus sorted by length at once (less padding than any streaming pool gets).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from worker.batching import BatchingSettings, padded, plan_batches

Predict = Callable[[Sequence[Sequence[int]]], list[float]]


def run_batches(
    predict: Predict, rows: Sequence[Sequence[int]], budget: int, *, pad_multiple: int = 1
) -> dict[str, Any]:
    """One timed pass over ``rows`` at ``budget``; returns rates, batch stats and the scores.

    Runs on a thread of its own, as the worker's inference loop does (on a busy CPU, torch on
    the interpreter's main thread measured up to 3x slower than on a second thread).
    """
    out: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(_run_batches(predict, rows, budget, pad_multiple))
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    thread = threading.Thread(target=target, name="model-only")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def _run_batches(
    predict: Predict, rows: Sequence[Sequence[int]], budget: int, pad_multiple: int
) -> dict[str, Any]:
    settings = BatchingSettings(token_budget=budget, max_batch_sentences=1 << 16)
    plan = plan_batches([len(row) for row in rows], settings)
    predict([rows[i] for i in plan[len(plan) // 2]])  # warm-up at a typical shape
    scores = [0.0] * len(rows)
    seconds: list[float] = []
    real = padded_total = 0
    started = time.perf_counter()
    for batch in plan:
        chunk = [rows[i] for i in batch]
        t0 = time.perf_counter()
        result = predict(chunk)
        seconds.append(time.perf_counter() - t0)
        for index, score in zip(batch, result, strict=True):
            scores[index] = score
        real += sum(len(row) for row in chunk)
        padded_total += len(chunk) * padded(max(len(row) for row in chunk), pad_multiple)
    elapsed = time.perf_counter() - started
    return {
        "token_budget": budget,
        "sentences": len(rows),
        "seconds": round(elapsed, 3),
        "sentences_per_s": round(len(rows) / elapsed, 1),
        "wordpieces_per_s": round(real / elapsed, 1),
        "batches": len(plan),
        "median_batch_sentences": statistics.median(len(b) for b in plan),
        "median_batch_s": round(statistics.median(seconds), 4),
        "padding_ratio": round(1 - real / padded_total, 4) if padded_total else 0.0,
        "_scores": scores,
    }


def sweep(
    predict: Predict, rows: Sequence[Sequence[int]], budgets: Sequence[int], *, pad_multiple: int
) -> tuple[list[dict[str, Any]], int]:
    """Rates at each budget (on ``rows``) and the budget with the highest sentences/s."""
    points = [run_batches(predict, rows, b, pad_multiple=pad_multiple) for b in budgets]
    for point in points:
        point.pop("_scores")
    best = max(points, key=lambda point: float(point["sentences_per_s"]))
    return points, int(best["token_budget"])
