"""C-CDA documents (HL7 CDA R2, XML namespace ``urn:hl7-org:v3``): one note per ClinicalDocument.

Libraries: ``defusedxml`` parses the document (through :func:`content.parse_xml`: no DTD
entities, no external references, so entity bombs and ``file://`` entities are refused before
anything is read); ``inscriptis`` renders the section narrative as text
(:func:`content.html_to_text`). What this module adds: CDA narrative blocks (``StrucDocText``:
``paragraph``, ``list``/``item``, ``table``, ``content``, ``caption``, ``footnote``, ``linkHtml``,
``renderMultiMedia`` ...) are rewritten as the XHTML elements a browser would lay out the same
way, then rendered by inscriptis.

* ``structuredBody``: every section, nested ones too, in document order: its title as a line,
  then its narrative; sections are separated by a blank line.
* ``nonXMLBody``: inline text, or base64 text/plain, text/html or RTF; a body that only points at
  an external file is skipped as ``reference_only``.
* The note id is the ``setId`` (``root^extension``; else the document ``id``), stable across
  versions; ``versionNumber`` is the version. A ``relatedDocument`` of type ``RPLC`` whose parent
  has another set id also retracts that parent as ``superseded``.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from typing import Any
from xml.etree.ElementTree import Element

from worker.errors import InvalidEvent
from worker.inputs.content import (
    ContentType,
    attachment_text,
    decode_base64,
    html_to_text,
    local_name,
    parse_xml,
    tidy,
    to_plain_text,
)
from worker.inputs.extracted import ExtractedNote, Extraction, Retraction, Skip

V3 = "urn:hl7-org:v3"
_NS = {"v3": V3}
#: Parts that make a message a dead letter when nothing else in it yields a note.
_UNREADABLE = ("unsupported_content_type", "undecodable_text")
#: CDA narrative element -> XHTML element (same layout); others become inline ``span``.
_BLOCKS = {
    "paragraph": "p",
    "item": "li",
    "table": "table",
    "thead": "thead",
    "tbody": "tbody",
    "tfoot": "tfoot",
    "tr": "tr",
    "th": "th",
    "td": "td",
    "caption": "div",
    "sub": "sub",
    "sup": "sup",
}
#: Narrative elements with nothing to read (references, media, column layout).
_DROPPED = frozenset({"renderMultiMedia", "footnoteRef", "col", "colgroup"})
#: Deeper narrative markup is flattened to its text (bounds recursion on hostile input).
_MAX_DEPTH = 48


def extract_cda(value: bytes) -> Extraction:
    """The note (and any superseded parent) of one C-CDA ClinicalDocument."""
    root = parse_xml(value, reason="not_cda", where="ClinicalDocument")
    if root.tag != f"{{{V3}}}ClinicalDocument":
        raise InvalidEvent("not_cda", "root element is not ClinicalDocument in urn:hl7-org:v3")
    document_id = _instance_id(root.find("v3:id", _NS))
    set_id = _instance_id(root.find("v3:setId", _NS))
    note_id = set_id or document_id
    if note_id is None:
        raise InvalidEvent("not_cda", "ClinicalDocument: neither setId nor id has a root")
    patient_id = _instance_id(root.find("v3:recordTarget/v3:patientRole/v3:id", _NS))
    origin: dict[str, Any] = {
        "format": "cda",
        "document_id": document_id,
        "set_id": set_id,
        "version_number": _attr(root.find("v3:versionNumber", _NS), "value"),
        "template_ids": [
            tid for el in root.findall("v3:templateId", _NS) if (tid := _instance_id(el))
        ],
    }
    extraction = Extraction(retractions=_replaced(root, note_id, patient_id))
    text, skip = _body_text(root, note_id, origin)
    if text:
        extraction.notes.append(
            ExtractedNote(
                note_id=note_id,
                version=origin["version_number"],
                text=text,
                origin=origin,
                patient_id=patient_id,
                encounter_id=_instance_id(
                    root.find("v3:componentOf/v3:encompassingEncounter/v3:id", _NS)
                ),
                note_type=_note_type(root.find("v3:code", _NS)),
                note_time=_attr(root.find("v3:effectiveTime", _NS), "value"),
            )
        )
    elif skip is not None:
        if skip.reason in _UNREADABLE and not extraction.retractions:
            raise InvalidEvent(skip.reason, skip.detail)
        extraction.skipped.append(skip)
    return extraction


def _body_text(root: Element, note_id: str, origin: dict[str, Any]) -> tuple[str, Skip | None]:
    """The document's text, or a skip saying why there is none; fills ``origin`` body keys."""
    structured = root.find("v3:component/v3:structuredBody", _NS)
    if structured is not None:
        origin["body"] = "structuredBody"
        text, origin["sections"] = _structured_text(structured)
        if text:
            return text, None
        return "", Skip("no_note_text", f"ClinicalDocument {note_id} structuredBody")
    body = root.find("v3:component/v3:nonXMLBody", _NS)
    if body is None:
        raise InvalidEvent("not_cda", "ClinicalDocument/component: no structuredBody or nonXMLBody")
    origin["body"] = "nonXMLBody"
    origin["sections"] = []
    where = f"ClinicalDocument {note_id} nonXMLBody/text"
    element = body.find("v3:text", _NS)
    if element is not None:
        origin["media_type"] = element.get("mediaType") or "text/plain"
    try:
        found = _non_xml_text(element, where=where)
    except InvalidEvent as exc:
        if exc.reason not in _UNREADABLE:
            raise
        return "", Skip(exc.reason, exc.message)
    return ("", found) if isinstance(found, Skip) else (found, None)


