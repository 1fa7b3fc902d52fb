"""What every input format extracts from a message: notes, retractions and skips.

An extractor (``bytes -> Extraction``) reads one input record's value. It returns the notes it
found (each with a stable id, its version, its text and where the text came from), retractions
(a note cancelled, entered in error or superseded), and skips (parts that carry no note text, each
with a reason). It raises :class:`~worker.errors.InvalidEvent` when the value cannot be read at
all (the record then goes to the dead-letter topic with its original bytes).

Error messages and skip details never quote note text (PHI): they name the field and the rule.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from worker.wellformed import well_formed_value

#: Why a note is withdrawn: an HL7 T11 cancel, a FHIR entered-in-error, replaced by another note,
#: or deleted at the source (a FHIR DELETE entry, a change-data-capture delete).
RetractionReason = Literal["cancelled", "entered-in-error", "superseded", "deleted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractedNote:
    """One clinical note found in a message.

    ``note_id`` is stable across versions of the same document (it is the output key, so a
    compacted topic keeps the latest truth per note). ``origin`` says where the text came from:
    always ``format``, plus per-format keys (HL7: ``message_control_id``, ``message_type``,
    ``document_number``, ``parent_document_number``, ``segments``; FHIR: ``resource_type``,
    ``resource_id``, ``version_id``, ``attachments``, ``content_type``; C-CDA: ``document_id``,
    ``sections``; mapping: ``paths``). Values are JSON-serialisable.
    """

    note_id: str
    version: str | None
    text: str
    origin: dict[str, Any]
    patient_id: str | None = None
    encounter_id: str | None = None
    note_type: str | None = None
    note_time: str | None = None
    status: str | None = None  # e.g. HL7 TXA-17 completion status, FHIR docStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class Retraction:
    """A note withdrawn: downstream should drop what it holds under ``note_id``."""

    note_id: str
    version: str | None
    reason: RetractionReason
    origin: dict[str, Any]
    patient_id: str | None = None
    replaced_by: str | None = None  # the note id that supersedes this one, when known


@dataclass(frozen=True, slots=True)
class Skip:
    """A part of a message with no note text to score (counted, not an error).

    ``reason`` is a short snake_case token (``no_note_text``, ``attachment_url_only``,
    ``reference_only``, ``unsupported_content_type``, ``undecodable_text``); ``detail`` names
    the part (e.g. ``DocumentReference/123 content[0]``), never its text.
    """

    reason: str
    detail: str


@dataclass(slots=True)
class Extraction:
    """Everything one message yields, in message order within each list."""

    notes: list[ExtractedNote] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)

    def extend(self, other: Extraction) -> None:
        self.notes += other.notes
        self.retractions += other.retractions
        self.skipped += other.skipped

    def well_formed(self) -> Extraction:
        """This extraction with every string valid Unicode (:mod:`worker.wellformed`)."""
        return Extraction(
            [_well_formed_item(note) for note in self.notes],
            [_well_formed_item(item) for item in self.retractions],
            [_well_formed_item(skip) for skip in self.skipped],
        )


#: One input format: a record's value in, what it holds out (or :class:`InvalidEvent`).
Extractor = Callable[[bytes], Extraction]


def text_sha256(text: str) -> str:
    """The hex sha256 of the extracted text's UTF-8 bytes (carried on every output)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _well_formed_item(item: Any) -> Any:
    changes = {
        part.name: fixed
        for part in fields(item)
        if (fixed := well_formed_value(value := getattr(item, part.name))) is not value
    }
    return replace(item, **changes) if changes else item
