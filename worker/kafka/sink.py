"""Producing a ready record's outputs: enriched events, dead letters, delivery reports.

Each output is produced with the input's key; a record is delivered when the brokers acknowledged
every output it caused (``on_delivered``). A full local queue (``BufferError``) is waited out by
serving delivery reports. An output the brokers refuse for this record alone (too large, invalid)
is replaced by a dead letter of the record (reason ``output_too_large`` or ``output_rejected``);
a dead letter that is itself too large goes out as a truncated copy whose headers give the
original's size and sha256. Errors that concern the whole producer are fatal (:class:`KafkaErrors`).
Every refusal, by ``produce()`` or in a delivery report, counts in ``biomarker_delivery_errors``,
except a batch's refusal of an output that is then tried by itself (below): that counts only
if the output is refused again.

The brokers refuse a whole produce batch for one bad record in it, and librdkafka reports the
refusal for every record of the batch. So a refused output is first produced again by itself
(the queue flushed before and after it); only a refusal of it alone replaces it by a dead letter.

With exactly-once, a refusal in a delivery report dooms the open transaction (librdkafka accepts
nothing more in it): the committer aborts it and the worker rewinds. What the refusal taught is
kept (:class:`~worker.kafka.commits.Refusals`) for the record's next attempt, in that transaction's
place: produced by itself, then, when refused by itself, its dead letter instead; so the partition
moves on as with at-least-once, after a few aborted transactions (an abort after such a refusal
also costs the next transaction: the producer's epoch is bumped).
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from worker.errors import FatalError, InvalidEvent
from worker.kafka.commits import OffsetCommitter, Refusal, Refusals
from worker.kafka.errors import KafkaErrors
from worker.kafka.ports import ProducerPort, client_error
from worker.metrics import Metrics
from worker.notes import Record
from worker.outbound import (
    TRUNCATED_DEAD_LETTER_BYTES,
    budgeted,
    count_delivered,
    count_refused,
    truncated,
    within_budget,
)
from worker.render import Outgoing, dead_letter

log = structlog.get_logger(__name__)

#: An aborted transaction purges the outputs still queued or in flight (exactly-once): the
#: worker rewinds to the committed offsets and produces them again, so they are not failures.
_PURGED = {KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT}
#: Delivery errors about one record, not the producer: the record is dead-lettered instead.
_RECORD_ERRORS = {
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.INVALID_MSG,
}
#: How long producing one suspect output by itself may wait for the queue, before and after.
_ALONE_FLUSH_S = 30.0


@dataclass(frozen=True, slots=True)
class SinkTopics:
    output: str
    dead_letter: str


class KafkaSink:
    """Produces outputs and dead letters; tells ``on_delivered`` when a record is done."""

    def __init__(
        self,
        *,
        producer: ProducerPort,
        topics: SinkTopics,
        committer: OffsetCommitter,
        errors: KafkaErrors,
        metrics: Metrics,
        on_delivered: Callable[[Record], None],
        on_blocked: Callable[[], None] = lambda: None,
    ) -> None:
        self._producer = producer
        self._topics = topics
        self._committer = committer
        self._errors = errors
        self._metrics = metrics
        self._on_delivered = on_delivered
        self._on_blocked = on_blocked  # called while the local queue is full
        #: Outputs plus dead letters acknowledged by the brokers (exactly-once: committed).
        self.delivered = 0
        #: Larger outputs and dead letters are not even tried (set from the topics' limits).
        self.max_output_bytes: int | None = None
        self.max_dead_letter_bytes: int | None = None
        #: Exactly-once: what aborted transactions learnt about records' outputs.
        self._refusals = committer.refusals
        #: At-least-once: outputs refused with their batch, to be produced again by themselves.
        self._suspects: deque[tuple[Record, Outgoing]] = deque()
        #: Exactly-once: acknowledged in the open transaction; counted once it commits.
        self._uncommitted: list[tuple[Record, Outgoing]] = []
        committer.watch_transactions(self._transaction_ended)

    def send(self, record: Record, outputs: list[Outgoing]) -> None:
        """Produce ``outputs`` of ``record`` (none: the record is delivered at once)."""
        refusal: Refusal | None = None
        if self._refusals is not None:
            if record.cancelled:
                return  # forgotten by an abort: read and produced again
            refusal = self._refusals.get(record.source)
            if refusal is not None:
                outputs = _learnt(record, outputs, refusal)
        outputs = budgeted(
            record,
            outputs,
            max_output_bytes=self.max_output_bytes,
            max_dead_letter_bytes=self.max_dead_letter_bytes,
        )
        record.unacked += len(outputs)
        if not outputs:
            self._on_delivered(record)
        alone = refusal is not None and refusal.alone
        if alone:
            self._flush(_ALONE_FLUSH_S)
        for out in outputs:
            self._produce(record, out, alone=alone)
        if alone:
            self._flush(_ALONE_FLUSH_S)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports; retry refused outputs by themselves; abort a transaction
        a refusal doomed."""
        self._poll(timeout)
        if self._suspects:
            self._retry_alone()
        self._committer.abort_if_failed()

    def flush(self, timeout: float) -> int:
        left = self._flush(timeout)
        if self._suspects:
            self._retry_alone()
            left = self._flush(timeout)
        return left

    def _poll(self, timeout: float) -> None:
        try:
            self._producer.poll(timeout)
        except KafkaException as exc:  # e.g. the producer was fenced
            raise FatalError(f"producer: {client_error(exc)}") from exc

    def _flush(self, timeout: float) -> int:
        try:
            return self._producer.flush(timeout)
        except KafkaException as exc:
            raise FatalError(f"producer: {client_error(exc)}") from exc

    def _produce(self, record: Record, out: Outgoing, *, alone: bool = False) -> None:
        if out.destination == "dead_letter":
            record.dead_lettered = True
        topic = self._topics.output if out.destination == "output" else self._topics.dead_letter
        callback = functools.partial(self._on_delivery, record, out, alone)
        while self._committer.before_produce():
            try:
                self._producer.produce(
                    topic,
                    value=out.value,
                    key=record.key if out.key is None else out.key,
                    headers=out.headers,
                    on_delivery=callback,
                )
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._poll(0.05)
                self._on_blocked()
            except KafkaException as exc:
                error: KafkaError = exc.args[0]
                if self._refusals is not None and _transaction_doomed(error):
                    # A refusal whose report is not served yet made librdkafka refuse more.
                    self._committer.fail(f"produce refused: {error.name()}")
                    return
                self._refused(record, out, error)
                return
        # The open transaction failed: this record is read and produced again after the abort.

    def _on_delivery(
        self, record: Record, out: Outgoing, alone: bool, error: Any, _message: Any
    ) -> None:
        if error is not None and error.code() in _PURGED:
            log.debug("output_purged", destination=out.destination)
            return
        if error is not None:
            self._failed_delivery(record, out, error, alone=alone)
            return
        if self._refusals is None:
            self._count(record, out)
        elif record.cancelled:
            # Part of a transaction that was aborted since: not delivered, produced again.
            log.debug("output_aborted", destination=out.destination)
            return
        else:
            self._uncommitted.append((record, out))
        self._acknowledged(record)

    def _count(self, record: Record, out: Outgoing) -> None:
        self.delivered += 1
        count_delivered(self._metrics, record, out)

    def _transaction_ended(self, committed: bool) -> None:
        """Count what a committed transaction holds; an aborted one's outputs are not
        delivered (they are produced again)."""
        ended, self._uncommitted = self._uncommitted, []
        if committed:
            for record, out in ended:
                self._count(record, out)

    def _acknowledged(self, record: Record) -> None:
        record.unacked -= 1
        if record.unacked == 0:
            self._on_delivered(record)

    def _failed_delivery(
        self, record: Record, out: Outgoing, error: KafkaError, *, alone: bool
    ) -> None:
        """The brokers refused an output: fatal; or, refused with its batch, to be tried by
        itself; or, refused by itself, replaced (exactly-once: on the next attempt)."""
        if error.code() not in _RECORD_ERRORS:
            count_refused(self._metrics, out, error.name())
            self._stop_for(error)
            return
        if alone:  # the record's own refusal (a batch refusal is not one yet)
            count_refused(self._metrics, out, error.name())
            if self._refusals is None:
                _log_refused(record, out, error)
        if self._refusals is not None:
            self._learn(self._refusals, record, out, error, alone=alone)
        elif not alone:
            self._suspects.append((record, out))  # its batch was refused: try it by itself
        else:
            self._replace(record, out, error)

    def _retry_alone(self) -> None:
        """Produce each suspect output by itself: the queue flushed before and after it. When
        the queue does not empty (the brokers stall), the rest wait for a later poll: produced
        next to other records, a refusal could not be told apart again."""
        log.warning("batch_refused", outputs=len(self._suspects))  # each tried by itself now
        while self._suspects:
            record, out = self._suspects[0]
            if record.cancelled:
                self._suspects.popleft()
                continue  # revoked or lost: its next reader produces it
            if out.destination == "output" and record.dead_lettered:
                self._suspects.popleft()
                self._acknowledged(record)  # another output of it was refused by itself
                continue
            if self._flush(_ALONE_FLUSH_S):
                return
            self._suspects.popleft()
            self._produce(record, out, alone=True)
            if self._flush(_ALONE_FLUSH_S):
                return

    def _learn(
        self, refusals: Refusals, record: Record, out: Outgoing, error: KafkaError, *, alone: bool
    ) -> None:
        """Exactly-once: keep what the refusal says about the record, and fail the transaction."""
        refusal = refusals.note(record.source)
        if not alone:
            refusal.alone = True
        elif out.destination == "output":
            refusal.failure = refusal.failure or _output_refused(error)
        elif not out.truncated:
            refusal.truncate = True
        else:
            self._errors.stop(FatalError(f"dead letter refused: {error.str()}"))
            return
        if alone:  # a batch's refusal is reported for each of its records: not one per record
            _log_refused(record, out, error)
        self._committer.fail(f"{out.destination} refused: {error.name()}")

    def _refused(self, record: Record, out: Outgoing, error: KafkaError) -> None:
        """``produce()`` refused an output: dead-letter the record if the error is its own."""
        count_refused(self._metrics, out, error.name())
        if error.code() not in _RECORD_ERRORS:
            self._stop_for(error)
            return
        self._replace(record, out, error)

    def _stop_for(self, error: KafkaError) -> None:
        # The idempotent producer already retried until delivery.timeout.ms: stop without
        # storing this offset; the restarted worker re-reads it.
        self._errors.stop(FatalError(f"delivery failed: {error.str()}"))

    def _replace(self, record: Record, out: Outgoing, error: KafkaError) -> None:
        """Produce the replacement of an output refused for the record's own reason."""
        if out.destination == "output" and record.dead_lettered:
            # Another output of this record was refused first: its one dead letter stands.
            self._acknowledged(record)
            return
        if out.destination == "output":
            replacement = dead_letter(record, _output_refused(error))
        elif not out.truncated:
            replacement = truncated(out, TRUNCATED_DEAD_LETTER_BYTES)
        else:
            self._errors.stop(FatalError(f"dead letter refused: {error.str()}"))
            return
        limit = self.max_dead_letter_bytes
        self._produce(record, within_budget(record, replacement, max_dead_letter_bytes=limit))


def _log_refused(record: Record, out: Outgoing, error: KafkaError) -> None:
    source = record.source
    log.warning(
        "output_refused",
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        destination=out.destination,
        code=error.name(),
    )


def _output_refused(error: KafkaError) -> InvalidEvent:
    reason = "output_rejected" if error.code() == KafkaError.INVALID_RECORD else "output_too_large"
    return InvalidEvent(reason, f"output refused: {error.str()}")


def _learnt(record: Record, outputs: list[Outgoing], refusal: Refusal) -> list[Outgoing]:
    """A record's outputs as an aborted transaction's refusal says to produce them now."""
    if refusal.failure is not None:
        outputs = [dead_letter(record, refusal.failure)]
    if refusal.truncate:
        outputs = [
            truncated(out, TRUNCATED_DEAD_LETTER_BYTES)
            if out.destination == "dead_letter" and not out.truncated
            else out
            for out in outputs
        ]
    return outputs


def _transaction_doomed(error: KafkaError) -> bool:
    """librdkafka's answer to ``produce()`` in a transaction that must be aborted."""
    return not error.fatal() and (error.txn_requires_abort() or error.code() == KafkaError._STATE)
