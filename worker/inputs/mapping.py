"""Declarative mapping: notes out of any other JSON (a vendor's event, a Debezium change event).

A mapping file (YAML or JSON, :func:`load_mapping`) names where each field of a note is, as a
JSON Pointer (RFC 6901), optionally with decode steps: ``json`` (the value is a JSON document in
a string), ``base64``, ``charset:NAME`` (right after ``base64``; without it base64 bytes are
UTF-8), ``html`` and ``rtf``. ``root`` unwraps an envelope first; ``notes`` points at an array
of note objects (field pointers are then relative to each element); ``delete_when`` turns a
record into a ``deleted`` retraction. ``preset: debezium`` builds all of this from table
``columns`` for a Debezium change event (with or without the JSON converter's schema envelope).

Libraries: ``pydantic`` validates the mapping file, ``PyYAML`` reads it, ``jsonpointer`` parses
and escapes the pointers; base64, charsets, HTML and RTF go through :mod:`worker.inputs.content`.
What this module adds: a JSON-typed pointer walk (``jsonpointer``'s own ``resolve`` indexes into
strings and quotes documents in its errors, which may hold note text), the decode pipeline and
the Debezium preset.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from jsonpointer import JsonPointer, JsonPointerException
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)

from worker.errors import InvalidEvent, UsageError
from worker.inputs.content import (
    decode_base64,
    decode_text,
    html_to_text,
    rtf_text,
    text_codec,
    tidy,
)
from worker.inputs.extracted import ExtractedNote, Extraction, Extractor, Retraction, Skip

#: Fields of a note that a mapping can point at, in output order; ``id`` and ``text`` required.
FIELDS = ("id", "text", "version", "patient", "encounter", "note_type", "note_time", "status")
DECODE_STEPS = ("json", "base64", "charset:NAME", "html", "rtf")
#: Parts whose failure is a skip when another part of the record yields a note.
_UNREADABLE = ("unsupported_content_type", "undecodable_text")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")
_MISSING: Any = object()


# -- the mapping file -----------------------------------------------------------------------------


def _pointer(value: str) -> str:
    try:
        JsonPointer(value)
    except JsonPointerException as exc:
        raise ValueError(f"not a JSON Pointer ({exc}): {value[:80]!r}") from None
    return value


def _decode_steps(steps: tuple[str, ...]) -> tuple[str, ...]:
    for index, step in enumerate(steps):
        if step.startswith("charset:"):
            try:
                text_codec(step.removeprefix("charset:"))
            except LookupError:
                raise ValueError(f"unknown charset in decode step {step[:60]!r}") from None
            if index == 0 or steps[index - 1] != "base64":
                raise ValueError(f"decode step {step[:60]!r} must come right after base64")
        elif step not in DECODE_STEPS:
            raise ValueError(f"unknown decode step {step[:60]!r} ({', '.join(DECODE_STEPS)})")
    return steps


Pointer = Annotated[str, AfterValidator(_pointer)]
DecodeSteps = Annotated[tuple[str, ...], AfterValidator(_decode_steps)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldPath(_Strict):
    """Where one value is (``path``) and how to decode it (``decode`` steps, in order)."""

    path: Pointer
    decode: DecodeSteps = ()


def _path_shorthand(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


def _column_shorthand(value: Any) -> Any:
    return {"column": value} if isinstance(value, str) else value


#: A field given as a bare pointer string or as ``{path, decode}``.
FieldRef = Annotated[FieldPath, BeforeValidator(_path_shorthand)]


class Column(_Strict):
    """A table column of a Debezium row (and how to decode its value)."""

    column: str
    decode: DecodeSteps = ()


ColumnRef = Annotated[Column, BeforeValidator(_column_shorthand)]


class DebeziumColumns(_Strict):
    """The row columns that hold each note field (``id`` and ``text`` required)."""

    id: ColumnRef
    text: ColumnRef
    version: ColumnRef | None = None
    patient: ColumnRef | None = None
    encounter: ColumnRef | None = None
    note_type: ColumnRef | None = None
    note_time: ColumnRef | None = None
    status: ColumnRef | None = None


class DeleteWhen(_Strict):
    """The record is a deletion when the value at ``path`` equals ``equals``."""

    path: Pointer
    equals: Any


class MappingSpec(_Strict):
    """A declarative mapping from one JSON record to notes (see the module docstring)."""

    description: str | None = None
    preset: Literal["debezium"] | None = None
    columns: DebeziumColumns | None = None
    root: FieldRef | None = None
    notes: Pointer | None = None
    id: FieldRef | None = None
    text: FieldRef | None = None
    version: FieldRef | None = None
    patient: FieldRef | None = None
    encounter: FieldRef | None = None
    note_type: FieldRef | None = None
    note_time: FieldRef | None = None
    status: FieldRef | None = None
    id_prefix: str | None = None
    delete_when: DeleteWhen | None = None
    delete_id: FieldRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> MappingSpec:
        if self.preset == "debezium":
            given = [
                name
                for name in (*FIELDS, "root", "notes", "delete_when", "delete_id")
                if getattr(self, name) is not None
            ]
            if given:
                raise ValueError(f"preset debezium takes columns, not {', '.join(given)}")
            if self.columns is None:
                raise ValueError("preset debezium needs columns (at least id and text)")
            return self
        if self.columns is not None:
            raise ValueError("columns is only for preset: debezium")
        missing = [name for name in ("id", "text") if getattr(self, name) is None]
        if missing:
            raise ValueError(f"missing required field(s): {', '.join(missing)}")
        if self.delete_id is not None and self.delete_when is None:
            raise ValueError("delete_id needs delete_when")
        return self


def load_mapping(path: Path) -> MappingSpec:
    """Read and validate a mapping file; :class:`UsageError` (one line) when it is bad."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"mapping file {path}: cannot read ({type(exc).__name__})") from None
    try:
        data = json.loads(raw) if path.suffix.lower() == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageError(f"mapping file {path}: not valid YAML/JSON ({_syntax(exc)})") from None
    if not isinstance(data, dict):
        raise UsageError(f"mapping file {path}: expected a mapping of keys at the top")
    try:
        return MappingSpec.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"mapping file {path}: {_first_error(exc)}") from None


