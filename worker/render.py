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

#: Header on the outputs of extracted notes: ``note`` or ``retraction``.
EVENT_HEADER = "x-biomarker-event"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One record to produce: where to (the output or the dead-letter topic) and what."""

    destination: Destination
    value: bytes | None
    headers: Headers | None
    failure: InvalidEvent | None = None  # why, for a dead letter
    truncated: bool = False  # a dead letter holding only the first bytes of the value
    key: bytes | None = None  # the output's key when not the input record's (a note id)


def render_note(note: Note, *, provenance: Provenance, include_text: bool, index: int = 0) -> bytes:
    """The enriched event of one scored note (``index``: its place in its record)."""
    return build_output(
        note.event,
        spans=note.spans,
        scores=note.scores,
        truncated=note.truncated,
        rules=note.rules,
        source=note.record.source,
        provenance=provenance,
        include_text=include_text,
        note_index=index,
    )


def dead_letter(record: Record, failure: InvalidEvent) -> Outgoing:
    """The record's original bytes and headers, plus headers that say why."""
    headers = [*(record.headers or []), *dead_letter_headers(failure, record.source)]
    return Outgoing("dead_letter", record.value, headers, failure)


def outgoing(
    record: Record,
    *,
    provenance: Provenance,
    include_text: bool,
    values: list[bytes] | None = None,
) -> list[Outgoing]:
    """Everything a ready record produces, in order; ``values``: its notes' enriched events
    when they were rendered elsewhere (:mod:`worker.host_pool`)."""
    if record.failure is not None:
        return [dead_letter(record, record.failure)]
    if values is None:
        values = [
            render_note(note, provenance=provenance, include_text=include_text, index=index)
            for index, note in enumerate(record.notes)
        ]
    return [
        Outgoing("output", value, _headers(record, note), key=note.event.key)
        for note, value in zip(record.notes, values, strict=True)
    ]


def _headers(record: Record, note: Note) -> Headers | None:
    """The input's headers; an extracted note's output also says whether it is a retraction."""
    if note.event.key is None:
        return record.headers
    kind = b"retraction" if note.event.retraction else b"note"
    return [*(record.headers or []), (EVENT_HEADER, kind)]
