"""The ``auto`` format: tell HL7 v2, FHIR (JSON, NDJSON, XML), C-CDA and the project's own JSON
note event apart by their first bytes, then extract with the matching format.

Mapped JSON cannot be detected (any JSON could be a vendor's event): give it its own topic.
"""

from __future__ import annotations

import re

import orjson

from worker.errors import InvalidEvent
from worker.inputs.extracted import ExtractedNote, Extraction

#: Leading bytes an HL7 v2 message or batch may start with (after MLLP framing and whitespace).
_HL7_START = re.compile(rb"^[\x0b\s\xef\xbb\xbf]*(MSH|FHS|BHS)[^\r\n\w]")
_XML_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(ClinicalDocument|[A-Z][A-Za-z]+)[\s>/]")
_FHIR_NS = b"http://hl7.org/fhir"


def detect(value: bytes) -> str:
    """``hl7v2``, ``fhir``, ``cda`` or ``note``; ``unknown_format`` dead letter otherwise."""
    head = value[:4096].lstrip(b"\xef\xbb\xbf \t\r\n\x0b")
    if _HL7_START.match(value[:64]):
        return "hl7v2"
    if head.startswith(b"<"):
        root = _root_name(head)
        if root == "ClinicalDocument":
            return "cda"
        if root is not None and _FHIR_NS in head:
            return "fhir"
    if head.startswith(b"{"):
        return _json_kind(value)
    raise InvalidEvent("unknown_format", "value is not HL7 v2, FHIR, C-CDA or a JSON note event")


def _root_name(head: bytes) -> str | None:
    """The first element's local name, past the XML declaration, comments and a DOCTYPE."""
    for match in _XML_ROOT.finditer(head):
        before = head[: match.start()]
        if before.count(b"<!--") == before.count(b"-->"):
            return match.group(1).decode()
    return None


def _json_kind(value: bytes) -> str:
    """FHIR when it names a ``resourceType`` (or a server's envelope around one), else the
    project's note event when it has ``text``; NDJSON (several lines) is FHIR bulk data."""
    first_line = value.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0]
    try:
        document = orjson.loads(value.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        try:
            document = orjson.loads(first_line)
        except orjson.JSONDecodeError:
            # orjson refuses some JSON the FHIR reader accepts (1e400, a lone surrogate escape)
            if b'"resourceType"' in value[:65536]:
                return "fhir"
            return "note"  # the note format names the JSON error precisely
    if isinstance(document, dict):
        if "resourceType" in document or b'resourceType\\"' in value[:65536]:
            return "fhir"
        if "text" in document or "note_id" in document:
            return "note"
    raise InvalidEvent("unknown_format", "JSON value is neither a FHIR resource nor a note event")


def extract_any(value: bytes) -> Extraction:
    """Extract with the format :func:`detect` names (the note event is read as one note)."""
    kind = detect(value)
    if kind == "note":
        return note_extraction(value)
    from worker.inputs import extractor_for

    return extractor_for(kind)(value)


def note_extraction(value: bytes) -> Extraction:
    """The project's note event read as an extracted note (its other fields are not carried)."""
    from worker.events import parse_note

    event = parse_note(value, max_chars=2**62).fields
    origin = {"format": "note"}
    note_id = event.get("note_id")
    return Extraction(
        notes=[
            ExtractedNote(
                note_id=str(note_id),
                version=None,
                text=event["text"],
                origin=origin,
                patient_id=_optional(event.get("patient_id")),
                encounter_id=_optional(event.get("encounter_id")),
                note_type=_optional(event.get("note_type")),
            )
        ]
    )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
