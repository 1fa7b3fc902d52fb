"""Dead letters read back: the original record, its re-drive count, and which to re-drive.

A dead letter is the input record's key, value and headers followed by the headers the worker
added (:func:`worker.events.dead_letter_headers`, ``x-biomarker-error-class`` first). The
originals are the headers before the worker's last ``x-biomarker-error-class``. A re-driven record
carries them unchanged plus one :data:`REDRIVE_HEADER` (its count and the dead letter's
coordinates) in place of any earlier one; the worker keeps input headers in a dead letter, so a
record that fails again still shows how often it was re-driven, and the loop limit holds.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

import orjson
from confluent_kafka import Message

from worker.errors import UsageError
from worker.events import (
    ERROR_CLASS_HEADER,
    FAILED_AT_HEADER,
    SOURCE_OFFSET_HEADER,
    SOURCE_PARTITION_HEADER,
    SOURCE_TOPIC_HEADER,
    TRUNCATED_HEADER,
    Headers,
)
from worker.kafka.replay import parse_timestamp

#: Added to every re-driven record: JSON ``{"count", "dlq_topic", "dlq_partition",
#: "dlq_offset", "reason", "at"}``; ``count`` is how many times the record was re-driven.
REDRIVE_HEADER = "x-biomarker-redrive"

DEFAULT_MAX_REDRIVES = 3

_REASON = re.compile(r"^[a-z][a-z0-9_]*$")
_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead letter: where it sits in the dead-letter topic, the original record and why."""

    topic: str
    partition: int
    offset: int
    timestamp: int | None  # epoch ms of the dead letter
    key: bytes | None
    value: bytes | None
    original_headers: Headers
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    redrives: int | None  # re-drives so far; None when the marker cannot be read
    truncated: bool  # the value holds only the first bytes of the original


def read_dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    timestamp: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: Headers | None,
) -> DeadLetter | None:
    """The dead letter a record of the dead-letter topic holds; ``None`` when the record is not
    one the worker wrote (it has no ``x-biomarker-error-class`` header)."""
    items = list(headers or [])
    starts = [i for i, (name, _) in enumerate(items) if name == ERROR_CLASS_HEADER]
    if not starts:
        return None
    original, added = items[: starts[-1]], dict(items[starts[-1] :])
    reason = _text(added.get(ERROR_CLASS_HEADER))
    if not reason:
        return None
    if timestamp is None:
        timestamp = _int(added.get(FAILED_AT_HEADER))
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=timestamp,
        key=key,
        value=value,
        original_headers=original,
        reason=reason,
        source_topic=_text(added.get(SOURCE_TOPIC_HEADER)) or None,
        source_partition=_int(added.get(SOURCE_PARTITION_HEADER)),
        source_offset=_int(added.get(SOURCE_OFFSET_HEADER)),
        redrives=redrive_count(original),
        truncated=_text(added.get(TRUNCATED_HEADER)) == "true",
    )


def from_message(message: Message) -> DeadLetter | None:
    kind, timestamp = message.timestamp()
    return read_dead_letter(
        topic=message.topic() or "",
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=timestamp if kind != 0 and timestamp > 0 else None,  # 0: not available
        key=_bytes(message.key()),
        value=_bytes(message.value()),
        headers=_headers(message.headers()),
    )


def _headers(raw: dict[str, str | bytes | None] | Headers | None) -> Headers:
    if raw is None:
        return []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def redrive_count(headers: Headers) -> int | None:
    """How many times a record with these headers was re-driven (its last marker's count): 0
    without a marker, ``None`` when the marker cannot be read."""
    markers = [value for name, value in headers if name == REDRIVE_HEADER]
    if not markers:
        return 0
    try:
        count = orjson.loads(markers[-1] or b"")["count"]
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None
    return count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None


