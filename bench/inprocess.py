"""The worker's pipeline minus the broker: an in-process source and sink around the real
:class:`~worker.prepare.Preparer` and :class:`~worker.inference.InferenceLoop`.

The source (calling thread) parses, segments and tokenises notes in chunks and submits them; the
inference thread batches and scores; a sink thread renders each finished note's output JSON, as
the Kafka producer side would. Tokenisation and rendering overlap with model compute.
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.corpus import MAX_SENTENCE_TOKENS
from worker.batching import BatchingSettings, BatchLimits
from worker.events import Provenance, SourceRef
from worker.heap import startup_objects_frozen
from worker.inference import InferenceLoop
from worker.model.classifier import SequenceClassifier
from worker.model.packing import pack
from worker.model.wordpieces import SentenceEncoderSpec
from worker.notes import Note, Record
from worker.prepare import EncodedSentence, Encoder, Preparer
from worker.render import render_note
from worker.scoring import Scorer
from worker.segmentation import SEGMENTER_VERSION


class NullScorer:
    """Answers without a model: measures everything around it (the host-side ceiling).

    It is batched like ``like`` (lanes, packing) and does the host side of its ``predict_ids``:
    packing the rows, or padding them. It tokenises as ``like`` does, so it can stand for the
    whole model in the worker's threads (:func:`worker.completions.worker_threads`).
    """

    def __init__(self, like: SequenceClassifier) -> None:
        self.pad_multiple = like.pad_multiple
        self.concurrency = like.concurrency
        self.packs = like.packs
        self.batch_limits: BatchLimits = like.batch_limits
        self.device_type = like.device_type
        self._like = like

    def encode(self, texts: Sequence[str]) -> Sequence[EncodedSentence]:
        return self._like.encode(texts)

    def encoder_spec(self) -> SentenceEncoderSpec | None:
        return self._like.encoder_spec()

    def device_memory_bytes(self) -> int | None:
        return None

    def computed_positions(self, lengths: Sequence[int]) -> int:
        return self._like.computed_positions(lengths)

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if self.packs:
            pack(batch, width=self._like.pack_width, multiple=self.pad_multiple)
        else:
            self._like.pad(batch)
        return [0.0] * len(batch)


@dataclass
class BatchLog:
    """Every micro-batch: sentences, real tokens, padded tokens, seconds."""

    batches: list[tuple[int, int, int, float]] = field(default_factory=list)

    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None:
        self.batches.append((sentences, tokens, padded_tokens, seconds))

    def cache_answered(self, *, sentences: int, tokens: int) -> None:
        """The host-only pass runs without a score cache (every sentence is batched)."""

    def describe(self, elapsed: float) -> dict[str, Any]:
        if not self.batches:
            return {"batches": 0}
        sizes = sorted(b[0] for b in self.batches)
        padded = sorted(b[2] for b in self.batches)
        real = sum(b[1] for b in self.batches)
        busy = sum(b[3] for b in self.batches)
        return {
            "batches": len(self.batches),
            "sentences_per_batch": _spread(sizes),
            "padded_tokens_per_batch": _spread(padded),
            "padding_ratio": round(1 - real / sum(padded), 4),
            "median_batch_s": round(statistics.median(b[3] for b in self.batches), 5),
            "model_busy_share": round(busy / elapsed, 3) if elapsed else None,
        }


def _spread(values: Sequence[int]) -> dict[str, float]:
    return {
        "p10": values[len(values) // 10],
        "p50": values[len(values) // 2],
        "p90": values[len(values) * 9 // 10],
        "max": values[-1],
    }


def run_inprocess(
    encoder: Encoder,
    scorer: Scorer,
    events: Sequence[bytes],
    settings: BatchingSettings,
    *,
    chunk_notes: int = 64,
    max_queued_sentences: int = 20_000,
    keep_scores: bool = False,
) -> dict[str, Any]:
    """Push ``events`` through prepare -> batch/score -> render; return rates and batches, and
    with ``keep_scores`` each event's sentence probabilities (``note_scores``, None for an
    event that failed)."""
    preparer = Preparer(
        encoder=encoder, max_note_chars=1_000_000, max_sentence_tokens=MAX_SENTENCE_TOKENS
    )
    finished: queue.SimpleQueue[Note | None] = queue.SimpleQueue()
    log = BatchLog()
    loop = InferenceLoop(scorer=scorer, settings=settings, on_complete=finished.put, observer=log)
    sink = _Sink(finished, keep_scores=keep_scores)
    records: list[Record] = []
    sink.thread.start()
    loop.start()
    with startup_objects_frozen():  # as the worker's loop runs
        started = time.perf_counter()
        try:
            for first in range(0, len(events), chunk_notes):
                chunk = [
                    Record(source=SourceRef("bench", 0, first + i, None), key=None, value=value)
                    for i, value in enumerate(events[first : first + chunk_notes])
                ]
                records.extend(chunk)
                notes = preparer.prepare(chunk)
                sink.expected += len(notes)
                loop.submit(notes)
                while loop.queued_sentences > max_queued_sentences and loop.alive():
                    time.sleep(0.0005)
            finished.put(None)  # every note is submitted: the sink stops at ``expected``
            sink.thread.join()
        finally:
            loop.stop()
            finished.put(None)
    if loop.failure is not None:
        raise RuntimeError(f"inference failed: {loop.failure!r}")
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {
        "notes": len(events),
        "sentences": sink.sentences,
        "seconds": round(elapsed, 3),
        "notes_per_s": round(len(events) / elapsed, 1),
        "sentences_per_s": round(sink.sentences / elapsed, 1),
        "output_bytes": sink.bytes,
        "batches": log.describe(elapsed),
    }
    if keep_scores:
        result["note_scores"] = [sink.scores.get(id(record)) for record in records]
    return result


class _Sink:
    """Renders finished notes (the producer side) until every submitted note arrived."""

    def __init__(self, finished: queue.SimpleQueue[Note | None], *, keep_scores: bool) -> None:
        self._finished = finished
        self._keep_scores = keep_scores
        self.expected = 0  # notes submitted so far (final once ``None`` arrives)
        self.sentences = 0
        self.bytes = 0
        #: Probabilities per rendered note, by ``id`` of its record (``keep_scores``).
        self.scores: dict[int, list[float]] = {}
        self._provenance = Provenance("bench", "0", "0" * 64, 0.5, SEGMENTER_VERSION)
        self.thread = threading.Thread(target=self._run, name="sink", daemon=True)

    def _run(self) -> None:
        done = 0
        submitted = False
        while not (submitted and done >= self.expected):
            note = self._finished.get()
            if note is None:
                submitted = True
                continue
            done += 1
            if note.error is None:
                value = render_note(note, provenance=self._provenance, include_text=False)
                self.bytes += len(value)
                self.sentences += len(note.spans)
                if self._keep_scores:
                    self.scores[id(note.record)] = list(note.scores)
