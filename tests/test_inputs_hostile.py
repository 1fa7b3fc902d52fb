"""Hostile or malformed content inside otherwise valid messages: never a crash, never a silent
loss, always a note, a skip or a dead letter with a clear reason."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.ehr_messages import document_reference
from worker.errors import InvalidEvent, UsageError
from worker.events import (
    NoteEvent,
    Provenance,
    SourceRef,
    build_output,
    dead_letter_headers,
    parse_note,
)
from worker.inputs.content import decode_text, html_to_text, rtf_text
from worker.inputs.decoding import Decoded, decoder_for
from worker.inputs.hl7v2.escapes import unescape
from worker.inputs.mapping import load_mapping
from worker.wellformed import well_formed

PROVENANCE = Provenance("m", "1", "0" * 64, 0.5, "seg")
SOURCE = SourceRef("notes", 0, 7, None)


def _fhir(resource: dict[str, Any]) -> Decoded:
    """The stdlib JSON writer keeps escapes orjson refuses (a lone surrogate)."""
    return decoder_for("fhir", max_chars=200_000)(json.dumps(resource).encode())


def _with_attachments(*attachments: tuple[str, str]) -> dict[str, Any]:
    resource = document_reference("d1", "unused")
    resource["content"] = [
        {"attachment": {"contentType": kind, "data": base64.b64encode(data.encode()).decode()}}
        for kind, data in attachments
    ]
    return resource


def _rendered(event: NoteEvent) -> dict[str, Any]:
    output = build_output(
        event,
        spans=[],
        scores=[],
        truncated=[],
        source=SOURCE,
        provenance=PROVENANCE,
        include_text=True,
    )
    parsed: dict[str, Any] = json.loads(output)
    return parsed


def test_lone_surrogates_in_fields_become_replacement_characters() -> None:
    resource = document_reference("d1", "Serum PSA 4.2 ng/mL.")
    resource["subject"] = {"reference": "Patient/p\ud800"}
    resource["date"] = "2024-01-01\udc00"
    (event,) = _fhir(resource).events
    assert event.fields["patient_id"] == "Patient/p\ufffd"
    assert _rendered(event)["patient_id"] == "Patient/p\ufffd"  # the output encodes


def test_a_note_event_whose_text_escapes_a_lone_surrogate_is_scored_and_renders() -> None:
    value = b'{"note_id": "n\\ud800", "text": "Serum PSA \\udc00 4.2 ng/mL. Follow up."}'
    event = parse_note(value, max_chars=200_000)
    assert event.text == "Serum PSA \ufffd 4.2 ng/mL. Follow up."  # one character for one
    assert event.fields["note_id"] == "n\ufffd"
    spans = [(0, 22), (23, 33)]
    output = build_output(
        event,
        spans=spans,
        scores=[0.9, 0.1],
        truncated=[False, False],
        source=SOURCE,
        provenance=PROVENANCE,
        include_text=True,
    )
    sentences = json.loads(output)["biomarker"]["sentences"]
    assert [item["text"] for item in sentences] == ["Serum PSA \ufffd 4.2 ng/mL.", "Follow up."]
    assert output.startswith(value[:-1])  # the record's own bytes pass through as sent


def test_a_dead_letter_reason_quoting_a_lone_surrogate_still_encodes() -> None:
    error = InvalidEvent("unsupported_content_type", "DocumentReference/d\ud800: application/pdf")
    headers = dict(dead_letter_headers(error, SOURCE))
    assert headers["x-biomarker-error-message"] == b"DocumentReference/d?: application/pdf"


def test_surrogate_pairs_join_and_lone_ones_are_replaced() -> None:
    assert well_formed("\ud83d\ude00 ok") == "\U0001f600 ok"
    assert well_formed("a\ud800b\udfffc") == "a\ufffdb\ufffdc"
    text = "unchanged \u00e9"
    assert well_formed(text) is text


def test_rtf_with_a_character_past_the_basic_plane_keeps_it() -> None:
    rtf = r"{\rtf1\ansi Serum PSA 4.2 \u-10179?\u-8704? ng/mL.\par}"
    (event,) = _fhir(_with_attachments(("text/rtf", rtf))).events
    assert "\U0001f600" in event.body
    assert _rendered(event)["text"] == event.body


@pytest.mark.parametrize(
    "rtf",
    [
        r"{\rtf1 \uc text}",  # \uc without its number
        r"{\rtf1 \u1114112? text}",  # past U+10FFFF
        r"{\rtf1 \u99999999999? text}",
        r"{\rtf1 {\pict\bin text}}",  # \bin without its length
    ],
)
def test_malformed_rtf_is_a_skip_and_the_readable_rendition_stays(rtf: str) -> None:
    decoded = _fhir(_with_attachments(("text/plain", "Serum PSA 4.2 ng/mL."), ("text/rtf", rtf)))
    (event,) = decoded.events
    assert event.body == "Serum PSA 4.2 ng/mL."
    assert [skip.reason for skip in decoded.skipped] == ["undecodable_text"]
    with pytest.raises(InvalidEvent, match="malformed RTF") as raised:
        rtf_text(rtf, where="x")
    assert raised.value.reason == "undecodable_text"


def test_rtf_on_one_long_line_reads_in_linear_time_and_as_wrapped_rtf() -> None:
    body = r"\f1 Serum PSA 4.2 ng/mL.\par " * 30_000  # 750 KiB on one line
    unclosed = "{\\rtf1{\\fonttbl" + body  # a font table that never closes
    started = time.monotonic()
    assert rtf_text(unclosed, where="x") == ""  # all of it inside the font table
    assert time.monotonic() - started < 10  # about a minute before the lines were broken
    one_line = r"{\rtf1\ansi{\fonttbl\f1\fswiss\fcharset0 Arial;}" + body + "}"
    wrapped = one_line.replace(r"\par ", "\\par\n")
    text = rtf_text(one_line, where="x")
    assert text == rtf_text(wrapped, where="x")
    assert text.count("Serum PSA 4.2 ng/mL.") == 30_000


@pytest.mark.parametrize("charset", ["hex", "base64", "zlib", "rot13", "utf\x00-8"])
def test_names_of_codecs_that_are_not_text_encodings_are_unknown_charsets(charset: str) -> None:
    with pytest.raises(InvalidEvent, match="unknown charset") as raised:
        decode_text(b"PSA", charset, where="x")
    assert raised.value.reason == "undecodable_text"


def test_a_charset_that_decodes_nothing_is_undecodable_text() -> None:
    with pytest.raises(InvalidEvent, match="not readable") as raised:
        decode_text(b"PSA", "undefined", where="x")
    assert raised.value.reason == "undecodable_text"


def test_a_mapping_naming_a_codec_that_is_no_charset_fails_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("id: /a\ntext: {path: /b, decode: [base64, 'charset:hex']}\n")
    with pytest.raises(UsageError, match="unknown charset"):
        load_mapping(path)


def test_hl7_hex_escapes_in_a_charset_that_refuses_them_are_replacement_characters() -> None:
    assert unescape(r"PSA \X41\ high", charset="idna") == "PSA \ufffd high"


def test_html_nested_past_the_parsers_default_depth_is_read_whole() -> None:
    lines = [f"<font>Line {i}: stable.\n" for i in range(300)]  # never closed
    text = html_to_text("<html><body>" + "".join(lines) + "Serum PSA 12.1 ng/mL.</body></html>")
    assert text.count("stable.") == 300 and "Serum PSA 12.1 ng/mL." in text


def test_html_nested_past_the_raised_depth_is_undecodable_not_cut_short() -> None:
    markup = "<div>" * 2100 + "Serum PSA 12.1 ng/mL."
    with pytest.raises(InvalidEvent, match="nested too deep") as raised:
        html_to_text(markup, where="DocumentReference/d1 content[0]")
    assert raised.value.reason == "undecodable_text"


def test_auto_reads_fhir_json_that_only_the_stdlib_parser_accepts() -> None:
    resource = document_reference("d1", "Serum PSA 4.2 ng/mL.")
    resource["subject"] = {"reference": "Patient/p\ud800"}  # orjson refuses the escape
    value = json.dumps(resource).encode()
    (event,) = decoder_for("auto", max_chars=200_000)(value).events
    assert event.body == "Serum PSA 4.2 ng/mL."
