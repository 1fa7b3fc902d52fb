"""How finished offsets become committed: two strategies behind one small interface.

* :class:`StoredOffsets` (at-least-once, the default): offsets whose outputs were delivered are
  *stored*; librdkafka's auto-commit sends them; revoke and shutdown commit synchronously.
* :class:`TransactionalOffsets` (exactly-once for ``read_committed`` consumers): outputs are
  produced inside a producer transaction, the input offsets are added to it with
  ``send_offsets_to_transaction`` and both commit atomically every ``commit_interval_ms``, on
  revoke and at shutdown. An abortable error aborts the transaction and the pipeline rewinds to
  the last committed offsets, so nothing is lost and nothing is seen twice downstream.

An output the brokers refuse inside a transaction dooms it (librdkafka accepts nothing more in
it): the sink reports it with :meth:`TransactionalOffsets.fail`, the transaction is aborted on
the loop's next turn, and what the refusal taught is kept in :class:`Refusals` across the rewind,
so the record's next attempt goes differently (its outputs by themselves, then its dead letter).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.errors import FatalError, InvalidEvent
from worker.events import SourceRef
from worker.kafka.deadline import call_with_deadline
from worker.kafka.offsets import PartitionKey
from worker.kafka.ports import ConsumerPort, ProducerPort, client_error
from worker.metrics import Metrics

log = structlog.get_logger(__name__)

_TIMEOUT_S = 30.0
_RETRIES = 5
#: How far past its own timeout a transactional call may block before the worker gives up on
#: the process (see :mod:`worker.kafka.deadline`).
_GRACE_S = 15.0
#: How long the fatal path gives ``abort_transaction``.
_ABANDON_S = 5.0
#: ``init_transactions`` gets this long in all, in tries of at most :data:`_INIT_TRY_S`: well
#: inside the default liveness timeout (60 s), so the reason is logged before a probe kills.
INIT_BUDGET_S = 40.0
_INIT_TRY_S = 10.0
#: Why ``init_transactions`` may never succeed, for the warnings and the fatal line.
_COORDINATOR_HINT = (
    "no transaction coordinator answered: the brokers may be unable to host the transaction "
    "state log (check transaction.state.log.replication.factor and "
    "transaction.state.log.min.isr against the number of brokers) or the principal may lack "
    "the TransactionalId ACL"
)


Offsets = dict[PartitionKey, int]


@dataclass(slots=True)
class Refusal:
    """What aborted transactions learnt about one input record's outputs."""

    #: The brokers refused a batch it was in: produce its outputs by themselves next time.
    alone: bool = False
    #: Its outputs were refused by themselves: dead-letter the record with this instead.
    failure: InvalidEvent | None = None
    #: Its dead letter was refused by itself: send the truncated copy instead.
    truncate: bool = False


class Refusals:
    """:class:`Refusal` s by input record, kept until a commit passes the record."""

    def __init__(self) -> None:
        self._by_partition: dict[PartitionKey, dict[int, Refusal]] = {}

    def __len__(self) -> int:
        return sum(len(records) for records in self._by_partition.values())

    def get(self, source: SourceRef) -> Refusal | None:
        records = self._by_partition.get(_key(source))
        return records.get(source.offset or 0) if records else None

    def note(self, source: SourceRef) -> Refusal:
        """The record's refusal, created empty when it has none yet."""
        records = self._by_partition.setdefault(_key(source), {})
        return records.setdefault(source.offset or 0, Refusal())

    def committed(self, offsets: Offsets) -> None:
        """Forget the records before these committed offsets (next to read)."""
        for key, next_offset in offsets.items():
            records = self._by_partition.get(key)
            if records is None:
                continue
            for offset in [offset for offset in records if offset < next_offset]:
                del records[offset]
            if not records:
                del self._by_partition[key]


def _key(source: SourceRef) -> PartitionKey:
    return (source.topic or "", source.partition or 0)


def _topic_partitions(offsets: Offsets) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()
    ]


class OffsetCommitter(Protocol):
    #: What aborted transactions learnt about records; None without transactions (a refused
    #: output is replaced at once).
    refusals: Refusals | None

    def stage(self, offsets: Offsets) -> None:
        """Offsets (next to read) whose outputs and every earlier one's are delivered."""

    def before_produce(self) -> bool:
        """Ready the producer for an output; False: produce nothing now (the open transaction
        failed and is about to be aborted; the record is read and produced again)."""

    def fail(self, reason: str) -> None:
        """The open transaction cannot commit (an output was refused): abort it soon."""

    def abort_if_failed(self) -> None:
        """Abort a failed transaction now (called after delivery reports were served)."""

    def watch_transactions(self, callback: Callable[[bool], None]) -> None:
        """Have ``callback(True)`` called after each commit of a transaction, and
        ``callback(False)`` after each abort (never, without transactions)."""

    def tick(self) -> None:
        """Called every loop iteration; commits when it is time."""

    def commit(self, offsets: Offsets) -> None:
        """Commit now, synchronously (revoke, shutdown): ``offsets`` are every committable
        offset of the partitions concerned."""

    def partitions_lost(self) -> None: ...


