"""The per-note work shared by the Kafka worker and ``classify``: parse, segment, tokenise, render.

All steps run per poll batch, not per message: one tokenizer call covers every sentence of every
note read in one ``consume()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from worker.errors import InvalidEvent
from worker.events import Provenance, SourceRef, build_output, parse_note
from worker.inference import NoteWork, SentenceJob
from worker.segmentation import split_sentences

#: Recorded in provenance; bump when segmentation rules change what a sentence is.
SEGMENTER_VERSION = "clinical-rules-1"

#: Average characters per wordpiece in clinical text, to cap segment length before tokenising.
CHARS_PER_TOKEN = 4


@dataclass(slots=True, eq=False, kw_only=True)
class NoteSlot:
    """One input note moving through the steps; subclasses add where it came from."""

    value: bytes | None
    event: dict[str, Any] | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    work: NoteWork | None = None
    invalid: InvalidEvent | None = None

    @property
    def ready(self) -> bool:
        """True once the output (or dead-letter reason) can be written."""
        return self.invalid is not None or self.work is None or self.work.remaining == 0

    @property
    def failure(self) -> InvalidEvent | None:
        """Why this note goes to the dead-letter topic, if it does."""
        if self.invalid is not None:
            return self.invalid
        if self.work is not None and self.work.error is not None:
            return InvalidEvent("inference_failed", self.work.error)
        return None


class EncodedSentence(Protocol):
    @property
    def ids(self) -> list[int]: ...

    @property
    def truncated(self) -> bool: ...


class Encoder(Protocol):
    """Tokeniser side of the model (``SequenceClassifier.encode``)."""

    def encode(self, texts: Sequence[str]) -> Sequence[EncodedSentence]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Preparer:
    """Turns raw notes into sentence jobs for the inference loop."""

    encoder: Encoder
    max_note_chars: int
    max_sentence_tokens: int

    def prepare(self, slots: Sequence[NoteSlot]) -> list[SentenceJob]:
        texts: list[str] = []
        parsed: list[NoteSlot] = []
        max_chars = self.max_sentence_tokens * CHARS_PER_TOKEN
        for slot in slots:
            try:
                event = parse_note(slot.value, max_chars=self.max_note_chars)
            except InvalidEvent as exc:
                slot.invalid = exc
                continue
            text: str = event["text"]
            slot.event = event
            slot.spans = split_sentences(text, max_chars=max_chars)
            texts.extend(text[start:end] for start, end in slot.spans)
            parsed.append(slot)
        encoded = self.encoder.encode(texts)
        jobs: list[SentenceJob] = []
        position = 0
        for slot in parsed:
            count = len(slot.spans)
            chunk = encoded[position : position + count]
            position += count
            slot.truncated = [item.truncated for item in chunk]
            slot.work = NoteWork.for_sentences(count, owner=slot)
            jobs.extend(
                SentenceJob(work=slot.work, index=i, ids=item.ids) for i, item in enumerate(chunk)
            )
        return jobs


def render(
    slot: NoteSlot, *, source: SourceRef, provenance: Provenance, include_text: bool
) -> bytes:
    """The enriched output of a successfully scored note."""
    assert slot.event is not None and slot.work is not None
    return build_output(
        slot.event,
        spans=slot.spans,
        scores=slot.work.scores,
        truncated=slot.truncated,
        source=source,
        provenance=provenance,
        include_text=include_text,
    )
