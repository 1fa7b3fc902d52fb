"""The event contracts: parse and check an input record, build the enriched output.

Nothing here touches Kafka or torch. Error messages never quote note text (PHI): they name the
field and the rule, not the value.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from jsonschema import ValidationError

from worker import __version__
from worker.errors import InvalidEvent
from worker.schemas import INPUT_SCHEMA, validator

RESULT_KEY = "biomarker"

#: Kafka record headers as confluent-kafka hands them over.
Headers = list[tuple[str, str | bytes | None]]
OUTPUT_SCHEMA_VERSION = "1"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where an input came from; ``None`` fields for inputs read from files."""

    topic: str | None
    partition: int | None
    offset: int | None
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class Provenance:
    """The parts of provenance that are the same for every output of one worker."""

    model_name: str
    model_version: str
    model_sha256: str
    threshold: float
    segmenter_version: str


def parse_note(value: bytes | None, *, max_chars: int) -> dict[str, Any]:
    """Decode and validate one input record; raise :class:`InvalidEvent` when it cannot work."""
    if value is None:
        raise InvalidEvent("null_value", "record has no value (tombstone)")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError as utf_exc:
            raise InvalidEvent(
                "not_utf8", f"value is not valid UTF-8 (byte {utf_exc.start})"
            ) from None
        raise InvalidEvent("not_json", f"value is not JSON ({exc.msg})") from None
    if not isinstance(event, dict):
        raise InvalidEvent("schema_violation", f"$: expected an object, got {_json_type(event)}")
    error = next(iter(validator(INPUT_SCHEMA).iter_errors(event)), None)
    if error is not None:
        raise InvalidEvent("schema_violation", _describe(error))
    text: str = event["text"]
    if len(text) > max_chars:
        raise InvalidEvent(
            "text_too_large", f"text has {len(text)} characters, the limit is {max_chars}"
        )
    if not text.strip():
        raise InvalidEvent("empty_text", "text is empty or whitespace only")
    return event


def _json_type(value: object) -> str:
    return {list: "array", str: "string", int: "integer", float: "number", bool: "boolean"}.get(
        type(value), "null"
    )


def _describe(error: ValidationError) -> str:
    """Name the failing field and rule without echoing the (possibly PHI) value."""
    where = error.json_path
    rule = error.validator
    if rule == "required":
        required = cast(list[str], error.validator_value)
        present = cast(dict[str, Any], error.instance)
        missing = [name for name in required if name not in present]
        return f"{where}: missing required field {', '.join(missing)}"
    if rule == "type":
        return f"{where}: expected {error.validator_value}, got {_json_type(error.instance)}"
    if rule is None:  # the schema ``false``: a reserved field
        return f"{where}: field is reserved for the worker's output"
    return f"{where}: violates {rule} {error.validator_value!r}"[:300]


def output_id(source: SourceRef, model_sha256: str) -> str:
    """Deterministic id: the same input through the same model always gets the same id."""
    material = f"{source.topic}\x1f{source.partition}\x1f{source.offset}\x1f{model_sha256}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def build_output(
    event: dict[str, Any],
    *,
    spans: Sequence[tuple[int, int]],
    scores: Sequence[float],
    truncated: Sequence[bool],
    source: SourceRef,
    provenance: Provenance,
    include_text: bool,
) -> bytes:
    """The enriched event: input fields untouched plus results under ``biomarker``."""
    threshold = provenance.threshold
    text: str = event["text"]
    sentences = []
    positives = 0
    for index, ((start, end), score, cut) in enumerate(zip(spans, scores, truncated, strict=True)):
        label = 1 if score >= threshold else 0
        positives += label
        sentence: dict[str, Any] = {
            "index": index,
            "start": start,
            "end": end,
            "label": label,
            "score": round(score, 6),
            "truncated": cut,
        }
        if include_text:
            sentence["text"] = text[start:end]
        sentences.append(sentence)
    result = {
        "schema_version": OUTPUT_SCHEMA_VERSION,
        "output_id": output_id(source, provenance.model_sha256),
        "sentences": sentences,
        "summary": {
            "sentence_count": len(sentences),
            "biomarker_sentence_count": positives,
            "has_biomarker": positives > 0,
            "max_score": round(max(scores), 6) if scores else None,
            "truncated_sentence_count": sum(truncated),
        },
        "provenance": {
            "model": {
                "name": provenance.model_name,
                "version": provenance.model_version,
                "sha256": provenance.model_sha256,
            },
            "threshold": threshold,
            "worker_version": __version__,
            "segmenter_version": provenance.segmenter_version,
            "source": {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "timestamp": source.timestamp,
            },
            "processed_at": int(time.time() * 1000),
        },
    }
    return orjson.dumps({**event, RESULT_KEY: result})


def dead_letter_headers(error: InvalidEvent, source: SourceRef) -> list[tuple[str, bytes]]:
    """Headers added to a dead-letter record (the original key, value and headers stay)."""
    headers = {
        "x-biomarker-error-class": error.reason,
        "x-biomarker-error-message": error.message[:1024],
        "x-biomarker-source-topic": source.topic or "",
        "x-biomarker-source-partition": str(source.partition),
        "x-biomarker-source-offset": str(source.offset),
        "x-biomarker-worker-version": __version__,
        "x-biomarker-failed-at": str(int(time.time() * 1000)),
    }
    if source.timestamp is not None:
        headers["x-biomarker-source-timestamp"] = str(source.timestamp)
    return [(name, value.encode()) for name, value in headers.items()]
