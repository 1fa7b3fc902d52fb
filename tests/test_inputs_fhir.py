"""FHIR R4 extractor: public sample messages, inline edge cases, envelopes and fuzzing."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidEvent
from worker.inputs.extracted import Extraction, text_sha256
from worker.inputs.fhir import extract_fhir

Json = dict[str, Any]


def b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode("ascii")


def attachment(text: str, content_type: str | None = "text/plain", **extra: Any) -> Json:
    found: Json = {"data": b64(text)}
    if content_type is not None:
        found["contentType"] = content_type
    return found | extra


def docref(*attachments: Json, **fields: Any) -> Json:
    resource: Json = {
        "resourceType": "DocumentReference",
        "id": "doc1",
        "status": "current",
        "subject": {"reference": "Patient/p1"},
        "content": [{"attachment": item} for item in attachments],
    }
    return resource | fields


def run(document: Json | list[Any] | str) -> Extraction:
    return extract_fhir(json.dumps(document).encode())


def dead_letter(document: Json | bytes) -> InvalidEvent:
    value = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(InvalidEvent) as caught:
        extract_fhir(value)
    return caught.value


def reasons(extraction: Extraction) -> list[str]:
    return [skip.reason for skip in extraction.skipped]


# --- public samples -------------------------------------------------------------------------


def test_uscore_discharge_summary(ehr_samples: Path) -> None:
    out = extract_fhir(
        (ehr_samples / "uscore__documentreference-discharge-summary.json").read_bytes()
    )
    assert (len(out.notes), out.retractions, out.skipped) == (1, [], [])
    note = out.notes[0]
    assert note.note_id == "DocumentReference/discharge-summary"
    assert note.version is None
    assert note.text == (
        "No activity restriction, regular diet, follow up in two to three weeks "
        "with primary care provider."
    )
    assert note.patient_id == "Patient/example"
    assert note.encounter_id == "Encounter/example-1"
    assert note.note_type == "http://loinc.org|18842-5"
    assert note.origin == {
        "format": "fhir",
        "encoding": "json",
        "resource_type": "DocumentReference",
        "resource_id": "discharge-summary",
        "version_id": None,
        "element": "content",
        "attachments": [0],
        "content_type": "text/plain",
    }


def test_uscore_cardiology_url_only_is_skipped(ehr_samples: Path) -> None:
    out = extract_fhir(
        (ehr_samples / "uscore__DiagnosticReport-cardiology-report.json").read_bytes()
    )
    assert (out.notes, out.retractions) == ([], [])
    assert reasons(out) == ["attachment_url_only"]
    assert "DiagnosticReport/cardiology-report presentedForm[0]" in out.skipped[0].detail


def test_uscore_bone_density_pdf_is_dead_lettered(ehr_samples: Path) -> None:
    error = dead_letter(
        (ehr_samples / "uscore__DiagnosticReport-bone-density-report.json").read_bytes()
    )
    assert error.reason == "unsupported_content_type"
    assert "application/pdf" in error.message


def test_uscore_searchset_bundle_url_only(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "uscore__bundle-docref-example1.json").read_bytes())
    assert (out.notes, out.retractions) == ([], [])
    assert reasons(out) == ["attachment_url_only"]
    assert out.skipped[0].detail.startswith("entry[0] DocumentReference/ccd123 content[0]")


def test_miracum_transaction_bundle_html(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "miracum__documentreference.json").read_bytes())
    assert (len(out.notes), out.retractions, out.skipped) == (1, [], [])
    note = out.notes[0]
    assert note.note_id == "DocumentReference/DOC-NUM-1234567"
    assert note.status == "final"
    assert note.note_time == "2019-09-26T18:04:30+00:00"
    assert note.encounter_id == "Encounter/e2216331600"
    assert note.origin["bundle_type"] == "transaction"
    assert note.origin["content_type"] == "text/html"
    assert note.text.startswith("Sehr geehrte Frau Kollegin,\n\nDie Patientin stellte sich")
    assert "eine Erhöhung der CRP (1,2 mg/dl)" in note.text
    assert "5-651.92  Exzision Ovarialzyste" in note.text  # table row on one line
    assert note.text.endswith("bei leichter Belastung entlassen werden.")
    assert "<p" not in note.text
    assert note.text.count("\n") == 18


def test_miracum_collection_without_content_type(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "miracum__bundle.json").read_bytes())
    assert [(n.note_id, n.text, n.patient_id) for n in out.notes] == [
        ("DocumentReference/example", "COPD GOLD IV", "Patient/123"),
        ("DocumentReference/example2", "Appendizitis", "Patient/124"),
        ("DocumentReference/example3", "Schlaganfall", "Patient/125"),
    ]
    assert {n.origin["content_type"] for n in out.notes} == {"text/plain"}
    assert (out.retractions, out.skipped) == ([], [])


def test_cumulus_documentreference_ndjson(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "cumulus__simple_DocumentReference.ndjson").read_bytes())
    assert [(n.note_id, n.text, n.encounter_id) for n in out.notes] == [
        ("DocumentReference/43", "Notes for fever", "Encounter/23"),
        ("DocumentReference/44", "Notes! for fever", "Encounter/25"),
    ]
    assert [n.origin["place"] for n in out.notes] == ["line 1", "line 2"]
    assert {n.origin["encoding"] for n in out.notes} == {"ndjson"}
    assert out.notes[0].note_type == "http://cumulus.smarthealthit.org/i2b2|NOTE:149798455"
    assert (out.retractions, out.skipped) == ([], [])


def test_cumulus_diagnosticreport_ndjson_uses_presented_form(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "cumulus__simple_DiagnosticReport.ndjson").read_bytes())
    assert [(n.note_id, n.text) for n in out.notes] == [
        ("DiagnosticReport/ultrasound", "Notes for fever"),
        ("DiagnosticReport/f201", "Notes! for fever"),
    ]
    assert [n.origin["element"] for n in out.notes] == ["presentedForm", "presentedForm"]
    assert out.notes[1].note_type == "http://snomed.info/sct|429858000"
    assert out.notes[1].note_time == "2012-12-01T12:00:00+01:00"
    assert out.notes[1].status == "final"
    assert (out.retractions, out.skipped) == ([], [])


def test_fhir_test_cases_xml_narrative(ehr_samples: Path) -> None:
    out = extract_fhir((ehr_samples / "fhirtestcases__dr-xml-space.xml").read_bytes())
    assert (len(out.notes), out.retractions, out.skipped) == (1, [], [])
    note = out.notes[0]
    assert note.note_id == "DiagnosticReport/101"
    assert note.patient_id == "Patient/pat2"
    assert note.note_type == "http://loinc.org|58410-2"
    assert note.note_time == "2011-03-04T08:30:00+11:00"
    assert note.origin["encoding"] == "xml"
    assert note.origin["element"] == "text.div"
    lines = note.text.split("\n")
    assert lines[0] == "CBC Report for Wile. E. COYOTE (MRN: 23453) issued 3-Mar 2011 11:45"
    assert "Haemoglobin           g/L         176         135 - 180" in lines  # <pre> kept
    assert "Basophils             x10*9/L     0.92+++     <0.21" in lines
    assert lines[-1] == "Acme Laboratory, Inc signed: Dr Pete Pathologist"
    assert len(lines) == 22


# --- attachments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "payload", "expected"),
    [
        (
            "text/html",
            "<html><body><p>First para.</p><p>Second para.</p></body></html>",
            "First para.\n\nSecond para.",
        ),
        (
            "application/xhtml+xml",
            '<div xmlns="http://www.w3.org/1999/xhtml"><p>PSA 4.1 ng/mL.</p></div>',
            "PSA 4.1 ng/mL.",
        ),
        (
            "text/rtf",
            r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0 HER2 positive.\par}",
            "HER2 positive.",
        ),
        ("text/plain; charset=utf-8", "EGFR mutation detected.", "EGFR mutation detected."),
        (None, r"{\rtf1\ansi Sniffed rtf.\par}", "Sniffed rtf."),
        (None, "<!DOCTYPE html><html><body><p>Sniffed html.</p></body></html>", "Sniffed html."),
        (None, "<not html> plain", "<not html> plain"),
    ],
)
def test_readable_content_types(content_type: str | None, payload: str, expected: str) -> None:
    out = run(docref(attachment(payload, content_type)))
    assert [n.text for n in out.notes] == [expected]
    assert out.skipped == []


def test_charset_iso_8859_1() -> None:
    data = base64.b64encode("Hämoglobin erhöht.".encode("iso-8859-1")).decode()
    out = run(docref({"contentType": "text/plain; charset=ISO-8859-1", "data": data}))
    assert out.notes[0].text == "Hämoglobin erhöht."
    assert out.notes[0].origin["content_type"] == "text/plain"


def test_latin1_bytes_without_charset_are_undecodable() -> None:
    data = base64.b64encode("Hämoglobin".encode("iso-8859-1")).decode()
    assert dead_letter(docref({"contentType": "text/plain", "data": data})).reason == (
        "undecodable_text"
    )


def test_bad_base64_is_dead_lettered() -> None:
    error = dead_letter(docref({"contentType": "text/plain", "data": "not base64!!"}))
    assert error.reason == "undecodable_text"
    assert "DocumentReference/doc1 content[0]" in error.message


def test_bad_base64_next_to_text_is_skipped() -> None:
    bad = {"contentType": "text/html", "data": "%%%"}
    out = run(docref(bad, attachment("Readable text.")))
    assert [n.text for n in out.notes] == ["Readable text."]
    assert reasons(out) == ["undecodable_text"]


def test_pdf_only_is_dead_lettered() -> None:
    pdf = {"contentType": "application/pdf", "data": b64("%PDF-1.4 ...")}
    assert dead_letter(docref(pdf)).reason == "unsupported_content_type"


def test_sniffed_pdf_is_dead_lettered() -> None:
    assert dead_letter(docref(attachment("%PDF-1.7\n...", None))).reason == (
        "unsupported_content_type"
    )


def test_pdf_next_to_text_gives_note_and_skip() -> None:
    pdf = {"contentType": "application/pdf", "data": b64("%PDF-1.4 ...")}
    out = run(docref(pdf, attachment("The text rendition.")))
    assert [n.text for n in out.notes] == ["The text rendition."]
    assert out.notes[0].origin["attachments"] == [1]
    assert reasons(out) == ["unsupported_content_type"]


def test_url_only_is_skipped_not_dead_lettered() -> None:
    out = run(docref({"contentType": "text/plain", "url": "https://example.org/Binary/9"}))
    assert (out.notes, reasons(out)) == ([], ["attachment_url_only"])


def test_attachment_without_data_or_url() -> None:
    out = run(docref({"contentType": "text/plain"}))
    assert (out.notes, reasons(out)) == ([], ["no_note_text"])


def test_contained_binary() -> None:
    binary = {
        "resourceType": "Binary",
        "id": "b1",
        "contentType": "text/plain",
        "data": b64("Contained text."),
    }
    out = run(docref({"url": "#b1"}, contained=[binary]))
    assert [n.text for n in out.notes] == ["Contained text."]
    assert out.skipped == []


def test_missing_contained_binary_is_url_only() -> None:
    out = run(docref({"url": "#nope"}, contained=[]))
    assert reasons(out) == ["attachment_url_only"]


def test_bundle_binary_by_full_url_and_by_relative_id() -> None:
    by_full_url = docref({"url": "urn:uuid:0f3c"}, id="a")
    by_relative = docref({"contentType": "text/plain", "url": "http://srv/fhir/Binary/b2"}, id="b")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:ad1", "resource": by_full_url},
            {"fullUrl": "urn:uuid:ad2", "resource": by_relative},
            {
                "fullUrl": "urn:uuid:0f3c",
                "resource": {
                    "resourceType": "Binary",
                    "contentType": "text/html",
                    "data": b64("<p>One.</p>"),
                },
            },
            {"resource": {"resourceType": "Binary", "id": "b2", "data": b64("Two.")}},
        ],
    }
    out = run(bundle)
    assert [(n.note_id, n.text, n.origin["content_type"]) for n in out.notes] == [
        ("DocumentReference/a", "One.", "text/html"),
        ("DocumentReference/b", "Two.", "text/plain"),
    ]
    assert out.skipped == []


def test_renditions_yield_one_text_by_preference() -> None:
    html = attachment("<p>Same report.</p>", "text/html")
    rtf = attachment(r"{\rtf1 Same report.\par}", "text/rtf")
    plain = attachment("Same report, plain.", "text/plain")
    out = run(docref(html, rtf, plain))
    assert [n.text for n in out.notes] == ["Same report, plain."]
    assert out.notes[0].origin["attachments"] == [2]
    assert out.notes[0].origin["content_type"] == "text/plain"
    assert out.skipped == []


def test_html_preferred_to_rtf() -> None:
    out = run(
        docref(
            attachment(r"{\rtf1 R.\par}", "application/rtf"), attachment("<b>H.</b>", "text/html")
        )
    )
    assert (out.notes[0].text, out.notes[0].origin["content_type"]) == ("H.", "text/html")


def test_parts_of_one_type_are_joined_and_duplicates_dropped() -> None:
    out = run(docref(attachment("Part one."), attachment("Part two."), attachment("Part one.")))
    assert len(out.notes) == 1
    assert out.notes[0].text == "Part one.\n\nPart two."
    assert out.notes[0].origin["attachments"] == [0, 1]


def test_empty_text_is_no_note_text() -> None:
    out = run(docref(attachment("   \n ")))
    assert (out.notes, reasons(out)) == ([], ["no_note_text"])


# --- DiagnosticReport -----------------------------------------------------------------------


def report(**fields: Any) -> Json:
    resource: Json = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"text": "Pathology report"},
        "subject": {"reference": "Patient/p1"},
        "encounter": {"reference": "Encounter/e1"},
        "issued": "2024-01-02T03:04:05Z",
    }
    return resource | fields


def test_report_presented_form_wins_over_conclusion_and_narrative() -> None:
    out = run(
        report(
            presentedForm=[attachment("Full report text.")],
            conclusion="Short conclusion.",
            text={"status": "generated", "div": "<div><p>Narrative.</p></div>"},
        )
    )
    note = out.notes[0]
    assert (note.text, note.encounter_id, note.note_type, note.note_time) == (
        "Full report text.",
        "Encounter/e1",
        "Pathology report",
        "2024-01-02T03:04:05Z",
    )


def test_report_narrative_only() -> None:
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml">'
        "<h3>Biopsy</h3><p>ER positive, PR negative.</p></div>"
    )
    out = run(report(text={"status": "additional", "div": div}, conclusion="ignored"))
    assert out.notes[0].text == "Biopsy\n\nER positive, PR negative."
    assert out.notes[0].origin["element"] == "text.div"


def test_report_conclusion_only() -> None:
    out = run(report(conclusion="CT brains: large tumor sphenoid/clivus."))
    assert out.notes[0].text == "CT brains: large tumor sphenoid/clivus."
    assert out.notes[0].origin["element"] == "conclusion"


def test_report_url_only_does_not_fall_back_to_narrative() -> None:
    out = run(report(presentedForm=[{"url": "http://x/r.pdf"}], text={"div": "<div>gen</div>"}))
    assert (out.notes, reasons(out)) == ([], ["attachment_url_only"])


def test_report_pdf_with_narrative_gives_narrative_and_skip() -> None:
    pdf = {"contentType": "application/pdf", "data": b64("%PDF")}
    out = run(report(presentedForm=[pdf], text={"div": "<div><p>Narrative report.</p></div>"}))
    assert [n.text for n in out.notes] == ["Narrative report."]
    assert reasons(out) == ["unsupported_content_type"]


def test_report_without_any_text() -> None:
    out = run(report())
    assert (out.notes, reasons(out)) == ([], ["no_note_text"])


def test_report_effective_date_time_preferred_to_issued() -> None:
    out = run(report(conclusion="x", effectiveDateTime="2024-01-01"))
    assert out.notes[0].note_time == "2024-01-01"


# --- identity, versions, retractions --------------------------------------------------------


def test_version_and_doc_status() -> None:
    out = run(
        docref(attachment("t"), meta={"versionId": "3"}, docStatus="amended", date="2024-05-01")
    )
    note = out.notes[0]
    assert (note.version, note.status, note.note_time) == ("3", "amended", "2024-05-01")
    assert note.origin["version_id"] == "3"


def test_type_text_when_no_coding() -> None:
    out = run(docref(attachment("t"), type={"text": "Progress note"}))
    assert out.notes[0].note_type == "Progress note"


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (docref(attachment("t"), status="entered-in-error"), "entered-in-error"),
        (docref(attachment("t"), status="superseded"), "superseded"),
        (report(conclusion="x", status="cancelled"), "cancelled"),
        (report(conclusion="x", status="entered-in-error"), "entered-in-error"),
    ],
)
def test_withdrawn_status_is_a_retraction(resource: Json, reason: str) -> None:
    out = run(resource | {"meta": {"versionId": "7"}})
    assert out.notes == []
    [retraction] = out.retractions
    assert (retraction.note_id, retraction.version, retraction.reason, retraction.patient_id) == (
        f"{resource['resourceType']}/{resource['id']}",
        "7",
        reason,
        "Patient/p1",
    )


def test_relates_to_replaces() -> None:
    relates = [
        {"code": "replaces", "target": {"reference": "DocumentReference/old/_history/2"}},
        {"code": "appends", "target": {"reference": "DocumentReference/other"}},
    ]
    out = run(docref(attachment("New text."), id="new", relatesTo=relates))
    assert [n.note_id for n in out.notes] == ["DocumentReference/new"]
    [retraction] = out.retractions
    assert (retraction.note_id, retraction.version, retraction.reason, retraction.replaced_by) == (
        "DocumentReference/old",
        "2",
        "superseded",
        "DocumentReference/new",
    )


def test_relates_to_itself_is_not_retracted() -> None:
    relates = [{"code": "replaces", "target": {"reference": "DocumentReference/doc1"}}]
    assert run(docref(attachment("t"), relatesTo=relates)).retractions == []


def test_id_from_full_url_then_identifier_then_text_hash() -> None:
    no_id = docref(attachment("Text A."))
    del no_id["id"]
    with_identifier = no_id | {"identifier": [{"system": "urn:sys", "value": "42"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:1234", "resource": no_id},
            {"resource": with_identifier},
            {"resource": no_id},
        ],
    }
    out = run(bundle)
    assert [n.note_id for n in out.notes] == [
        "urn:uuid:1234",
        "urn:sys|42",
        "sha256:" + text_sha256("Text A."),
    ]


# --- Bundles --------------------------------------------------------------------------------


def test_bundle_delete_entries() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "DELETE", "url": "DocumentReference/gone"}},
            {"request": {"method": "DELETE", "url": "Patient/p1"}},
            {"request": {"method": "DELETE", "url": "DiagnosticReport?identifier=x"}},
            {
                "resource": docref(attachment("Kept.")),
                "request": {"method": "PUT", "url": "DocumentReference/doc1"},
            },
        ],
    }
    out = run(bundle)
    assert [n.note_id for n in out.notes] == ["DocumentReference/doc1"]
    assert [(r.note_id, r.reason) for r in out.retractions] == [
        ("DocumentReference/gone", "deleted")
    ]
    assert out.retractions[0].origin["bundle_type"] == "transaction"
    assert reasons(out) == ["no_note_text"]  # the conditional delete is named, not mapped


def test_history_bundle_delete_with_version() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "fullUrl": "http://srv/fhir/DiagnosticReport/r9",
                "request": {"method": "DELETE", "url": "DiagnosticReport/r9"},
                "response": {"status": "204", "etag": 'W/"4"'},
            },
            {
                "fullUrl": "http://srv/fhir/DocumentReference/d1",
                "request": {"method": "DELETE", "url": "DocumentReference/d1/_history/2"},
            },
        ],
    }
    out = run(bundle)
    assert [(r.note_id, r.version, r.reason) for r in out.retractions] == [
        ("DiagnosticReport/r9", "4", "deleted"),
        ("DocumentReference/d1", "2", "deleted"),
    ]


def test_subscription_notification_bundle() -> None:
    status = {
        "resourceType": "Parameters",
        "parameter": [{"name": "type", "valueCode": "event-notification"}],
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {"fullUrl": "urn:uuid:s", "resource": status},
            {
                "fullUrl": "http://srv/fhir/DocumentReference/doc1",
                "resource": docref(attachment("Notified.")),
            },
            {
                "fullUrl": "http://srv/fhir/DocumentReference/doc2",
                "request": {"method": "PUT", "url": "x"},
            },
        ],
    }
    out = run(bundle)
    assert [n.text for n in out.notes] == ["Notified."]
    assert reasons(out) == ["reference_only"]  # id-only entry: the resource is not included


def test_nested_bundles_in_order() -> None:
    inner = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": docref(attachment("Inner."), id="i")}],
    }
    outer = {
        "resourceType": "Bundle",
        "type": "message",
        "entry": [
            {"resource": {"resourceType": "MessageHeader", "id": "h"}},
            {"resource": docref(attachment("Outer."), id="o")},
            {"resource": inner},
        ],
    }
    out = run(outer)
    assert [(n.note_id, n.origin["bundle_type"], n.origin["place"]) for n in out.notes] == [
        ("DocumentReference/o", "message", "entry[1]"),
        ("DocumentReference/i", "collection", "entry[2].entry[0]"),
    ]


def test_bundle_of_other_resources_is_no_note_text() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}],
    }
    out = run(bundle)
    assert (out.notes, reasons(out)) == ([], ["no_note_text"])


def test_bundle_nesting_limit() -> None:
    bundle: Json = {"resourceType": "Bundle", "entry": [{"resource": docref(attachment("deep"))}]}
    for _ in range(12):
        bundle = {"resourceType": "Bundle", "entry": [{"resource": bundle}]}
    assert dead_letter(bundle).reason == "not_fhir"


def test_unsupported_top_level_resource_is_skipped() -> None:
    out = run({"resourceType": "Patient", "id": "p1"})
    assert (out.notes, reasons(out)) == ([], ["no_note_text"])


# --- server envelopes -----------------------------------------------------------------------


def hapi_message(operation: str, resource: Json | None, payload_id: str) -> Json:
    message: Json = {
        "operationType": operation,
        "payloadId": payload_id,
        "transactionId": "t-1",
        "mediaType": "application/fhir+json",
        "messageKey": "k",
    }
    if resource is not None:
        message["payload"] = json.dumps(resource)
    return message


def test_hapi_resource_modified_message() -> None:
    message = hapi_message(
        "UPDATE", docref(attachment("From HAPI.")), "DocumentReference/doc1/_history/5"
    )
    out = run(message)
    assert [(n.note_id, n.version, n.text) for n in out.notes] == [
        ("DocumentReference/doc1", "5", "From HAPI.")
    ]
    assert out.notes[0].origin["envelope"] == "hapi-resource-modified"


def test_smile_cdr_channel_message() -> None:
    inner = hapi_message(
        "CREATE",
        docref(attachment("From Smile."), meta={"versionId": "1"}),
        "DocumentReference/doc1/_history/1",
    )
    out = run({"headers": {"retryCount": 0, "customHeaders": {}}, "payload": inner})
    assert [(n.note_id, n.version, n.text) for n in out.notes] == [
        ("DocumentReference/doc1", "1", "From Smile.")
    ]
    assert out.notes[0].origin["envelope"] == "smile-cdr-channel-message"


def test_hapi_delete_is_a_retraction() -> None:
    out = run(
        {
            "headers": {},
            "payload": hapi_message("DELETE", None, "DocumentReference/doc1/_history/6"),
        }
    )
    assert [(r.note_id, r.version, r.reason) for r in out.retractions] == [
        ("DocumentReference/doc1", "6", "deleted")
    ]
    assert out.notes == []


def test_hapi_delete_of_other_type_and_missing_payload() -> None:
    assert reasons(run(hapi_message("DELETE", None, "Patient/p1/_history/2"))) == ["no_note_text"]
    assert reasons(run(hapi_message("CREATE", None, "DocumentReference/d/_history/1"))) == [
        "reference_only"
    ]


def test_hapi_xml_payload_string() -> None:
    xml = (
        '<DocumentReference xmlns="http://hl7.org/fhir"><id value="x1"/><status value="current"/>'
        '<content><attachment><contentType value="text/plain"/>'
        f'<data value="{b64("XML payload.")}"/>'
        "</attachment></content></DocumentReference>"
    )
    out = run(
        {"operationType": "CREATE", "payloadId": "DocumentReference/x1/_history/1", "payload": xml}
    )
    assert [(n.note_id, n.text) for n in out.notes] == [("DocumentReference/x1", "XML payload.")]


def test_hapi_payload_not_a_resource() -> None:
    assert dead_letter({"operationType": "CREATE", "payload": "nonsense"}).reason == "not_fhir"
    assert dead_letter({"operationType": "CREATE", "payload": '{"a": 1}'}).reason == "not_fhir"


def test_ibm_fhir_notification_event() -> None:
    event = {
        "lastUpdated": "2016-06-01T10:36:23.232-05:00",
        "location": "DocumentReference/doc1/_history/2",
        "operationType": "update",
        "resourceId": "doc1",
        "tenantId": "default",
        "datasourceId": "default",
        "resource": docref(attachment("From IBM.")),
    }
    out = run(event)
    assert [(n.note_id, n.version, n.origin["envelope"]) for n in out.notes] == [
        ("DocumentReference/doc1", "2", "ibm-fhir-notification")
    ]
    deleted = run(event | {"operationType": "delete", "resource": json.dumps(docref())})
    assert [(r.note_id, r.reason, r.patient_id) for r in deleted.retractions] == [
        ("DocumentReference/doc1", "deleted", "Patient/p1")
    ]


# --- FHIR XML -------------------------------------------------------------------------------


XML_DOCREF = f"""<?xml version="1.0" encoding="UTF-8"?>
<DocumentReference xmlns="http://hl7.org/fhir">
  <id value="xml1"/>
  <meta><versionId value="2"/></meta>
  <status value="current"/>
  <docStatus value="final"/>
  <type><coding><system value="http://loinc.org"/><code value="11506-3"/></coding></type>
  <subject><reference value="Patient/px"/></subject>
  <date value="2024-02-03T10:00:00Z"/>
  <content>
    <attachment><contentType value="text/plain"/>
      <data value="{b64("First XML part.")}"/></attachment>
  </content>
  <content>
    <attachment>
      <contentType value="text/plain"/>
      <data value="{b64("Second XML part.")}"/>
    </attachment>
  </content>
  <context><encounter><reference value="Encounter/ex"/></encounter></context>
