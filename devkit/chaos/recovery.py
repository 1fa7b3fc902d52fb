"""Recovery figures of each fault, from the once-a-second offset samples.

- ``commits_resumed_s``: from the moment the fault was cleared until every partition that had
  lag then has committed past the offset it had then (the group advances again everywhere).
- ``lag_recovered_s``: from the clear until the total lag is back at the steady level measured
  before the first fault (1.5 x its 90th percentile + 10 records).
- ``longest_stall_s``: from the fault's start to its recovery (or the next fault), the longest
  time one partition with lag went without a commit.
- ``max_lag``: the largest total lag in that span.

A figure that did not happen before the next fault started (or the run ended) is ``None``.
"""

from __future__ import annotations

from typing import Any

from devkit.chaos.faults import FaultWindow
from devkit.chaos.monitor import OffsetSample


def steady_lag(samples: list[OffsetSample], until_ms: int) -> int:
    """1.5 x the 90th percentile of the total lag before ``until_ms`` (+10), from the samples
    taken after commits first appeared."""
    lags = [s.lag for s in samples if s.at_ms < until_ms and s.committed]
    if not lags:
        return 10
    ordered = sorted(lags[len(lags) // 3 :])  # skip the start-up
    return int(1.5 * ordered[int(0.9 * (len(ordered) - 1))]) + 10


def _at(samples: list[OffsetSample], at_ms: int) -> OffsetSample | None:
    before = [s for s in samples if s.at_ms <= at_ms]
    return before[-1] if before else None


def _longest_stall(span: list[OffsetSample]) -> float:
    longest = 0
    since: dict[int, int] = {}
    previous: dict[int, int] = {}
    for sample in span:
        for partition in sample.end:
            committed = sample.committed.get(partition, 0)
            moved = committed != previous.get(partition)
            previous[partition] = committed
            if moved or sample.lag_of(partition) == 0:
                since[partition] = sample.at_ms
            else:
                longest = max(longest, sample.at_ms - since.setdefault(partition, sample.at_ms))
    return round(longest / 1000, 1)


def recovery(
    window: FaultWindow, samples: list[OffsetSample], horizon_ms: int, steady: int
) -> dict[str, Any]:
    span = [s for s in samples if window.start_ms <= s.at_ms <= horizon_ms]
    after = [s for s in span if s.at_ms >= window.clear_ms]
    at_clear = _at(samples, window.clear_ms)
    resumed: float | None = None
    if at_clear is not None:
        lagging = {p: at_clear.committed.get(p, 0) for p in at_clear.end if at_clear.lag_of(p)}
        for sample in after:
            if all(sample.committed.get(p, 0) > c for p, c in lagging.items()):
                resumed = round((sample.at_ms - window.clear_ms) / 1000, 1)
                break
    recovered = next((s for s in after if s.lag <= steady), None)
    recovered_s = (
        None if recovered is None else round((recovered.at_ms - window.clear_ms) / 1000, 1)
    )
    end_ms = recovered.at_ms if recovered is not None else horizon_ms
    return {
        "fault_s": round((window.clear_ms - window.start_ms) / 1000, 1),
        "commits_resumed_s": resumed,
        "lag_recovered_s": recovered_s,
        "longest_stall_s": _longest_stall([s for s in span if s.at_ms <= end_ms]),
        "max_lag": max((s.lag for s in span), default=None),
    }


def recoveries(
    windows: list[FaultWindow], samples: list[OffsetSample], run_end_ms: int
) -> tuple[int, list[dict[str, Any]]]:
    """The steady lag and one recovery record per fault (in order)."""
    ordered = sorted(windows, key=lambda w: w.start_ms)
    steady = steady_lag(samples, ordered[0].start_ms if ordered else run_end_ms)
    results = []
    for i, window in enumerate(ordered):
        horizon = ordered[i + 1].start_ms if i + 1 < len(ordered) else run_end_ms
        results.append(
            {
                "fault": window.name,
                "start_ms": window.start_ms,
                "clear_ms": window.clear_ms,
                **recovery(window, samples, horizon, steady),
                "details": window.details,
            }
        )
    return steady, results
