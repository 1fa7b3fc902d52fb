"""What a finished record becomes: one enriched event per note, or one dead letter.

Pure functions of a :class:`~worker.notes.Record`; the Kafka sink (or any other runtime) only
delivers the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from worker.errors import InvalidEvent
from worker.events import Headers, Provenance, build_output, dead_letter_headers
from worker.notes import Note, Record

Destination = Literal["output", "dead_letter"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce: where to (the output or the dead-letter topic) and what."""

    destination: Destination
    value: bytes | None
    headers: Headers | None
    failure: InvalidEvent | None = None  # why, for a dead letter
    truncated: bool = False  # a dead letter holding only the first bytes of the value


def render_note(note: Note, *, provenance: Provenance, include_text: bool) -> bytes:
    """The enriched event of one scored note."""
    return build_output(
        note.event,
        spans=note.spans,
        scores=note.scores,
        truncated=note.truncated,
        source=note.record.source,
        provenance=provenance,
        include_text=include_text,
    )


def dead_letter(record: Record, failure: InvalidEvent) -> Outgoing:
    """The record's original bytes and headers, plus headers that say why."""
    headers = [*(record.headers or []), *dead_letter_headers(failure, record.source)]
    return Outgoing("dead_letter", record.value, headers, failure)


def outgoing(record: Record, *, provenance: Provenance, include_text: bool) -> list[Outgoing]:
    """Everything a ready record produces, in order."""
    if record.failure is not None:
        return [dead_letter(record, record.failure)]
    return [
        Outgoing(
            "output",
            render_note(note, provenance=provenance, include_text=include_text),
            record.headers,
        )
        for note in record.notes
    ]
