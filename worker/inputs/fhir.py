"""FHIR R4 DocumentReference and DiagnosticReport (JSON, NDJSON, XML) to clinical notes.

Libraries: the standard library ``json`` reads JSON and NDJSON; FHIR XML is parsed by
:func:`worker.inputs.content.parse_xml` (defusedxml) and turned into the FHIR JSON dict shape by
:mod:`worker.inputs.fhir_xml`, so one code path extracts both; :mod:`worker.inputs.content`
decodes base64 and charsets and renders HTML/XHTML (inscriptis) and RTF (striprtf).

Written here: the resource walk (Bundles of every type, nested Bundles, entry DELETEs), the
attachment rules (content-type sniffing when none is given, contained and in-Bundle ``Binary``
resolution of ``attachment.url``, renditions versus parts), ids, versions and retractions
(``status``, ``relatesTo`` replaces), and the server envelopes: HAPI FHIR / Smile CDR
resource-modified messages (``operationType``, ``payloadId``, ``payload`` = the resource as a
JSON or XML string, optionally inside a channel message ``{"headers", "payload"}``) and IBM /
LinuxForHealth FHIR Server notification events (``operationType``, ``location``, ``resource``).

Every field is read through :func:`_many` / :func:`_one` / :func:`_str`, which accept a single
value or a list and ignore wrong types, so hostile JSON and the schema-less XML conversion are
read the same way.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from worker.errors import InvalidEvent
from worker.inputs.content import (
    ContentType,
    decode_base64,
    decode_text,
    html_to_text,
    tidy,
    to_plain_text,
)
from worker.inputs.extracted import (
    ExtractedNote,
    Extraction,
    Retraction,
    RetractionReason,
    Skip,
    text_sha256,
)
from worker.inputs.fhir_xml import xml_to_resource

Json = dict[str, Any]
#: ``(resource type, id, version or None)`` named by a reference.
_Target = tuple[str, str, str | None]

#: Resource types that carry note text.
NOTE_TYPES = frozenset({"DocumentReference", "DiagnosticReport"})
#: Skip reasons that dead-letter the record when nothing else in it yields.
UNREADABLE = frozenset({"unsupported_content_type", "undecodable_text"})
#: Bundles nested deeper than this are refused.
MAX_BUNDLE_DEPTH = 8

_WHITESPACE = b" \t\r\n"
_HTML_HINT = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|p|div|br|table|span|pre|ul|ol|li|h[1-6]|b|i|font)\b",
    re.IGNORECASE,
)
#: Leading bytes of binary formats sniffed when an attachment has no contentType.
_MAGIC = (
    (b"%PDF", "application/pdf"),
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\xd0\xcf\x11\xe0", "application/msword"),
)
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG = re.compile(r'^(?:W/)?"([^"]{1,64})"$')


def extract_fhir(value: bytes) -> Extraction:
    """The notes, retractions and skips in one FHIR JSON, NDJSON or XML record value."""
    body = value.removeprefix(codecs.BOM_UTF8)
    first = body.lstrip(_WHITESPACE)[:1]
    if first == b"<":
        documents = [(xml_to_resource(body), _Scope(encoding="xml"))]
    elif first == b"{":
        documents = _json_documents(body)
    else:
        raise InvalidEvent("not_fhir", "value is neither a JSON object nor XML")
    out = Extraction()
    for document, scope in documents:
        out.extend(_top(document, scope))
    if not out.notes and not out.retractions:
        unreadable = next((skip for skip in out.skipped if skip.reason in UNREADABLE), None)
        if unreadable is not None:
            raise InvalidEvent(unreadable.reason, unreadable.detail)
    return out


@dataclass(frozen=True, slots=True)
class _Scope:
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


# --- reading JSON ---------------------------------------------------------------------------


def _json_documents(body: bytes) -> list[tuple[Json, _Scope]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_fhir", f"JSON is not valid UTF-8 (byte {exc.start})") from None
    try:
        return [(_object(json.loads(text), "JSON"), _Scope(encoding="json"))]
    except json.JSONDecodeError as exc:
        error = exc
    except (ValueError, RecursionError):
        raise InvalidEvent("not_fhir", "JSON not readable (too deep or too large)") from None
    lines = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    if len(lines) < 2 or not _is_json_object(lines[0][1]):
        raise InvalidEvent("not_fhir", f"not JSON (line {error.lineno} column {error.colno})")
    return [
        (_parse_line(line, number), _Scope(encoding="ndjson", place=f"line {number}"))
        for number, line in lines
    ]


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _parse_line(line: str, number: int) -> Json:
    try:
        return _object(json.loads(line), f"NDJSON line {number}")
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            "not_fhir", f"NDJSON line {number}: not JSON (column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise InvalidEvent("not_fhir", f"NDJSON line {number}: JSON not readable") from None


def _object(parsed: Any, where: str) -> Json:
    if not isinstance(parsed, dict):
        raise InvalidEvent("not_fhir", f"{where}: not a JSON object")
    return parsed


def _payload_resource(payload: str, where: str) -> Json:
    """A resource serialised into a string field of an envelope (JSON or XML)."""
    stripped = payload.lstrip()
    if stripped.startswith("<"):
        return xml_to_resource(stripped, where=where)
    try:
        return _object(json.loads(stripped), where)
    except (ValueError, RecursionError):
        raise InvalidEvent("not_fhir", f"{where}: not a JSON or XML resource") from None


# --- accessors ------------------------------------------------------------------------------


def _many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _dicts(value: Any) -> list[Json]:
    return [item for item in _many(value) if isinstance(item, dict)]


def _one(value: Any) -> Json:
    """The first item of a list (or the value itself) when it is an object, else ``{}``."""
    items = _many(value)
    return items[0] if items and isinstance(items[0], dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _reference(value: Any) -> str | None:
    return _str(_one(value).get("reference"))


def _parse_reference(reference: str) -> _Target | None:
    """``(type, id, version)`` of a literal reference or URL ending ``Type/id[/_history/v]``;
    ``None`` for conditional (``?query``), ``urn:`` and other forms."""
    if "?" in reference or reference.startswith(("urn:", "#")):
        return None
    segments = [part for part in reference.split("#", 1)[0].split("/") if part]
    version = None
    if len(segments) >= 4 and segments[-2] == "_history":
        version = segments[-1]
        segments = segments[:-2]
    if len(segments) < 2 or not _TYPE.match(segments[-2]) or not _ID.match(segments[-1]):
        return None
    return segments[-2], segments[-1], version


def _coded(concept: Any) -> str | None:
    """``system|code`` of the first coding (``code`` alone without system), else the text."""
    concept_json = _one(concept)
    coding = _one(concept_json.get("coding"))
    code = _str(coding.get("code"))
    if code:
        system = _str(coding.get("system"))
        return f"{system}|{code}" if system else code
    return _str(concept_json.get("text"))


# --- dispatch -------------------------------------------------------------------------------


def _top(document: Json, scope: _Scope) -> Extraction:
    """A top-level JSON object or XML resource: a resource, or a server envelope around one."""
    resource_type = document.get("resourceType")
    if resource_type is None:
        return _envelope(document, scope)
    if not isinstance(resource_type, str):
        raise InvalidEvent("not_fhir", f"{scope.at('resourceType')}: not a string")
    return _resource(document, scope)


def _resource(resource: Json, scope: _Scope) -> Extraction:
    resource_type = _str(resource.get("resourceType"))
    if resource_type == "Bundle":
        return _bundle(resource, scope)
    if resource_type in NOTE_TYPES:
        return _document(resource, scope)
    name = str(resource_type)[:40]
    return Extraction(skipped=[Skip("no_note_text", f"{scope.at(name)}: carries no note")])


def _bundle(bundle: Json, scope: _Scope) -> Extraction:
    if scope.depth >= MAX_BUNDLE_DEPTH:
        raise InvalidEvent("not_fhir", f"Bundle nested deeper than {MAX_BUNDLE_DEPTH}")
    bundle_type = _str(bundle.get("type"))
    entries = _dicts(bundle.get("entry"))
    inner = replace(scope, bundle_type=bundle_type, binaries=_binary_index(entries))
    inner = replace(inner, depth=scope.depth + 1, version_hint=None)
    out = Extraction()
    for index, entry in enumerate(entries):
        place = f"{scope.place}.entry[{index}]" if scope.place else f"entry[{index}]"
        entry_scope = replace(inner, full_url=_str(entry.get("fullUrl")), place=place)
        out.extend(_entry(entry, entry_scope))
    if not (out.notes or out.retractions or out.skipped):
        where = scope.at(f"Bundle/{_str(bundle.get('id')) or '?'}")
        out.skipped.append(Skip("no_note_text", f"{where}: no DocumentReference or report"))
    return out


def _entry(entry: Json, scope: _Scope) -> Extraction:
    request = _one(entry.get("request"))
    method = _str(request.get("method"))
    if method and method.upper() == "DELETE":
        return _deleted_entry(entry, request, scope)
    resource = entry.get("resource")
    if isinstance(resource, dict):
        resource_type = _str(resource.get("resourceType"))
        if resource_type == "Bundle" or resource_type in NOTE_TYPES:
            return _resource(resource, scope)
        return Extraction()
    target = _parse_reference(scope.full_url or "")
    if target and target[0] in NOTE_TYPES:  # an id-only subscription notification entry
        detail = f"{scope.place} {target[0]}/{target[1]}: entry without resource"
        return Extraction(skipped=[Skip("reference_only", detail)])
    return Extraction()


def _deleted_entry(entry: Json, request: Json, scope: _Scope) -> Extraction:
    url = _str(request.get("url")) or ""
    target = _parse_reference(url)
    if target is None:
        if url.startswith(tuple(NOTE_TYPES)):
            detail = f"{scope.place}: conditional DELETE of {url.split('?', 1)[0][:40]} not mapped"
            return Extraction(skipped=[Skip("no_note_text", detail)])
        return Extraction()
    resource_type, resource_id, version = target
    if resource_type not in NOTE_TYPES:
        return Extraction()
    if version is None:
        etag = _str(_one(entry.get("response")).get("etag")) or ""
        match = _ETAG.match(etag)
        version = match.group(1) if match else None
    deleted = _retraction((resource_type, resource_id, version), "deleted", scope)
    return Extraction(retractions=[deleted])


def _retraction(
    target: _Target,
    reason: RetractionReason,
    scope: _Scope,
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
        origin=_origin(scope, resource_type, resource_id, version),
        patient_id=patient_id,
        replaced_by=replaced_by,
    )


def _binary_index(entries: list[Json]) -> dict[str, Json]:
    """The Bundle's Binary resources by entry fullUrl and by ``Binary/id``."""
    index: dict[str, Json] = {}
    for entry in entries:
        resource = entry.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != "Binary":
            continue
        full_url = _str(entry.get("fullUrl"))
        if full_url:
            index[full_url] = resource
        binary_id = _str(resource.get("id"))
        if binary_id:
            index[f"Binary/{binary_id}"] = resource
    return index


