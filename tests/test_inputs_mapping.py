"""Declarative mappings (worker.inputs.mapping): the example files, JSON Pointers, decode steps,
note arrays, deletions, the Debezium preset, bad mapping files and fuzzing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidEvent, UsageError
from worker.inputs import extractor_for
from worker.inputs.extracted import Extraction, Extractor
from worker.inputs.mapping import MappingSpec, load_mapping, mapping_extractor

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "mappings"
NOTE = "Patient seen in clinic.\nCréatinine stable; plan unchanged."


def _extractor(**spec: Any) -> Extractor:
    return mapping_extractor(MappingSpec.model_validate(spec))


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _reason(extract: Extractor, value: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        extract(value if isinstance(value, bytes) else _encode(value))
    return caught.value


def _b64(text: str, charset: str = "utf-8") -> str:
    return base64.b64encode(text.encode(charset)).decode()


# -- the vendor example ---------------------------------------------------------------------------


def _vendor_event(event_type: str = "note.signed", content: str | None = None) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "data": {
            "document": {
                "ids": {"vendor": 48213, "source": "EPIC-9"},
                "revision": 3,
                "kind": {"code": "11506-3"},
                "signedAt": "2024-05-02T10:15:00Z",
                "state": "final",
                "body": {
                    "mime": "text/plain",
                    "content": _b64(NOTE, "latin-1") if content is None else content,
                },
            },
            "patient": {"identifiers": {"mrn": "MRN-0042"}},
            "visit": {"id": "V-77"},
        },
    }


@pytest.fixture(scope="module")
def vendor() -> Extractor:
    return mapping_extractor(load_mapping(EXAMPLES / "vendor-event.yaml"))


@pytest.fixture(scope="module")
def debezium() -> Extractor:
    return mapping_extractor(load_mapping(EXAMPLES / "debezium-notes.yaml"))


def test_vendor_event_note(vendor: Extractor) -> None:
    got = vendor(_encode(_vendor_event()))
    assert (got.retractions, got.skipped) == ([], [])
    [note] = got.notes
    assert note.note_id == "acme:48213"
    assert note.version == "3"
    assert note.text == NOTE
    assert note.patient_id == "MRN-0042"
    assert note.encounter_id == "V-77"
    assert note.note_type == "11506-3"
    assert note.note_time == "2024-05-02T10:15:00Z"
    assert note.status == "final"
    assert note.origin == {
        "format": "mapping",
        "preset": None,
        "paths": {
            "id": "/data/document/ids/vendor",
            "text": "/data/document/body/content",
            "version": "/data/document/revision",
            "patient": "/data/patient/identifiers/mrn",
            "encounter": "/data/visit/id",
            "note_type": "/data/document/kind/code",
            "note_time": "/data/document/signedAt",
            "status": "/data/document/state",
        },
    }


def test_vendor_event_deletion(vendor: Extractor) -> None:
    event = _vendor_event("note.deleted")
    del event["data"]["document"]["body"]
    got = vendor(_encode(event))
    assert (got.notes, got.skipped) == ([], [])
    [retraction] = got.retractions
    assert (retraction.note_id, retraction.version, retraction.reason) == (
        "acme:48213",
        "3",
        "deleted",
    )
    assert retraction.patient_id == "MRN-0042"
    assert retraction.origin["paths"]["id"] == "/data/document/ids/vendor"


def test_vendor_event_failures(vendor: Extractor) -> None:
    assert _reason(vendor, _vendor_event(content="%%%")).reason == "undecodable_text"
    event = _vendor_event()
    del event["data"]["document"]["ids"]["vendor"]
    error = _reason(vendor, event)
    assert error.reason == "mapping_path_missing"
    assert error.message == "id at /data/document/ids/vendor: missing or null"
    event = _vendor_event()
    event["data"]["document"]["body"]["content"] = None  # present but null: no text to score
    assert [s.reason for s in vendor(_encode(event)).skipped] == ["no_note_text"]
    del event["data"]["document"]["body"]["content"]  # absent: the mapping does not fit
    assert _reason(vendor, event).message.startswith("text at /data/document/body/content")
    event = _vendor_event()
    event["data"]["document"]["ids"]["vendor"] = {"nested": 1}
    assert _reason(vendor, event).reason == "schema_violation"
    assert _reason(vendor, b"not json").reason == "not_json"
    assert _reason(vendor, b"\xff\xfe{}").reason == "not_json"
    assert _reason(vendor, b'{"a": NaN}').reason == "not_json"
    assert _reason(vendor, b"[" * 100_000).reason == "not_json"


def test_optional_fields_may_be_missing(vendor: Extractor) -> None:
    event = _vendor_event()
    for key in ("patient", "visit"):
        del event["data"][key]
    event["data"]["document"]["state"] = None
    [note] = vendor(_encode(event)).notes
    assert (note.patient_id, note.encounter_id, note.status) == (None, None, None)
    assert set(note.origin["paths"]) == {"id", "text", "version", "note_type", "note_time"}


def test_empty_text_is_skipped(vendor: Extractor) -> None:
    got = vendor(_encode(_vendor_event(content=_b64(" \n\t"))))
    assert got.notes == []
    assert [s.reason for s in got.skipped] == ["no_note_text"]


# -- pointers and decode steps --------------------------------------------------------------------


def test_pointer_escapes() -> None:
    extract = _extractor(id="/meta/a~1b", text="/body/~0raw", version="/meta/list/1")
    got = extract(_encode({"meta": {"a/b": 7, "list": [1, 2.5]}, "body": {"~raw": "Text."}}))
    [note] = got.notes
    assert (note.note_id, note.version, note.text) == ("7", "2.5", "Text.")
    assert note.origin["paths"]["id"] == "/meta/a~1b"


def test_pointers_never_index_into_strings() -> None:
    extract = _extractor(id="/id/0", text="/text")
    assert _reason(extract, {"id": "abc", "text": "x"}).reason == "mapping_path_missing"
    extract = _extractor(id="/ids/-", text="/text")
    assert _reason(extract, {"ids": [1], "text": "x"}).reason == "mapping_path_missing"


def test_json_in_a_string_root() -> None:
    extract = _extractor(
        root={"path": "/payload", "decode": ["json"]},
        id="/note/id",
        text="/note/text",
        id_prefix="x-",
    )
    inner = {"note": {"id": "n1", "text": "  Body.  "}}
    [note] = extract(_encode({"payload": json.dumps(inner)})).notes
    assert (note.note_id, note.text) == ("x-n1", "Body.")
    assert note.origin["root"] == "/payload"
    assert note.origin["paths"] == {"id": "/note/id", "text": "/note/text"}
    assert _reason(extract, {"payload": "{not json"}).reason == "not_json"
    assert _reason(extract, {"payload": 5}).reason == "schema_violation"
    assert _reason(extract, {"other": 1}).message == "root at /payload: missing or null"


@pytest.mark.parametrize(
    ("decode", "raw", "text"),
    [
        (["base64"], _b64("Zürich é"), "Zürich é"),
        (["base64", "charset:windows-1252"], _b64("“quoted” € 5", "cp1252"), "“quoted” € 5"),
        (["base64", "charset:latin-1", "html"], _b64("<p>Één.</p><p>Twee.</p>", "latin-1"), None),
        (["html"], "<ul><li>one</li><li>two</li></ul>", "* one\n  * two"),
        (["rtf"], r"{\rtf1\ansi First.\par Second.}", "First.\nSecond."),
        (["json"], json.dumps("a JSON string"), "a JSON string"),
        (["base64", "json"], _b64(json.dumps("nested")), "nested"),
    ],
)
def test_decode_steps(decode: list[str], raw: str, text: str | None) -> None:
    extract = _extractor(id="/id", text={"path": "/t", "decode": decode})
    [note] = extract(_encode({"id": 1, "t": raw})).notes
    assert note.text == (text if text is not None else "Één.\n\nTwee.")


@pytest.mark.parametrize(
    ("decode", "raw", "reason"),
    [
        (["base64"], "not base64!", "undecodable_text"),
        (["base64"], base64.b64encode(b"\xff\xfe").decode(), "undecodable_text"),
        (["base64", "charset:ascii"], _b64("é"), "undecodable_text"),
        (["rtf"], "plain, not RTF", "undecodable_text"),
        (["json"], "{", "not_json"),
        (["json"], json.dumps({"an": "object"}), "schema_violation"),
        (["base64"], 12, "schema_violation"),
    ],
)
def test_decode_failures(decode: list[str], raw: Any, reason: str) -> None:
    extract = _extractor(id="/id", text={"path": "/t", "decode": decode})
    assert _reason(extract, {"id": 1, "t": raw}).reason == reason


def test_scalars_render_as_json_text() -> None:
    extract = _extractor(id="/id", text="/t", version="/v", status="/s")
    [note] = extract(_encode({"id": 12345678901234567890, "t": "x", "v": 1.0, "s": True})).notes
    assert (note.note_id, note.version, note.status) == ("12345678901234567890", "1.0", "true")
    assert _reason(extract, {"id": "  ", "t": "x"}).reason == "mapping_path_missing"


# -- note arrays and deletions --------------------------------------------------------------------


def test_notes_array() -> None:
    extract = _extractor(
        notes="/batch/notes",
        id="/id",
        text={"path": "/body", "decode": ["base64"]},
        patient="/patient",
        delete_when={"path": "/deleted", "equals": True},
    )
    value = {
        "batch": {
            "notes": [
                {"id": "a", "body": _b64("First note."), "patient": "P1"},
                {"id": "b", "body": _b64("   ")},
                {"id": "c", "body": "%%%"},
                {"id": "d", "deleted": True, "patient": "P2"},
                {"id": "e", "deleted": 1, "body": _b64("Not deleted: 1 is not true.")},
            ]
        }
    }
    got = extract(_encode(value))
    assert [(n.note_id, n.text) for n in got.notes] == [
        ("a", "First note."),
        ("e", "Not deleted: 1 is not true."),
    ]
    assert got.notes[0].origin["paths"]["text"] == "/batch/notes/0/body"
    assert got.notes[1].origin["paths"]["id"] == "/batch/notes/4/id"
    assert [(r.note_id, r.reason, r.patient_id) for r in got.retractions] == [
        ("d", "deleted", "P2")
    ]
    assert [s.reason for s in got.skipped] == ["no_note_text", "undecodable_text"]
    assert "/batch/notes/2/body" in got.skipped[1].detail


def test_notes_array_edge_cases() -> None:
    extract = _extractor(notes="/notes", id="/id", text={"path": "/b", "decode": ["base64"]})
    assert [s.reason for s in extract(_encode({"notes": []})).skipped] == ["no_note_text"]
    assert _reason(extract, {"notes": {"id": 1}}).reason == "schema_violation"
    assert _reason(extract, {}).reason == "mapping_path_missing"
    # nothing readable in the whole record: a dead letter
    assert _reason(extract, {"notes": [{"id": 1, "b": "%"}]}).reason == "undecodable_text"
    # a bad required path in one element fails the record
    assert _reason(extract, {"notes": [{"id": 1, "b": "eA=="}, {"b": "eA=="}]}).message == (
        "id at /notes/1/id: missing or null"
    )


def test_delete_id_pointer() -> None:
    extract = _extractor(
        id="/note/id",
        text="/note/text",
        delete_when={"path": "/action", "equals": "remove"},
        delete_id="/target",
        id_prefix="v:",
    )
    got = extract(_encode({"action": "remove", "target": 99}))
    assert [(r.note_id, r.reason) for r in got.retractions] == [("v:99", "deleted")]
    assert got.retractions[0].origin["paths"] == {"id": "/target"}
    got = extract(_encode({"action": "add", "note": {"id": 1, "text": "t"}}))
    assert [n.note_id for n in got.notes] == ["v:1"]


# -- Debezium -------------------------------------------------------------------------------------


def _change(op: str, *, before: Any = None, after: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "before": before,
        "after": after,
        "source": {"connector": "postgresql", "table": "clinical_notes", "lsn": 24023128},
        "op": op,
        "ts_ms": 1714644900123,
        **extra,
    }


ROW = {
    "note_id": 1042,
    "note_text": "Follow-up visit. PSA 4.1 ng/mL.",
    "patient_mrn": "MRN-7",
    "encounter_id": None,
    "note_type": "progress",
    "written_at": "2024-05-02T10:15:00Z",
    "status": "final",
}


@pytest.mark.parametrize("op", ["c", "u", "r"])
def test_debezium_upserts(debezium: Extractor, op: str) -> None:
    got = debezium(_encode(_change(op, before=ROW if op == "u" else None, after=ROW)))
    assert (got.retractions, got.skipped) == ([], [])
    [note] = got.notes
    assert note.note_id == "notes-db:1042"
    assert note.version == "24023128"
    assert note.text == "Follow-up visit. PSA 4.1 ng/mL."
    assert (note.patient_id, note.encounter_id) == ("MRN-7", None)
    assert (note.note_type, note.note_time, note.status) == (
        "progress",
        "2024-05-02T10:15:00Z",
        "final",
    )
    assert note.origin["operation"] == op
    assert note.origin["preset"] == "debezium"
    assert note.origin["table"] == "clinical_notes"
    assert note.origin["paths"]["text"] == "/after/note_text"
    assert note.origin["paths"]["version"] == "/source/lsn"


def test_debezium_delete(debezium: Extractor) -> None:
    got = debezium(_encode(_change("d", before={"note_id": 1042, "patient_mrn": "MRN-7"})))
    assert (got.notes, got.skipped) == ([], [])
    [retraction] = got.retractions
    assert (retraction.note_id, retraction.reason, retraction.version) == (
        "notes-db:1042",
        "deleted",
        "24023128",
    )
    assert retraction.patient_id == "MRN-7"
    assert retraction.origin["operation"] == "d"
    error = _reason(debezium, _change("d", before={"other": 1}))
    assert error.message == "id at /before/note_id: missing or null"


def test_debezium_schemas_envelope(debezium: Extractor) -> None:
    payload = _change("c", after=ROW)
    del payload["source"]["lsn"]
    envelope = {"schema": {"type": "struct", "fields": []}, "payload": payload}
    [note] = debezium(_encode(envelope)).notes
    assert note.version == "1714644900123"  # no lsn: the ts_ms of the change
    assert note.origin["root"] == "/payload"
    assert note.origin["paths"]["version"] == "/ts_ms"
    assert _reason(debezium, {"schema": {}, "payload": None}).reason == "schema_violation"


def test_debezium_version_column_and_escaped_columns() -> None:
    extract = _extractor(
        preset="debezium",
        columns={
            "id": "doc/id",
            "text": {"column": "body~b64", "decode": ["base64"]},
            "version": "rev",
        },
    )
    row = {"doc/id": "D1", "body~b64": _b64("Encoded note."), "rev": 7}
    [note] = extract(_encode(_change("u", after=row))).notes
    assert (note.note_id, note.text, note.version) == ("D1", "Encoded note.", "7")
    assert note.origin["paths"]["id"] == "/after/doc~1id"
    assert note.origin["paths"]["text"] == "/after/body~0b64"


def test_debezium_edge_cases(debezium: Extractor) -> None:
    assert _reason(debezium, b"\x00\x01binary").reason == "not_json"
    assert _reason(debezium, [1, 2]).reason == "schema_violation"
    assert _reason(debezium, "a string").reason == "schema_violation"
    assert _reason(debezium, _change("x", after=ROW)).reason == "schema_violation"
    assert _reason(debezium, {"after": ROW}).reason == "schema_violation"
    assert _reason(debezium, _change("c", after=None)).reason == "schema_violation"
    got = debezium(_encode(_change("c", after={**ROW, "note_text": None})))  # a NULL column
    assert [s.reason for s in got.skipped] == ["no_note_text"]
    assert _reason(debezium, _change("c", after={"note_id": "n1"})).reason == (
        "mapping_path_missing"  # no such column: the mapping is wrong
    )
    got = debezium(_encode(_change("c", after={**ROW, "note_text": "  "})))
    assert [s.reason for s in got.skipped] == ["no_note_text"]
    got = debezium(_encode({"op": "t", "source": {}, "ts_ms": 1}))
    assert (got.notes, [s.reason for s in got.skipped]) == ([], ["no_note_text"])


# -- mapping files --------------------------------------------------------------------------------


def test_examples_load_and_are_used_by_extractor_for() -> None:
    assert load_mapping(EXAMPLES / "debezium-notes.yaml").preset == "debezium"
    extract = extractor_for("mapping", EXAMPLES / "vendor-event.yaml")
    assert [n.note_id for n in extract(_encode(_vendor_event())).notes] == ["acme:48213"]


def test_a_json_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"id": "/id", "text": {"path": "/t"}}))
    assert load_mapping(path).text is not None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("id: /a\ntext: /b\nbogus: 1\n", "bogus: unknown key"),
        ("id: a/b\ntext: /b\n", "id.path: not a JSON Pointer"),
        ("id: /a~2\ntext: /b\n", "id.path: not a JSON Pointer"),
        ("id: /a\ntext: {path: /b, decode: [gzip]}\n", "unknown decode step 'gzip'"),
        ("id: /a\ntext: {path: /b, decode: ['charset:latin-1']}\n", "right after base64"),
        ("id: /a\ntext: {path: /b, decode: [base64, 'charset:nope']}\n", "unknown charset"),
        ("id: /a\ntext: {path: /b, pth: /c}\n", "text.pth: unknown key"),
        ("text: /b\n", "missing required field(s): id"),
        ("id: /a\ntext: /b\ndelete_id: /c\n", "delete_id needs delete_when"),
        ("id: /a\ntext: /b\ndelete_when: {path: /op}\n", "delete_when.equals: Field required"),
        ("preset: debezium\nid: /x\ncolumns: {id: a, text: b}\n", "takes columns, not id"),
        ("preset: debezium\n", "needs columns"),
        ("preset: debezium\ncolumns: {id: a}\n", "columns.text: Field required"),
        ("id: /a\ntext: /b\ncolumns: {id: a, text: b}\n", "only for preset: debezium"),
        ("preset: kafka\n", "preset:"),
        ("- a\n", "expected a mapping of keys"),
        ("id: [/a\n", "not valid YAML/JSON"),
        ("", "expected a mapping of keys"),
    ],
)
def test_bad_mapping_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(content)
    with pytest.raises(UsageError) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"mapping file {path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_mapping_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UsageError, match="not valid YAML/JSON"):
        load_mapping(bad)


# -- fuzzing --------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["op", "after", "before", "payload", "schema", "data", "id", "t"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _check(extract: Extractor, value: bytes) -> None:
    try:
        got = extract(value)
    except InvalidEvent:
        return
    assert isinstance(got, Extraction)
    for note in got.notes:
        assert note.text and note.note_id


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(vendor: Extractor, debezium: Extractor, value: bytes) -> None:
    _check(vendor, value)
    _check(debezium, value)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSON, st.sampled_from(["c", "u", "r", "d", "t", None]))
def test_fuzz_json_shapes(vendor: Extractor, debezium: Extractor, value: Any, op: str) -> None:
    _check(vendor, _encode(value))
    _check(debezium, _encode(value))
    _check(debezium, _encode({"op": op, "after": value, "before": value, "source": value}))
    notes = _extractor(
        notes="/data",
        id="/id",
        text={"path": "/t", "decode": ["base64", "charset:utf-16"]},
        delete_when={"path": "/op", "equals": "d"},
    )
    _check(notes, _encode({"data": value}))
    _check(notes, _encode({"data": [value, {"id": value, "t": value, "op": op}]}))
