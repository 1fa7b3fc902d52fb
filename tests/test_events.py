"""Input validation, output contract and dead-letter headers (no Kafka)."""

from __future__ import annotations

import orjson
import pytest

from worker.errors import InvalidEvent
from worker.events import (
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
            event,
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
    assert result["output_id"] == output_id(source, PROVENANCE.model_sha256)


def test_output_id_is_deterministic_and_model_specific() -> None:
    source = SourceRef("t", 0, 5, None)
    assert output_id(source, "a") == output_id(SourceRef("t", 0, 5, 123), "a")
    assert output_id(source, "a") != output_id(source, "b")
    assert output_id(source, "a") != output_id(SourceRef("t", 0, 6, None), "a")


def test_dead_letter_headers_validate() -> None:
    headers = dead_letter_headers(InvalidEvent("not_json", "bad"), SourceRef("t", 1, 2, 3))
    decoded = {name: value.decode() for name, value in headers if isinstance(value, bytes)}
    validator(DEAD_LETTER_SCHEMA).validate(decoded)
