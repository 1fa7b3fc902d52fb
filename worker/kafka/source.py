"""Reading records: subscription or replay assignment, pause/resume, backpressure, lag.

:meth:`KafkaSource.poll` turns fetched messages into :class:`~worker.notes.Record` s, registered
with the :class:`~worker.kafka.offsets.OffsetTracker` in offset order. The rebalance callbacks
(:mod:`worker.kafka.rebalance`) run inside ``consume()``.
"""

from __future__ import annotations

from typing import Any, cast

import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

from worker.config import WorkerSettings
from worker.errors import FatalError, InvalidEvent
from worker.events import Headers, SourceRef
from worker.kafka.crashes import CrashTracker
from worker.kafka.errors import KafkaErrors
from worker.kafka.offsets import OffsetTracker, PartitionKey, PartitionState
from worker.kafka.ports import ConsumerPort, client_error
from worker.kafka.rebalance import RebalanceListener, Rebalancer, keys_of, names_of
from worker.kafka.replay import ReplayPlan
from worker.metrics import Metrics
from worker.notes import Record
from worker.ratelimit import TokenBucket

log = structlog.get_logger(__name__)

_COMMITTED_TIMEOUT_S = 30.0


class KafkaSource:
    """The consumer side of the worker."""

    def __init__(
        self,
        *,
        consumer: ConsumerPort,
        tracker: OffsetTracker,
        settings: WorkerSettings,
        errors: KafkaErrors,
        metrics: Metrics,
        replay: ReplayPlan | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self._consumer = consumer
        self._tracker = tracker
        self._settings = settings
        self._errors = errors
        self._metrics = metrics
        self._replay = replay
        #: Partitions of the replay an earlier attempt finished (committed at their end): not
        #: assigned, done from the start. By partition, with their end.
        self._done_at_start: dict[int, int] = {}
        #: The replay's range was done when :meth:`finished` last looked and no rewind has
        #: undone it since. After the loop returns: whether the whole range was processed and,
        #: with exactly-once, committed (an aborted last transaction rewinds, and clears it).
        self.replay_finished = False
        self._bucket = TokenBucket(rate_limit) if rate_limit else None
        self.crashes = CrashTracker(
            consumer=consumer,
            poison_after=(
                settings.poison_after_crashes
                if settings.processing_guarantee == "at-least-once"
                else 0
            ),
            window=settings.max_inflight_notes,
            from_earliest=settings.auto_offset_reset == "earliest",
        )
        self.paused = False
        self.stopping = False  # set on shutdown: newly assigned partitions stay paused
        self._rebalancer = Rebalancer(
            tracker=tracker,
            crashes=self.crashes,
            metrics=metrics,
            keep_paused=lambda: self.paused or self.stopping,
        )

    def start(self, listener: RebalanceListener) -> None:
        """Subscribe to the input topic, or assign the replay's ranges."""
        self._rebalancer.listener = listener
        if self._replay is None:
            self._consumer.subscribe(
                [item.topic for item in self._settings.input_topics],
                on_assign=self._rebalancer.on_assign,
                on_revoke=self._rebalancer.on_revoke,
                on_lost=self._rebalancer.on_lost,
            )
        else:
            self._assign_replay(self._replay)

    def poll(self, timeout: float) -> list[Record]:
        """Records fetched now (waiting up to ``timeout`` for the first), in offset order."""
        wanted = self._settings.consume_batch_size
        if self._bucket is not None:
            wanted = self._bucket.take(wanted, wait=timeout)
        messages = self._consume(wanted, timeout) if wanted else []
        if self._bucket is not None:
            self._bucket.refund(wanted - len(messages))
        records = []
        held: dict[PartitionKey, int] = {}
        for message, fetched_for in messages:
            record = self._accept(message, fetched_for, held)
            if record is not None:
                records.append(record)
        self._hold(held)
        return records

    def _hold(self, held: dict[PartitionKey, int]) -> None:
        """Careful partitions with a record in flight: pause them, and seek back to the first
        record not taken, so it is fetched again when they resume."""
        for (topic, partition), offset in held.items():
            tp = TopicPartition(topic, partition, offset)
            self._consumer.pause([tp])
            self._consumer.seek(tp)
            state = self._tracker.get((topic, partition))
            if state is not None:
                state.held = True

    def release_held(self) -> None:
        """Resume careful partitions whose record is done (called every loop iteration)."""
        for state in self._tracker.partitions.values():
            if state.held and not state.inflight:
                state.held = False
                if not (self.paused or self.stopping):
                    self._consumer.resume(_topic_partitions([state.key]))

    def _consume(self, wanted: int, timeout: float) -> list[tuple[Any, PartitionState | None]]:
        """Up to ``wanted`` messages, returned as soon as any are there, each with the state of
        its partition when it was fetched.

        librdkafka's batch consume waits out its whole timeout unless the batch fills: an idle
        worker would hold a lone note for the whole poll. So: take what is fetched already; if
        nothing is, wait for one message, then take what came with it. A rebalance or a rewind
        can run inside the second call: the first call's message then belongs to a state that
        is gone (:meth:`_accept` drops it)."""
        messages = self._fetched(self._consumer.consume(wanted, 0))
        if messages:
            return messages
        messages = self._fetched(self._consumer.consume(1, timeout))
        if messages and wanted > 1:
            messages += self._fetched(self._consumer.consume(wanted - 1, 0))
        return messages

    def _fetched(self, messages: list[Any]) -> list[tuple[Any, PartitionState | None]]:
        fetched = []
        for message in messages:
            state = self._tracker.get((message.topic(), message.partition()))
            if state is not None and state.started is None and message.error() is None:
                state.started = message.offset()  # messages come in offset order
            fetched.append((message, state))
        return fetched

    def _accept(
        self, message: Any, fetched_for: PartitionState | None, held: dict[PartitionKey, int]
    ) -> Record | None:
        error = message.error()
        if error is not None:
            self._errors.on_error(error)
            return None
        topic, partition, offset = message.topic(), message.partition(), message.offset()
        if topic is None or partition is None or offset is None:
            return None
        state = self._tracker.get((topic, partition))
        if state is None or not state.active:
            return None  # fetched just before a revoke: the new owner reads it again
        if state is not fetched_for:
            # fetched before a loss, revoke or rewind that a later consume() call served: this
            # assignment reads the partition again from its committed offset
            return None
        if self._replay is not None and not self._replay.covers(partition, offset):
            return None  # outside the replay window
        if state.key in held or state.held or not self.crashes.admit(state, offset):
            held.setdefault(state.key, offset)  # careful: one record of this partition at a time
            return None
        _kind, timestamp = message.timestamp()
        record = Record(
            source=SourceRef(topic, partition, offset, timestamp if timestamp > 0 else None),
            key=message.key(),
            value=message.value(),
            headers=cast(Headers | None, message.headers()),
        )
        crashes = self.crashes.poison(state, offset)
        if crashes is not None:
            reason = f"the worker stopped {crashes} times in a row with this record in flight"
            record.fail(InvalidEvent("poison", reason))
            record.prepared = True  # dead-lettered unread
        self._tracker.add(state, offset, record)
        return record

    def set_paused(self, paused: bool) -> None:
        """Pause or resume fetching from every assigned partition."""
        if paused == self.paused:
            return
        keys = list(self._tracker.partitions)
        if paused:
            self._consumer.pause(_topic_partitions(keys))
        else:
            held = {key for key, state in self._tracker.partitions.items() if state.held}
            self._consumer.resume(_topic_partitions([k for k in keys if k not in held]))
        self.paused = paused

    def throttle(self, records: int, size: int, sentences: int = 0, preparing: int = 0) -> None:
        """Backpressure: pause when ``records``, ``size`` bytes or ``sentences`` waiting for the
        model reach their limit, or two polls' worth of records wait to be prepared (their
        sentences are not known yet); resume once all are back to half of it."""
        s = self._settings
        limits = (
            s.max_inflight_notes,
            s.max_inflight_bytes,
            s.max_inflight_sentences,
            2 * s.consume_batch_size,
        )
        loads = (records, size, sentences, preparing)
        self._metrics.inflight_notes.set(records)
        self._metrics.inflight_bytes.set(size)
        if not self.paused and any(
            load >= limit for load, limit in zip(loads, limits, strict=True)
        ):
            self.set_paused(True)
            self._metrics.paused.set(1)
            self._metrics.pauses.inc()
            log.debug("paused", inflight=records, inflight_bytes=size, sentences=sentences)
        elif self.paused and all(
            load <= limit // 2 for load, limit in zip(loads, limits, strict=True)
        ):
            self.set_paused(False)
            self._metrics.paused.set(0)
            log.debug("resumed", inflight=records, inflight_bytes=size, sentences=sentences)

    def finished(self) -> bool:
        """A replay is finished when every range is done: committable to its end, or, with
        nothing of it in flight, read past its end. A range may end in offsets no consumer
        receives (a transaction's commit marker, records compacted away): the consumer's
        position steps over them, the committable offset cannot."""
        self.replay_finished = self._finished()
        return self.replay_finished

    def _finished(self) -> bool:
        if self._replay is None:
            return False
        states = [s for s in self._tracker.partitions.values() if s.topic == self._replay.topic]
        committable: dict[int, int | None] = dict(self._done_at_start)
        committable.update((state.partition, state.committable) for state in states)
        if self._replay.finished(committable):
            return True
        idle = [
            s.key
            for s in states
            if not s.inflight and not self._replay.done(s.partition, s.committable)
        ]
        if not idle:
            return False
        try:
            positions = self._consumer.position(_topic_partitions(idle))
        except KafkaException:
            return False
        for tp in positions:
            if tp.offset >= self._replay.end(tp.partition):
                committable[tp.partition] = tp.offset
        return self._replay.finished(committable)

    def update_lag(self) -> None:
        """Consumer lag per partition: log end minus what is committable (or the position)."""
        keys = list(self._tracker.partitions)
        if not keys:
            return
        try:
            positions = self._consumer.position(_topic_partitions(keys))
        except KafkaException:
            return
        for tp in positions:
            state = self._tracker.get((tp.topic, tp.partition))
            if state is None:
                continue
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            done = state.committable if state.committable is not None else tp.offset
            if high >= 0 and done is not None and done >= 0:
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    high - done
                )

    def rewind(self) -> None:
        """Forget in-flight records and seek every partition back to its committed offset. A
        partition the group has no committed offset for goes back to the first offset this
        assignment fetched (the reset policy is not applied again: ``latest`` would skip what
        was read since). A replay's partition goes back to where :meth:`ReplayPlan.resume`
        says (its committed offset inside the range, else the range's start)."""
        keys = list(self._tracker.partitions)
        started = {key: state.started for key, state in self._tracker.partitions.items()}
        self._tracker.reset()
        self.replay_finished = False
        if not keys:
            return
        try:
            committed = self._consumer.committed(
                _topic_partitions(keys), timeout=_COMMITTED_TIMEOUT_S
            )
        except KafkaException as exc:
            raise FatalError(f"rewind: committed offsets unknown: {client_error(exc)}") from exc
        for tp in committed:
            offset: int | None = tp.offset
            if self._replay is not None and tp.topic == self._replay.topic:
                offset = self._replay.resume(tp.partition, tp.offset)
                self._resumed(self._replay, tp.partition, offset)
            elif tp.offset < 0:
                offset = self._uncommitted_start(started.get((tp.topic, tp.partition)))
            if offset is not None:
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        log.warning("rewound_to_committed", partitions=names_of(keys))

    def _uncommitted_start(self, started: int | None) -> int | None:
        """Where a partition without a committed offset is read again: from the first offset
        this assignment fetched; nothing fetched yet: from the log's start with ``earliest``,
        else from where the consumer stands (None: no seek)."""
        if started is not None:
            return started
        return OFFSET_BEGINNING if self._settings.auto_offset_reset == "earliest" else None

    def close(self) -> None:
        """Leave the group (commits nothing by itself)."""
        self._consumer.close()

    # ------------------------------------------------------------------ rebalancing
    def _assign_replay(self, plan: ReplayPlan) -> None:
        """Manual assignment of the plan's ranges, resuming from this group's commits."""
        every = [TopicPartition(plan.topic, p) for p in plan.ranges]
        committed = {
            tp.partition: tp.offset
            for tp in self._consumer.committed(every, timeout=_COMMITTED_TIMEOUT_S)
            if tp.offset >= 0
        }
        assignment = plan.assignment(committed)
        self._done_at_start = plan.done_at_start(committed)
        self._tracker.assign((tp.topic, tp.partition) for tp in assignment)
        for tp in assignment:
            self._resumed(plan, tp.partition, tp.offset)
        self._consumer.assign(assignment)
        log.info(
            "replay_assigned",
            partitions=names_of(keys_of(assignment)),
            done=sorted(self._done_at_start),
            notes=plan.total,
        )

    def _resumed(self, plan: ReplayPlan, partition: int, offset: int) -> None:
        """A replay's partition resumes at ``offset``: past its start, that much is done."""
        state = self._tracker.get((plan.topic, partition))
        if state is not None and offset > plan.ranges[partition][0]:
            state.committable = offset


def _topic_partitions(keys: list[PartitionKey]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition) for topic, partition in keys]