def _structured_text(body: Element) -> tuple[str, list[dict[str, str | None]]]:
    """Every section's title and narrative, in document order, and the sections used."""
    parts: list[str] = []
    used: list[dict[str, str | None]] = []
    narrated = False
    for section in _sections(body):
        title_el = section.find("v3:title", _NS)
        title = " ".join("".join(title_el.itertext()).split()) if title_el is not None else ""
        narrative = section.find("v3:text", _NS)
        if not title and narrative is None:
            continue
        text = html_to_text(_to_xhtml(title, narrative))
        has_text = bool(text)
        if title:  # the title line, then the narrative right under it (no paragraph margin)
            head, _, rest = text.partition("\n")
            has_text = bool(rest.strip())
            text = f"{head}\n{rest.lstrip(chr(10))}" if has_text else head
        if not (title or has_text):
            continue
        narrated = narrated or has_text
        parts.append(text)
        used.append({"title": title or None, "code": _attr(section.find("v3:code", _NS), "code")})
    return (tidy("\n\n".join(parts)) if narrated else ""), used


def _sections(body: Element) -> Iterator[Element]:
    """Sections of a structured body, nested ones after their parent (depth first, no recursion)."""
    stack = list(reversed(body.findall("v3:component/v3:section", _NS)))
    while stack:
        section = stack.pop()
        yield section
        stack.extend(reversed(section.findall("v3:component/v3:section", _NS)))


def _to_xhtml(title: str, narrative: Element | None) -> str:
    """A section's title line and CDA narrative as XHTML markup for inscriptis."""
    heading = f"<div>{escape(title, quote=False)}</div>" if title else ""
    body = _inner(narrative, 0) if narrative is not None else ""
    return f"<div>{heading}<div>{body}</div></div>"


def _inner(element: Element, depth: int, *, captions: bool = True) -> str:
    """The escaped text and converted children of ``element`` (``captions=False``: without)."""
    out = [escape(element.text or "", quote=False)]
    for child in element:
        if captions or local_name(child) != "caption":
            out.append(_element(child, depth + 1))
        out.append(escape(child.tail or "", quote=False))
    return "".join(out)


