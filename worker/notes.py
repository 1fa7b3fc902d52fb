"""What moves through the worker: an input :class:`Record`, the :class:`Note` s it carries, and the
:class:`SentenceJob` s the model sees.

A record is the unit of offsets: it is read once, becomes committable when every output it caused
(one enriched event per note, or one dead letter for the whole record) is delivered. A note is the
unit of scoring: its sentences are scored in batches, possibly mixed with other notes' sentences,
and it completes when its last sentence is scored. Nothing here knows Kafka or torch.

Threads: the inference thread writes only ``Note.scores``, ``Note.remaining`` and ``Note.error``
and then hands the note back through the inference loop's ``on_complete`` callback (a queue).
Every other field is read and written by the thread that owns the record (the polling loop).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from worker.errors import InvalidEvent
from worker.events import Headers, NoteEvent, SourceRef
from worker.inputs.extracted import Skip


@dataclass(slots=True, eq=False)
class SentenceJob:
    """One sentence of one note, as token ids: what the model scores."""

    note: Note
    index: int
    ids: Sequence[int]


@dataclass(slots=True, eq=False, kw_only=True)
class Note:
    """One clinical note of a record: the parsed event, its sentences and their scores."""

    record: Record
    event: NoteEvent
    spans: list[tuple[int, int]] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    jobs: list[SentenceJob] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    #: The lexicon rule that names a biomarker in a sentence, by sentence index (most have none).
    rules: dict[int, str] = field(default_factory=dict)
    remaining: int = 0
    error: str | None = None
    cancelled: bool = False
    #: Prepared by a host process (:mod:`worker.host_pool`): its parsed event, spans,
    #: truncation flags and rules, pickled there; ``event`` then holds only the key and
    #: retraction flag, and ``spans`` stays empty (``scores`` has one slot per sentence).
    payload: bytes | None = None

    def expect(self, count: int) -> None:
        """Size the score slots for ``count`` sentences."""
        self.scores = [0.0] * count
        self.remaining = count


@dataclass(slots=True, eq=False, kw_only=True)
class Record:
    """One input record from read until every output it caused is delivered."""

    source: SourceRef
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None
    notes: list[Note] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)  # parts with no note text, and why
    failure: InvalidEvent | None = None
    prepared: bool = False  # set by the owning thread once the preparation handed it back
    cancelled: bool = False
    unscored: int = 0  # notes not yet back from the model
    unacked: int = 0  # outputs produced and not yet acknowledged
    delivered: bool = False
    #: Its dead letter has been produced: a later refused output of it needs no second one.
    dead_lettered: bool = False

    @property
    def size(self) -> int:
        """Bytes of the record's value (what backpressure counts)."""
        return len(self.value) if self.value is not None else 0

    @property
    def ready(self) -> bool:
        """True once its outputs (or its dead letter) can be written."""
        return self.prepared and (self.failure is not None or self.unscored == 0)

    def fail(self, error: InvalidEvent) -> None:
        """Send this record to the dead-letter topic (the first reason wins)."""
        if self.failure is None:
            self.failure = error

    def note_scored(self, note: Note) -> None:
        """A note came back from the model (the polling thread calls this)."""
        self.unscored -= 1
        if note.error is not None:
            self.fail(InvalidEvent("inference_failed", note.error))

    def cancel(self) -> None:
        """Stop preparing, scoring and producing this record (its partition was revoked or
        lost, or the worker rewound)."""
        self.cancelled = True
        for note in self.notes:
            note.cancelled = True