</DocumentReference>
"""


def test_xml_documentreference_with_base64_data() -> None:
    out = extract_fhir(XML_DOCREF.encode())
    [note] = out.notes
    assert (note.note_id, note.version, note.status, note.patient_id, note.encounter_id) == (
        "DocumentReference/xml1",
        "2",
        "final",
        "Patient/px",
        "Encounter/ex",
    )
    assert note.note_type == "http://loinc.org|11506-3"
    assert note.text == "First XML part.\n\nSecond XML part."
    assert note.origin["attachments"] == [0, 1]


def test_xml_bundle_with_contained_binary_and_relates_to() -> None:
    xml = f"""<Bundle xmlns="http://hl7.org/fhir"><type value="collection"/>
      <entry><resource><DocumentReference>
        <id value="n2"/>
        <contained><Binary><id value="bin"/><contentType value="text/html"/>
          <data value="{b64("<p>Contained <b>HTML</b>.</p>")}"/></Binary></contained>
        <relatesTo><code value="replaces"/>
          <target><reference value="DocumentReference/n1"/></target></relatesTo>
        <status value="current"/>
        <content><attachment><url value="#bin"/></attachment></content>
      </DocumentReference></resource></entry>
      <entry><resource><Patient><id value="p"/></Patient></resource></entry>
    </Bundle>"""
    out = extract_fhir(xml.encode())
    assert [(n.note_id, n.text) for n in out.notes] == [("DocumentReference/n2", "Contained HTML.")]
    assert [(r.note_id, r.replaced_by) for r in out.retractions] == [
        ("DocumentReference/n1", "DocumentReference/n2")
    ]


def test_xml_in_latin1_and_with_bom() -> None:
    xml = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><DiagnosticReport xmlns="http://hl7.org/fhir">'
        '<id value="l"/><status value="final"/><conclusion value="Hämatom."/></DiagnosticReport>'
    )
    assert extract_fhir(xml.encode("iso-8859-1")).notes[0].text == "Hämatom."
    bom = b"\xef\xbb\xbf" + XML_DOCREF.encode()
    assert extract_fhir(bom).notes[0].note_id == "DocumentReference/xml1"


def test_xml_entity_bomb_is_not_fhir() -> None:
    bomb = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<DocumentReference xmlns="http://hl7.org/fhir"><id value="&lol2;"/></DocumentReference>"""
    assert dead_letter(bomb).reason == "not_fhir"