def auto_commits_counted(
    metrics: Metrics,
) -> Callable[[KafkaError | None, list[TopicPartition]], None]:
    """The consumer's ``on_commit``: librdkafka's periodic commits of the stored offsets
    (at-least-once) count in ``biomarker_commits_total`` as the worker's own commits do; a
    failed one is logged. (librdkafka calls it for those commits only, not for a synchronous
    :meth:`StoredOffsets.commit`, which counts itself.)"""

    def on_commit(error: KafkaError | None, _partitions: list[TopicPartition]) -> None:
        if error is None:
            metrics.commits.labels(outcome="ok").inc()
        elif error.code() != KafkaError._NO_OFFSET:  # nothing new was stored: nothing to do
            metrics.commits.labels(outcome="failed").inc()
            log.warning("commit_failed", error=error.str(), auto=True)

    return on_commit


class StoredOffsets:
    """At-least-once: ``store_offsets`` after delivery, auto-commit, sync commit on demand."""

    refusals: Refusals | None = None

    def __init__(self, *, consumer: ConsumerPort, metrics: Metrics) -> None:
        self._consumer = consumer
        self._metrics = metrics

    def stage(self, offsets: Offsets) -> None:
        try:
            self._consumer.store_offsets(offsets=_topic_partitions(offsets))
        except KafkaException as exc:  # partition revoked in between: nothing to store
            log.warning("store_offsets_failed", error=str(exc))

    def before_produce(self) -> bool:
        return True

    def fail(self, reason: str) -> None:
        return None  # no transaction: the sink deals with each refusal itself

    def abort_if_failed(self) -> None:
        return None

    def watch_transactions(self, callback: Callable[[bool], None]) -> None:
        return None

    def tick(self) -> None:
        return None

    def commit(self, offsets: Offsets) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=_topic_partitions(offsets), asynchronous=False)
            self._metrics.commits.labels(outcome="ok").inc()
        except KafkaException as exc:
            self._metrics.commits.labels(outcome="failed").inc()
            log.warning("commit_failed", error=str(exc))

    def partitions_lost(self) -> None:
        return None