def _origin(
    scope: _Scope, resource_type: str, resource_id: str | None, version: str | None
) -> Json:
    origin: Json = {
        "format": "fhir",
        "encoding": scope.encoding,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "version_id": version,
    }
    if scope.bundle_type is not None:
        origin["bundle_type"] = scope.bundle_type
    if scope.envelope is not None:
        origin["envelope"] = scope.envelope
    if scope.place:
        origin["place"] = scope.place
    return origin


# --- DocumentReference / DiagnosticReport ---------------------------------------------------


@dataclass(slots=True)
class _Text:
    """The note text chosen from a resource and what it came from."""

    text: str = ""
    element: str | None = None  # "content", "presentedForm", "text.div", "conclusion"
    attachments: list[int] = field(default_factory=list)
    content_type: str | None = None
    skipped: list[Skip] = field(default_factory=list)


def _document(resource: Json, scope: _Scope) -> Extraction:
    resource_type = str(resource["resourceType"])
    resource_id = _str(resource.get("id"))
    version = _str(_one(resource.get("meta")).get("versionId")) or scope.version_hint
    patient_id = _reference(resource.get("subject"))
    identity = _identity(resource, resource_type, scope)
    where = scope.at(f"{resource_type}/{resource_id or '?'}")
    reason = _withdrawn(resource_type, _str(resource.get("status")))
    if reason is not None:
        if identity is None:
            return Extraction(skipped=[Skip("no_note_text", f"{where}: {reason}, no id")])
        retraction = Retraction(
            note_id=identity,
            version=version,
            reason=reason,
            origin=_origin(scope, resource_type, resource_id, version),
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
    out.retractions += _replaced(resource, note_id, patient_id, scope)
    return out


def _withdrawn(resource_type: str, status: str | None) -> RetractionReason | None:
    status = (status or "").lower()
    if status == "entered-in-error":
        return "entered-in-error"
    if status == "superseded" and resource_type == "DocumentReference":
        return "superseded"
    if status == "cancelled" and resource_type == "DiagnosticReport":
        return "cancelled"
    return None


def _identity(resource: Json, resource_type: str, scope: _Scope) -> str | None:
    """``Type/id``; else the Bundle entry fullUrl; else the first identifier ``system|value``."""
    resource_id = _str(resource.get("id"))
    if resource_id:
        return f"{resource_type}/{resource_id}"
    if scope.full_url:
        return scope.full_url
    identifier = _one(resource.get("identifier"))
    value = _str(identifier.get("value"))
    if value:
        return f"{_str(identifier.get('system')) or ''}|{value}"
    return None


def _note(
    resource: Json, scope: _Scope, found: _Text, *, note_id: str, version: str | None
) -> ExtractedNote:
    resource_type = str(resource["resourceType"])
    origin = _origin(scope, resource_type, _str(resource.get("id")), version)
    origin.update(
        element=found.element, attachments=found.attachments, content_type=found.content_type
    )
    if resource_type == "DocumentReference":
        context = _one(resource.get("context"))
        encounter = _reference(context.get("encounter"))
        note_type = _coded(resource.get("type"))
        note_time = _str(resource.get("date"))
        status = _str(resource.get("docStatus"))
    else:
        encounter = _reference(resource.get("encounter"))
        note_type = _coded(resource.get("code"))
        note_time = (
            _str(resource.get("effectiveDateTime"))
            or _str(resource.get("issued"))
            or _str(_one(resource.get("effectivePeriod")).get("start"))
        )
        status = _str(resource.get("status"))
    return ExtractedNote(
        note_id=note_id,
        version=version,
        text=found.text,
        origin=origin,
        patient_id=_reference(resource.get("subject")),
        encounter_id=encounter,
        note_type=note_type,
        note_time=note_time,
        status=status,
    )


def _replaced(
    resource: Json, note_id: str | None, patient_id: str | None, scope: _Scope
) -> list[Retraction]:
    """Retractions (superseded) for the documents this one ``replaces`` (relatesTo)."""
    out = []
    for relation in _dicts(resource.get("relatesTo")):
        code = relation.get("code")
        if isinstance(code, dict):  # R5: a CodeableConcept
            code = _one(code.get("coding")).get("code")
        target = _parse_reference(_reference(relation.get("target")) or "")
        if code != "replaces" or target is None or target[0] not in NOTE_TYPES:
            continue
        if f"{target[0]}/{target[1]}" == note_id:
            continue
        out.append(
            _retraction(target, "superseded", scope, patient_id=patient_id, replaced_by=note_id)
        )
    return out


def _note_text(resource: Json, resource_type: str, scope: _Scope, where: str) -> _Text:
    if resource_type == "DocumentReference":
        element = "content"
        attachments = [
            _one(content.get("attachment")) for content in _dicts(resource.get("content"))
        ]
    else:
        element = "presentedForm"
        attachments = _dicts(resource.get("presentedForm"))
    found = _from_attachments(attachments, element, resource, scope, where)
    if found.text or resource_type != "DiagnosticReport":
        return found
    if any(skip.reason == "attachment_url_only" for skip in found.skipped):
        return found
    div = _str(_one(resource.get("text")).get("div"))
    if div:
        found.text, found.element = html_to_text(div), "text.div"
        found.content_type = "application/xhtml+xml"
    conclusion = _str(resource.get("conclusion"))
    if not found.text and conclusion:
        found.text, found.element, found.content_type = tidy(conclusion), "conclusion", "text/plain"
    return found


def _from_attachments(
    attachments: list[Json], element: str, resource: Json, scope: _Scope, where: str
) -> _Text:
    """One text from the readable attachments: the best-ranked content type wins (renditions),
    all attachments of that type are joined in order (parts), identical texts kept once."""
    found = _Text()
    rendered: dict[str, list[tuple[int, str]]] = {}
    for index, attachment in enumerate(attachments):
        label = f"{where} {element}[{index}]"
        try:
            media, text = _attachment(attachment, resource, scope, label)
        except InvalidEvent as exc:
            found.skipped.append(Skip(exc.reason, exc.message))
            continue
        rendered.setdefault(media, []).append((index, text))
    for media in sorted(rendered, key=lambda name: ContentType(name, None).rank):
        texts: list[str] = []
        for index, text in rendered[media]:
            if text and text not in texts:
                texts.append(text)
                found.attachments.append(index)
        if texts:
            found.text = tidy("\n\n".join(texts))
            found.element, found.content_type = element, media
            break
    return found


def _attachment(attachment: Json, resource: Json, scope: _Scope, label: str) -> tuple[str, str]:
    """``(media type, text)`` of one attachment; raises a Skip-worthy ``InvalidEvent``."""
    data = _str(attachment.get("data"))
    content_type = _str(attachment.get("contentType"))
    if data is None:
        url = _str(attachment.get("url"))
        if url is None:
            raise InvalidEvent("no_note_text", f"{label}: attachment has neither data nor url")
        binary = _binary(url, resource, scope)
        data = _str(binary.get("data")) if binary else None
        if binary is None or data is None:
            raise InvalidEvent("attachment_url_only", f"{label}: text only behind attachment.url")
        content_type = _str(binary.get("contentType")) or content_type
        label = f"{label} (Binary)"
    parsed = ContentType.parse(content_type)
    if not parsed.readable:
        raise InvalidEvent(
            "unsupported_content_type", f"{label}: content type {parsed.media[:80]!r}"
        )
    raw = decode_base64(data, where=label)
    media = parsed.media or _sniff(raw)
    if not ContentType(media, None).readable:
        raise InvalidEvent("unsupported_content_type", f"{label}: content sniffed as {media}")
    text = to_plain_text(decode_text(raw, parsed.charset, where=label), media, where=label)
    return ("text/rtf" if media == "application/rtf" else media), text


def _binary(url: str, resource: Json, scope: _Scope) -> Json | None:
    """The Binary an attachment url points at, when it is in hand: ``#id`` of a contained
    Binary, or a Binary entry of the same Bundle by fullUrl or ``Binary/id``."""
    if url.startswith("#"):
        for contained in _dicts(resource.get("contained")):
            if contained.get("resourceType") == "Binary" and contained.get("id") == url[1:]:
                return contained
        return None
    if url in scope.binaries:
        return scope.binaries[url]
    target = _parse_reference(url)
    if target and target[0] == "Binary":
        return scope.binaries.get(f"Binary/{target[1]}")
    return None


def _sniff(raw: bytes) -> str:
    """A media type for attachment bytes without a contentType."""
    head = raw.removeprefix(codecs.BOM_UTF8).lstrip(_WHITESPACE)[:2048]
    if head.startswith(b"{\\rtf"):
        return "text/rtf"
    for magic, media in _MAGIC:
        if head.startswith(magic):
            return media
    if head.startswith(b"<") and _HTML_HINT.search(head):
        return "text/html"
    return "text/plain"


# --- server envelopes -----------------------------------------------------------------------


def _envelope(document: Json, scope: _Scope) -> Extraction:
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


def _hapi(message: Json, scope: _Scope) -> Extraction:
    """HAPI FHIR ``ResourceModifiedMessage``: ``payload`` is the resource as a string,
    ``payloadId`` (older releases: ``resourceId``) is ``Type/id/_history/version``."""
    payload = _str(message.get("payload"))
    resource = _payload_resource(payload, scope.at("payload")) if payload else None
    payload_id = _str(message.get("payloadId")) or _str(message.get("resourceId"))
    target = _parse_reference(payload_id) if payload_id else None
    operation = str(message.get("operationType") or "").upper()
    return _wrapped(operation == "DELETE", resource, target, scope)


def _ibm(event: Json, scope: _Scope) -> Extraction:
    """IBM / LinuxForHealth FHIR Server ``FHIRNotificationEvent``: ``resource`` (an object or
    a string), ``location`` ``Type/id/_history/version``, ``resourceId`` the logical id."""
    raw = event.get("resource")
    resource = raw if isinstance(raw, dict) else None
    if isinstance(raw, str) and raw.strip():
        resource = _payload_resource(raw, scope.at("resource"))
    location = _str(event.get("location"))
    target = _parse_reference(location) if location else None
    operation = str(event.get("operationType") or "").lower()
    return _wrapped(operation == "delete", resource, target, scope)


def _wrapped(
    deleted: bool,
    resource: Json | None,
    target: _Target | None,
    scope: _Scope,
) -> Extraction:
    if resource is not None and not isinstance(resource.get("resourceType"), str):
        raise InvalidEvent(
            "not_fhir", f"{scope.at(str(scope.envelope))}: payload has no resourceType"
        )
    if target is None and resource is not None and _str(resource.get("id")):
        version = _str(_one(resource.get("meta")).get("versionId"))
        target = (str(resource["resourceType"]), str(resource["id"]), version)
    if deleted:
        if target is None or target[0] not in NOTE_TYPES:
            detail = f"{scope.at(str(scope.envelope))}: DELETE of no note resource"
            return Extraction(skipped=[Skip("no_note_text", detail)])
        patient_id = _reference(resource.get("subject")) if resource else None
        return Extraction(
            retractions=[_retraction(target, "deleted", scope, patient_id=patient_id)]
        )
    if resource is None:
        detail = f"{scope.at(str(scope.envelope))}: resource not included"
        return Extraction(skipped=[Skip("reference_only", detail)])
    return _resource(resource, replace(scope, version_hint=target[2] if target else None))