def test_xml_external_entity_is_not_fhir() -> None:
    xxe = b"""<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<DocumentReference xmlns="http://hl7.org/fhir"><id value="&x;"/></DocumentReference>"""
    assert dead_letter(xxe).reason == "not_fhir"


@pytest.mark.parametrize(
    "xml",
    [
        b"<ClinicalDocument xmlns='urn:hl7-org:v3'/>",
        b"<DocumentReference><id value='x'/></DocumentReference>",
        b"<DocumentReference xmlns='http://hl7.org/fhir'>",
        b"<?xml version='1.0' encoding='no-such-codec'?><a/>",
    ],
)
def test_xml_not_fhir(xml: bytes) -> None:
    assert dead_letter(xml).reason == "not_fhir"


# --- NDJSON and not-FHIR values -------------------------------------------------------------


def test_ndjson_three_lines() -> None:
    lines = [
        docref(attachment("Line one."), id="l1"),
        {"resourceType": "Patient", "id": "p"},
        report(conclusion="Line three.", id="l3"),
    ]
    value = "\r\n".join(json.dumps(line) for line in lines).encode() + b"\n\n"
    out = extract_fhir(value)
    assert [(n.note_id, n.text, n.origin["place"]) for n in out.notes] == [
        ("DocumentReference/l1", "Line one.", "line 1"),
        ("DiagnosticReport/l3", "Line three.", "line 3"),
    ]
    assert reasons(out) == ["no_note_text"]
    assert out.skipped[0].detail.startswith("line 2 Patient")


