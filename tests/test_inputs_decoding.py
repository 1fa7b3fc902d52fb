"""Input formats end to end without a broker: every public sample through ``extract``, format
detection, note events and their keys, per-topic settings, ``classify --format``."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest

from tests.ehr_messages import bundle, document_reference, mdm
from tests.test_cli import _cli
from worker.config import load_settings
from worker.errors import InvalidEvent, UsageError
from worker.inputs.decoding import decoder_for, decoders_for
from worker.inputs.detect import detect
from worker.schemas import EXTRACTED_OUTPUT_SCHEMA, RETRACTION_SCHEMA, validator

#: Per public sample: notes, retractions, skip reasons, dead-letter reason (``extract``, auto).
EXPECTED: dict[str, tuple[int, int, list[str], str | None]] = {
    "cumulus__simple_DiagnosticReport.ndjson": (2, 0, [], None),
    "cumulus__simple_DocumentReference.ndjson": (2, 0, [], None),
    "fhirconverter__Discharge_Summary.ccda": (1, 0, [], None),
    "fhirconverter__LRI_2.0-NG_CBC_Typ_Message.hl7": (1, 0, [], None),
    "fhirconverter__MDM-T01-01.hl7": (0, 0, ["no_note_text"], None),
    "fhirconverter__MDM-T02-01.hl7": (0, 0, ["no_note_text"], None),
    "fhirconverter__MDM-T02-02.hl7": (1, 0, [], None),
    "fhirconverter__MDM-T02-03.hl7": (1, 0, [], None),
    "fhirconverter__MDM-T06-02.hl7": (1, 0, [], None),
    "fhirconverter__MDM-T10-02.hl7": (1, 1, [], None),
    "fhirconverter__ORU-R01-01.hl7": (
        0,
        0,
        ["reference_only", "no_note_text", "reference_only"],
        None,
    ),
    "fhirconverter__Progress_Note.ccda": (1, 0, [], None),
    "fhirconverter__REF-I12-02.hl7": (1, 0, ["unsupported_content_type", "no_note_text"], None),
    "fhirconverter__Unstructured_Document_reference.ccda": (0, 0, ["reference_only"], None),
    "fhirtestcases__dr-xml-space.xml": (1, 0, [], None),
    "hl7dotnetcore__Sample-ORM.txt": (0, 0, ["no_note_text"], None),
    "linuxforhealth__ORU-multiline-short-mixed.hl7": (1, 0, [], None),
    "linuxforhealth__ORU-multiline-short.hl7": (1, 0, [], None),
    "linuxforhealth__sample_win.hl7": (1, 0, [], None),
    "miracum__bundle.json": (3, 0, [], None),
    "miracum__documentreference.json": (1, 0, [], None),
    "rubyhl7__realm-batch.hl7": (0, 0, [], "not_hl7"),
    "rubyhl7__test.hl7": (1, 0, [], None),
    "simhospital__messages-out_msg144_MDM-T02.hl7": (1, 0, [], None),
    "simhospital__messages-out_msg54_ORU-R01.hl7": (1, 0, [], None),
    "simhospital__messages-out_msg9_ORU-R01.hl7": (1, 0, [], None),
    "uscore__DiagnosticReport-bone-density-report.json": (0, 0, [], "unsupported_content_type"),
    "uscore__DiagnosticReport-cardiology-report.json": (0, 0, ["attachment_url_only"], None),
    "uscore__bundle-docref-example1.json": (0, 0, ["attachment_url_only"], None),
    "uscore__documentreference-discharge-summary.json": (1, 0, [], None),
}

DEBEZIUM = Path(__file__).resolve().parent.parent / "examples" / "mappings" / "debezium-notes.yaml"
FORMAT_OF_SUFFIX = {".hl7": "hl7v2", ".txt": "hl7v2", ".ccda": "cda", ".json": "fhir"}
FORMAT_OF_SUFFIX |= {".ndjson": "fhir", ".xml": "fhir"}


def _samples(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name not in ("SOURCE.md", "index.jsonl"))


def test_every_public_sample_goes_through_extract(ehr_samples: Path) -> None:
    files = _samples(ehr_samples)
    assert sorted(p.name for p in files) == sorted(EXPECTED), "a sample was added or removed"
    result = _cli("extract", *map(str, files))
    assert result.returncode == 0 and not result.stderr, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    for path in files:
        mine = [row for row in rows if row["source_file"] == str(path)]
        notes = [row for row in mine if "text" in row]
        retractions = [row for row in mine if "retraction" in row]
        skips = [row["skipped"]["reason"] for row in mine if "skipped" in row]
        letters = [row["dead_letter"]["reason"] for row in mine if "dead_letter" in row]
        found = (len(notes), len(retractions), skips, letters[0] if letters else None)
        assert found == EXPECTED[path.name], path.name
        for note in notes:
            assert note["text"].strip() and len(note["text_sha256"]) == 64
            assert note["origin"]["format"] == FORMAT_OF_SUFFIX[path.suffix]


def test_auto_detects_every_sample_format(ehr_samples: Path) -> None:
    for path in _samples(ehr_samples):
        if path.name == "rubyhl7__realm-batch.hl7":  # a batch file: FHS first
            assert detect(path.read_bytes()) == "hl7v2"
            continue
        assert detect(path.read_bytes()) == FORMAT_OF_SUFFIX[path.suffix], path.name


def test_auto_detection_of_the_note_event_and_of_the_unknown() -> None:
    assert detect(b'{"note_id": "n1", "text": "PSA 4.2."}') == "note"
    assert detect(b"\x0bMSH|^~\\&|A\r\x1c\r") == "hl7v2"
    for value in (b"hello", b"[1, 2]", b'{"a": 1}', b"<html><body/></html>"):
        with pytest.raises(InvalidEvent) as caught:
            detect(value)
        assert caught.value.reason == "unknown_format"


def test_extract_reads_one_message_per_stdin_line_and_never_prints_a_traceback() -> None:
    lines = [
        orjson.dumps(document_reference("a", "First note.")),
        b"{broken",
        orjson.dumps(document_reference("b", "Second note.")),
    ]
    result = _cli("extract", "--format", "fhir", "-", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 0 and not result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [row.get("note_id") or row["dead_letter"]["reason"] for row in rows] == [
        "DocumentReference/a",
        "not_fhir",
        "DocumentReference/b",
    ]
    assert [row["line"] for row in rows] == [1, 2, 3]


def test_extract_usage_errors_are_one_line() -> None:
    result = _cli("extract", "--format", "mapping", "x.json")
    assert result.returncode == 2 and result.stderr.count(b"\n") == 1
    result = _cli("extract", "/nonexistent.hl7")
    assert result.returncode == 2 and b"cannot read /nonexistent.hl7" in result.stderr


def test_note_events_of_notes_and_retractions() -> None:
    decode = decoder_for("hl7v2", max_chars=1000)
    decoded = decode(mdm("T10", "DOC-2", parent="DOC-1", lines=["PSA 4.2.", "Plan."]))
    retraction, note = decoded.events
    assert (note.key, note.retraction, note.text) == (b"DOC-2", False, "PSA 4.2.\nPlan.")
    assert note.fields["text"] == note.text and note.fields["note_version"] == "20261202101500"
    assert (retraction.key, retraction.retraction, retraction.text) == (b"DOC-1", True, "")
    assert retraction.fields["retraction"] == {"reason": "superseded", "replaced_by": "DOC-2"}
    without_text = decoder_for("hl7v2", max_chars=1000, include_text=False)
    [_, bare] = without_text(mdm("T10", "DOC-2", parent="DOC-1", lines=["x."])).events
    assert "text" not in bare.fields and bare.text == "x." and bare.fields["text_sha256"]


def test_limits_tombstones_and_null_values() -> None:
    decode = decoder_for("fhir", max_chars=10)
    with pytest.raises(InvalidEvent) as caught:
        decode(bundle(document_reference("a", "short"), document_reference("b", "x" * 11)))
    assert caught.value.reason == "text_too_large"
    with pytest.raises(InvalidEvent) as caught:
        decode(None)
    assert caught.value.reason == "null_value"
    cdc = decoder_for("mapping", max_chars=10, mapping=DEBEZIUM)
    tombstone = cdc(None)
    assert tombstone.events == [] and [s.reason for s in tombstone.skipped] == ["tombstone"]


def test_settings_give_each_input_topic_its_decoder(tmp_path: Path) -> None:
    settings = load_settings(
        overrides={
            "inputs": [
                {"topic": "hl7", "format": "hl7v2"},
                {"topic": "fhir", "format": "fhir"},
                {
                    "topic": "cdc",
                    "format": "mapping",
                    "mapping": "examples/mappings/debezium-notes.yaml",
                },
            ]
        }
    )
    decoders = decoders_for(settings)
    assert sorted(decoders) == ["cdc", "fhir", "hl7"]
    assert decoders["fhir"](orjson.dumps(document_reference("a", "PSA."))).events[0].key == (
        b"DocumentReference/a"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: /x\ntext: /y\nunknown: 1\n")
    with pytest.raises(UsageError, match=r"bad\.yaml"):
        decoders_for(
            load_settings(overrides={"input_format": "mapping", "input_mapping": str(bad)})
        )
    for overrides, problem in [
        ({"input_format": "mapping"}, "input_mapping"),
        ({"inputs": [{"topic": "a"}, {"topic": "a", "format": "fhir"}]}, "twice"),
        ({"inputs": [{"topic": "clinical-notes-dlq"}]}, "must differ"),
        ({"inputs": [{"topic": "a", "format": "mapping"}]}, "mapping"),
    ]:
        with pytest.raises(UsageError, match=problem):
            load_settings(overrides=overrides)


def test_classify_with_a_format_writes_extracted_outputs(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    message = tmp_path / "bundle.json"
    message.write_bytes(
        bundle(
            document_reference("a", "Serum PSA was 4.2 ng/mL. Pain resolved."),
            document_reference("b", "x", status="entered-in-error"),
            {
                "resourceType": "DocumentReference",
                "id": "pdf",
                "content": [
                    {
                        "attachment": {
                            "contentType": "application/pdf",
                            "data": base64.b64encode(b"%PDF-1.4").decode(),
                        }
                    }
                ],
            },
        )
    )
    result = _cli("classify", "--format", "fhir", str(message), "--model", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    retraction, note = (orjson.loads(line) for line in result.stdout.splitlines())
    validator(EXTRACTED_OUTPUT_SCHEMA).validate(note)
    validator(RETRACTION_SCHEMA).validate(retraction)
    assert note["note_id"] == "DocumentReference/a" and note["text"].startswith("Serum PSA")
    assert retraction["retraction"]["reason"] == "entered-in-error"
    assert b"skipped: unsupported_content_type" in result.stderr


def test_extract_reads_the_note_format_too() -> None:
    lines = [b'{"note_id": "n1", "text": "PSA 4.2."}', b'{"x": 1}']
    result = _cli("extract", "--format", "note", "-", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 0 and not result.stderr
    first, second = (orjson.loads(line) for line in result.stdout.splitlines())
    assert (first["note_id"], first["text"], first["origin"]) == (
        "n1",
        "PSA 4.2.",
        {"format": "note"},
    )
    assert second["dead_letter"]["reason"] == "schema_violation"
