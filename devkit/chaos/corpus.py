"""The chaos run's input: real note text, 1% poison of every kind the worker dead-letters, a few
very large notes, and one note whose enriched output is larger than a Kafka message may be.

Every record carries its kind in the ``x-chaos-kind`` header and, where the worker must
dead-letter it, the reason it must give in ``x-chaos-expect``; the audit checks both. The
oversized-output note must become a dead letter, whatever the reason (``ANY_REASON``): the worker
may refuse it for its output size (``output_too_large``) or, before scoring, for its sentence
count (``too_many_sentences``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import orjson

from worker.config import WorkerSettings
from worker.demo.notes import demo_notes

KIND_HEADER = "x-chaos-kind"
EXPECT_HEADER = "x-chaos-expect"

#: The worker's default limit; the chaos run does not change it.
MAX_NOTE_CHARS: int = WorkerSettings.model_fields["max_note_chars"].default
LARGE_NOTE_CHARS = 196_000
#: ". " repeated: within max_note_chars, but every ". " is a sentence with its own result.
OVERSIZED_TEXT_REPEAT = 100_000
#: ``x-chaos-expect`` value: a dead letter with any reason.
ANY_REASON = "*"

#: Poison kinds and the dead-letter reason (``x-biomarker-error-class``) each must get.
POISON: dict[str, str] = {
    "not_utf8": "not_utf8",
    "not_json": "not_json",
    "missing_text": "schema_violation",
    "object_text": "schema_violation",
    "note_id_type": "schema_violation",
    "empty_text": "empty_text",
    "text_too_large": "text_too_large",
    "null_value": "null_value",
}
POISON_SHARE = 0.01


@dataclass(frozen=True, slots=True)
class InputRecord:
    kind: str
    key: bytes | None
    value: bytes | None
    expect: str | None = None  # the dead-letter reason it must get; None: an output

    @property
    def headers(self) -> list[tuple[str, str | bytes | None]]:
        headers: list[tuple[str, str | bytes | None]] = [(KIND_HEADER, self.kind.encode())]
        if self.expect is not None:
            headers.append((EXPECT_HEADER, self.expect.encode()))
        return headers


@dataclass(frozen=True, slots=True)
class ChaosCorpus:
    source: str
    stream: list[InputRecord]  # produced paced, in this order
    oversized: InputRecord | None  # produced by its own fault

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        extra = [] if self.oversized is None else [self.oversized]
        for record in [*self.stream, *extra]:
            counts[record.kind] = counts.get(record.kind, 0) + 1
        return dict(sorted(counts.items()))


def large_count(total: int) -> int:
    """A few large notes: one per 5,000 records, at least two."""
    return max(2, total // 5_000)


def poison_count(total: int) -> int:
    """1% of the records, at least one of each kind."""
    return max(len(POISON), round(total * POISON_SHARE))


def build_corpus(total: int, *, seed: int = 7, with_oversized: bool = True) -> ChaosCorpus:
    """``total`` input records (the oversized note included when ``with_oversized``)."""
    source, notes = demo_notes()
    texts = [str(note["text"]) for note in notes]
    rng = random.Random(seed)
    special: list[InputRecord] = []
    for i in range(poison_count(total)):
        kind = list(POISON)[i % len(POISON)]
        special.append(_poison(kind, i, texts[i % len(texts)]))
    special += [_large(i, texts) for i in range(large_count(total))]
    plain = total - len(special) - (1 if with_oversized else 0)
    if plain < 1:
        raise ValueError(f"{total} records leave no room for plain notes")
    stream = [_note(i, notes[i % len(notes)]) for i in range(plain)]
    # Spread the special records evenly over the stream (a random spot in each stretch).
    stretch = len(stream) / len(special)
    spots = sorted(int(k * stretch + rng.random() * stretch) for k in range(len(special)))
    for shift, (spot, record) in enumerate(zip(spots, special, strict=True)):
        stream.insert(spot + shift, record)
    oversized_value = orjson.dumps(
        {"note_id": "chaos-oversized", "text": ". " * OVERSIZED_TEXT_REPEAT}
    )
    oversized = (
        InputRecord("oversized_output", b"chaos-oversized", oversized_value, expect=ANY_REASON)
        if with_oversized
        else None
    )
    return ChaosCorpus(source=source, stream=stream, oversized=oversized)


def _note(i: int, note: dict[str, Any]) -> InputRecord:
    note_id = f"chaos-{i:06d}"
    event = {
        "note_id": note_id,
        "text": note["text"],
        "note_type": note.get("note_type"),
        "metadata": {"chaos_seq": i, "source_note_id": note.get("note_id")},
    }
    return InputRecord("note", note_id.encode(), orjson.dumps(event))


def _large(i: int, texts: list[str]) -> InputRecord:
    parts: list[str] = []
    size = 0
    for k in range(len(texts) * 200):
        text = texts[(i * 37 + k) % len(texts)]
        parts.append(text)
        size += len(text) + 2
        if size >= LARGE_NOTE_CHARS:
            break
    body = "\n\n".join(parts)[:LARGE_NOTE_CHARS]
    note_id = f"chaos-large-{i}"
    return InputRecord("large", note_id.encode(), orjson.dumps({"note_id": note_id, "text": body}))


def _poison(kind: str, i: int, text: str) -> InputRecord:
    note_id = f"chaos-poison-{i}"
    key = note_id.encode()
    value: bytes | None
    if kind == "not_utf8":
        value = b'{"note_id": "' + key + b'", "text": "caf\xe9 \xff"}'
    elif kind == "not_json":
        value = b"not json: " + key
    elif kind == "missing_text":
        value = orjson.dumps({"note_id": note_id, "body": text})
    elif kind == "object_text":
        value = orjson.dumps({"note_id": note_id, "text": {"value": text}})
    elif kind == "note_id_type":
        value = orjson.dumps({"note_id": 100_000 + i, "text": text})
    elif kind == "empty_text":
        value = orjson.dumps({"note_id": note_id, "text": " \n\t "})
    elif kind == "text_too_large":
        repeated = (text + "\n") * (MAX_NOTE_CHARS // max(1, len(text)) + 1)
        value = orjson.dumps({"note_id": note_id, "text": repeated[: MAX_NOTE_CHARS + 1]})
    elif kind == "null_value":
        value = None
    else:
        raise ValueError(f"unknown poison kind {kind}")
    return InputRecord(kind, key, value, expect=POISON[kind])