def test_ndjson_with_a_broken_line_is_not_fhir() -> None:
    value = json.dumps(docref(attachment("a"))).encode() + b"\n{broken\n"
    error = dead_letter(value)
    assert (error.reason, "line 2" in error.message) == ("not_fhir", True)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"   ",
        b"MSH|^~\\&|...",
        b"[1, 2]",
        b'"text"',
        b'{"hello": "world"}',
        b'{"resourceType": 5}',
        b"{not json",
        b'{"a": "\xff"}',
        b"[" * 100_000,
        b'{"a":' * 100_000,
    ],
)
def test_not_fhir(value: bytes) -> None:
    assert dead_letter(value).reason == "not_fhir"


# --- fuzz -----------------------------------------------------------------------------------


def _check(value: bytes) -> None:
    try:
        out = extract_fhir(value)
    except InvalidEvent as exc:
        assert exc.reason in {"not_fhir", "unsupported_content_type", "undecodable_text"}
        return
    assert isinstance(out, Extraction)
    for note in out.notes:
        assert note.text and note.note_id
        json.dumps(note.origin)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(value: bytes) -> None:
    _check(value)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"{", b"<", b"{\n"]), st.binary(max_size=300))
def test_fuzz_json_and_xml_prefixes(prefix: bytes, value: bytes) -> None:
    _check(prefix + value)


