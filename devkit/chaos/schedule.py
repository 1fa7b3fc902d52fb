"""When faults happen, and when the run may end.

Fault *i* of *k* starts once (i+1)/(k+1) of the input stream is out, at least ``settle_s`` after
the previous fault was cleared, and once the group has recovered from it (total lag back at the
steady level measured before the first fault; bounded by ``recover_timeout_s``). So every fault
lands on a live stream, and the duplicates and stalls that follow one are not blamed on the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from devkit.chaos.faults import FaultContext, FaultWindow, inject, now_ms
from devkit.chaos.monitor import OffsetMonitor
from devkit.chaos.options import ChaosOptions
from devkit.chaos.producer import PacedProducer
from devkit.chaos.recovery import steady_lag


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _recovered(monitor: OffsetMonitor, steady: int, since_ms: int) -> Callable[[], bool]:
    def check() -> bool:
        sample = monitor.latest()
        return sample is not None and sample.at_ms > since_ms and sample.lag <= steady

    return check


def _due(producer: PacedProducer, share: float, settle_s: float) -> Callable[[], bool]:
    settled_at = time.monotonic() + settle_s
    return lambda: producer.stats.produced >= share and time.monotonic() >= settled_at


def run_faults(
    ctx: FaultContext, producer: PacedProducer, monitor: OffsetMonitor
) -> list[FaultWindow]:
    options = ctx.options
    windows: list[FaultWindow] = []
    stream_s = producer.total / options.rate
    steady: int | None = None
    for i, name in enumerate(options.faults):
        share = producer.total * (i + 1) / (len(options.faults) + 1)
        wait_until(_due(producer, share, options.settle_s), timeout=stream_s * 2 + options.settle_s)
        if steady is None:
            steady = steady_lag(monitor.samples, now_ms())
            ctx.say(f"steady lag before the faults: <= {steady} records")
        elif not wait_until(
            _recovered(monitor, steady, windows[-1].clear_ms), timeout=options.recover_timeout_s
        ):
            ctx.say(f"not recovered after {options.recover_timeout_s:g}s; going on")
        ctx.say(f"fault {name} (input {producer.stats.produced}/{producer.total})")
        windows.append(inject(ctx, name))
    return windows


def drain(
    monitor: OffsetMonitor, inputs: int, options: ChaosOptions, say: Callable[[str], None]
) -> str:
    """Wait for committed == log end everywhere, judged only on samples that see all ``inputs``
    records; 'drained', 'stuck' (lagging partitions still for ``stuck_after_s``) or 'timeout'."""
    deadline = time.monotonic() + options.drain_timeout_s
    moved: dict[int, tuple[int, float]] = {}
    while time.monotonic() < deadline:
        sample = monitor.latest()
        if sample is not None and sum(sample.end.values()) >= inputs:
            if sample.lag == 0:
                return "drained"
            now = time.monotonic()
            for p in sample.end:
                committed = sample.committed.get(p, 0)
                if moved.get(p, (-1, 0.0))[0] != committed:
                    moved[p] = (committed, now)
            lagging = [p for p in sample.end if sample.lag_of(p)]
            if all(now - moved[p][1] >= options.stuck_after_s for p in lagging):
                say(f"partitions {lagging} made no progress in {options.stuck_after_s:g}s")
                return "stuck"
        time.sleep(1.0)
    return "timeout"