class TransactionalOffsets:
    """Exactly-once: outputs and input offsets commit together in one producer transaction."""

    def __init__(
        self,
        *,
        consumer: ConsumerPort,
        producer: ProducerPort,
        metrics: Metrics,
        interval_s: float,
        collect: Callable[[], None],
        rewind: Callable[[], None],
        init_budget_s: float = INIT_BUDGET_S,
        on_waiting: Callable[[], None] = lambda: None,
    ) -> None:
        self._timeout_s = _TIMEOUT_S
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._interval_s = interval_s
        self._collect = collect  # processes delivery reports into stage() calls
        self._rewind = rewind  # forget in-flight work, seek back to committed offsets
        self._init_budget_s = init_budget_s
        self._on_waiting = on_waiting  # called between init tries (a liveness heartbeat)
        self._pending: Offsets = {}
        self._open = False
        self._opened_at = 0.0
        self._failed: str | None = None  # why the open transaction must be aborted
        self.refusals: Refusals | None = Refusals()
        self._watchers: list[Callable[[bool], None]] = []

    def initialise(self) -> None:
        """Fence earlier instances with the same transactional.id (aborts their open work).

        Bounded by ``init_budget_s`` in all: a coordinator that never answers (brokers that
        cannot host the transaction state log) is a warning per try, then a fatal error."""
        deadline = time.monotonic() + self._init_budget_s
        for attempt in itertools.count(1):
            timeout = max(1.0, min(_INIT_TRY_S, deadline - time.monotonic()))
            try:
                call_with_deadline(
                    lambda: self._producer.init_transactions(timeout),  # noqa: B023
                    seconds=timeout + _GRACE_S,
                    what="transaction init",
                )
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal() or not error.retriable():
                    raise FatalError(f"transaction init: {error.str()}") from exc
                self._on_waiting()
                if deadline - time.monotonic() < 1.0:
                    waited = self._init_budget_s - (deadline - time.monotonic())
                    raise FatalError(
                        f"transaction init: not ready after {waited:.0f} s "
                        f"({error.str()}); {_COORDINATOR_HINT}"
                    ) from exc
                log.warning(
                    "transactions_not_ready",
                    attempt=attempt,
                    error=error.str(),
                    hint=_COORDINATOR_HINT,
                )
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic() - 1.0)))

    def stage(self, offsets: Offsets) -> None:
        # Offsets join a transaction even when no output does (records with nothing to
        # produce): it commits on the interval, on revoke and at shutdown like any other, so a
        # revoked partition's offsets never wait for a later transaction of other partitions.
        self.before_produce()
        self._pending.update(offsets)

    def before_produce(self) -> bool:
        if self._failed is not None:
            return False
        if not self._open:
            try:
                self._producer.begin_transaction()
            except KafkaException as exc:
                raise FatalError(f"transaction begin: {client_error(exc)}") from exc
            self._open = True
            self._opened_at = time.monotonic()
        return True

    def fail(self, reason: str) -> None:
        if self._open and self._failed is None:
            self._failed = reason
            log.warning("transaction_failed", reason=reason)

    def abort_if_failed(self) -> None:
        if self._failed is not None:
            self._abort(self._failed)

    def watch_transactions(self, callback: Callable[[bool], None]) -> None:
        self._watchers.append(callback)

    def _ended(self, committed: bool) -> None:
        for callback in self._watchers:
            callback(committed)

    def tick(self) -> None:
        self.abort_if_failed()
        if self._open and time.monotonic() - self._opened_at >= self._interval_s:
            self._commit_transaction()

    def commit(self, offsets: Offsets) -> None:
        self._commit_transaction()

    def partitions_lost(self) -> None:
        """Offsets of lost partitions cannot join the transaction: abort and re-read."""
        if self._open:
            self._abort("partitions lost")

    def _commit_transaction(self) -> None:
        if not self._open:
            return
        if self._flush() > 0:
            self._abort("outputs not delivered in time")
            return
        if self._failed is not None:
            self._abort(self._failed)
            return
        self._collect()
        offsets = _topic_partitions(self._pending)
        try:
            if offsets:
                metadata = self._consumer.consumer_group_metadata()
                self._call(
                    lambda: self._producer.send_offsets_to_transaction(
                        offsets, metadata, self._timeout_s
                    ),
                    "send_offsets",
                )
            self._call(lambda: self._producer.commit_transaction(self._timeout_s), "commit")
        except _Abortable as exc:
            self._abort(str(exc))
            return
        if self.refusals is not None:
            self.refusals.committed(self._pending)
        self._pending.clear()
        self._open = False
        self._metrics.commits.labels(outcome="ok").inc()
        self._ended(True)

    def _flush(self) -> int:
        try:
            return self._producer.flush(self._timeout_s)
        except KafkaException as exc:
            raise FatalError(f"transaction flush: {client_error(exc)}") from exc

    def abandon(self) -> None:
        """Fatal path: abort the open transaction at once (bounded; a failure is logged), so
        read_committed readers of its partitions are not held up until it times out. No
        rewind: the worker is stopping. Raises :class:`ClientHung` when the call hangs."""
        if not self._open:
            return
        self._open = False
        self._pending.clear()
        try:
            call_with_deadline(
                lambda: self._producer.abort_transaction(_ABANDON_S),
                seconds=_ABANDON_S + _GRACE_S,
                what="transaction abort",
            )
        except KafkaException as exc:  # e.g. a fenced producer: its transaction is gone anyway
            log.warning("transaction_abort_failed", error=client_error(exc))
            return
        self._metrics.commits.labels(outcome="aborted").inc()
        self._ended(False)

    def _abort(self, reason: str) -> None:
        log.warning("transaction_aborted", reason=reason)
        self._metrics.commits.labels(outcome="aborted").inc()
        self._call(lambda: self._producer.abort_transaction(self._timeout_s), "abort")
        self._pending.clear()
        self._open = False
        self._failed = None
        self._ended(False)
        self._rewind()

    def _call(self, action: Callable[[], object], what: str) -> None:
        """Run a transactional call: retry retriable errors, classify the rest; a call that
        blocks past its timeout plus a grace period is :class:`ClientHung` (fatal)."""
        deadline = self._timeout_s + _GRACE_S
        for attempt in range(_RETRIES):
            try:
                call_with_deadline(action, seconds=deadline, what=f"transaction {what}")
                return
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if error.fatal():
                    raise FatalError(f"transaction {what}: {error.str()}") from exc
                if error.txn_requires_abort():
                    raise _Abortable(f"{what}: {error.str()}") from exc
                if not error.retriable() or attempt == _RETRIES - 1:
                    raise FatalError(f"transaction {what}: {error.str()}") from exc
                time.sleep(0.2 * (attempt + 1))


class _Abortable(Exception):
    """A transactional call failed in a way that needs ``abort_transaction``."""
