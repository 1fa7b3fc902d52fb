"""Resource dispatch and the Bundle walk: Bundles of every type, nested Bundles, entry DELETEs,
id-only notification entries and the Bundle's ``Binary`` index."""

from __future__ import annotations

import re
from dataclasses import replace

from worker.errors import InvalidEvent
from worker.inputs.extracted import Extraction, Skip
from worker.inputs.fhir.accessors import dicts, one, parse_reference, string
from worker.inputs.fhir.resources import read_document
from worker.inputs.fhir.retractions import retraction
from worker.inputs.fhir.scope import NOTE_TYPES, Json, Scope

#: Bundles nested deeper than this are refused.
MAX_BUNDLE_DEPTH = 8

_ETAG = re.compile(r'^(?:W/)?"([^"]{1,64})"$')


def read_resource(resource: Json, scope: Scope) -> Extraction:
    """A Bundle walked, a note resource read, any other resource type skipped."""
    resource_type = string(resource.get("resourceType"))
    if resource_type == "Bundle":
        return _bundle(resource, scope)
    if resource_type in NOTE_TYPES:
        return read_document(resource, scope)
    name = str(resource_type)[:40]
    return Extraction(skipped=[Skip("no_note_text", f"{scope.at(name)}: carries no note")])


def _bundle(bundle: Json, scope: Scope) -> Extraction:
    if scope.depth >= MAX_BUNDLE_DEPTH:
        raise InvalidEvent("not_fhir", f"Bundle nested deeper than {MAX_BUNDLE_DEPTH}")
    bundle_type = string(bundle.get("type"))
    entries = dicts(bundle.get("entry"))
    inner = replace(scope, bundle_type=bundle_type, binaries=_binary_index(entries))
    inner = replace(inner, depth=scope.depth + 1, version_hint=None)
    out = Extraction()
    for index, entry in enumerate(entries):
        place = f"{scope.place}.entry[{index}]" if scope.place else f"entry[{index}]"
        entry_scope = replace(inner, full_url=string(entry.get("fullUrl")), place=place)
        out.extend(_entry(entry, entry_scope))
    if not (out.notes or out.retractions or out.skipped):
        where = scope.at(f"Bundle/{string(bundle.get('id')) or '?'}")
        out.skipped.append(Skip("no_note_text", f"{where}: no DocumentReference or report"))
    return out


def _entry(entry: Json, scope: Scope) -> Extraction:
    request = one(entry.get("request"))
    method = string(request.get("method"))
    if method and method.upper() == "DELETE":
        return _deleted_entry(entry, request, scope)
    resource = entry.get("resource")
    if isinstance(resource, dict):
        resource_type = string(resource.get("resourceType"))
        if resource_type == "Bundle" or resource_type in NOTE_TYPES:
            return read_resource(resource, scope)
        return Extraction()
    target = parse_reference(scope.full_url or "")
    if target and target[0] in NOTE_TYPES:  # an id-only subscription notification entry
        detail = f"{scope.place} {target[0]}/{target[1]}: entry without resource"
        return Extraction(skipped=[Skip("reference_only", detail)])
    return Extraction()


def _deleted_entry(entry: Json, request: Json, scope: Scope) -> Extraction:
    url = string(request.get("url")) or ""
    target = parse_reference(url)
    if target is None:
        if url.startswith(tuple(NOTE_TYPES)):
            detail = f"{scope.place}: conditional DELETE of {url.split('?', 1)[0][:40]} not mapped"
            return Extraction(skipped=[Skip("no_note_text", detail)])
        return Extraction()
    resource_type, resource_id, version = target
    if resource_type not in NOTE_TYPES:
        return Extraction()
    if version is None:
        etag = string(one(entry.get("response")).get("etag")) or ""
        match = _ETAG.match(etag)
        version = match.group(1) if match else None
    deleted = retraction((resource_type, resource_id, version), "deleted", scope)
    return Extraction(retractions=[deleted])


def _binary_index(entries: list[Json]) -> dict[str, Json]:
    """The Bundle's Binary resources by entry fullUrl and by ``Binary/id``."""
    index: dict[str, Json] = {}
    for entry in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
            continue
        full_url = string(entry.get("fullUrl"))
        if full_url:
            index[full_url] = resource
        binary_id = string(resource.get("id"))
        if binary_id:
            index[f"Binary/{binary_id}"] = resource
    return index