def _element(element: Element, depth: int) -> str:
    """One narrative element as XHTML (captions of lists and tables go before them)."""
    name = local_name(element)
    if not isinstance(element.tag, str) or name in _DROPPED:
        return ""
    if depth > _MAX_DEPTH:
        return escape("".join(element.itertext()), quote=False)
    if name == "br":
        return "<br/>"
    if name in ("list", "table"):
        tag = "ol" if name == "list" and element.get("listType") == "ordered" else "ul"
        tag = "table" if name == "table" else tag
        heads = "".join(
            _element(child, depth + 1) for child in element if local_name(child) == "caption"
        )
        return f"{heads}<{tag}>{_inner(element, depth, captions=False)}</{tag}>"
    tag = _BLOCKS.get(name, "span")
    return f"<{tag}>{_inner(element, depth)}</{tag}>"


def _non_xml_text(element: Element | None, *, where: str) -> str | Skip:
    """The text of a ``nonXMLBody/text`` (inline or base64), or why there is none."""
    if element is None:
        return Skip("no_note_text", f"{where}: missing")
    payload = "".join(
        [element.text or ""] + [child.tail or "" for child in element if isinstance(child.tag, str)]
    )
    if not payload.strip():
        if element.find("v3:reference", _NS) is not None:
            return Skip("reference_only", f"{where}: reference to an external file")
        return Skip("no_note_text", f"{where}: empty")
    if element.get("compression"):
        raise InvalidEvent("unsupported_content_type", f"{where}: compressed data")
    content_type = element.get("mediaType") or "text/plain"
    representation = (element.get("representation") or "TXT").upper()
    if representation == "B64":
        text = attachment_text(decode_base64(payload, where=where), content_type, where=where)
    elif representation == "TXT":
        parsed = ContentType.parse(content_type)
        if not parsed.readable:
            raise InvalidEvent(
                "unsupported_content_type", f"{where}: content type {parsed.media[:80]!r}"
            )
        text = to_plain_text(payload, parsed.media, where=where)
    else:
        raise InvalidEvent("undecodable_text", f"{where}: representation {representation[:20]!r}")
    return text or Skip("no_note_text", f"{where}: no text after decoding")


def _replaced(root: Element, note_id: str, patient_id: str | None) -> list[Retraction]:
    """Parents this document replaces (``RPLC``) under another note id."""
    retractions: list[Retraction] = []
    for related in root.findall("v3:relatedDocument", _NS):
        if related.get("typeCode") != "RPLC":
            continue
        parent = related.find("v3:parentDocument", _NS)
        if parent is None:
            continue
        parent_set = _instance_id(parent.find("v3:setId", _NS))
        parent_doc = _instance_id(parent.find("v3:id", _NS))
        parent_id = parent_set or parent_doc
        if parent_id is None or parent_id == note_id:
            continue
        version = _attr(parent.find("v3:versionNumber", _NS), "value")
        origin = {"format": "cda", "document_id": parent_doc, "set_id": parent_set}
        retractions.append(
            Retraction(
                note_id=parent_id,
                version=version,
                reason="superseded",
                origin=origin,
                patient_id=patient_id,
                replaced_by=note_id,
            )
        )
    return retractions


def _instance_id(element: Element | None) -> str | None:
    """An ``II`` as ``root^extension`` (``root`` alone without extension); None without root."""
    root = _attr(element, "root")
    if root is None:
        return None
    extension = _attr(element, "extension")
    return f"{root}^{extension}" if extension else root


def _note_type(code: Element | None) -> str | None:
    """The document ``code`` as ``code^displayName`` (LOINC in C-CDA; ``code`` alone if no name)."""
    value = _attr(code, "code")
    if value is None:
        return None
    name = _attr(code, "displayName")
    return f"{value}^{name}" if name else value


def _attr(element: Element | None, name: str) -> str | None:
    """An attribute's stripped value, None when the element or a non-blank value is missing."""
    if element is None:
        return None
    value = (element.get(name) or "").strip()
    return value or None