_SAMPLES = [
    "cumulus__simple_DiagnosticReport.ndjson",
    "cumulus__simple_DocumentReference.ndjson",
    "fhirtestcases__dr-xml-space.xml",
    "miracum__bundle.json",
    "miracum__documentreference.json",
    "uscore__DiagnosticReport-bone-density-report.json",
    "uscore__DiagnosticReport-cardiology-report.json",
    "uscore__bundle-docref-example1.json",
    "uscore__documentreference-discharge-summary.json",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_SAMPLES),
    st.lists(
        st.tuples(st.integers(0, 30_000), st.binary(max_size=8), st.integers(0, 8)), max_size=4
    ),
)
def test_fuzz_mutated_samples(
    ehr_samples: Path, name: str, edits: list[tuple[int, bytes, int]]
) -> None:
    value = (ehr_samples / name).read_bytes()
    for position, insert, cut in edits:
        at = position % (len(value) + 1)
        value = value[:at] + insert + value[at + cut :]
    _check(value)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)
_FIELDS = st.sampled_from(
    [
        "id",
        "meta",
        "status",
        "content",
        "presentedForm",
        "contained",
        "relatesTo",
        "subject",
        "context",
        "type",
        "code",
        "text",
        "conclusion",
        "identifier",
        "entry",
        "request",
        "resource",
        "payload",
        "payloadId",
        "operationType",
        "docStatus",
        "date",
    ]
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["DocumentReference", "DiagnosticReport", "Bundle", None]),
    st.dictionaries(_FIELDS, _JSON, max_size=6),
)
def test_fuzz_structured_resources(resource_type: str | None, fields: Json) -> None:
    document = dict(fields)
    if resource_type is not None:
        document["resourceType"] = resource_type
    _check(json.dumps(document).encode())


