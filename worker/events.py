"""The event contracts: parse and check an input record, build the enriched output.

Nothing here touches Kafka or torch. Error messages never quote note text (PHI): they name the
field and the rule, not the value.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from jsonschema import ValidationError

from worker import __version__
from worker.errors import InvalidEvent
from worker.schemas import INPUT_SCHEMA, validator
from worker.wellformed import well_formed_value

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
    #: :data:`~worker.lexicon.LEXICON_VERSION` when lexicon rules label sentences, else None.
    lexicon_version: str | None = None
    #: ``max_sentence_tokens`` when it is not the default (256): it decides where long sentences
    #: are cut, so their spans and labels.
    max_sentence_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class NoteEvent:
    """One decoded note event: the fields its output starts from, and the original bytes of its
    JSON object when it came as the project's own JSON event (its output then keeps those bytes
    as they are).

    Notes extracted from other formats (HL7 v2, FHIR, C-CDA, mapped JSON) carry their text in
    ``body`` (the output may leave it out), their stable note id as the output ``key``, and a
    retraction (a note withdrawn) has no text to score.
    """

    fields: dict[str, Any]
    raw: bytes | None = None
    body: str | None = None
    key: bytes | None = None
    retraction: bool = False

    @property
    def text(self) -> str:
        """The text to split and score."""
        if self.body is not None:
            return self.body
        text: str = self.fields["text"]
        return text


_BOM = b"\xef\xbb\xbf"


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise _DuplicateKey
    return fields


def _not_a_number(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def parse_note(value: bytes | None, *, max_chars: int) -> NoteEvent:
    """Decode and validate one input record; raise :class:`InvalidEvent` when it cannot work.

    The value is UTF-8 JSON; a leading byte-order mark is allowed. Numbers are read exactly
    (integers of any size) and the record's bytes are kept, so pass-through fields leave the
    worker byte for byte as they came. A key that occurs twice in one object is a schema
    violation: which of the two values counts is undefined in JSON, and consumers differ.
    """
    if value is None:
        raise InvalidEvent("null_value", "record has no value (tombstone)")
    body = value[len(_BOM) :] if value.startswith(_BOM) else value
    try:
        document = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent("not_utf8", f"value is not valid UTF-8 (byte {exc.start})") from None
    try:
        event = json.loads(document, object_pairs_hook=_object, parse_constant=_not_a_number)
    except _DuplicateKey:
        raise InvalidEvent("schema_violation", "$: an object has the same key twice") from None
    except (ValueError, RecursionError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise InvalidEvent("not_json", f"value is not JSON ({reason})") from None
    if not isinstance(event, dict):
        raise InvalidEvent("schema_violation", f"$: expected an object, got {_json_type(event)}")
    error = next(iter(validator(INPUT_SCHEMA).iter_errors(event)), None)
    if error is not None:
        raise InvalidEvent("schema_violation", _describe(error))
    # A JSON escape can name a lone surrogate ("\ud800"), which UTF-8 outputs cannot carry: it
    # becomes U+FFFD, one character for one, so offsets still index the text as sent.
    event = well_formed_value(event)
    text: str = event["text"]
    if len(text) > max_chars:
        raise InvalidEvent(
            "text_too_large", f"text has {len(text)} characters, the limit is {max_chars}"
        )
    if not text.strip():
        raise InvalidEvent("empty_text", "text is empty or whitespace only")
    return NoteEvent(event, body)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return names.get(type(value), "object")


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


def written_score(score: float) -> float:
    """A score as the output writes it (six decimals); the label follows it (0.4999996 is 0.5,
    so at threshold 0.5 it is labelled 1), here and in the metrics."""
    return round(score, 6)


def output_id(source: SourceRef, provenance: Provenance, index: int = 0) -> str:
    """Deterministic id of one output: the same input through the same labelling gets the same id.

    It covers the input's place (topic, partition, offset) and everything that decides the
    labels: the model's content hash, the threshold, the segmenter version, the lexicon version
    and ``max_sentence_tokens``. The first 32 hex digits of sha256 over those fields joined by
    ``\x1f`` (the threshold as Python's ``repr`` of the float, e.g. ``0.5``; the lexicon version
    only when lexicon rules are on; ``tokens=<n>`` only when ``max_sentence_tokens`` is not the
    default, so ids made before it counted stay the same), followed by ``\x1f`` and ``index`` when
    it is not 0: ``index`` is the note's position in its record (a bundle or batch holds several).
    """
    fields = [
        source.topic,
        source.partition,
        source.offset,
        provenance.model_sha256,
        repr(float(provenance.threshold)),
        provenance.segmenter_version,
    ]
    if provenance.lexicon_version is not None:
        fields.append(provenance.lexicon_version)
    if provenance.max_sentence_tokens is not None:
        fields.append(f"tokens={provenance.max_sentence_tokens}")
    material = "\x1f".join(map(str, fields))
    if index:
        material += f"\x1f{index}"
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def build_output(
    event: NoteEvent,
    *,
    spans: Sequence[tuple[int, int]],
    scores: Sequence[float],
    truncated: Sequence[bool],
    source: SourceRef,
    provenance: Provenance,
    include_text: bool,
    note_index: int = 0,
    rules: Mapping[int, str] | None = None,
) -> bytes:
    """The enriched event: the input's fields untouched plus results under ``biomarker``.

    A sentence is labelled 1 when its score reaches the threshold or a lexicon rule names a
    biomarker in it (``rules``: the rule by sentence index; the sentence then names it).

    A JSON event's own bytes are kept and the result is added as the object's last member, so
    every pass-through field (big integers, float spellings, escapes, key order) is unchanged.
    """
    threshold = provenance.threshold
    text = event.text
    rules = rules or {}
    sentences = []
    positives = 0
    for index, ((start, end), score, cut) in enumerate(zip(spans, scores, truncated, strict=True)):
        rule = rules.get(index)
        written = written_score(score)
        label = 1 if written >= threshold or rule is not None else 0
        positives += label
        sentence: dict[str, Any] = {
            "index": index,
            "start": start,
            "end": end,
            "label": label,
            "score": written,
            "truncated": cut,
        }
        if rule is not None:
            sentence["rule"] = rule
        if include_text:
            sentence["text"] = text[start:end]
        sentences.append(sentence)
    result = {
        "schema_version": OUTPUT_SCHEMA_VERSION,
        "output_id": output_id(source, provenance, note_index),
        "sentences": sentences,
        "summary": {
            "sentence_count": len(sentences),
            "biomarker_sentence_count": positives,
            "has_biomarker": positives > 0,
            "max_score": written_score(max(scores)) if scores else None,
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
            **(
                {"lexicon_version": provenance.lexicon_version}
                if provenance.lexicon_version is not None
                else {}
            ),
            **(
                {"max_sentence_tokens": provenance.max_sentence_tokens}
                if provenance.max_sentence_tokens is not None
                else {}
            ),
            "source": {
                "topic": source.topic,
                "partition": source.partition,
                "offset": source.offset,
                "timestamp": source.timestamp,
            },
            "processed_at": int(time.time() * 1000),
        },
    }
    member = orjson.dumps(result)
    if event.raw is None:  # a note from another format: its fields, serialised exactly
        fields = json.dumps(event.fields, ensure_ascii=False, separators=(",", ":"))
        return fields[:-1].encode() + _member(member, first=not event.fields)
    close = event.raw.rstrip().rindex(b"}")
    return event.raw[:close] + _member(member, first=False)


def _member(result: bytes, *, first: bool) -> bytes:
    """``"biomarker": result`` and the object's closing brace."""
    return (b"" if first else b",") + b'"' + RESULT_KEY.encode() + b'":' + result + b"}"


