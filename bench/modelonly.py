"""Model-only throughput: the classifier alone on pre-tokenised batches of the whole corpus.

This is the ceiling for a machine and model: no Kafka, no JSON, no segmentation, and batches
planned over the whole corpus at once. Padded batches are length-sorted (less padding than any
streaming pool gets). For a classifier that packs several sentences per row, ``order`` picks
length-sorted batches (packed rows of like lengths) or corpus order (rows of mixed lengths, as
the worker forms them); the runner measures both and takes the faster as the limit.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from worker.batching import CPU_LIMITS, BatchingSettings, padded, plan_batches, plan_packed

Predict = Callable[[Sequence[Sequence[int]]], list[float]]
BatchOrder = Literal["sorted", "corpus"]

#: The worker's default ``max_batch_sentences`` on CPU.
MAX_BATCH_SENTENCES = CPU_LIMITS.max_batch_sentences


def run_batches(
    predict: Predict,
    rows: Sequence[Sequence[int]],
    budget: int,
    *,
    pad_multiple: int = 1,
    concurrency: int = 1,
    max_batch_sentences: int = MAX_BATCH_SENTENCES,
    order: BatchOrder = "sorted",
) -> dict[str, Any]:
    """One timed pass over ``rows`` at ``budget``; returns rates, batch stats and the scores.

    ``order="sorted"``: length-sorted batches with the worker's row cap and padding cap;
    ``"corpus"``: consecutive runs of ``rows`` within the budget and row cap (for a packing
    classifier).

    Batches run on ``concurrency`` worker threads, as the worker's inference loop runs them
    (never on the interpreter's main thread: on a busy CPU, torch there measured up to 3x slower).
    """
    settings = BatchingSettings(token_budget=budget, max_batch_sentences=max_batch_sentences)
    lengths = [len(row) for row in rows]
    plan = plan_batches(lengths, settings) if order == "sorted" else plan_packed(lengths, settings)
    chunks = [[rows[i] for i in batch] for batch in plan]

    def timed(chunk: list[Sequence[int]]) -> tuple[list[float], float]:
        t0 = time.perf_counter()
        result = predict(chunk)
        return result, time.perf_counter() - t0

    with ThreadPoolExecutor(concurrency, thread_name_prefix="model-only") as pool:
        list(pool.map(timed, [chunks[len(chunks) // 2]] * concurrency))  # warm-up
        started = time.perf_counter()
        outcomes = list(pool.map(timed, chunks))
        elapsed = time.perf_counter() - started
    scores = [0.0] * len(rows)
    for batch, (result, _s) in zip(plan, outcomes, strict=True):
        for index, score in zip(batch, result, strict=True):
            scores[index] = score
    real = sum(len(row) for row in rows)
    padded_total = sum(
        len(chunk) * padded(max(len(row) for row in chunk), pad_multiple) for chunk in chunks
    )
    return {
        "token_budget": budget,
        "order": order,
        "concurrency": concurrency,
        "sentences": len(rows),
        "seconds": round(elapsed, 3),
        "sentences_per_s": round(len(rows) / elapsed, 1),
        "wordpieces_per_s": round(real / elapsed, 1),
        "batches": len(plan),
        "median_batch_sentences": statistics.median(len(b) for b in plan),
        "median_batch_s": round(statistics.median(s for _r, s in outcomes), 4),
        "padding_ratio": round(1 - real / padded_total, 4) if padded_total else 0.0,
        "_scores": scores,
    }


def sweep(
    predict: Predict,
    rows: Sequence[Sequence[int]],
    budgets: Sequence[int],
    *,
    pad_multiple: int,
    concurrency: int = 1,
    max_batch_sentences: int = MAX_BATCH_SENTENCES,
    order: BatchOrder = "sorted",
    repeats: int = 1,
    tolerance: float = 0.0,
) -> tuple[list[dict[str, Any]], int]:
    """Rates at each budget (on ``rows``) and the budget to use.

    Each budget runs ``repeats`` passes, the budgets in alternating order (so drift in the
    machine's speed does not favour one end), and counts with its median pass; the passes'
    rates are in ``passes_sentences_per_s``. The chosen budget is the smallest whose rate is
    within ``tolerance`` (a share) of the fastest: a larger budget costs latency and memory, so
    it has to be faster by more than the noise to be worth it.
    """
    runs: dict[int, list[dict[str, Any]]] = {budget: [] for budget in budgets}
    for repeat in range(max(1, repeats)):
        for budget in budgets if repeat % 2 == 0 else list(reversed(budgets)):
            point = run_batches(
                predict,
                rows,
                budget,
                pad_multiple=pad_multiple,
                concurrency=concurrency,
                max_batch_sentences=max_batch_sentences,
                order=order,
            )
            point.pop("_scores")
            runs[budget].append(point)
    points = []
    for budget in budgets:
        passes = sorted(runs[budget], key=lambda point: float(point["sentences_per_s"]))
        median = passes[(len(passes) - 1) // 2]
        points.append(
            {**median, "passes_sentences_per_s": [p["sentences_per_s"] for p in runs[budget]]}
        )
    return points, chosen_budget(points, tolerance)


def chosen_budget(points: Sequence[dict[str, Any]], tolerance: float) -> int:
    """The smallest ``token_budget`` among ``points`` within ``tolerance`` of the fastest."""
    fastest = max(float(point["sentences_per_s"]) for point in points)
    return min(
        int(point["token_budget"])
        for point in points
        if float(point["sentences_per_s"]) >= (1 - tolerance) * fastest
    )
