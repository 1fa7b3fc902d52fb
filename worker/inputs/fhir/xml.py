"""FHIR R4 XML to the dict shape of FHIR JSON, so one code path extracts both encodings.

Parsing is :func:`worker.inputs.content.parse_xml` (defusedxml: no DTD entities, no external
references, no entity expansion); the conversion is written here and follows the FHIR XML rules
(https://hl7.org/fhir/R4/xml.html) generically, without a schema:

* an element with a ``value`` attribute is a primitive: its value string (extensions and
  element ids on primitives are dropped; numbers and booleans stay strings);
* any other element becomes a dict of its children; other plain attributes (``url`` of an
  ``extension``, element ``id``) become keys;
* a name that occurs more than once becomes a list, and the names the extractor reads as arrays
  (:data:`ARRAY_NAMES`) are always lists; readers should still accept a single value
  (:mod:`worker.inputs.fhir` reads every field through ``many``/``one``);
* an element whose child is an element named with an upper-case letter holds a resource
  (``Bundle.entry.resource``, ``contained``, ``Parameters.parameter.resource``): it becomes
  that resource's dict with ``resourceType``;
* the narrative ``div`` (XHTML) is kept as markup: a string of HTML with namespace prefixes
  removed, for :func:`worker.inputs.content.html_to_text`;
* elements outside the FHIR namespace (other than the XHTML ``div``) are ignored.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, tostring

from worker.errors import InvalidEvent
from worker.inputs.content import local_name, parse_xml

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"

#: Elements that are arrays in FHIR JSON wherever the extractor reads them.
ARRAY_NAMES = frozenset(
    {
        "entry",
        "content",
        "presentedForm",
        "contained",
        "coding",
        "identifier",
        "relatesTo",
        "category",
        "extension",
        "parameter",
        "link",
        "result",
        "performer",
        "author",
    }
)

#: Deeper than this is refused (a hostile document must not exhaust the stack).
MAX_DEPTH = 200


def xml_to_resource(data: bytes | str, *, where: str = "FHIR XML") -> dict[str, Any]:
    """The resource in a FHIR XML document as FHIR JSON would hold it.

    ``not_fhir`` when the XML is refused or malformed, or its root is not in the FHIR namespace.
    """
    try:
        root = parse_xml(data, reason="not_fhir", where=where)
    except (LookupError, ValueError):  # an unknown or unsupported encoding declaration
        raise InvalidEvent("not_fhir", f"{where}: XML encoding not readable") from None
    if _namespace(root) != FHIR_NS:
        raise InvalidEvent("not_fhir", f"{where}: root element is not in the {FHIR_NS} namespace")
    return _resource(root, 0)


def _namespace(element: Element) -> str:
    tag = element.tag
    if isinstance(tag, str) and tag.startswith("{"):
        return tag[1:].partition("}")[0]
    return ""


def _resource(element: Element, depth: int) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": local_name(element)}
    resource.update(_children(element, depth))
    return resource


def _children(element: Element, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise InvalidEvent("not_fhir", f"FHIR XML: elements nested deeper than {MAX_DEPTH}")
    fields: dict[str, Any] = {}
    for child in element:
        name = local_name(child)
        if not name:
            continue
        value = _value(child, name, depth + 1)
        if value is None:
            continue
        if name in fields:
            previous = fields[name]
            fields[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            fields[name] = [value] if name in ARRAY_NAMES else value
    return fields


def _value(element: Element, name: str, depth: int) -> Any:
    """One child element's JSON value (``None`` to leave it out)."""
    namespace = _namespace(element)
    if name == "div" and namespace in (XHTML_NS, FHIR_NS):
        return _xhtml_markup(element, depth)
    if namespace != FHIR_NS:
        return None
    if "value" in element.attrib:
        return element.attrib["value"]
    children = [child for child in element if local_name(child)]
    if len(children) == 1 and local_name(children[0])[:1].isupper():
        return _resource(children[0], depth)
    fields = {key: raw for key, raw in element.attrib.items() if not key.startswith("{")}
    fields.update(_children(element, depth))
    return fields or None


def _xhtml_markup(element: Element, depth: int) -> str:
    """The narrative as HTML markup (prefix-free, so an HTML parser sees plain tag names)."""
    copy = _plain_copy(element, depth)
    copy.tail = None
    return tostring(copy, encoding="unicode", method="html")


def _plain_copy(element: Element, depth: int) -> Element:
    if depth > MAX_DEPTH:
        raise InvalidEvent("not_fhir", f"FHIR XML: narrative nested deeper than {MAX_DEPTH}")
    attributes = {key: raw for key, raw in element.attrib.items() if not key.startswith("{")}
    copy = Element(local_name(element) or "span", attributes)
    copy.text = element.text
    copy.tail = element.tail
    for child in element:
        if local_name(child):
            copy.append(_plain_copy(child, depth + 1))
        elif child.tail:  # a comment or processing instruction: keep the text after it
            _append_text(copy, child.tail)
    return copy


def _append_text(element: Element, text: str) -> None:
    if len(element):
        last = element[-1]
        last.tail = (last.tail or "") + text
    else:
        element.text = (element.text or "") + text
