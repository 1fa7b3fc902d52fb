"""A record's value to the note events the worker scores, per input format.

The ``note`` format keeps its record's JSON bytes (its output is that JSON plus the results).
Other formats extract notes (:mod:`worker.inputs.extracted`), and each becomes an event whose
fields are the note's id, version, text, sha256, patient, encounter, type, time and origin
(``schemas/extracted-note.v1.json``), keyed by its note id; a retraction becomes an event with no
sentences (``schemas/note-retraction.v1.json``) under the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from worker.errors import InvalidEvent
from worker.events import NoteEvent, parse_note
from worker.inputs import extractor_for
from worker.inputs.detect import detect
from worker.inputs.extracted import (
    ExtractedNote,
    Extraction,
    Extractor,
    Retraction,
    Skip,
    text_sha256,
)

if TYPE_CHECKING:
    from worker.config import WorkerSettings


@dataclass(slots=True)
class Decoded:
    """The note events of one record, and the parts of it skipped (with their reasons)."""

    events: list[NoteEvent]
    skipped: list[Skip] = field(default_factory=list)


#: A record's value in, its note events out (or :class:`InvalidEvent`: a dead letter).
Decoder = Callable[[bytes | None], Decoded]


def json_notes(max_chars: int) -> Decoder:
    """The default decoder: one JSON note event per record (``schemas/note-event.v1.json``)."""

    def decode(value: bytes | None) -> Decoded:
        return Decoded([parse_note(value, max_chars=max_chars)])

    return decode


def decoder_for(
    format_name: str, *, max_chars: int, include_text: bool = True, mapping: Path | None = None
) -> Decoder:
    """The decoder of one input format (``include_text``: extracted notes carry their text)."""
    if format_name == "note":
        return json_notes(max_chars)
    if format_name == "auto":
        return _AutoDecoder(max_chars=max_chars, include_text=include_text)
    return _ExtractingDecoder(
        extractor_for(format_name, mapping),
        max_chars=max_chars,
        include_text=include_text,
        tombstones=format_name == "mapping",
    )


@dataclass(frozen=True, slots=True)
class DecoderSpec:
    """One input topic's format (picklable: host processes build their decoders from it)."""

    topic: str
    format: str
    mapping: Path | None = None


def decoder_specs(settings: WorkerSettings) -> tuple[DecoderSpec, ...]:
    return tuple(
        DecoderSpec(item.topic, item.format, Path(item.mapping) if item.mapping else None)
        for item in settings.input_topics
    )


def decoders_for(settings: WorkerSettings) -> dict[str, Decoder]:
    """The decoder of each input topic (a bad mapping file is a :class:`UsageError`)."""
    return decoders_from(
        decoder_specs(settings),
        max_chars=settings.max_note_chars,
        include_text=settings.include_note_text,
    )


def decoders_from(
    specs: Iterable[DecoderSpec], *, max_chars: int, include_text: bool
) -> dict[str, Decoder]:
    """The decoder of each topic of ``specs``."""
    return {
        spec.topic: decoder_for(
            spec.format, max_chars=max_chars, include_text=include_text, mapping=spec.mapping
        )
        for spec in specs
    }


@dataclass(frozen=True, slots=True)
class _ExtractingDecoder:
    extract: Extractor
    max_chars: int
    include_text: bool
    #: A null value is skipped, not dead-lettered: change-data-capture streams (Debezium)
    #: follow every delete with a tombstone for log compaction.
    tombstones: bool = False

    def __call__(self, value: bytes | None) -> Decoded:
        if value is None and self.tombstones:
            return Decoded([], [Skip("tombstone", "record has no value (tombstone)")])
        if value is None:
            raise InvalidEvent("null_value", "record has no value (tombstone)")
        return events_of(self.extract(value), max_chars=self.max_chars, include=self.include_text)


@dataclass(frozen=True, slots=True)
class _AutoDecoder:
    max_chars: int
    include_text: bool

    def __call__(self, value: bytes | None) -> Decoded:
        if value is None:
            raise InvalidEvent("null_value", "record has no value (tombstone)")
        kind = detect(value)
        if kind == "note":
            return Decoded([parse_note(value, max_chars=self.max_chars)])
        extraction = extractor_for(kind)(value)
        return events_of(extraction, max_chars=self.max_chars, include=self.include_text)


def events_of(extraction: Extraction, *, max_chars: int, include: bool) -> Decoded:
    """Note events of an extraction: retractions first (a replacement's old id is withdrawn
    before its new note is published), then the notes in message order. Every string is made
    valid Unicode first (:func:`~worker.wellformed.well_formed`)."""
    extraction = extraction.well_formed()
    events = [retraction_event(item) for item in extraction.retractions]
    for note in extraction.notes:
        if len(note.text) > max_chars:
            raise InvalidEvent(
                "text_too_large",
                f"note {len(events)} has {len(note.text)} characters, the limit is {max_chars}",
            )
        events.append(note_event(note, include_text=include))
    return Decoded(events, list(extraction.skipped))


def note_event(note: ExtractedNote, *, include_text: bool) -> NoteEvent:
    fields: dict[str, Any] = {"note_id": note.note_id, "note_version": note.version}
    if include_text:
        fields["text"] = note.text
    fields |= {
        "text_sha256": text_sha256(note.text),
        "patient_id": note.patient_id,
        "encounter_id": note.encounter_id,
        "note_type": note.note_type,
        "note_time": note.note_time,
        "note_status": note.status,
        "origin": note.origin,
    }
    return NoteEvent(fields, body=note.text, key=note.note_id.encode())


def retraction_event(item: Retraction) -> NoteEvent:
    fields: dict[str, Any] = {
        "note_id": item.note_id,
        "note_version": item.version,
        "patient_id": item.patient_id,
        "origin": item.origin,
        "retraction": {"reason": item.reason, "replaced_by": item.replaced_by},
    }
    return NoteEvent(fields, body="", key=item.note_id.encode(), retraction=True)
