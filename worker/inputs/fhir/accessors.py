"""Field readers that accept a single value or a list and ignore wrong types, so hostile JSON
and the schema-less XML conversion read the same way; references and codes."""

from __future__ import annotations

import re
from typing import Any

from worker.inputs.fhir.scope import Json, Target

_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def many(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def dicts(value: Any) -> list[Json]:
    return [item for item in many(value) if isinstance(item, dict)]


def one(value: Any) -> Json:
    """The first item of a list (or the value itself) when it is an object, else ``{}``."""
    items = many(value)
    return items[0] if items and isinstance(items[0], dict) else {}


def string(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def reference_of(value: Any) -> str | None:
    return string(one(value).get("reference"))


def parse_reference(reference: str) -> Target | None:
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


def coded(concept: Any) -> str | None:
    """``system|code`` of the first coding (``code`` alone without system), else the text."""
    concept_json = one(concept)
    coding = one(concept_json.get("coding"))
    code = string(coding.get("code"))
    if code:
        system = string(coding.get("system"))
        return f"{system}|{code}" if system else code
    return string(concept_json.get("text"))
