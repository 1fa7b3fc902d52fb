"""Throughput and latency from matched deliveries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.kafka_io import Delivery


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of unsorted ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return float(ordered[rank - 1])


def throughput(deliveries: Sequence[Delivery], started_ms: int) -> dict[str, float]:
    """Rates from when the runtime began consuming (``started_ms``: group joined and model
    loaded) to its last completion, so the first pool's fill time counts but start-up does not.
    """
    if not deliveries:
        raise ValueError("no deliveries to measure")
    last = max(d.done_ms for d in deliveries)
    seconds = max((last - started_ms) / 1000, 1e-3)
    return {
        "notes_per_s": round(len(deliveries) / seconds, 2),
        "sentences_per_s": round(sum(d.sentences for d in deliveries) / seconds, 1),
        "seconds": round(seconds, 2),
    }


def latency(deliveries: Sequence[Delivery]) -> dict[str, float]:
    values = [d.latency_ms for d in deliveries]
    return {
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "max_ms": float(max(values)) if values else math.nan,
    }


def latency_beyond_own_work(
    deliveries: Sequence[Delivery], sentences_per_s: float
) -> dict[str, float]:
    """Latency less each note's own work: its sentences at the saturation rate
    (``sentences_per_s``, the whole machine on that note alone), the least time any schedule
    could give it. What is left is waiting: batching, queueing behind other notes, Kafka."""
    own = [1000 * d.sentences / sentences_per_s for d in deliveries]
    beyond = [d.latency_ms - work for d, work in zip(deliveries, own, strict=True)]
    return {
        "own_work_p50_ms": round(percentile(own, 50), 1),
        "own_work_p99_ms": round(percentile(own, 99), 1),
        "p50_ms": round(percentile(beyond, 50), 1),
        "p95_ms": round(percentile(beyond, 95), 1),
        "p99_ms": round(percentile(beyond, 99), 1),
    }


def summarise(deliveries: Sequence[Delivery], started_ms: int, **extra: Any) -> dict[str, Any]:
    """Throughput, latency percentiles and the raw latencies (for the CDF chart)."""
    return {
        **extra,
        "notes": len(deliveries),
        "sentences": sum(d.sentences for d in deliveries),
        **throughput(deliveries, started_ms),
        "latency": latency(deliveries),
        "latencies_ms": sorted(d.latency_ms for d in deliveries),
    }
