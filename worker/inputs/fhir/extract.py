"""The entry point: one FHIR record value (JSON, NDJSON or XML) to notes, retractions and skips."""

from __future__ import annotations

from worker.errors import InvalidEvent
from worker.inputs.extracted import Extraction
from worker.inputs.fhir.bundles import read_resource
from worker.inputs.fhir.documents import documents
from worker.inputs.fhir.envelopes import envelope
from worker.inputs.fhir.scope import Json, Scope

#: Skip reasons that dead-letter the record when nothing else in it yields.
UNREADABLE = frozenset({"unsupported_content_type", "undecodable_text"})


def extract_fhir(value: bytes) -> Extraction:
    """The notes, retractions and skips in one FHIR JSON, NDJSON or XML record value."""
    out = Extraction()
    for document, scope in documents(value):
        out.extend(_top(document, scope))
    if not out.notes and not out.retractions:
        unreadable = next((skip for skip in out.skipped if skip.reason in UNREADABLE), None)
        if unreadable is not None:
            raise InvalidEvent(unreadable.reason, unreadable.detail)
    return out


def _top(document: Json, scope: Scope) -> Extraction:
    """A top-level JSON object or XML resource: a resource, or a server envelope around one."""
    resource_type = document.get("resourceType")
    if resource_type is None:
        return envelope(document, scope)
    if not isinstance(resource_type, str):
        raise InvalidEvent("not_fhir", f"{scope.at('resourceType')}: not a string")
    return read_resource(document, scope)