def _syntax(exc: Exception) -> str:
    """A YAML or JSON syntax error in one line, with its line number."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        return f"{exc.problem} at line {exc.problem_mark.line + 1}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _first_error(exc: ValidationError) -> str:
    """The first validation problem as ``where: what`` (plus how many more)."""
    errors = exc.errors()
    error = errors[0]
    where = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    what = "unknown key" if error["type"] == "extra_forbidden" else str(error["msg"])
    what = what.removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where or 'top level'}: {what}{more}"


# -- the compiled plan ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    """One note field: candidate pointers (first present wins) and decode steps."""

    name: str
    pointers: tuple[JsonPointer, ...]
    steps: tuple[str, ...] = ()

    @classmethod
    def of(cls, name: str, ref: FieldPath) -> _Field:
        return cls(name, (JsonPointer(ref.path),), ref.decode)

    @property
    def path(self) -> str:
        return " | ".join(pointer.path for pointer in self.pointers)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to read from one note object."""

    fields: dict[str, _Field]
    id_prefix: str
    origin: dict[str, Any]
    delete_when: tuple[JsonPointer, Any] | None = None
    delete_id: _Field | None = None


def mapping_extractor(spec: MappingSpec) -> Extractor:
    """The extractor that reads records as ``spec`` says."""
    if spec.preset == "debezium":
        assert spec.columns is not None  # checked by MappingSpec
        return _DebeziumExtractor(spec.columns, spec.id_prefix or "")
    fields = {
        name: _Field.of(name, ref) for name in FIELDS if (ref := getattr(spec, name)) is not None
    }
    plan = _Plan(
        fields=fields,
        id_prefix=spec.id_prefix or "",
        origin={"format": "mapping", "preset": None},
        delete_when=(
            (JsonPointer(spec.delete_when.path), spec.delete_when.equals)
            if spec.delete_when
            else None
        ),
        delete_id=_Field.of("delete_id", spec.delete_id) if spec.delete_id else None,
    )
    root = _Field.of("root", spec.root) if spec.root else None
    notes = JsonPointer(spec.notes) if spec.notes is not None else None
    return _GenericExtractor(plan, root, notes)


@dataclass(frozen=True, slots=True)
class _GenericExtractor:
    plan: _Plan
    root: _Field | None
    notes: JsonPointer | None

    def __call__(self, value: bytes) -> Extraction:
        document = _load_json(value)
        origin = dict(self.plan.origin)
        if self.root is not None:
            document, origin["root"] = _read(self.root, document, "", required=True)
        if self.notes is None:
            return _finish([_element(self.plan, document, "", origin)])
        items = _resolve(document, self.notes)
        if items is _MISSING or items is None:
            raise InvalidEvent("mapping_path_missing", f"notes at {self.notes.path}: missing")
        if not isinstance(items, list):
            raise InvalidEvent("schema_violation", f"notes at {self.notes.path}: expected an array")
        if not items:
            return Extraction(skipped=[Skip("no_note_text", f"notes at {self.notes.path}: empty")])
        base = self.notes.path
        return _finish(
            [_element(self.plan, item, f"{base}/{i}", origin) for i, item in enumerate(items)]
        )


