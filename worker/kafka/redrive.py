"""Re-driving dead letters: the original records of the dead-letter topic go back to their input
topic once the cause of their failure is fixed (what a dead letter holds and which ones to
re-drive: :mod:`worker.kafka.dead_letters`).

A run is bounded and resumable: the dead-letter topic's end offsets are fixed at start (and
``--since``/``--until`` become offset bounds as in a replay); it reads from its own group's
committed offsets, re-produces each batch with the idempotent producer (``acks=all``), waits for
every delivery report and only then commits the batch. A crash re-drives at most the batch in
flight again (at-least-once). Logs carry counts, coordinates and reasons, never keys or values.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.kafka.clients import consumer_config, producer_config
from worker.kafka.dead_letters import (
    DEFAULT_MAX_REDRIVES,
    DeadLetter,
    Filters,
    Outcome,
    decide,
    from_message,
    redriven_headers,
)
from worker.kafka.errors import KafkaErrors
from worker.kafka.replay import plan_replay
from worker.logs import kafka_logger

log = structlog.get_logger("worker.redrive")
T = TypeVar("T")

GROUP_SUFFIX = "-redrive"

_TIMEOUT_S = 30.0
_BATCH = 500
_POLL_S = 0.5
#: A run that reads nothing for this long while partitions are short of their end stops.
_STALL_S = 120.0


# --------------------------------------------------------------------------- one run
@dataclass(frozen=True, slots=True)
class RedriveOptions:
    dlq_topic: str
    group: str
    filters: Filters = field(default_factory=Filters)
    to_topic: str | None = None  # default: each dead letter's source topic
    max_redrives: int = DEFAULT_MAX_REDRIVES
    max_records: int | None = None  # dead letters read at most
    dry_run: bool = False


@dataclass(slots=True)
class Summary:
    """What a run did; ``redriven`` counts delivered records (in a dry run, none)."""

    dlq_topic: str
    group: str
    dry_run: bool
    read: int = 0
    redriven: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    by_source_partition: Counter[str] = field(default_factory=Counter)
    stopped: str = "end"  # end, max_records, signal or error
    error: str | None = None

    @property
    def matched(self) -> int:
        return (
            self.read
            - self.counts[Outcome.FILTERED.value]
            - self.counts[Outcome.NOT_DEAD_LETTER.value]
        )

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "dlq_topic": self.dlq_topic,
            "group": self.group,
            "dry_run": self.dry_run,
            "read": self.read,
            "matched": self.matched,
            "redriven": self.redriven,
        }
        if self.dry_run:
            result["would_redrive"] = self.counts[Outcome.REDRIVE.value]
        for outcome in Outcome:
            if outcome is not Outcome.REDRIVE:
                result[outcome.value] = self.counts[outcome.value]
        result["by_reason"] = dict(sorted(self.by_reason.items()))
        result["by_source_partition"] = dict(sorted(self.by_source_partition.items()))
        result["stopped"] = self.stopped
        if self.error is not None:
            result["error"] = self.error
        return result


class Redriver:
    """One bounded re-drive of the dead-letter topic (see the module docstring)."""

    def __init__(self, settings: WorkerSettings, options: RedriveOptions) -> None:
        if options.to_topic is not None and options.to_topic == options.dlq_topic:
            raise UsageError("--to-topic must not be the dead-letter topic")
        self._options = options
        self._errors = KafkaErrors()
        hooks = {"error_cb": self._errors.on_error, "logger": kafka_logger()}
        config = consumer_config(settings, group_id=options.group)
        config.pop("group.instance.id", None)  # assigned, never a group member
        config.update(
            {
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",  # a start deleted by retention: the log start
                "isolation.level": "read_committed",  # never dead letters of aborted transactions
                **hooks,
            }
        )
        self._producer: Producer | None = None
        try:
            self._consumer = Consumer(config)
            if not options.dry_run:
                produce = producer_config(settings)
                produce.pop("transactional.id", None)  # delivery reports, then the commit
                self._producer = Producer({**produce, **hooks})
        except KafkaException as exc:
            raise UsageError(f"invalid Kafka client configuration: {exc.args[0]}") from exc
        self._stopping = False
        self._delivery_error: KafkaError | None = None
        self._partitions: dict[str, int] = {}  # target topic -> partition count
        self.summary = Summary(options.dlq_topic, options.group, options.dry_run)
        self._ends: dict[int, int] = {}  # end offset (exclusive) fixed at start, per partition
        self._position: dict[int, int] = {}  # next offset to handle, per partition
        self._pending: set[int] = set()  # partitions short of their end

    def request_stop(self) -> None:
        """Stop after the batch in flight (delivered and committed); only sets a flag, so a
        signal handler may call it."""
        self._stopping = True

    def run(self) -> Summary:
        """Re-drive to the end offsets at start (or ``max_records``); raise :class:`FatalError`
        when a delivery, commit or the connection fails (the batch in flight stays
        uncommitted), :class:`UsageError` for a missing topic."""
        try:
            self._run()
        except (FatalError, UsageError) as exc:
            self.summary.stopped = "error"
            self.summary.error = str(exc)
            raise
        finally:
            if self._producer is not None:
                self._producer.flush(_TIMEOUT_S)
            self._consumer.close()
        return self.summary

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        ends, starts = self._plan()
        self._ends, self._position = ends, dict(starts)
        self._pending = {p for p in ends if starts[p] < ends[p]}
        topic = self._options.dlq_topic
        if self._pending:
            self._consumer.assign(
                [TopicPartition(topic, p, starts[p]) for p in sorted(self._pending)]
            )
        last_progress = time.monotonic()
        while self._pending and self._going_on():
            moved = self._take(self._consumer.consume(_BATCH, _POLL_S))
            if moved:
                last_progress = time.monotonic()
                self._deliver_and_commit({p: self._position[p] for p in moved})
            elif time.monotonic() - last_progress > _STALL_S:
                raise FatalError(
                    f"no progress for {_STALL_S:.0f}s with partitions "
                    f"{sorted(self._pending)} of {topic} short of their end"
                )
        log.info("redrive_finished", **self.summary.as_dict())

    def _going_on(self) -> bool:
        if self._stopping:
            self.summary.stopped = "signal"
            log.info("stop_requested", reason="signal")
            return False
        if self._full():
            self.summary.stopped = "max_records"
            return False
        return True

    def _full(self) -> bool:
        limit = self._options.max_records
        return limit is not None and self.summary.read >= limit

    def _take(self, messages: list[Message]) -> set[int]:
        """Handle one batch of messages; the partitions whose position moved."""
        self._errors.check()
        moved: set[int] = set()
        for message in messages:
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None or partition not in self._pending:
                continue
            if self._full():
                break
            try:
                moved_now = self._advance(message, partition, offset)
            except UsageError:
                # A letter that cannot be routed (no source topic, a deleted topic): commit
                # what this batch already re-drove before stopping, or every rerun repeats it.
                if moved:
                    self._deliver_and_commit({p: self._position[p] for p in moved})
                raise
            if moved_now:
                moved.add(partition)
            if self._position[partition] >= self._ends[partition]:
                self._pending.discard(partition)
                self._consumer.pause([TopicPartition(self._options.dlq_topic, partition)])
        return moved

    def _advance(self, message: Message, partition: int, offset: int) -> bool:
        """Handle one message (a record, or the end of a partition); whether the partition's
        position moved. Positions never pass the end offset fixed at start."""
        end, position = self._ends[partition], self._position[partition]
        error = message.error()
        if error is not None and error.code() != KafkaError._PARTITION_EOF:
            self._consumer_error(error)
            return False
        if error is None and offset < end:
            self._handle(message)
            self._position[partition] = offset + 1
            return True
        # At or past the end (a later record, or the end of the log after transaction
        # markers): everything before ``offset`` was seen.
        reached = min(offset, end)
        if reached > position:
            self._position[partition] = reached
            return True
        return False

    def _plan(self) -> tuple[dict[int, int], dict[int, int]]:
        """End offsets (exclusive) and where to start, per partition of the dead-letter topic."""
        options = self._options
        plan = _retrying(
            lambda: plan_replay(
                self._consumer,
                options.dlq_topic,
                from_timestamp=options.filters.since,
                to_timestamp=options.filters.until,
            ),
            f"cannot read the end offsets of {options.dlq_topic}",
        )
        self._errors.connected = True
        every = [TopicPartition(options.dlq_topic, p) for p in plan.ranges]
        found = _retrying(
            lambda: self._consumer.committed(every, timeout=_TIMEOUT_S),
            f"cannot read the offsets of group {options.group}",
        )
        committed = {tp.partition: tp.offset for tp in found if tp.offset >= 0}
        ends = {p: end for p, (_, end) in plan.ranges.items()}
        starts = {p: max(start, committed.get(p, start)) for p, (start, _) in plan.ranges.items()}
        log.info(
            "redrive_planned",
            topic=options.dlq_topic,
            group=options.group,
            dry_run=options.dry_run,
            ranges={str(p): [starts[p], ends[p]] for p in sorted(ends)},
            records=sum(max(0, ends[p] - starts[p]) for p in ends),
        )
        return ends, starts

    def _handle(self, message: Message) -> None:
        options, summary = self._options, self.summary
        summary.read += 1
        letter = from_message(message)
        outcome = decide(letter, options.filters, max_redrives=options.max_redrives)
        summary.counts[outcome.value] += 1
        if letter is None or outcome in (Outcome.NOT_DEAD_LETTER, Outcome.FILTERED):
            return
        if outcome is not Outcome.REDRIVE:
            log.warning(
                "redrive_skipped",
                why=outcome.value,
                dlq_partition=letter.partition,
                dlq_offset=letter.offset,
                reason=letter.reason,
                source_topic=letter.source_topic,
                source_partition=letter.source_partition,
                source_offset=letter.source_offset,
                redrives=letter.redrives,
            )
            return
        summary.by_reason[letter.reason] += 1
        summary.by_source_partition[f"{letter.source_topic}:{letter.source_partition}"] += 1
        topic, partition = self._target(letter)
        if self._producer is not None:
            self._produce(self._producer, letter, topic, partition)

    def _target(self, letter: DeadLetter) -> tuple[str, int]:
        """The topic to re-drive to and the partition (-1: by key): back to the source
        partition when going back to the source topic."""
        topic = self._options.to_topic or letter.source_topic
        if topic is None:
            raise UsageError(
                f"the dead letter at {letter.topic}/{letter.partition}/{letter.offset} names no "
                "source topic: give --to-topic"
            )
        if topic == self._options.dlq_topic:
            raise UsageError(f"refusing to re-drive into the dead-letter topic {topic}")
        count = self._partitions.get(topic)
        if count is None:
            count = self._partitions[topic] = self._partition_count(topic)
        source = letter.source_partition
        if self._options.to_topic is None and source is not None and 0 <= source < count:
            return topic, source
        return topic, -1

    def _partition_count(self, topic: str) -> int:
        try:
            metadata = self._consumer.list_topics(topic, timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise FatalError(f"cannot describe topic {topic}: {exc}") from exc
        described = metadata.topics.get(topic)
        if described is None or described.error is not None:
            raise UsageError(f"target topic {topic!r} does not exist (or is not readable)")
        return len(described.partitions)

    def _produce(self, producer: Producer, letter: DeadLetter, topic: str, partition: int) -> None:
        headers = redriven_headers(letter, now_ms=int(time.time() * 1000))
        while True:
            try:
                producer.produce(
                    topic,
                    value=letter.value,
                    key=letter.key,
                    partition=partition,
                    headers=headers,
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                producer.poll(0.05)
            except KafkaException as exc:
                raise FatalError(
                    f"cannot re-drive {letter.topic}/{letter.partition}/{letter.offset} to "
                    f"{topic}: {exc.args[0].str()}"
                ) from exc

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            if self._delivery_error is None:
                self._delivery_error = error
            return
        self.summary.redriven += 1

    def _deliver_and_commit(self, offsets: dict[int, int]) -> None:
        """Wait for every delivery report of the batch; then commit ``offsets``."""
        producer = self._producer
        if producer is None:  # dry run: nothing produced, nothing committed
            return
        while producer.flush(1.0) > 0:
            self._errors.check()
        if self._delivery_error is not None:
            raise FatalError(f"delivery failed: {self._delivery_error.str()}")
        self._errors.check()
        topic = self._options.dlq_topic
        commit = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
        _retrying(
            lambda: self._consumer.commit(offsets=commit, asynchronous=False), "commit failed"
        )
        log.info(
            "redrive_committed",
            topic=topic,
            offsets={str(p): o for p, o in sorted(offsets.items())},
            read=self.summary.read,
            redriven=self.summary.redriven,
        )

    def _consumer_error(self, error: KafkaError) -> None:
        """A fetch error: fatal ones (authorization, a fatal client) stop the run."""
        self._errors.on_error(error)
        self._errors.check()


def _retrying(call: Callable[[], T], what: str) -> T:
    """``call()``, retried while Kafka says its error is retriable (a coordinator loading or
    moving), for up to the client timeout; otherwise a :class:`FatalError` saying ``what``."""
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        try:
            return call()
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or not error.retriable() or time.monotonic() >= deadline:
                raise FatalError(f"{what}: {exc}") from exc
            time.sleep(0.25)


def redrive(
    settings: WorkerSettings,
    options: RedriveOptions,
    *,
    on_start: Callable[[Redriver], None] = lambda _r: None,
) -> Summary:
    """Build the clients and run one re-drive (``on_start`` sees it first, e.g. for signals)."""
    redriver = Redriver(settings, options)
    on_start(redriver)
    return redriver.run()
