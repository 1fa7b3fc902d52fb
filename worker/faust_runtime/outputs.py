"""Producing a ready record's outputs through faust's producer and waiting for their delivery.

The same rules as the confluent sink (:mod:`worker.kafka.sink`): an output over
``max_output_bytes`` is replaced by a dead letter (``output_too_large``); a dead letter over its
topic's budget goes out truncated with size and sha256 headers; a refusal that concerns this
record alone (too large, invalid) dead-letters the record; any other delivery error is fatal
(the offset is never committed, the restart re-reads the record). Every refusal counts in
``biomarker_delivery_errors``, with the confluent runtime's error names where Kafka gave a code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from confluent_kafka import KafkaError

from worker.errors import FatalError, InvalidEvent
from worker.events import Headers
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

#: Produce one record: (topic, key, value, headers) -> a future resolved on delivery.
Send = Callable[[str, bytes | None, bytes | None, Headers | None], Awaitable["asyncio.Future[Any]"]]
#: One produced output and its delivery future.
Sent = tuple[Outgoing, "asyncio.Future[Any]"]

#: aiokafka errors about one record, not the producer (the record is dead-lettered instead).
_RECORD_ERRORS = {
    "MessageSizeTooLargeError",
    "RecordListTooLargeError",
    "RecordTooLargeError",
    "CorruptRecordException",
}


def record_error(exc: BaseException) -> bool:
    """True when ``exc`` (or what it wraps) is a refusal of this record alone."""
    seen: BaseException | None = exc
    while seen is not None:
        if type(seen).__name__ in _RECORD_ERRORS:
            return True
        seen = seen.__cause__
    return False


def error_code(exc: BaseException) -> str:
    """The Kafka error name of ``exc`` (or of what it wraps), as librdkafka spells it; the
    exception's class name for a client-side error without a Kafka error code."""
    seen: BaseException | None = exc
    while seen is not None:
        errno = getattr(type(seen), "errno", None)  # aiokafka: a class attribute
        if isinstance(errno, int) and errno != 0:
            return str(KafkaError(errno).name())
        seen = seen.__cause__
    return type(exc).__name__


class Outputs:
    """Sends outputs in order and tells when all of a record's outputs are delivered."""

    def __init__(
        self, *, send: Send, output_topic: str, dead_letter_topic: str, metrics: Metrics
    ) -> None:
        self._send = send
        self._topics = {"output": output_topic, "dead_letter": dead_letter_topic}
        self._metrics = metrics
        self.max_output_bytes: int | None = None
        self.max_dead_letter_bytes: int | None = None
        self.delivered = 0  # outputs plus dead letters acknowledged by the brokers

    async def send(self, record: Record, outs: list[Outgoing]) -> list[Sent]:
        """Produce ``outs`` of ``record`` now (in order); return them with their futures."""
        outs = budgeted(
            record,
            outs,
            max_output_bytes=self.max_output_bytes,
            max_dead_letter_bytes=self.max_dead_letter_bytes,
        )
        return [await self._produce(record, out) for out in outs]

    async def wait(self, record: Record, sent: list[Sent]) -> None:
        """Wait for every delivery; replace a refused output by the record's dead letter."""
        for out, future in sent:
            try:
                await future
            except FatalError:
                raise
            except Exception as exc:
                await self._refused(record, out, exc)
                continue
            self._count(record, out)

    async def _refused(self, record: Record, out: Outgoing, exc: BaseException) -> None:
        count_refused(self._metrics, out, error_code(exc))
        if not record_error(exc):
            raise FatalError(f"delivery failed: {type(exc).__name__}") from exc
        if out.destination == "output" and record.dead_lettered:
            return  # another output of this record was refused first: its one dead letter stands
        if out.destination == "output":
            failure = InvalidEvent("output_too_large", f"output refused: {type(exc).__name__}")
            replacement = dead_letter(record, failure)
        elif not out.truncated:
            replacement = truncated(out, TRUNCATED_DEAD_LETTER_BYTES)
        else:
            raise FatalError(f"dead letter refused: {type(exc).__name__}") from exc
        limit = self.max_dead_letter_bytes
        replacement = within_budget(record, replacement, max_dead_letter_bytes=limit)
        await self.wait(record, [await self._produce(record, replacement)])

    async def _produce(self, record: Record, out: Outgoing) -> Sent:
        if out.destination == "dead_letter":
            record.dead_lettered = True
        key = record.key if out.key is None else out.key
        value = out.value
        if value is None and key is None:  # aiokafka cannot send a record with neither
            value = b""
        try:
            future = await self._send(self._topics[out.destination], key, value, out.headers)
        except FatalError:
            raise
        except Exception as exc:  # refused before it left: same rules as a failed delivery
            future = asyncio.get_running_loop().create_future()
            future.set_exception(exc)
        return out, future

    def _count(self, record: Record, out: Outgoing) -> None:
        self.delivered += 1
        count_delivered(self._metrics, record, out)
