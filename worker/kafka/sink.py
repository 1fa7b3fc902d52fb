"""Producing a ready record's outputs: enriched events, dead letters, delivery reports.

Each output is produced with the input's key; a record is delivered when the brokers acknowledged
every output it caused (``on_delivered``). A full local queue (``BufferError``) is waited out by
serving delivery reports. An output the brokers refuse for this record alone (too large, invalid)
is replaced by a dead letter of the record (reason ``output_too_large`` or ``output_rejected``);
a dead letter that is itself too large goes out as a truncated copy whose headers give the
original's size and sha256. Errors that concern the whole producer are fatal (:class:`KafkaErrors`).
Every refusal, local or in a delivery report, counts in ``biomarker_delivery_errors``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from worker.errors import FatalError, InvalidEvent
from worker.kafka.commits import OffsetCommitter
from worker.kafka.errors import KafkaErrors
from worker.kafka.ports import ProducerPort
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
        self.delivered = 0  # outputs plus dead letters acknowledged by the brokers
        #: Larger outputs and dead letters are not even tried (set from the topics' limits).
        self.max_output_bytes: int | None = None
        self.max_dead_letter_bytes: int | None = None

    def send(self, record: Record, outputs: list[Outgoing]) -> None:
        """Produce ``outputs`` of ``record`` (none: the record is delivered at once)."""
        outputs = budgeted(
            record,
            outputs,
            max_output_bytes=self.max_output_bytes,
            max_dead_letter_bytes=self.max_dead_letter_bytes,
        )
        record.unacked += len(outputs)
        if not outputs:
            self._on_delivered(record)
        for out in outputs:
            self._produce(record, out)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports."""
        self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        return self._producer.flush(timeout)

    def _produce(self, record: Record, out: Outgoing) -> None:
        if out.destination == "dead_letter":
            record.dead_lettered = True
        topic = self._topics.output if out.destination == "output" else self._topics.dead_letter
        callback = functools.partial(self._on_delivery, record, out)
        self._committer.before_produce()
        while True:
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
                self._producer.poll(0.05)
                self._on_blocked()
            except KafkaException as exc:
                self._refused(record, out, exc.args[0])
                return

    def _on_delivery(self, record: Record, out: Outgoing, error: Any, _message: Any) -> None:
        if error is not None and error.code() in _PURGED:
            log.debug("output_purged", destination=out.destination)
            return
        if error is not None:
            self._refused(record, out, error)
            return
        self.delivered += 1
        count_delivered(self._metrics, record, out)
        self._acknowledged(record)

    def _acknowledged(self, record: Record) -> None:
        record.unacked -= 1
        if record.unacked == 0:
            self._on_delivered(record)

    def _refused(self, record: Record, out: Outgoing, error: KafkaError) -> None:
        """An output could not be produced: dead-letter the record if the error is its own."""
        count_refused(self._metrics, out, error.name())
        if error.code() not in _RECORD_ERRORS:
            # The idempotent producer already retried until delivery.timeout.ms: stop without
            # storing this offset; the restarted worker re-reads it.
            self._errors.stop(FatalError(f"delivery failed: {error.str()}"))
            return
        too_large = error.code() != KafkaError.INVALID_RECORD
        if out.destination == "output" and record.dead_lettered:
            # Another output of this record was refused first: its one dead letter stands.
            self._acknowledged(record)
            return
        if out.destination == "output":
            reason = "output_too_large" if too_large else "output_rejected"
            replacement = dead_letter(
                record, InvalidEvent(reason, f"output refused: {error.str()}")
            )
        elif not out.truncated:
            replacement = truncated(out, TRUNCATED_DEAD_LETTER_BYTES)
        else:
            self._errors.stop(FatalError(f"dead letter refused: {error.str()}"))
            return
        limit = self.max_dead_letter_bytes
        self._produce(record, within_budget(record, replacement, max_dead_letter_bytes=limit))
