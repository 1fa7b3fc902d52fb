"""The benchmark's notes: real MTSamples text as input events, and their tokenised sentences.

Every measurement of one run uses the same notes, so model-only and end-to-end numbers count the
same sentences. Note ids get a run tag so that repeated runs on one broker never mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from worker.demo.notes import demo_notes
from worker.prepare import CHARS_PER_TOKEN
from worker.segmentation import split_sentences

#: The worker's default ``max_sentence_tokens``; every runtime of a run splits notes with it.
MAX_SENTENCE_TOKENS = 256
MAX_SENTENCE_CHARS = MAX_SENTENCE_TOKENS * CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class Corpus:
    """Input events plus what the model sees of them."""

    source: str
    events: list[bytes]
    keys: list[bytes]
    sentences_per_note: list[int]
    rows: list[list[int]]  # token ids of every sentence, note by note
    characters: int

    @property
    def notes(self) -> int:
        return len(self.events)

    @property
    def sentences(self) -> int:
        return len(self.rows)

    @property
    def tokens(self) -> int:
        return sum(len(row) for row in self.rows)

    def head(self, notes: int) -> Corpus:
        """The first ``notes`` notes (for the slower passes)."""
        count = sum(self.sentences_per_note[:notes])
        return Corpus(
            source=self.source,
            events=self.events[:notes],
            keys=self.keys[:notes],
            sentences_per_note=self.sentences_per_note[:notes],
            rows=self.rows[:count],
            characters=0,
        )

    def describe(self) -> dict[str, Any]:
        lengths = sorted(len(row) for row in self.rows)
        return {
            "source": self.source,
            "notes": self.notes,
            "sentences": self.sentences,
            "wordpieces": self.tokens,
            "characters": self.characters,
            "sentences_per_note": round(self.sentences / max(1, self.notes), 1),
            "wordpieces_per_sentence_mean": round(self.tokens / max(1, self.sentences), 1),
            "wordpieces_per_sentence_p50": lengths[len(lengths) // 2] if lengths else 0,
            "wordpieces_per_sentence_max": lengths[-1] if lengths else 0,
        }


def load_corpus(encoder: Any, *, notes: int, tag: str, offset: int = 0) -> Corpus:
    """``notes`` MTSamples notes (from ``offset``) as events keyed by note id, tokenised by
    ``encoder`` exactly as the worker splits and tokenises them."""
    source, records = demo_notes(offset + notes)
    records = records[offset:]
    events: list[bytes] = []
    keys: list[bytes] = []
    counts: list[int] = []
    texts: list[str] = []
    characters = 0
    for index, record in enumerate(records):
        note_id = f"{tag}-{index}"
        event = {**record, "note_id": note_id, "patient_id": f"p-{index % 97}"}
        events.append(orjson.dumps(event))
        keys.append(note_id.encode())
        text: str = record["text"]
        characters += len(text)
        spans = split_sentences(text, max_chars=MAX_SENTENCE_CHARS)
        counts.append(len(spans))
        texts.extend(text[start:end] for start, end in spans)
    rows = [list(item.ids) for item in encoder.encode(texts)]
    return Corpus(
        source=source,
        events=events,
        keys=keys,
        sentences_per_note=counts,
        rows=rows,
        characters=characters,
    )
