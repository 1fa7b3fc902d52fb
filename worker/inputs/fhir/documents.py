"""A record value to its top-level documents: XML, one JSON object or NDJSON lines (told apart
by the first byte and by parsing), and resources serialised into an envelope's string field."""

from __future__ import annotations

import codecs
import json
from typing import Any

from worker.errors import InvalidEvent
from worker.inputs.fhir.scope import Json, Scope
from worker.inputs.fhir.xml import xml_to_resource

WHITESPACE = b" \t\r\n"


def documents(value: bytes) -> list[tuple[Json, Scope]]:
    """The JSON objects or the XML resource of one record value, each with its scope."""
    body = value.removeprefix(codecs.BOM_UTF8)
    first = body.lstrip(WHITESPACE)[:1]
    if first == b"<":
        return [(xml_to_resource(body), Scope(encoding="xml"))]
    if first == b"{":
        return _json_documents(body)
    raise InvalidEvent("not_fhir", "value is neither a JSON object nor XML")


def _json_documents(body: bytes) -> list[tuple[Json, Scope]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_fhir", f"JSON is not valid UTF-8 (byte {exc.start})") from None
    try:
        return [(_object(json.loads(text), "JSON"), Scope(encoding="json"))]
    except json.JSONDecodeError as exc:
        error = exc
    except (ValueError, RecursionError):
        raise InvalidEvent("not_fhir", "JSON not readable (too deep or too large)") from None
    lines = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    if len(lines) < 2 or not _is_json_object(lines[0][1]):
        raise InvalidEvent("not_fhir", f"not JSON (line {error.lineno} column {error.colno})")
    return [
        (_parse_line(line, number), Scope(encoding="ndjson", place=f"line {number}"))
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


def payload_resource(payload: str, where: str) -> Json:
    """A resource serialised into a string field of an envelope (JSON or XML)."""
    stripped = payload.lstrip()
    if stripped.startswith("<"):
        return xml_to_resource(stripped, where=where)
    try:
        return _object(json.loads(stripped), where)
    except (ValueError, RecursionError):
        raise InvalidEvent("not_fhir", f"{where}: not a JSON or XML resource") from None
