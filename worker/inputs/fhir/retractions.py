"""Retractions of note resources: a status that withdraws one, ``relatesTo`` replaces, and a
retraction of the resource a reference names (deletes)."""

from __future__ import annotations

from worker.inputs.extracted import Retraction, RetractionReason
from worker.inputs.fhir.accessors import dicts, one, parse_reference, reference_of
from worker.inputs.fhir.scope import NOTE_TYPES, Json, Scope, Target, origin


def retraction(
    target: Target,
    reason: RetractionReason,
    scope: Scope,
    *,
    patient_id: str | None = None,
    replaced_by: str | None = None,
) -> Retraction:
    """A retraction of the resource ``target`` names (``type, id, version``)."""
    resource_type, resource_id, version = target
    return Retraction(
        note_id=f"{resource_type}/{resource_id}",
        version=version,
        reason=reason,
        origin=origin(scope, resource_type, resource_id, version),
        patient_id=patient_id,
        replaced_by=replaced_by,
    )


def withdrawn(resource_type: str, status: str | None) -> RetractionReason | None:
    status = (status or "").lower()
    if status == "entered-in-error":
        return "entered-in-error"
    if status == "superseded" and resource_type == "DocumentReference":
        return "superseded"
    if status == "cancelled" and resource_type == "DiagnosticReport":
        return "cancelled"
    return None


def replaced(
    resource: Json, note_id: str | None, patient_id: str | None, scope: Scope
) -> list[Retraction]:
    """Retractions (superseded) for the documents this one ``replaces`` (relatesTo)."""
    out = []
    for relation in dicts(resource.get("relatesTo")):
        code = relation.get("code")
        if isinstance(code, dict):  # R5: a CodeableConcept
            code = one(code.get("coding")).get("code")
        target = parse_reference(reference_of(relation.get("target")) or "")
        if code != "replaces" or target is None or target[0] not in NOTE_TYPES:
            continue
        if f"{target[0]}/{target[1]}" == note_id:
            continue
        out.append(
            retraction(target, "superseded", scope, patient_id=patient_id, replaced_by=note_id)
        )
    return out
