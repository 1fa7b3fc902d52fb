"""The versioned JSON Schemas of ``schemas/``, loaded once and compiled."""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

INPUT_SCHEMA = "note-event.v1.json"
OUTPUT_SCHEMA = "enriched-note.v1.json"
DEAD_LETTER_SCHEMA = "dead-letter.v1.json"
#: Outputs of notes extracted from EHR formats, and retractions (both enriched-note.v1 too).
EXTRACTED_OUTPUT_SCHEMA = "extracted-note.v1.json"
RETRACTION_SCHEMA = "note-retraction.v1.json"


def _schema_dir() -> Path:
    packaged = Path(str(importlib.resources.files("worker"))) / "_schemas"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((_schema_dir() / name).read_bytes())
    return data


@functools.cache
def _registry() -> Registry[Any]:
    """Every schema of the directory under its ``$id``, so schemas may ``$ref`` each other."""
    resources = []
    for path in sorted(_schema_dir().glob("*.json")):
        schema = load_schema(path.name)
        resources.append((schema["$id"], Resource.from_contents(schema)))
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=_registry())
