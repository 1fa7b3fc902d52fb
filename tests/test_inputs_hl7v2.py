"""HL7 v2 extraction (worker.inputs.hl7v2): the public samples, escape sequences, transport
variants (MLLP, terminators, batches, character sets), MDM identity rules, ED attachments,
not-HL7 input and fuzzing."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidEvent
from worker.inputs.content import tidy
from worker.inputs.extracted import Extraction
from worker.inputs.hl7v2 import Delimiters, extract_hl7v2, unescape

# ---------------------------------------------------------------------------------------------
# Public samples


@dataclass(frozen=True)
class Expected:
    """What one sample file yields: ids, line counts and substrings per note, skips."""

    note_ids: tuple[str, ...] = ()
    lines: tuple[int, ...] = ()
    contains: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    skips: tuple[str, ...] = ()
    retractions: tuple[tuple[str, str, str | None], ...] = ()
    dead_letter: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


FIRST_TX = "Toilet cylinder crackers model step-mother visor opening communication"
SECOND_TX = "Columnist draft inn brown income ikebana circulation prince"
DOC = "1.2.840.317.5947431.51.20080131160038"
PARENT = "1.2.840.317.5947431.51.20080131155715"

SAMPLES: dict[str, Expected] = {
    "fhirconverter__LRI_2.0-NG_CBC_Typ_Message.hl7": Expected(
        note_ids=("R-991133^NIST Lab Filler",),
        lines=(3,),
        contains=("Many spherocytes present.", "Platelets show defective granulation."),
        absent=("4.41", "Erythrocytes"),
        extra={"charset_source": "bom", "segments": ["OBX/26", "OBX/27", "OBX/28"]},
    ),
    "fhirconverter__MDM-T01-01.hl7": Expected(skips=("no_note_text",)),
    "fhirconverter__MDM-T02-01.hl7": Expected(skips=("no_note_text",)),
    "fhirconverter__MDM-T02-02.hl7": Expected(
        note_ids=(DOC,),
        lines=(2,),
        contains=(FIRST_TX, SECOND_TX),
        absent=("No Antibodies Detected",),
        extra={"message_type": "MDM^T02", "parent_document_number": PARENT},
    ),
    "fhirconverter__MDM-T02-03.hl7": Expected(
        note_ids=("2RWRVAJ627408",),
        lines=(29,),
        contains=(FIRST_TX, "Naming grandmother ruth"),
        extra={"charset": "ascii", "charset_source": "MSH-18"},
    ),
    "fhirconverter__MDM-T06-02.hl7": Expected(
        note_ids=(DOC,),
        lines=(2,),
        contains=(FIRST_TX, SECOND_TX),
        extra={"message_type": "MDM^T06", "parent_document_number": PARENT},
    ),
    "fhirconverter__MDM-T10-02.hl7": Expected(
        note_ids=(DOC,),
        lines=(2,),
        contains=(FIRST_TX, SECOND_TX),
        retractions=((PARENT, "superseded", DOC),),
        extra={"message_type": "MDM^T10"},
    ),
    "fhirconverter__ORU-R01-01.hl7": Expected(
        skips=("reference_only", "no_note_text", "reference_only"),
    ),
    "fhirconverter__REF-I12-02.hl7": Expected(
        note_ids=("MSG00012/1",),
        lines=(1,),
        contains=("Positive",),
        absent=("ulcer", "Base64"),
        skips=("unsupported_content_type", "no_note_text"),
    ),
    "linuxforhealth__ORU-multiline-short.hl7": Expected(
        note_ids=("FON_0d70c6c8^LAB",),
        lines=(2,),
        contains=("[PII] Emergency Department", "ED Encounter Arrival Date:"),
        absent=("Created for MRN",),
        extra={"segments": ["OBX/1", "OBX/2", "OBX/3"]},
    ),
    "linuxforhealth__ORU-multiline-short-mixed.hl7": Expected(
        note_ids=("FON_0d70c6c8^LAB",),
        lines=(2,),
        contains=("[PII] Emergency Department", "[ADDRESS] [PERSONALNAME]:"),
        extra={"segments": ["OBX/1", "OBX/2", "OBX/3", "OBX/4"]},
    ),
    "linuxforhealth__sample_win.hl7": Expected(
        note_ids=("102",), lines=(1,), contains=("ECHOCARDIOGRAPHIC REPORT",)
    ),
    "simhospital__messages-out_msg144_MDM-T02.hl7": Expected(
        note_ids=("8CZ5WWM0QGQMA",),
        lines=(34,),
        contains=("Change student epoch hold animal bubble", "\nColumnist"),
    ),
    "simhospital__messages-out_msg54_ORU-R01.hl7": Expected(
        note_ids=("2765717671",),
        lines=(2,),
        contains=("MRI Ankle Lt value\nMANKL value",),
        absent=("Mind chin outback", "Foot-Rest"),
    ),
    "simhospital__messages-out_msg9_ORU-R01.hl7": Expected(
        note_ids=("1904686019",),
        lines=(5,),
        contains=("Alert\nYes\nVenturi\nYes\nAxillary",),
        absent=("Mariachi", "85.80"),
        extra={"segments": ["OBX/1", "OBX/2", "OBX/9", "OBX/10", "OBX/14"]},
    ),
    "hl7dotnetcore__Sample-ORM.txt": Expected(skips=("no_note_text",), absent=("some text",)),
    "rubyhl7__test.hl7": Expected(
        note_ids=("H29847^LAB1",),
        lines=(2,),
        contains=("BLOOD-RAPID\nGRAM POSITIVE COCCI IN GROUPS",),
        extra={"segments": ["OBX/1", "OBX/2"]},
    ),
    # A batch whose second MSH lacks its escape character: the whole record is a dead letter.
    "rubyhl7__realm-batch.hl7": Expected(dead_letter="not_hl7"),
}


def _hl7_sample_files(directory: Path) -> set[str]:
    names = {p.name for p in directory.glob("*.hl7")}
    return names | {"hl7dotnetcore__Sample-ORM.txt"}


def test_every_hl7_sample_has_expectations(ehr_samples: Path) -> None:
    assert _hl7_sample_files(ehr_samples) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample(ehr_samples: Path, name: str) -> None:
    expected = SAMPLES[name]
    value = (ehr_samples / name).read_bytes()
    if expected.dead_letter:
        with pytest.raises(InvalidEvent) as caught:
            extract_hl7v2(value)
        assert caught.value.reason == expected.dead_letter
        return
    result = extract_hl7v2(value)
    assert tuple(n.note_id for n in result.notes) == expected.note_ids
    assert tuple(len(n.text.splitlines()) for n in result.notes) == expected.lines
    all_text = "\n".join(n.text for n in result.notes)
    for snippet in expected.contains:
        assert snippet in all_text
    for snippet in expected.absent:
        assert snippet not in all_text
    assert tuple(s.reason for s in result.skipped) == expected.skips
    got = tuple((r.note_id, r.reason, r.replaced_by) for r in result.retractions)
    assert got == expected.retractions
    for note in result.notes:
        assert note.text == tidy(note.text)
        assert note.origin["format"] == "hl7v2"
        for key, value_ in expected.extra.items():
            assert note.origin[key] == value_, key


def test_sample_carried_fields(ehr_samples: Path) -> None:
    (note,) = extract_hl7v2((ehr_samples / "fhirconverter__MDM-T02-03.hl7").read_bytes()).notes
    assert (note.patient_id, note.note_type, note.status) == ("3196695816", "DS", "IP")
    assert (note.version, note.note_time) == ("20210801090642+0215", "20210801090642+0215")
    (oru,) = extract_hl7v2(
        (ehr_samples / "simhospital__messages-out_msg54_ORU-R01.hl7").read_bytes()
    ).notes
    assert oru.encounter_id == "7979069112202187540"
    assert oru.note_type == "us-0004^MRI Ankle Lt^WinPath"
    assert (oru.note_time, oru.status, oru.patient_id) == ("20200508130705", "F", "2508395164")
    assert oru.origin["filler_order_number"] == "2765717671"


# ---------------------------------------------------------------------------------------------
# Building messages inline

MSH = "MSH|^~\\&|APP|FAC|RCV|RFAC|20240102030405||{type}|CTRL1|P|2.5||||||{charset}"
PID = "PID|1||MRN1^^^HOSP^MR~OTHER^^^X||Doe^Jane"
PV1 = "PV1|1|I|||||||||||||||||VIS1^^^HOSP"


def mdm(
    *obx: str,
    event: str = "T02",
    doc: str = "DOC1",
    parent: str = "",
    charset: str = "",
    sep: str = "\r",
) -> bytes:
    """An MDM message with the given OBX segments."""
    txa = f"TXA|1|PN|TX|20240101120000||||||||{doc}|{parent}||||AU"
    lines = [MSH.format(type=f"MDM^{event}^MDM_{event}", charset=charset), PID, PV1, txa, *obx]
    return sep.join(lines).encode("utf-8")


def oru(*segments: str, sep: str = "\r") -> bytes:
    lines = [MSH.format(type="ORU^R01^ORU_R01", charset=""), PID, PV1, *segments]
    return sep.join(lines).encode("utf-8")


def only_note(value: bytes) -> str:
    result = extract_hl7v2(value)
    assert len(result.notes) == 1, result
    return result.notes[0].text


def dead_letter(value: bytes) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        extract_hl7v2(value)
    return caught.value


# ---------------------------------------------------------------------------------------------
# Text rules


def test_tx_ft_st_lines_in_order_nte_and_numeric_left_out() -> None:
    value = mdm(
        "OBX|1|TX|||First line.",
        "NTE|1||A comment, not note text",
        "OBX|2|NM|||4.5",
        "OBX|3|FT|||Second line.",
        "OBX|4|ST|||Third line.~Fourth line.",
        "OBX|5|CWE|||123^Coded^SCT",
        "OBX|6|TX|||",
        "OBX|7|TX|||After a blank line.",
    )
    result = extract_hl7v2(value)
    (note,) = result.notes
    assert (
        note.text == "First line.\nSecond line.\nThird line.\nFourth line.\n\nAfter a blank line."
    )
    assert note.origin["segments"] == ["OBX/1", "OBX/3", "OBX/4", "OBX/6", "OBX/7"]
    assert (note.patient_id, note.encounter_id, note.note_type) == ("MRN1", "VIS1", "PN")
    assert (note.note_time, note.status, note.version) == ("20240101120000", "AU", "20240102030405")
    assert note.origin["document_number"] == "DOC1"
    assert note.origin["message_control_id"] == "CTRL1"
    assert result.skipped == [] and result.retractions == []


def test_ft_formatting_commands() -> None:
    text = only_note(
        mdm(
            r"OBX|1|FT|||\H\IMPRESSION:\N\\.br\No acute findings."
            r"\.sp\\.in+4\Indented \.ti-2\line\.sk2\end.\.ce\Centered\.fi\\.nf\||||||F"
        )
    )
    assert text == "IMPRESSION:\nNo acute findings.\nIndented line end.\nCentered"


def test_separator_escapes_and_unknown_sequences_kept() -> None:
    text = only_note(mdm(r"OBX|1|TX|||a \F\ b \S\ c \T\ d \R\ e \E\ f; C:\temp\new \P\||||||F"))
    assert text == "a | b ^ c & d ~ e \\ f; C:\\temp\\new #"


def test_raw_separators_inside_text_are_kept() -> None:
    assert only_note(mdm("OBX|1|TX|||Salmonella & Shigella ^ x")) == "Salmonella & Shigella ^ x"


def test_hex_escapes_decoded_in_message_charset() -> None:
    text = only_note(mdm(r"OBX|1|TX|||line\X0D0A\caf\XC3\\XA9\ \X41\||||||F"))
    assert text == "line\ncafé A"
    latin = mdm(r"OBX|1|TX|||caf\XE9\||||||F", charset="8859/1")
    assert only_note(latin) == "café"


def test_raw_line_break_inside_a_field_continues_it() -> None:
    value = b"\r".join(
        [
            MSH.format(type="ORU^R01", charset="").encode(),
            b"OBR|1||FILL1|X^Report",
            b"OBX|1|TX|||First paragraph\n\nsecond paragraph\nPSA: 4.5||||||F",
            b"OBX|2|TX|||End.",
        ]
    )
    assert only_note(value) == "First paragraph\n\nsecond paragraph\nPSA: 4.5\nEnd."


# ---------------------------------------------------------------------------------------------
# ED attachments


def ed(media: str, data: bytes, encoding: str = "Base64") -> str:
    kind, subtype = media.split("/")
    payload = base64.b64encode(data).decode() if encoding == "Base64" else data.hex().upper()
    return f"OBX|1|ED|DOC^Document||APP^{kind}^{subtype}^{encoding}^{payload}||||||F"


def test_ed_base64_text_plain() -> None:
    text = only_note(mdm(ed("TEXT/plain", "Patient is well.\r\nPlan: café.".encode())))
    assert text == "Patient is well.\nPlan: café."


def test_ed_hex_and_plain_encoding() -> None:
    assert only_note(mdm(ed("text/plain", b"Hex text.", "Hex"))) == "Hex text."
    assert only_note(mdm(r"OBX|1|ED|||APP^TEXT^plain^A^Inline\.br\text")) == "Inline\ntext"


def test_ed_rtf_and_html() -> None:
    rtf = rb"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Tumor marker elevated.\par Plan.}"
    assert only_note(mdm(ed("TEXT/RTF", rtf))) == "Tumor marker elevated.\nPlan."
    html = b"<html><body><p>HER2 positive.</p><p>ER negative.</p></body></html>"
    assert only_note(mdm(ed("TEXT/HTML", html))) == "HER2 positive.\n\nER negative."


def test_ed_document_set_apart_from_tx_lines() -> None:
    value = mdm("OBX|1|TX|||Header line.", ed("text/plain", b"Body."), "OBX|3|TX|||Footer.")
    assert only_note(value) == "Header line.\n\nBody.\n\nFooter."


def test_ed_pdf_alone_is_a_dead_letter() -> None:
    error = dead_letter(mdm(ed("application/pdf", b"%PDF-1.4 ...")))
    assert error.reason == "unsupported_content_type"
    assert "OBX/1" in error.message and "application/pdf" in error.message


def test_ed_pdf_next_to_text_is_a_skip() -> None:
    result = extract_hl7v2(mdm(ed("application/pdf", b"%PDF-1.4"), "OBX|2|TX|||Text."))
    assert [n.text for n in result.notes] == ["Text."]
    assert [s.reason for s in result.skipped] == ["unsupported_content_type"]


def test_ed_bad_base64_is_undecodable() -> None:
    value = mdm("OBX|1|ED|||APP^TEXT^plain^Base64^@@not base64@@")
    assert dead_letter(value).reason == "undecodable_text"


def test_ed_empty_data_is_no_note_text() -> None:
    result = extract_hl7v2(mdm("OBX|1|ED|||^application^pdf^Base64^"))
    assert result.notes == [] and [s.reason for s in result.skipped] == ["no_note_text"]


# ---------------------------------------------------------------------------------------------
# Document identity (MDM events) and ORU ids


def test_t02_plain_note_keeps_parent_in_origin_only() -> None:
    result = extract_hl7v2(mdm("OBX|1|TX|||Text.", parent="OLD1"))
    assert [n.note_id for n in result.notes] == ["DOC1"] and result.retractions == []
    assert result.notes[0].origin["parent_document_number"] == "OLD1"


def test_t06_addendum_is_a_note_without_retraction() -> None:
    result = extract_hl7v2(mdm("OBX|1|TX|||Addendum.", event="T06", parent="DOC0"))
    (note,) = result.notes
    assert (note.note_id, note.origin["parent_document_number"]) == ("DOC1", "DOC0")
    assert note.origin["message_type"] == "MDM^T06"
    assert result.retractions == []


@pytest.mark.parametrize("event", ["T08", "T10"])
def test_replacement_supersedes_the_parent(event: str) -> None:
    result = extract_hl7v2(mdm("OBX|1|TX|||New text.", event=event, doc="DOC2", parent="DOC1"))
    assert [n.note_id for n in result.notes] == ["DOC2"]
    (retraction,) = result.retractions
    assert (retraction.note_id, retraction.reason) == ("DOC1", "superseded")
    assert (retraction.replaced_by, retraction.patient_id) == ("DOC2", "MRN1")
    assert retraction.version == "20240102030405"


def test_replacement_of_itself_or_without_parent_has_no_retraction() -> None:
    same = extract_hl7v2(mdm("OBX|1|TX|||Text.", event="T10", doc="DOC1", parent="DOC1"))
    assert same.retractions == [] and len(same.notes) == 1
    none = extract_hl7v2(mdm("OBX|1|TX|||Text.", event="T08", doc="DOC1"))
    assert none.retractions == [] and len(none.notes) == 1


def test_t11_cancel_is_a_retraction_and_no_note() -> None:
    result = extract_hl7v2(mdm("OBX|1|TX|||Old text.", event="T11", doc="DOC9^HOSP"))
    assert result.notes == []
    (retraction,) = result.retractions
    assert (retraction.note_id, retraction.reason, retraction.replaced_by) == (
        "DOC9^HOSP",
        "cancelled",
        None,
    )
    assert retraction.origin["message_type"] == "MDM^T11"


def test_t11_without_document_number_is_a_dead_letter() -> None:
    error = dead_letter(mdm(event="T11", doc=""))
    assert error.reason == "not_hl7" and "TXA-12" in error.message


def test_mdm_ids_keep_components_and_fall_back_to_msh10() -> None:
    assert (
        extract_hl7v2(mdm("OBX|1|TX|||x", doc=r"DOC\T\1^HOSP^^")).notes[0].note_id == "DOC&1^HOSP"
    )
    assert extract_hl7v2(mdm("OBX|1|TX|||x", doc="")).notes[0].note_id == "CTRL1"


def test_mdm_without_obx_is_no_note_text() -> None:
    result = extract_hl7v2(mdm(event="T01"))
    assert result.notes == [] and [s.reason for s in result.skipped] == ["no_note_text"]


def test_oru_one_note_per_obr_group_with_text() -> None:
    value = oru(
        "OBR|1|PLC1|FIL1|CBC^Blood count|||20240101",
        "OBX|1|NM|HGB||13.5|g/dL",
        "OBR|2|PLC2||RAD^Chest x-ray|||20240102||||||||||||||||||F",
        "OBX|1|TX|||No consolidation.",
        "OBR|3|||PATH^Pathology",
        "OBX|1|FT|||Benign.",
        "OBR||||PATH^Pathology",
        "OBX|1|FT|||Also benign.",
    )
    result = extract_hl7v2(value)
    assert [n.note_id for n in result.notes] == ["PLC2", "CTRL1/3", "CTRL1/4"]
    assert [n.text for n in result.notes] == ["No consolidation.", "Benign.", "Also benign."]
    chest = result.notes[0]
    assert (chest.note_type, chest.note_time, chest.status) == ("RAD^Chest x-ray", "20240102", "F")
    assert chest.origin["filler_order_number"] is None
    assert [s.reason for s in result.skipped] == ["no_note_text"]


def test_oru_groups_with_the_same_filler_number_merge() -> None:
    value = oru(
        "OBR|1||FIL1|A",
        "OBX|1|TX|||Part one.",
        "OBR|2||FIL1|B",
        "OBX|1|TX|||Part two.",
    )
    (note,) = extract_hl7v2(value).notes
    assert (note.note_id, note.text) == ("FIL1", "Part one.\n\nPart two.")


def test_oru_with_only_numeric_results_and_adt_without_obx_are_skips() -> None:
    numeric = extract_hl7v2(oru("OBR|1||FIL1|CBC", "OBX|1|NM|HGB||13.5"))
    assert numeric.notes == [] and [s.reason for s in numeric.skipped] == ["no_note_text"]
    adt = MSH.format(type="ADT^A01", charset="") + "\r" + PID
    result = extract_hl7v2(adt.encode())
    assert result.notes == [] and [s.reason for s in result.skipped] == ["no_note_text"]


# ---------------------------------------------------------------------------------------------
# Transport: framing, terminators, batches, character sets


def test_mllp_framing_and_trailing_garbage() -> None:
    plain = mdm("OBX|1|TX|||Framed.")
    assert extract_hl7v2(b"\x0b" + plain + b"\x1c\r") == extract_hl7v2(plain)
    assert extract_hl7v2(b" \r\n\x0b" + plain + b"\r\x0b\r\n\x1c\r\n\x00\x1a ") == extract_hl7v2(
        plain
    )


def test_messages_one_after_another_and_framed_back_to_back() -> None:
    first = mdm("OBX|1|TX|||One.", doc="D1")
    second = mdm("OBX|1|TX|||Two.", doc="D2").replace(b"CTRL1", b"CTRL2")
    for record in (first + b"\r" + second, b"\x0b" + first + b"\x1c\r\x0b" + second + b"\x1c\r"):
        result = extract_hl7v2(record)
        assert [(n.note_id, n.text) for n in result.notes] == [("D1", "One."), ("D2", "Two.")]
        assert [n.origin["message_index"] for n in result.notes] == [1, 2]


def test_batch_file() -> None:
    first = mdm("OBX|1|TX|||One.", doc="D1").decode()
    second = oru("OBR|1||F2|X", "OBX|1|TX|||Two.").decode()
    record = "\r".join(["FHS|^~\\&|APP", "BHS|^~\\&|APP", first, second, "BTS|2", "FTS|1"]).encode()
    result = extract_hl7v2(record)
    assert [(n.note_id, n.text) for n in result.notes] == [("D1", "One."), ("F2", "Two.")]
    assert [n.origin["message_type"] for n in result.notes] == ["MDM^T02", "ORU^R01"]


def test_batch_of_numeric_results_is_a_skip_and_empty_batch_too() -> None:
    numeric = oru("OBR|1||F1|CBC", "OBX|1|NM|HGB||13.5").decode()
    record = "\r".join(["BHS|^~\\&", numeric, numeric, "BTS|2"]).encode()
    result = extract_hl7v2(record)
    assert result.notes == [] and [s.reason for s in result.skipped] == ["no_note_text"] * 2
    assert [s.reason for s in extract_hl7v2(b"FHS|^~\\&\rFTS|0").skipped] == ["no_note_text"]


def test_batch_with_a_broken_message_is_a_dead_letter() -> None:
    good = mdm("OBX|1|TX|||One.").decode()
    broken = good.replace("MSH|^~\\&|", "MSH|^~&|")
    error = dead_letter("\r".join(["BHS|^~\\&", good, broken, "BTS|2"]).encode())
    assert (error.reason, error.message.startswith("message 2")) == ("not_hl7", True)


def test_custom_encoding_characters() -> None:
    value = "\r".join(
        [
            "MSH#$*@!#APP#FAC#RCV#RFAC#20240102##MDM$T02#CTRL1#P#2.5",
            "PID#1##MRN7$$$H",
            "TXA#1#PN##2024########DOC$H",
            "OBX#1#TX###a @F@ b @S@ c@.br@d*e # x",
        ]
    ).encode()
    (note,) = extract_hl7v2(value).notes
    assert note.text == "a # b $ c\nd\ne"
    assert (note.note_id, note.patient_id) == ("DOC^H", "MRN7")


def test_doubled_escape_character_in_msh2_is_tolerated() -> None:
    value = mdm(r"OBX|1|TX|||a\.br\b").replace(b"MSH|^~\\&|", b"MSH|^~\\\\&|")
    assert only_note(value) == "a\nb"


def test_msh18_8859_1_bytes() -> None:
    value = mdm("OBX|1|TX|||Caf\u00e9 na\u00efve", charset="8859/1").decode().encode("latin-1")
    (note,) = extract_hl7v2(value).notes
    assert note.text == "Café naïve"
    assert (note.origin["charset"], note.origin["charset_source"]) == ("iso8859-1", "MSH-18")
    assert note.origin["charset_declared"] == "8859/1"


def test_no_msh18_and_not_utf8_falls_back_to_cp1252() -> None:
    value = mdm("OBX|1|TX|||\u201cquoted\u201d caf\u00e9").decode().encode("cp1252")
    (note,) = extract_hl7v2(value).notes
    assert note.text == "\u201cquoted\u201d café"
    assert (note.origin["charset"], note.origin["charset_source"]) == ("cp1252", "fallback")


def test_utf8_default_and_declared() -> None:
    (note,) = extract_hl7v2(mdm("OBX|1|TX|||Größe 5 µm")).notes
    assert (note.text, note.origin["charset_source"]) == ("Größe 5 µm", "default")
    declared = extract_hl7v2(mdm("OBX|1|TX|||Größe", charset="UNICODE UTF-8")).notes[0]
    assert (declared.origin["charset"], declared.origin["charset_source"]) == ("utf-8", "MSH-18")


def test_declared_utf8_with_bad_bytes_is_undecodable() -> None:
    value = mdm("OBX|1|TX|||x", charset="UNICODE UTF-8").replace(b"|||x", b"|||\xff\xfe")
    assert dead_letter(value).reason == "undecodable_text"


def test_utf16_record() -> None:
    text = mdm("OBX|1|TX|||Größe.", charset="UNICODE UTF-16").decode()
    for data in (b"\xff\xfe" + text.encode("utf-16-le"), text.encode("utf-16-be")):
        (note,) = extract_hl7v2(data).notes
        assert note.text == "Größe."
        assert note.origin["charset"].startswith("utf-16")


# ---------------------------------------------------------------------------------------------
# Not HL7


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"   \r\n",
        b"\x0b\x1c\r",
        b"hello world",
        b'{"resourceType": "DocumentReference"}',
        b"<ClinicalDocument/>",
        b"PID|1||X\rOBX|1|TX|||text",
        b"MSH",
        b"MSH|",
        b"MSHX^~\\&|A",
        b"MSH|^~|A|B",
        b"MSH|^^\\&|A",
        b"MSH|^~&|A|B",
        b"MSH|abcd|A",
        b"FHS|^~\\&\rPID|1",
        b"\x00\x01\x02\xff",
    ],
)
def test_not_hl7(value: bytes) -> None:
    assert dead_letter(value).reason == "not_hl7"


def test_error_messages_do_not_quote_text() -> None:
    error = dead_letter(mdm(ed("application/pdf", b"SECRET")))
    assert "SECRET" not in error.message and "U0VDUkVU" not in error.message


# ---------------------------------------------------------------------------------------------
# Properties and fuzzing

DELIMITER_SETS = [Delimiters(), Delimiters.read("#", "$*@!") or Delimiters()]
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r")
    | st.sampled_from("|^~\\&#\n$*@! "),
    max_size=60,
)


def escape(text: str, d: Delimiters, hex_non_ascii: bool) -> str:
    """HL7 escaping: separators named, \\n as \\.br\\, non-ASCII as UTF-8 \\Xhh\\ or kept."""
    named = {d.field: "F", d.component: "S", d.subcomponent: "T", d.repetition: "R", d.escape: "E"}
    out = []
    for char in text:
        if char in named:
            out.append(f"{d.escape}{named[char]}{d.escape}")
        elif char == "\n":
            out.append(f"{d.escape}.br{d.escape}")
        elif hex_non_ascii and not char.isascii():
            out.append(f"{d.escape}X{char.encode().hex().upper()}{d.escape}")
        else:
            out.append(char)
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, delimiters=st.sampled_from(DELIMITER_SETS), hex_non_ascii=st.booleans())
def test_unescape_round_trips_escape(
    text: str, delimiters: Delimiters, hex_non_ascii: bool
) -> None:
    assert unescape(escape(text, delimiters, hex_non_ascii), delimiters) == text


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(TEXT, min_size=1, max_size=4), hex_non_ascii=st.booleans())
def test_escaped_text_round_trips_through_a_message(lines: list[str], hex_non_ascii: bool) -> None:
    d = Delimiters()
    expected = tidy("\n".join(lines))
    assume(expected and '""' not in lines)
    obx = [
        f"OBX|{n}|TX|||{escape(line, d, hex_non_ascii)}||||||F" for n, line in enumerate(lines, 1)
    ]
    assert only_note(mdm(*obx)) == expected


def _sample_values(directory: Path) -> list[bytes]:
    return [(directory / name).read_bytes() for name in sorted(SAMPLES)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_segment_terminators_do_not_change_extraction(
    ehr_samples: Path, data: st.DataObject
) -> None:
    value = data.draw(st.sampled_from(_sample_values(ehr_samples)))
    lines = re.split(rb"\r\n|\r|\n", value)
    joined = {sep: sep.join(lines) for sep in (b"\r", b"\n", b"\r\n")}
    seps = data.draw(
        st.lists(st.sampled_from([b"\r", b"\n", b"\r\n"]), min_size=len(lines), max_size=len(lines))
    )
    mixed = b"".join(line + sep for line, sep in zip(lines, seps, strict=True))
    outcomes = [_outcome(v) for v in (*joined.values(), mixed)]
    assert all(o == outcomes[0] for o in outcomes)


def _outcome(value: bytes) -> Extraction | str:
    try:
        return extract_hl7v2(value)
    except InvalidEvent as exc:
        return exc.reason


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=400))
def test_fuzz_random_bytes(value: bytes) -> None:
    assert isinstance(_outcome(value), Extraction | str)


@settings(max_examples=300, deadline=None)
@given(
    body=st.text(
        alphabet=st.sampled_from("MSHOBXTXA|^~\\&#\r\n\x0b\x1c 1TXFTEDX0A.br"), max_size=200
    )
)
def test_fuzz_hl7_like_text(body: str) -> None:
    assert isinstance(_outcome(("MSH|^~\\&|" + body).encode()), Extraction | str)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzz_mutated_samples(ehr_samples: Path, data: st.DataObject) -> None:
    value = bytearray(data.draw(st.sampled_from(_sample_values(ehr_samples))))
    interesting = st.sampled_from([*b"|^~\\&\r\n\x0b\x1c\x00\xffA"])
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(value)))
        action = data.draw(st.sampled_from(["insert", "replace", "delete"]))
        if action == "insert":
            value.insert(position, data.draw(interesting))
        elif position < len(value):
            if action == "replace":
                value[position] = data.draw(interesting)
            else:
                del value[position]
    assert isinstance(_outcome(bytes(value)), Extraction | str)
