"""librdkafka's rebalance callbacks: which partitions this member owns, and what happens to
their work when they go.

On assign: track the partitions, count this attempt (:mod:`worker.kafka.crashes`), set their
pause state explicitly. On revoke: the :class:`RebalanceListener` (the pipeline) first finishes
and commits what it can of them, in bounded time; then they are forgotten. On loss: forgotten
without a commit (the next owner re-reads them). Forgotten partitions also leave
``biomarker_consumer_lag``: only their new owner reports them, so a sum over members counts
each partition once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from worker.kafka.crashes import CrashTracker
from worker.kafka.offsets import OffsetTracker, PartitionKey, PartitionState
from worker.metrics import Metrics

log = structlog.get_logger(__name__)


class RebalanceListener(Protocol):
    def revoking(self, states: list[PartitionState]) -> None:
        """Partitions are about to be revoked: finish and commit what can be, in bounded time."""

    def lost(self) -> None:
        """Partitions were lost (no commit is possible for them)."""


class Rebalancer:
    """The ``on_assign`` / ``on_revoke`` / ``on_lost`` callbacks of the subscription."""

    def __init__(
        self,
        *,
        tracker: OffsetTracker,
        crashes: CrashTracker,
        metrics: Metrics,
        keep_paused: Callable[[], bool],
    ) -> None:
        self._tracker = tracker
        self._crashes = crashes
        self._metrics = metrics
        self._keep_paused = keep_paused
        self.listener: RebalanceListener | None = None

    def on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        states = self._tracker.assign(keys_of(partitions))
        self._crashes.assigned(states)
        consumer.incremental_assign(partitions)
        # librdkafka keeps a partition's pause flag across unassign/assign (e.g. after a loss
        # while paused), so set the state explicitly both ways.
        if self._keep_paused():
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self._counted("assign", partitions)

    def on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = keys_of(partitions)
        states = [state for key in keys if (state := self._tracker.get(key)) is not None]
        if self.listener is not None:
            self.listener.revoking(states)
        self._crashes.released(states)
        dropped = self._tracker.remove(keys)
        consumer.incremental_unassign(partitions)
        self._counted("revoke", partitions, abandoned=dropped)

    def on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        if self.listener is not None:
            self.listener.lost()
        keys = keys_of(partitions)
        self._crashes.forget(keys)
        dropped = self._tracker.remove(keys)
        consumer.incremental_unassign(partitions)
        self._counted("lost", partitions, abandoned=dropped)

    def _counted(self, kind: str, partitions: list[Any], **fields: int) -> None:
        self._metrics.rebalances.labels(kind=kind).inc()
        self._metrics.assigned_partitions.set(len(self._tracker.partitions))
        keys = keys_of(partitions)
        if kind != "assign":
            forget_lag(self._metrics, keys)
        names = names_of(keys)
        if kind == "lost":
            log.warning("partitions_lost", partitions=names, **fields)
        else:
            event = "partitions_assigned" if kind == "assign" else "partitions_revoked"
            log.info(event, partitions=names, **fields)


def forget_lag(metrics: Metrics, keys: Iterable[PartitionKey]) -> None:
    """Drop the ``biomarker_consumer_lag`` series of partitions this member no longer owns."""
    for topic, partition in keys:
        metrics.consumer_lag.remove(topic, str(partition))


def keys_of(partitions: list[Any]) -> list[PartitionKey]:
    return [(tp.topic, tp.partition) for tp in partitions]


def names_of(keys: list[PartitionKey]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in keys]
