"""Server envelopes around a resource: HAPI FHIR / Smile CDR resource-modified messages (alone
or in a channel message) and IBM / LinuxForHealth FHIR Server notification events."""

from __future__ import annotations

from dataclasses import replace

from worker.errors import InvalidEvent
from worker.inputs.extracted import Extraction, Skip
from worker.inputs.fhir.accessors import one, parse_reference, reference_of, string
from worker.inputs.fhir.bundles import read_resource
from worker.inputs.fhir.documents import payload_resource
from worker.inputs.fhir.retractions import retraction
from worker.inputs.fhir.scope import NOTE_TYPES, Json, Scope, Target


def envelope(document: Json, scope: Scope) -> Extraction:
    """A JSON object without resourceType: one of the server messages that wrap a resource."""
    payload = document.get("payload")
    if isinstance(payload, dict) and "operationType" in payload:
        return _hapi(payload, replace(scope, envelope="smile-cdr-channel-message"))
    if "operationType" in document:
        if isinstance(payload, str) or "payloadId" in document:
            return _hapi(document, replace(scope, envelope="hapi-resource-modified"))
        if "resource" in document or "location" in document:
            return _ibm(document, replace(scope, envelope="ibm-fhir-notification"))
    raise InvalidEvent("not_fhir", f"{scope.at('JSON object')}: no resourceType")


def _hapi(message: Json, scope: Scope) -> Extraction:
    """HAPI FHIR ``ResourceModifiedMessage``: ``payload`` is the resource as a string,
    ``payloadId`` (older releases: ``resourceId``) is ``Type/id/_history/version``."""
    payload = string(message.get("payload"))
    resource = payload_resource(payload, scope.at("payload")) if payload else None
    payload_id = string(message.get("payloadId")) or string(message.get("resourceId"))
    target = parse_reference(payload_id) if payload_id else None
    operation = str(message.get("operationType") or "").upper()
    return _wrapped(operation == "DELETE", resource, target, scope)


def _ibm(event: Json, scope: Scope) -> Extraction:
    """IBM / LinuxForHealth FHIR Server ``FHIRNotificationEvent``: ``resource`` (an object or
    a string), ``location`` ``Type/id/_history/version``, ``resourceId`` the logical id."""
    raw = event.get("resource")
    resource = raw if isinstance(raw, dict) else None
    if isinstance(raw, str) and raw.strip():
        resource = payload_resource(raw, scope.at("resource"))
    location = string(event.get("location"))
    target = parse_reference(location) if location else None
    operation = str(event.get("operationType") or "").lower()
    return _wrapped(operation == "delete", resource, target, scope)


def _wrapped(
    deleted: bool,
    resource: Json | None,
    target: Target | None,
    scope: Scope,
) -> Extraction:
    if resource is not None and not isinstance(resource.get("resourceType"), str):
        raise InvalidEvent(
            "not_fhir", f"{scope.at(str(scope.envelope))}: payload has no resourceType"
        )
    if target is None and resource is not None and string(resource.get("id")):
        version = string(one(resource.get("meta")).get("versionId"))
        target = (str(resource["resourceType"]), str(resource["id"]), version)
    if deleted:
        if target is None or target[0] not in NOTE_TYPES:
            detail = f"{scope.at(str(scope.envelope))}: DELETE of no note resource"
            return Extraction(skipped=[Skip("no_note_text", detail)])
        patient_id = reference_of(resource.get("subject")) if resource else None
        return Extraction(retractions=[retraction(target, "deleted", scope, patient_id=patient_id)])
    if resource is None:
        detail = f"{scope.at(str(scope.envelope))}: resource not included"
        return Extraction(skipped=[Skip("reference_only", detail)])
    return read_resource(resource, replace(scope, version_hint=target[2] if target else None))
