"""A DocumentReference or DiagnosticReport to its note (text, id, version, context fields) or
to the retraction its status asks for."""

from __future__ import annotations

from worker.inputs.content import html_to_text, tidy
from worker.inputs.extracted import ExtractedNote, Extraction, Retraction, Skip, text_sha256
from worker.inputs.fhir.accessors import coded, dicts, one, reference_of, string
from worker.inputs.fhir.attachments import Text, from_attachments
from worker.inputs.fhir.retractions import replaced, withdrawn
from worker.inputs.fhir.scope import Json, Scope, origin


def read_document(resource: Json, scope: Scope) -> Extraction:
    resource_type = str(resource["resourceType"])
    resource_id = string(resource.get("id"))
    version = string(one(resource.get("meta")).get("versionId")) or scope.version_hint
    patient_id = reference_of(resource.get("subject"))
    identity = _identity(resource, resource_type, scope)
    where = scope.at(f"{resource_type}/{resource_id or '?'}")
    reason = withdrawn(resource_type, string(resource.get("status")))
    if reason is not None:
        if identity is None:
            return Extraction(skipped=[Skip("no_note_text", f"{where}: {reason}, no id")])
        retraction = Retraction(
            note_id=identity,
            version=version,
            reason=reason,
            origin=origin(scope, resource_type, resource_id, version),
            patient_id=patient_id,
        )
        return Extraction(retractions=[retraction])
    found = _note_text(resource, resource_type, scope, where)
    out = Extraction(skipped=found.skipped)
    note_id = identity
    if found.text:
        note_id = note_id or f"sha256:{text_sha256(found.text)}"
        out.notes.append(_note(resource, scope, found, note_id=note_id, version=version))
    elif not found.skipped:
        out.skipped.append(Skip("no_note_text", f"{where}: no text"))
    out.retractions += replaced(resource, note_id, patient_id, scope)
    return out


def _identity(resource: Json, resource_type: str, scope: Scope) -> str | None:
    """``Type/id``; else the Bundle entry fullUrl; else the first identifier ``system|value``."""
    resource_id = string(resource.get("id"))
    if resource_id:
        return f"{resource_type}/{resource_id}"
    if scope.full_url:
        return scope.full_url
    identifier = one(resource.get("identifier"))
    value = string(identifier.get("value"))
    if value:
        return f"{string(identifier.get('system')) or ''}|{value}"
    return None


def _note(
    resource: Json, scope: Scope, found: Text, *, note_id: str, version: str | None
) -> ExtractedNote:
    resource_type = str(resource["resourceType"])
    note_origin = origin(scope, resource_type, string(resource.get("id")), version)
    note_origin.update(
        element=found.element, attachments=found.attachments, content_type=found.content_type
    )
    if resource_type == "DocumentReference":
        context = one(resource.get("context"))
        encounter = reference_of(context.get("encounter"))
        note_type = coded(resource.get("type"))
        note_time = string(resource.get("date"))
        status = string(resource.get("docStatus"))
    else:
        encounter = reference_of(resource.get("encounter"))
        note_type = coded(resource.get("code"))
        note_time = (
            string(resource.get("effectiveDateTime"))
            or string(resource.get("issued"))
            or string(one(resource.get("effectivePeriod")).get("start"))
        )
        status = string(resource.get("status"))
    return ExtractedNote(
        note_id=note_id,
        version=version,
        text=found.text,
        origin=note_origin,
        patient_id=reference_of(resource.get("subject")),
        encounter_id=encounter,
        note_type=note_type,
        note_time=note_time,
        status=status,
    )


def _note_text(resource: Json, resource_type: str, scope: Scope, where: str) -> Text:
    if resource_type == "DocumentReference":
        element = "content"
        attachments = [one(content.get("attachment")) for content in dicts(resource.get("content"))]
    else:
        element = "presentedForm"
        attachments = dicts(resource.get("presentedForm"))
    found = from_attachments(attachments, element, resource, scope, where)
    if found.text or resource_type != "DiagnosticReport":
        return found
    if any(skip.reason == "attachment_url_only" for skip in found.skipped):
        return found
    div = string(one(resource.get("text")).get("div"))
    if div:
        found.text, found.element = html_to_text(div), "text.div"
        found.content_type = "application/xhtml+xml"
    conclusion = string(resource.get("conclusion"))
    if not found.text and conclusion:
        found.text, found.element, found.content_type = tidy(conclusion), "conclusion", "text/plain"
    return found