class _DebeziumExtractor:
    """Debezium change events: ``c``/``u``/``r`` -> the ``after`` row, ``d`` -> a retraction."""

    def __init__(self, columns: DebeziumColumns, id_prefix: str) -> None:
        origin = {"format": "mapping", "preset": "debezium"}
        self.plans = {
            image: _Plan(self._fields(columns, image), id_prefix, origin)
            for image in ("after", "before")
        }

    @staticmethod
    def _fields(columns: DebeziumColumns, image: str) -> dict[str, _Field]:
        fields: dict[str, _Field] = {}
        for name in FIELDS:
            column: Column | None = getattr(columns, name)
            if column is not None:
                pointer = JsonPointer.from_parts([image, column.column])
                fields[name] = _Field(name, (pointer,), column.decode)
        if "version" not in fields:  # the change's position in the log, else its time
            fallbacks = ("/source/lsn", "/source/ts_ms", "/ts_ms")
            fields["version"] = _Field("version", tuple(JsonPointer(p) for p in fallbacks))
        return fields

    def __call__(self, value: bytes) -> Extraction:
        event = _load_json(value)
        if not isinstance(event, dict):
            raise InvalidEvent("schema_violation", f"$: expected an object, got {_kind(event)}")
        root = ""
        if "payload" in event and "schema" in event:  # the JSON converter with schemas enabled
            event, root = event["payload"], "/payload"
            if not isinstance(event, dict):
                raise InvalidEvent("schema_violation", "payload: expected an object")
        op = event.get("op")
        if op in ("t", "m"):  # truncate, message: no row
            return Extraction(skipped=[Skip("no_note_text", f"Debezium op {op!r}: no row")])
        if op not in ("c", "u", "r", "d"):
            raise InvalidEvent("schema_violation", "op: expected one of c, u, r, d, t, m")
        image = "before" if op == "d" else "after"
        if not isinstance(event.get(image), dict):
            raise InvalidEvent("schema_violation", f"{image}: expected an object for op {op!r}")
        origin: dict[str, Any] = {**self.plans[image].origin, "operation": op}
        if root:
            origin["root"] = root
        source = event.get("source")
        if isinstance(source, dict) and isinstance(source.get("table"), str):
            origin["table"] = source["table"][:200]
        return _finish([_element(self.plans[image], event, "", origin, deleted=op == "d")])


# -- one note object ------------------------------------------------------------------------------


def _element(
    plan: _Plan, element: Any, base: str, origin: dict[str, Any], *, deleted: bool = False
) -> Extraction:
    """The note, retraction or skip of one note object (``base``: its pointer, for messages)."""
    try:
        if deleted or (plan.delete_when is not None and _matches(element, *plan.delete_when)):
            return Extraction(retractions=[_retraction(plan, element, base, origin)])
        return _note(plan, element, base, origin)
    except InvalidEvent as exc:
        if exc.reason not in _UNREADABLE:
            raise
        return Extraction(skipped=[Skip(exc.reason, exc.message)])


def _note(plan: _Plan, element: Any, base: str, origin: dict[str, Any]) -> Extraction:
    values, paths = _values(plan.fields, plan.id_prefix, element, base)
    text = tidy(values["text"] or "")
    note_id = values["id"]
    assert note_id is not None  # required
    if not text:
        return Extraction(skipped=[Skip("no_note_text", f"text at {paths['text']}: empty")])
    note = ExtractedNote(
        note_id=note_id,
        version=values.get("version"),
        text=text,
        origin={**origin, "paths": paths},
        patient_id=values.get("patient"),
        encounter_id=values.get("encounter"),
        note_type=values.get("note_type"),
        note_time=values.get("note_time"),
        status=values.get("status"),
    )
    return Extraction(notes=[note])


def _retraction(plan: _Plan, element: Any, base: str, origin: dict[str, Any]) -> Retraction:
    fields = {"id": plan.delete_id or plan.fields["id"]}
    fields |= {name: f for name, f in plan.fields.items() if name in ("version", "patient")}
    values, paths = _values(fields, plan.id_prefix, element, base)
    note_id = values["id"]
    assert note_id is not None  # required
    return Retraction(
        note_id=note_id,
        version=values.get("version"),
        reason="deleted",
        origin={**origin, "paths": paths},
        patient_id=values.get("patient"),
    )


