"""Poison records: a record that keeps crashing the worker is dead-lettered instead of looping.

The count lives where the offsets live: in the group's committed offset metadata. When a
partition is assigned, the worker reads its committed offset ``O`` and the metadata
``biomarker-attempts=<k>`` (how many workers started at ``O`` and then died without finishing
it; ``;record`` when they read that record alone), and commits ``O`` again with ``k + 1``
before reading anything. A worker that makes
progress commits later offsets without that metadata; one that stops cleanly without progress
commits ``O`` with it cleared. So the count only survives crashes.

A single crash (a node lost, the OOM killer during a burst) is usually not the record's fault,
and the next worker simply makes progress. After two crashes at the same offset without progress,
the partition is read *carefully*: one record at a time, up to ``max_inflight_notes`` records past
``O`` (everything that can have been in flight), each record's attempt committed before it is
processed, so the next crash is pinned on the record that caused it, not on innocent ones read in
the same batch. A record whose count reaches ``poison_after_crashes`` is sent to the dead-letter
topic as ``poison`` unread, and normal reading resumes after it. The log names the coordinates
and the count on every assignment after a crash.

Exactly-once mode commits offsets inside transactions and does not track attempts.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaException, TopicPartition

from worker.kafka.offsets import PartitionKey, PartitionState
from worker.kafka.ports import ConsumerPort

log = structlog.get_logger(__name__)

_PREFIX = "biomarker-attempts="
_TIMEOUT_S = 30.0
#: Crashes without progress at one offset before its partition is read one record at a time.
CAREFUL_AFTER_CRASHES = 2


def parse_mark(metadata: str | None) -> tuple[int, bool]:
    """(attempts, pinned) from committed offset metadata; (0, False) when absent or foreign.
    ``pinned``: the attempts were made with this record alone in flight."""
    if not metadata or not metadata.startswith(_PREFIX):
        return 0, False
    count, _, scope = metadata.removeprefix(_PREFIX).partition(";")
    return (int(count) if count.isdigit() else 0), scope == "record"


def _mark_text(attempts: int, pinned: bool) -> str:
    return f"{_PREFIX}{attempts}" + (";record" if pinned else "")


@dataclass(slots=True)
class _Watch:
    start: int  # the committed offset at assignment
    attempts: int  # attempts at ``start`` including this one
    careful_until: int  # read one record at a time below this offset
    poison: int | None = None  # crashes pinned on the record at ``start``, if it is poison
    started: int | None = None  # the offset whose attempt is committed now


class CrashTracker:
    """Counts attempts per assigned partition and decides which records are read how."""

    def __init__(
        self, *, consumer: ConsumerPort, poison_after: int, window: int, from_earliest: bool
    ) -> None:
        self._consumer = consumer
        self._from_earliest = from_earliest
        self._poison_after = poison_after
        self._window = window
        self._watched: dict[PartitionKey, _Watch] = {}
        self._marked: dict[PartitionKey, tuple[int, str]] = {}  # what this process committed
        self._held = False

    @property
    def enabled(self) -> bool:
        return self._poison_after > 0

    def assigned(self, states: list[PartitionState]) -> None:
        """Read the attempt counts of newly assigned partitions and count this attempt."""
        if not self.enabled or not states:
            return
        wanted = [TopicPartition(s.topic, s.partition) for s in states]
        commits = []
        for tp in self._consumer.committed(wanted, timeout=_TIMEOUT_S):
            if tp.offset < 0:  # never committed: reading starts at the log's start (or end)
                marks = self._consumer.get_watermark_offsets(tp, timeout=_TIMEOUT_S)
                if marks is None:
                    continue
                tp.offset = marks[0] if self._from_earliest else marks[1]
            key = (tp.topic, tp.partition)
            crashes, pinned = parse_mark(tp.metadata)
            if self._marked.get(key) == (tp.offset, tp.metadata):
                crashes -= 1  # the count this very process left before a loss: no crash
            crashes = max(0, crashes)
            watch = self._watch(tp.offset, crashes, pinned)
            self._watched[key] = watch
            if crashes:
                log.warning(
                    "partition_after_crash",
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=tp.offset,
                    attempts=crashes,
                    pinned=pinned,
                    careful=watch.careful_until > tp.offset,
                    poison_after=self._poison_after,
                )
            careful = watch.careful_until > tp.offset
            commits.append(self._mark(key, tp.offset, watch.attempts, pinned=careful))
        self._commit(commits)

    def _watch(self, start: int, crashes: int, pinned: bool) -> _Watch:
        """How to read a partition whose record at ``start`` saw ``crashes`` attempts die:
        pinned on that record, it is poison from ``poison_after`` on (read normally after it)
        and read alone before that; blamed on a whole batch, read carefully from
        :data:`CAREFUL_AFTER_CRASHES` on, the record at ``start`` starting a pinned count."""
        if pinned and crashes >= self._poison_after:
            return _Watch(start, crashes + 1, start + 1, poison=crashes, started=start)
        if pinned:
            return _Watch(start, crashes + 1, start + self._window, started=start)
        if crashes >= CAREFUL_AFTER_CRASHES:
            return _Watch(start, 1, start + self._window, started=start)
        return _Watch(start, crashes + 1, start, started=start)

    def careful(self, state: PartitionState) -> bool:
        """True while ``state`` is read one record at a time."""
        watch = self._watched.get(state.key)
        if watch is None:
            return False
        done = state.committable if state.committable is not None else watch.start
        return done < watch.careful_until

    def admit(self, state: PartitionState, offset: int) -> bool:
        """May the record at ``offset`` be taken now? In careful mode only when nothing of its
        partition is in flight, and after its (pinned) attempt is committed."""
        watch = self._watched.get(state.key)
        if watch is None or not self.careful(state):
            return True
        if state.inflight:
            return False
        if watch.started != offset:
            self._commit([self._mark(state.key, offset, 1, pinned=True)])
            watch.started = offset
        return True

    def poison(self, state: PartitionState, offset: int) -> int | None:
        """The crash count of the record at ``offset`` if it is to be dead-lettered unread."""
        watch = self._watched.get(state.key)
        if watch is None or offset != watch.start:
            return None
        return watch.poison

    def progressed(
        self, offsets: dict[PartitionKey, int], states: dict[PartitionKey, PartitionState]
    ) -> dict[PartitionKey, int]:
        """The offsets to stage as usual: not those of careful partitions, whose progress the
        next record's attempt commits (staging them would let auto-commit clear its count)."""
        return {
            key: offset
            for key, offset in offsets.items()
            if key not in states or not self.careful(states[key])
        }

    def hold(self) -> None:
        """Keep every count from now on: the worker is failing (or stopping with a record still
        unfinished), which is what the counts are for, so the revoke that closing the consumer
        runs must not clear them."""
        self._held = True

    def released(self, states: list[PartitionState]) -> None:
        """A clean stop (revoke, shutdown) without progress: clear the count it added."""
        if self._held:
            return
        clear = []
        for state in states:
            watch = self._watched.pop(state.key, None)
            if watch is not None and state.committable is None and state.active:
                clear.append(TopicPartition(state.topic, state.partition, watch.start))
        self._commit(clear)

    def forget(self, keys: list[PartitionKey]) -> None:
        for key in keys:
            self._watched.pop(key, None)

    def _mark(
        self, key: PartitionKey, offset: int, attempts: int, *, pinned: bool
    ) -> TopicPartition:
        text = _mark_text(attempts, pinned)
        self._marked[key] = (offset, text)
        return TopicPartition(key[0], key[1], offset, text)

    def _commit(self, offsets: list[TopicPartition]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. revoked meanwhile: the next owner counts again
            log.warning("attempt_commit_failed", error=str(exc))
