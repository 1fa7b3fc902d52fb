"""What may leave the worker: an output over its budget becomes a dead letter, and a dead letter
over its topic's limit keeps its first bytes (saying so in its headers). Shared by both
runtimes' senders: logs every dead letter (coordinates and reason, never the value) and counts
what was delivered or refused."""

from __future__ import annotations

import hashlib
import time

import structlog

from worker.errors import InvalidEvent
from worker.events import TRUNCATED_HEADER
from worker.metrics import Metrics
from worker.notes import Record
from worker.render import Outgoing, dead_letter

log = structlog.get_logger(__name__)

#: A dead letter too large for its topic keeps this many bytes of the original value.
TRUNCATED_DEAD_LETTER_BYTES = 65_536


def budgeted(
    record: Record,
    outputs: list[Outgoing],
    *,
    max_output_bytes: int | None,
    max_dead_letter_bytes: int | None,
) -> list[Outgoing]:
    """``outputs`` of ``record`` as they may be produced, checked together: when one output is
    over ``max_output_bytes`` the record goes to the dead-letter topic once, in place of all of
    them (one output per note, or one dead letter per record); dead letters go through
    :func:`within_budget`."""
    if max_output_bytes is not None:
        for out in outputs:
            size = len(out.value or b"")
            if out.destination == "output" and size > max_output_bytes:
                message = f"output has {size} bytes, the limit is {max_output_bytes}"
                outputs = [dead_letter(record, InvalidEvent("output_too_large", message))]
                break
    return [
        within_budget(record, out, max_dead_letter_bytes=max_dead_letter_bytes) for out in outputs
    ]


def within_budget(record: Record, out: Outgoing, *, max_dead_letter_bytes: int | None) -> Outgoing:
    """``out`` as it may be produced: a dead letter over its topic's limit is truncated; every
    dead letter is logged. Outputs pass as they are."""
    if out.destination == "dead_letter":
        size = len(out.value or b"")
        limit = max_dead_letter_bytes or size
        if size > limit and not out.truncated:
            out = truncated(out, min(limit, TRUNCATED_DEAD_LETTER_BYTES))
        log_dead_letter(record, out)
    return out


def reason_of(out: Outgoing) -> str:
    """The error class, from the worker's own reason (never from the input's headers)."""
    return out.failure.reason if out.failure is not None else "unknown"


def truncated(out: Outgoing, limit: int) -> Outgoing:
    """A copy of a dead letter with at most ``limit`` bytes of its value, saying so."""
    value = out.value or b""
    headers = [
        *(out.headers or []),
        (TRUNCATED_HEADER, b"true"),
        ("x-biomarker-original-size", str(len(value)).encode()),
        ("x-biomarker-original-sha256", hashlib.sha256(value).hexdigest().encode()),
    ]
    return Outgoing("dead_letter", value[:limit], headers, out.failure, truncated=True)


def log_dead_letter(record: Record, out: Outgoing) -> None:
    source = record.source
    log.warning(
        "dead_letter",
        topic=source.topic,
        partition=source.partition,
        offset=source.offset,
        reason=reason_of(out),
        message=out.failure.message if out.failure is not None else None,
        truncated=out.truncated,
    )


def count_delivered(metrics: Metrics, record: Record, out: Outgoing) -> None:
    """Metrics of one acknowledged output or dead letter (and the record's end-to-end age)."""
    if out.destination == "output":
        metrics.events_out.inc()
    else:
        metrics.dead_letters.labels(reason=reason_of(out)).inc()
    timestamp = record.source.timestamp
    if timestamp is not None:
        metrics.latency_seconds.observe(max(0.0, time.time() - timestamp / 1000))


def count_refused(metrics: Metrics, out: Outgoing, code: str) -> None:
    """An output or dead letter could not be produced (``code``: the Kafka error's name)."""
    topic = "output" if out.destination == "output" else "dlq"
    metrics.delivery_errors.labels(topic=topic, code=code).inc()