_ATTACHMENTS = st.fixed_dictionaries(
    {},
    optional={
        "contentType": st.sampled_from(
            [
                "text/plain",
                "text/html",
                "application/xhtml+xml",
                "text/rtf",
                "application/pdf",
                "text/plain; charset=x-nope",
                "text/html; charset=utf-16",
                "",
                "TEXT/PLAIN;",
            ]
        ),
        "data": st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode())
        | st.text(max_size=20),
        "url": st.sampled_from(["#b", "#", "Binary/b", "urn:uuid:b", "http://x/Binary/b", ""]),
    },
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_ATTACHMENTS, max_size=4), st.lists(_ATTACHMENTS, max_size=2))
def test_fuzz_attachments(attachments: list[Json], binaries: list[Json]) -> None:
    contained = [{"resourceType": "Binary", "id": "b"} | item for item in binaries]
    document = docref(*attachments, contained=contained)
    bundle = {
        "resourceType": "Bundle",
        "entry": [{"fullUrl": "urn:uuid:b", "resource": document}]
        + [{"fullUrl": "urn:uuid:b", "resource": item} for item in contained],
    }
    _check(json.dumps(document).encode())
    _check(json.dumps(bundle).encode())


_ODD_VALUES: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, 0, 1.5, "", "x", "#b", "DocumentReference/x", "DELETE", "entered-in-error",
     "superseded", "cancelled", "replaces", "text/html", "application/pdf", "%%%", [], {}, [{}],
     {"reference": 3}, {"resourceType": "Binary", "id": "b", "data": "QQ=="},
     {"resourceType": "Bundle", "entry": [{}]}, {"resourceType": ["DocumentReference"]}]
)  # fmt: skip


def _paths(document: Any) -> list[tuple[Any, Any]]:
    """(container, key) of every value inside ``document``, breadth first."""
    found: list[tuple[Any, Any]] = []
    queue = [document]
    while queue:
        node = queue.pop(0)
        keys = node.keys() if isinstance(node, dict) else range(len(node))
        for key in keys:
            found.append((node, key))
            if isinstance(node[key], dict | list):
                queue.append(node[key])
    return found


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([name for name in _SAMPLES if not name.endswith(".xml")]),
    st.lists(st.tuples(st.integers(0, 10_000), _ODD_VALUES | _JSON), min_size=1, max_size=4),
)
def test_fuzz_replaced_values(ehr_samples: Path, name: str, edits: list[tuple[int, Any]]) -> None:
    document = json.loads(
        (ehr_samples / name).read_text().splitlines()[0]
        if name.endswith(".ndjson")
        else (ehr_samples / name).read_text()
    )
    for position, value in edits:
        paths = _paths(document)
        if paths:
            container, key = paths[position % len(paths)]
            container[key] = json.loads(json.dumps(value))
    _check(json.dumps(document).encode())