def marker(letter: DeadLetter, count: int, *, now_ms: int) -> bytes:
    """The :data:`REDRIVE_HEADER` value of a re-driven record."""
    return orjson.dumps(
        {
            "count": count,
            "dlq_topic": letter.topic,
            "dlq_partition": letter.partition,
            "dlq_offset": letter.offset,
            "reason": letter.reason,
            "at": now_ms,
        }
    )


def redriven_headers(letter: DeadLetter, *, now_ms: int) -> Headers:
    """The original headers (any earlier marker left out) and the new marker, last."""
    count = (letter.redrives or 0) + 1
    kept = [(name, value) for name, value in letter.original_headers if name != REDRIVE_HEADER]
    return [*kept, (REDRIVE_HEADER, marker(letter, count, now_ms=now_ms))]


def _bytes(value: str | bytes | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _int(value: str | bytes | None) -> int | None:
    text = _text(value).strip()
    return int(text) if text.lstrip("-").isdigit() else None


# --------------------------------------------------------------------------- what to re-drive
@dataclass(frozen=True, slots=True)
class Filters:
    """Which dead letters to re-drive; an empty set or ``None`` does not filter."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    source_partitions: frozenset[int] = frozenset()
    since: int | None = None  # epoch ms, inclusive, of the dead letter's timestamp
    until: int | None = None  # epoch ms, exclusive

    def matches(self, letter: DeadLetter) -> bool:
        if self.reasons and letter.reason not in self.reasons:
            return False
        if self.source_topics and letter.source_topic not in self.source_topics:
            return False
        if self.source_partitions and letter.source_partition not in self.source_partitions:
            return False
        if self.since is not None or self.until is not None:
            stamp = letter.timestamp
            if stamp is None:
                return False
            if self.since is not None and stamp < self.since:
                return False
            if self.until is not None and stamp >= self.until:
                return False
        return True


class Outcome(Enum):
    NOT_DEAD_LETTER = "skipped_not_dead_letter"
    FILTERED = "skipped_filter"
    TRUNCATED = "skipped_truncated"
    MAX_REDRIVES = "skipped_max_redrives"
    REDRIVE = "redrive"


def decide(letter: DeadLetter | None, filters: Filters, *, max_redrives: int) -> Outcome:
    """What to do with one record of the dead-letter topic."""
    if letter is None:
        return Outcome.NOT_DEAD_LETTER
    if not filters.matches(letter):
        return Outcome.FILTERED
    if letter.truncated:  # the original value is gone: re-driving would send a fragment
        return Outcome.TRUNCATED
    if letter.redrives is None or letter.redrives >= max_redrives:
        return Outcome.MAX_REDRIVES
    return Outcome.REDRIVE


def parse_time(value: str, *, now_ms: int | None = None) -> int:
    """Epoch ms from an ISO-8601 time, epoch ms, or a time ago such as ``30m``, ``2h``, ``7d``."""
    relative = _RELATIVE.match(value.strip())
    if relative is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - int(relative.group(1)) * _UNIT_MS[relative.group(2)]
    try:
        return parse_timestamp(value.strip())
    except UsageError:
        raise UsageError(
            f"not a time (ISO-8601, epoch ms, or an age like 30m, 2h, 7d): {value!r}"
        ) from None


def parse_reason(value: str) -> str:
    reason = value.strip()
    if not _REASON.match(reason):
        raise UsageError(f"not a dead-letter reason (e.g. schema_violation): {value!r}")
    return reason


def reasons_known() -> frozenset[str]:
    """The reasons the dead-letter schema lists."""
    from worker.schemas import DEAD_LETTER_SCHEMA, load_schema

    schema = load_schema(DEAD_LETTER_SCHEMA)
    enum: Sequence[str] = schema["properties"][ERROR_CLASS_HEADER]["enum"]
    return frozenset(enum)


def unknown_reasons(reasons: Iterable[str]) -> list[str]:
    """Reasons the schema does not list (perhaps a typo, perhaps a newer worker)."""
    known = reasons_known()
    return sorted(reason for reason in reasons if reason not in known)
