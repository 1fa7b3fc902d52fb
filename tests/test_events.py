"""Input validation, output contract and dead-letter headers (no Kafka)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from typing import Any

import orjson
import pytest

from worker.errors import InvalidEvent
from worker.events import (
    NoteEvent,
    Provenance,
    SourceRef,
    build_output,
    dead_letter_headers,
    output_id,
    parse_note,
)
from worker.schemas import DEAD_LETTER_SCHEMA, INPUT_SCHEMA, OUTPUT_SCHEMA, validator

PROVENANCE = Provenance(
    model_name="m",
    model_version="1",
    model_sha256="ab" * 32,
    threshold=0.5,
    segmenter_version="s",
)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "null_value"),
        (b"\xff\xfe{}", "not_utf8"),
        (b"{not json", "not_json"),
        (b"[1, 2]", "schema_violation"),
        (b'{"note_id": "a"}', "schema_violation"),
        (b'{"note_id": "a", "text": 5}', "schema_violation"),
        (b'{"note_id": "a", "text": "x", "biomarker": {}}', "schema_violation"),
        (b'{"note_id": "a", "text": "   "}', "empty_text"),
        (b'{"note_id": "a", "text": "0123456789A"}', "text_too_large"),
    ],
)
def test_invalid_inputs_get_a_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_note(value, max_chars=10)
    assert caught.value.reason == reason


def test_error_messages_never_echo_values() -> None:
    secret = "SECRETNOTE"
    for value in (
        orjson.dumps({"note_id": secret, "text": 3}),
        orjson.dumps({"note_id": 1, "text": secret}),
        orjson.dumps({"note_id": "a", "text": [secret]}),
        orjson.dumps({"note_id": "", "text": secret}),
    ):
        with pytest.raises(InvalidEvent) as caught:
            parse_note(value, max_chars=100)
        assert secret not in caught.value.message


def test_output_keeps_input_fields_and_validates() -> None:
    event = {"note_id": "n1", "text": "Hgb 12.3. Pain.", "metadata": {"a": [1]}, "extra": None}
    validator(INPUT_SCHEMA).validate(event)
    source = SourceRef("notes", 2, 41, 1700000000000)
    body = orjson.loads(
        build_output(
            NoteEvent(event),
            spans=[(0, 9), (10, 15)],
            scores=[0.9, 0.1],
            truncated=[False, True],
            source=source,
            provenance=PROVENANCE,
            include_text=True,
        )
    )
    validator(OUTPUT_SCHEMA).validate(body)
    assert {k: body[k] for k in event} == event
    result = body["biomarker"]
    assert [s["label"] for s in result["sentences"]] == [1, 0]
    assert [s["text"] for s in result["sentences"]] == ["Hgb 12.3.", "Pain."]
    assert result["summary"] == {
        "sentence_count": 2,
        "biomarker_sentence_count": 1,
        "has_biomarker": True,
        "max_score": 0.9,
        "truncated_sentence_count": 1,
    }
    assert result["output_id"] == output_id(source, PROVENANCE)


def test_output_id_is_deterministic_and_covers_what_decides_the_labels() -> None:
    source = SourceRef("t", 0, 5, None)
    first = output_id(source, PROVENANCE)
    assert first == output_id(SourceRef("t", 0, 5, 123), PROVENANCE)  # not the timestamp
    assert first == output_id(source, replace(PROVENANCE, model_name="other", model_version="2"))
    assert first != output_id(SourceRef("t", 0, 6, None), PROVENANCE)
    assert first != output_id(source, replace(PROVENANCE, model_sha256="cd" * 32))
    assert first != output_id(source, replace(PROVENANCE, threshold=0.6))
    assert first != output_id(source, replace(PROVENANCE, segmenter_version="s2"))
    assert first != output_id(source, PROVENANCE, 1)
    assert first != output_id(source, replace(PROVENANCE, max_sentence_tokens=512))


def test_provenance_names_max_sentence_tokens_when_it_is_not_the_default() -> None:
    event = NoteEvent({"note_id": "n1", "text": "Hgb 12.3."})
    source = SourceRef("notes", 0, 1, None)

    def provenance_of(provenance: Provenance) -> dict[str, Any]:
        body = orjson.loads(
            build_output(
                event,
                spans=[(0, 9)],
                scores=[0.9],
                truncated=[False],
                source=source,
                provenance=provenance,
                include_text=False,
            )
        )
        validator(OUTPUT_SCHEMA).validate(body)
        found: dict[str, Any] = body["biomarker"]["provenance"]
        return found

    assert "max_sentence_tokens" not in provenance_of(PROVENANCE)
    assert provenance_of(replace(PROVENANCE, max_sentence_tokens=512))["max_sentence_tokens"] == 512


def _two_sentences(event: NoteEvent, scores: list[float]) -> bytes:
    """The output of a note of two sentences (characters 0-12 and 13-18)."""
    return build_output(
        event,
        spans=[(0, 12), (13, 18)],
        scores=scores,
        truncated=[False, False],
        source=SourceRef("t", 0, 1, None),
        provenance=PROVENANCE,
        include_text=False,
    )


def test_the_label_follows_the_score_as_written() -> None:
    event = NoteEvent({"note_id": "n1", "text": "First one.   Two."})
    body = orjson.loads(_two_sentences(event, [0.4999996, 0.4999994]))
    sentences = body["biomarker"]["sentences"]
    assert [(s["score"], s["label"]) for s in sentences] == [(0.5, 1), (0.499999, 0)]


def test_a_lexicon_rule_labels_its_sentence_and_the_lexicon_version_joins_the_id() -> None:
    event = {"note_id": "n1", "text": "Hgb was 12.3. Pain."}
    source = SourceRef("notes", 2, 41, None)
    provenance = replace(PROVENANCE, lexicon_version="lexicon-0123456789ab")
    body = orjson.loads(
        build_output(
            NoteEvent(event),
            spans=[(0, 13), (14, 19)],
            scores=[0.2, 0.1],
            truncated=[False, False],
            source=source,
            provenance=provenance,
            include_text=False,
            rules={0: "hemoglobin"},
        )
    )
    validator(OUTPUT_SCHEMA).validate(body)
    result = body["biomarker"]
    assert [s["label"] for s in result["sentences"]] == [1, 0]
    assert [s.get("rule") for s in result["sentences"]] == ["hemoglobin", None]
    assert result["sentences"][0]["score"] == 0.2  # the model's own score stays
    assert result["summary"]["biomarker_sentence_count"] == 1
    assert result["provenance"]["lexicon_version"] == "lexicon-0123456789ab"
    # the rules can change labels: the id covers their version (and is unchanged without)
    assert result["output_id"] != output_id(source, PROVENANCE)
    material = "notes\x1f2\x1f41\x1f" + "ab" * 32 + "\x1f0.5\x1fs\x1flexicon-0123456789ab"
    assert result["output_id"] == hashlib.sha256(material.encode()).hexdigest()[:32]


def test_output_id_recipe_is_pinned() -> None:
    """The documented recipe (schemas/enriched-note.v1.json); a change breaks consumers'
    de-duplication across the upgrade, so it must be deliberate."""
    source = SourceRef("notes", 3, 42, None)
    material = "notes\x1f3\x1f42\x1f" + "ab" * 32 + "\x1f0.5\x1fs"
    assert output_id(source, PROVENANCE) == hashlib.sha256(material.encode()).hexdigest()[:32]
    indexed = hashlib.sha256((material + "\x1f2").encode()).hexdigest()[:32]
    assert output_id(source, PROVENANCE, 2) == indexed
    assert output_id(source, PROVENANCE) == "f226e00b0104ace1783af42d7c57c39b"


def test_dead_letter_headers_validate() -> None:
    headers = dead_letter_headers(InvalidEvent("not_json", "bad"), SourceRef("t", 1, 2, 3))
    decoded = {name: value.decode() for name, value in headers if isinstance(value, bytes)}
    validator(DEAD_LETTER_SCHEMA).validate(decoded)


HOSTILE = (
    b'\xef\xbb\xbf{"note_id": "h1", "big": 123456789012345678901234567890, '
    b'"neg": -98765432109876543210987654321, "float": 1.10, "exp": 1E+2, "tiny": 5e-324, '
    b'"huge": 1e400, "esc": "caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\/", '
    b'"raw": "\xc3\xa9\xf0\x9f\x98\x80", '
    b'"z": {"b": [1, 2.50, {"deep": null}], "a": true}, "empty": {}, '
    b'"text": "PSA was 4.2. Pain."  }  \n'
)


def test_hostile_but_valid_json_passes_through_byte_for_byte() -> None:
    event = parse_note(HOSTILE, max_chars=100)
    assert event.fields["big"] == 123456789012345678901234567890  # read exactly
    out = _two_sentences(event, [0.9, 0.1])
    body = HOSTILE.removeprefix(b"\xef\xbb\xbf").rstrip()
    assert out.startswith(body[:-1] + b',"biomarker":{')  # every input byte, then the result
    decoded = json.loads(out)
    assert decoded["big"] == 123456789012345678901234567890
    assert decoded["neg"] == -98765432109876543210987654321
    assert list(decoded)[-1] == "biomarker" and list(decoded)[:3] == ["note_id", "big", "neg"]
    validator(OUTPUT_SCHEMA).validate(orjson.loads(out.replace(b"1e400", b"1")))


def test_a_note_without_raw_bytes_is_serialised_exactly() -> None:
    event = NoteEvent({"note_id": "x", "text": "a", "big": 2**100, "u": "é"})
    out = build_output(
        event,
        spans=[(0, 1)],
        scores=[0.2],
        truncated=[False],
        source=SourceRef("t", 0, 1, None),
        provenance=PROVENANCE,
        include_text=False,
    )
    decoded = json.loads(out)
    assert decoded["big"] == 2**100 and decoded["u"] == "é"
    assert list(decoded) == ["note_id", "text", "big", "u", "biomarker"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b'{"note_id": "a", "text": "x", "note_id": "b"}', "same key twice"),
        (b'{"note_id": "a", "text": "x", "m": {"k": 1, "k": 2}}', "same key twice"),
        (b'{"note_id": "a", "text": {"v": 1}}', "expected string, got object"),
        (b'{"note_id": "a", "text": null}', "expected string, got null"),
        (b'{"note_id": "a", "text": "x", "n": NaN}', "not JSON"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_duplicate_keys_and_wrong_types_are_named(value: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_note(value, max_chars=100)
    assert message in caught.value.message


def test_a_byte_order_mark_is_accepted() -> None:
    event = parse_note(b'\xef\xbb\xbf{"note_id": "a", "text": "PSA 4."}', max_chars=100)
    assert event.text == "PSA 4." and event.raw is not None and event.raw.startswith(b"{")