def _values(
    fields: dict[str, _Field], id_prefix: str, element: Any, base: str
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Each field's text (None when an optional one is absent) and the pointer it came from."""
    values: dict[str, str | None] = {}
    paths: dict[str, str] = {}
    for name, spec in fields.items():
        raw, path = _read(spec, element, base, required=name in ("id", "text"))
        text = None if raw is None else _scalar(raw, f"{spec.name} at {path}")
        if path is not None:
            paths[name] = path
        if name == "id":
            if not (text or "").strip():
                raise InvalidEvent("mapping_path_missing", f"{spec.name} at {path}: empty")
            text = id_prefix + (text or "")
        values[name] = text
    return values, paths


def _read(field: _Field, document: Any, base: str, *, required: bool) -> tuple[Any, str | None]:
    """The decoded value of ``field`` at its first present pointer, and that pointer's path
    (``base`` prefixed); ``(None, None)`` when an optional field is absent or null."""
    null_at = None
    for pointer in field.pointers:
        found = _resolve(document, pointer)
        if found is None:
            null_at = null_at or base + pointer.path
        if found is not _MISSING and found is not None:
            path = base + pointer.path
            return _decode(found, field.steps, f"{field.name} at {path}"), path
    if field.name == "text" and null_at is not None:  # a row with no text: skipped, not an error
        return "", null_at
    if required:
        where = f"{field.name} at {base}{field.path}"
        raise InvalidEvent("mapping_path_missing", f"{where}: missing or null")
    return None, None


def _finish(parts: list[Extraction]) -> Extraction:
    """Join per-object results; a dead letter when only unreadable parts came out."""
    result = Extraction()
    for part in parts:
        result.extend(part)
    if not (result.notes or result.retractions):
        unreadable = [skip for skip in result.skipped if skip.reason in _UNREADABLE]
        if unreadable:
            raise InvalidEvent(unreadable[0].reason, unreadable[0].detail)
    return result


# -- values ---------------------------------------------------------------------------------------


def _load_json(value: bytes | str) -> Any:
    """A JSON document (``not_json`` when it is not one: bad UTF-8, syntax, NaN, too deep)."""
    try:
        document = value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_json", f"value is not UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(document, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise InvalidEvent("not_json", f"value is not JSON ({reason})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _resolve(document: Any, pointer: JsonPointer) -> Any:
    """The JSON value at ``pointer``, or ``_MISSING`` (objects and arrays only, no ``-``)."""
    node = document
    for part in pointer.parts:
        if isinstance(node, dict):
            if part not in node:
                return _MISSING
            node = node[part]
        elif isinstance(node, list):
            if not _ARRAY_INDEX.fullmatch(part) or int(part) >= len(node):
                return _MISSING
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _matches(document: Any, pointer: JsonPointer, expected: Any) -> bool:
    """True when the value at ``pointer`` equals ``expected`` (``_MISSING``: always true)."""
    if expected is _MISSING:
        return True
    found = _resolve(document, pointer)
    if isinstance(found, bool) or isinstance(expected, bool):
        return isinstance(found, bool) and isinstance(expected, bool) and found == expected
    return bool(found is not _MISSING and found == expected)


def _decode(value: Any, steps: tuple[str, ...], where: str) -> Any:
    """Apply the decode steps in order; bytes left at the end are read as UTF-8."""
    for step in steps:
        if step == "json":
            value = _load_json(_as_text(value, step, where))
        elif step == "base64":
            value = decode_base64(_as_text(value, step, where), where=where)
        elif step.startswith("charset:"):
            value = decode_text(value, step.removeprefix("charset:"), where=where)
        elif step == "html":
            value = html_to_text(_as_text(value, step, where))
        elif step == "rtf":
            value = rtf_text(_as_text(value, step, where), where=where)
    return decode_text(value, None, where=where) if isinstance(value, bytes) else value


def _as_text(value: Any, step: str, where: str) -> str:
    if isinstance(value, bytes):
        return decode_text(value, None, where=where)
    if not isinstance(value, str):
        raise InvalidEvent(
            "schema_violation", f"{where}: {step} needs a string, got {_kind(value)}"
        )
    return value


def _scalar(value: Any, where: str) -> str:
    """A string as is; a number or boolean as its JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    raise InvalidEvent(
        "schema_violation", f"{where}: expected a string or number, got {_kind(value)}"
    )


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "object", list: "array", str: "string", bool: "boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "number" if isinstance(value, int | float) else "value")


__all__ = ["FieldPath", "MappingSpec", "load_mapping", "mapping_extractor"]