#: Headers the worker adds to a dead letter (schemas/dead-letter.v1.json); the error class
#: comes first, so what precedes its last occurrence are the input's own headers.
ERROR_CLASS_HEADER = "x-biomarker-error-class"
SOURCE_TOPIC_HEADER = "x-biomarker-source-topic"
SOURCE_PARTITION_HEADER = "x-biomarker-source-partition"
SOURCE_OFFSET_HEADER = "x-biomarker-source-offset"
FAILED_AT_HEADER = "x-biomarker-failed-at"
TRUNCATED_HEADER = "x-biomarker-truncated"


def dead_letter_headers(error: InvalidEvent, source: SourceRef) -> list[tuple[str, bytes]]:
    """Headers added to a dead-letter record (the original key, value and headers stay)."""
    headers = {
        ERROR_CLASS_HEADER: error.reason,
        "x-biomarker-error-message": error.message[:1024],
        SOURCE_TOPIC_HEADER: source.topic or "",
        SOURCE_PARTITION_HEADER: str(source.partition),
        SOURCE_OFFSET_HEADER: str(source.offset),
        "x-biomarker-worker-version": __version__,
        FAILED_AT_HEADER: str(int(time.time() * 1000)),
    }
    if source.timestamp is not None:
        headers["x-biomarker-source-timestamp"] = str(source.timestamp)
    # "replace": a reason may quote an id that holds a lone surrogate, which UTF-8 cannot carry
    return [(name, value.encode("utf-8", "replace")) for name, value in headers.items()]
