"""Note preparation: decode a record into notes, split them into sentences, tokenise.

Runs per batch of records, not per record: one tokenizer call covers every sentence of every note
of the batch. Shared by the Kafka worker, ``classify`` and any other runtime: it knows records and
notes (:mod:`worker.notes`), not where they came from.

A record's value decodes to zero, one or several note events
(:data:`~worker.inputs.decoding.Decoder`, one per input topic's format); the default decoder reads
the project's JSON note event (:func:`worker.events.parse_note`). A value that cannot be decoded
marks the record for the dead-letter topic.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import structlog

from worker.errors import InvalidEvent
from worker.inputs.decoding import Decoder, json_notes
from worker.lexicon import first_label
from worker.logs import where_raised
from worker.notes import Note, Record, SentenceJob
from worker.segmentation import split_sentences

log = structlog.get_logger(__name__)

#: Average characters per wordpiece in clinical text, to cap segment length before tokenising.
CHARS_PER_TOKEN = 4


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
    """Turns records into notes whose sentence jobs are ready for the model.

    Budgets per note: ``max_note_chars`` characters of text (checked by the decoder),
    ``max_sentence_tokens`` x :data:`CHARS_PER_TOKEN` characters per sentence (longer ones are
    split at whitespace), and ``max_note_sentences`` sentences; a note over a budget sends its
    record to the dead-letter topic before any tokenising.
    """

    encoder: Encoder
    max_note_chars: int
    max_sentence_tokens: int
    max_note_sentences: int | None = None
    #: Decoder per input topic; records of other topics (and from files) read note events.
    decoders: Mapping[str, Decoder] = field(default_factory=dict)
    #: Run the lexicon rules on every sentence (:attr:`~worker.notes.Note.rules`).
    lexicon_rules: bool = True

    def prepare(self, records: Sequence[Record]) -> list[Note]:
        """Decode, segment and tokenise ``records``; return their notes. Each record then holds
        its notes, or a dead-letter reason."""
        notes: list[Note] = []
        for record in records:
            try:
                record.notes = self._segmented(record)
            except InvalidEvent as exc:
                record.skipped = []  # the whole record is a dead letter
                record.fail(exc)
            record.unscored = len(record.notes)
            notes.extend(record.notes)
        texts = [note.event.text[start:end] for note in notes for start, end in note.spans]
        encoded = self.encoder.encode(texts)
        position = 0
        for note in notes:
            count = len(note.spans)
            chunk = encoded[position : position + count]
            if self.lexicon_rules:
                note.rules = matched_rules(texts[position : position + count])
            position += count
            note.truncated = [item.truncated for item in chunk]
            note.expect(count)
            note.jobs = [SentenceJob(note, i, item.ids) for i, item in enumerate(chunk)]
        return notes

    def _segmented(self, record: Record) -> list[Note]:
        topic = record.source.topic
        decode = self.decoders.get(topic or "") or json_notes(self.max_note_chars)
        max_chars = self.max_sentence_tokens * CHARS_PER_TOKEN
        decoded = decode(record.value)
        record.skipped = decoded.skipped
        notes = []
        for event in decoded.events:
            note = Note(record=record, event=event)
            if not event.retraction:
                note.spans = split_sentences(event.text, max_chars=max_chars)
            limit = self.max_note_sentences
            if limit is not None and len(note.spans) > limit:
                raise InvalidEvent(
                    "too_many_sentences",
                    f"text splits into {len(note.spans)} sentences, the limit is {limit}",
                )
            notes.append(note)
        return notes


def matched_rules(sentences: Sequence[str]) -> dict[int, str]:
    """The lexicon rule that names a biomarker in each of ``sentences``, by index."""
    return {
        index: label
        for index, sentence in enumerate(sentences)
        if (label := first_label(sentence)) is not None
    }


def prepare_isolated(preparer: Preparer, records: list[Record]) -> list[Note]:
    """Prepare ``records``; if that raises, one at a time, so that a record whose text breaks
    the segmenter or the tokenizer goes to the dead-letter topic alone."""
    try:
        return preparer.prepare(records)
    except Exception:  # isolated below, record by record
        notes: list[Note] = []
        for record in records:
            record.notes, record.skipped, record.unscored, record.failure = [], [], 0, None
            try:
                notes += preparer.prepare([record])
            except Exception as exc:  # the record is dead-lettered with its class
                record.notes, record.unscored = [], 0
                reason = f"{type(exc).__name__} while preparing the note"
                record.fail(InvalidEvent("preparation_failed", reason))
        return notes


class PendingRecords:
    """Records submitted for preparation and not yet handed back, and the preparation's
    heartbeat: when a chunk was last handed back, or now while nothing waits (idle is not
    stuck). A note that sends the segmenter or a parser into an endless loop stops it."""

    def __init__(self) -> None:
        self._count = 0
        self._moved = time.monotonic()
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        return self._count

    @property
    def heartbeat(self) -> float:
        return time.monotonic() if self._count == 0 else self._moved

    def add(self, records: int) -> None:
        with self._lock:
            if self._count == 0:  # the wait for this chunk starts now, not when last busy
                self._moved = time.monotonic()
            self._count += records

    def done(self, records: int) -> None:
        with self._lock:
            self._count -= records
            self._moved = time.monotonic()


class PreparationThread:
    """Runs a :class:`Preparer` off the polling thread, so note content never stalls polling.

    Records go in with :meth:`submit`; each is handed back through ``on_prepared`` once it
    holds its notes (or its dead-letter reason), and only then are its notes passed to
    ``score``. Records are prepared in chunks of ``chunk``, so the model starts on the first
    notes of a large poll while the rest are prepared. A record ``cancelled`` meanwhile (its
    partition was revoked) is skipped.
    """

    def __init__(
        self,
        *,
        preparer: Preparer,
        score: Callable[[list[Note]], None],
        on_prepared: Callable[[Record], None],
        chunk: int = 32,
    ) -> None:
        self.preparer = preparer  # may be replaced until the first submit()
        self._score = score
        self._on_prepared = on_prepared
        self._chunk = chunk
        self._queue: queue.SimpleQueue[list[Record] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="prepare", daemon=True)
        self.failure: BaseException | None = None
        self._pending = PendingRecords()

    def start(self) -> None:
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Ready as soon as started (a host pool's processes take a while)."""
        return self._thread.is_alive()

    def submit(self, records: list[Record]) -> None:
        if records:
            self._pending.add(len(records))
            self._queue.put(records)

    @property
    def pending(self) -> int:
        """Records submitted and not yet prepared (their sentences are not known yet)."""
        return self._pending.count

    @property
    def heartbeat(self) -> float:
        """See :class:`PendingRecords`."""
        return self._pending.heartbeat

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def limit_sentences(self, max_note_sentences: int | None) -> None:
        """Dead-letter notes of more sentences (set before the first :meth:`submit`)."""
        self.preparer = replace(self.preparer, max_note_sentences=max_note_sentences)

    def _run(self) -> None:
        try:
            while (records := self._queue.get()) is not None:
                for start in range(0, len(records), self._chunk):
                    chunk = records[start : start + self._chunk]
                    live = [record for record in chunk if not record.cancelled]
                    notes = prepare_isolated(self.preparer, live)
                    for record in live:
                        self._on_prepared(record)
                    self._score(notes)
                    self._pending.done(len(chunk))
        except BaseException as exc:  # reported to the owner, which exits non-zero
            self.failure = exc
            log.error(
                "preparation_thread_failed",
                error_class=type(exc).__name__,
                where=where_raised(exc),  # not the message: it may quote note text
            )
