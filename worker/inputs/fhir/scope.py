"""The shared shapes: a JSON object, a reference target, the note resource types, and where a
resource sits (:class:`Scope`) with the ``origin`` that place gives a note or retraction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
#: ``(resource type, id, version or None)`` named by a reference.
Target = tuple[str, str, str | None]

#: Resource types that carry note text.
NOTE_TYPES = frozenset({"DocumentReference", "DiagnosticReport"})


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a resource sits: encoding, envelope, enclosing Bundle and its Binary entries."""

    encoding: str
    envelope: str | None = None
    bundle_type: str | None = None
    binaries: dict[str, Json] = field(default_factory=dict)
    full_url: str | None = None
    place: str = ""  # "line 2", "entry[0].entry[3]": names the part in details and origin
    version_hint: str | None = None  # from an envelope's payloadId .../_history/N
    depth: int = 0

    def at(self, place: str) -> str:
        return f"{self.place} {place}".strip() if self.place else place


def origin(scope: Scope, resource_type: str, resource_id: str | None, version: str | None) -> Json:
    found: Json = {
        "format": "fhir",
        "encoding": scope.encoding,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "version_id": version,
    }
    if scope.bundle_type is not None:
        found["bundle_type"] = scope.bundle_type
    if scope.envelope is not None:
        found["envelope"] = scope.envelope
    if scope.place:
        found["place"] = scope.place
    return found
