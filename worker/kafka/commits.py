"""How finished offsets become committed: two strategies behind one small interface.

* :class:`StoredOffsets` (at-least-once, the default): offsets whose outputs were delivered are
  *stored*; librdkafka's auto-commit sends them; revoke and shutdown commit synchronously.
* :class:`TransactionalOffsets` (exactly-once for ``read_committed`` consumers): outputs are
  produced inside a producer transaction, the input offsets are added to it with
  ``send_offsets_to_transaction`` and both commit atomically every ``commit_interval_ms``, on
  revoke and at shutdown. An abortable error aborts the transaction and the pipeline rewinds to
  the last committed offsets, so nothing is lost and nothing is seen twice downstream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

import structlog
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.errors import FatalError
from worker.kafka.deadline import call_with_deadline
from worker.kafka.offsets import PartitionKey
from worker.kafka.ports import ConsumerPort, ProducerPort
from worker.metrics import Metrics

log = structlog.get_logger(__name__)

_TIMEOUT_S = 30.0
_RETRIES = 5
#: How far past its own timeout a transactional call may block before the worker gives up on
#: the process (see :mod:`worker.kafka.deadline`).
_GRACE_S = 15.0


Offsets = dict[PartitionKey, int]


def _topic_partitions(offsets: Offsets) -> list[TopicPartition]:
    return [
        TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()
    ]


class OffsetCommitter(Protocol):
    def stage(self, offsets: Offsets) -> None:
        """Offsets (next to read) whose outputs and every earlier one's are delivered."""

    def before_produce(self) -> None: ...

    def tick(self) -> None:
        """Called every loop iteration; commits when it is time."""

    def commit(self, offsets: Offsets) -> None:
        """Commit now, synchronously (revoke, shutdown): ``offsets`` are every committable
        offset of the partitions concerned."""

    def partitions_lost(self) -> None: ...


class StoredOffsets:
    """At-least-once: ``store_offsets`` after delivery, auto-commit, sync commit on demand."""

    def __init__(self, *, consumer: ConsumerPort, metrics: Metrics) -> None:
        self._consumer = consumer
        self._metrics = metrics

    def stage(self, offsets: Offsets) -> None:
        try:
            self._consumer.store_offsets(offsets=_topic_partitions(offsets))
        except KafkaException as exc:  # partition revoked in between: nothing to store
            log.warning("store_offsets_failed", error=str(exc))

    def before_produce(self) -> None:
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
    ) -> None:
        self._timeout_s = _TIMEOUT_S
        self._consumer = consumer
        self._producer = producer
        self._metrics = metrics
        self._interval_s = interval_s
        self._collect = collect  # processes delivery reports into stage() calls
        self._rewind = rewind  # forget in-flight work, seek back to committed offsets
        self._pending: Offsets = {}
        self._open = False
        self._opened_at = 0.0

    def initialise(self) -> None:
        """Fence earlier instances with the same transactional.id (aborts their open work)."""
        self._call(lambda: self._producer.init_transactions(self._timeout_s), "init")

    def stage(self, offsets: Offsets) -> None:
        # Offsets join a transaction even when no output does (records with nothing to
        # produce): it commits on the interval, on revoke and at shutdown like any other, so a
        # revoked partition's offsets never wait for a later transaction of other partitions.
        self.before_produce()
        self._pending.update(offsets)

    def before_produce(self) -> None:
        if not self._open:
            self._producer.begin_transaction()
            self._open = True
            self._opened_at = time.monotonic()

    def tick(self) -> None:
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
        if self._producer.flush(self._timeout_s) > 0:
            self._abort("outputs not delivered in time")
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
        self._pending.clear()
        self._open = False
        self._metrics.commits.labels(outcome="ok").inc()

    def _abort(self, reason: str) -> None:
        log.warning("transaction_aborted", reason=reason)
        self._metrics.commits.labels(outcome="aborted").inc()
        self._call(lambda: self._producer.abort_transaction(self._timeout_s), "abort")
        self._pending.clear()
        self._open = False
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
