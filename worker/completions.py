"""The hand-back from the worker threads, read by the thread that owns the records.

The preparation thread hands back each prepared :class:`~worker.notes.Record`, the inference
thread each scored :class:`~worker.notes.Note`, through one queue. Both runtimes build the two
threads with :func:`worker_threads`, drain the queue with :func:`take_completed` (which also
counts sentences prepared and flagged) and watch the threads with :func:`check_threads`.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from worker.batching import batching_for
from worker.errors import FatalError
from worker.events import written_score
from worker.host_pool import HostPool, HostPreparation, HostProcessFailed
from worker.inference import InferenceLoop
from worker.inputs.decoding import decoders_for
from worker.logs import where_raised
from worker.metrics import Metrics
from worker.notes import Note, Record
from worker.prepare import PreparationThread, Preparer
from worker.score_cache import ScoreCache
from worker.scoring import BatchObserver

if TYPE_CHECKING:
    from worker.config import WorkerSettings
    from worker.pipeline import Model

Completions = queue.SimpleQueue[Record | Note]


class WorkerThread(Protocol):
    @property
    def failure(self) -> BaseException | None: ...

    def alive(self) -> bool: ...


class Preparation(WorkerThread, Protocol):
    """Prepares records off the polling thread: :class:`PreparationThread` or
    :class:`~worker.host_pool.HostPreparation`."""

    @property
    def pending(self) -> int: ...

    @property
    def heartbeat(self) -> float:
        """Monotonic time of its last progress (now while idle): liveness watches it."""

    def submit(self, records: list[Record]) -> None: ...

    def limit_sentences(self, max_note_sentences: int | None) -> None: ...

    def start(self) -> None: ...

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once it can take records; False when it failed or ``timeout`` passed."""

    def stop(self, timeout: float = 5.0) -> None: ...


def worker_threads(
    settings: WorkerSettings,
    model: Model,
    metrics: Metrics,
    hand_back: Callable[[Record | Note], None],
    *,
    pool: HostPool | None = None,
    observer: BatchObserver | None = None,
) -> tuple[Preparation, InferenceLoop]:
    """The preparation (a thread with one decoder per input topic, or the host processes of
    ``pool``) feeding the inference loop; both hand their results back through
    ``hand_back``. Not started. Batches are reported to ``observer`` (default: ``metrics``)."""
    inference = InferenceLoop(
        scorer=model,
        settings=batching_for(
            model,
            token_budget=settings.token_budget,
            max_batch_sentences=settings.max_batch_sentences,
            max_wait_s=settings.max_wait_ms / 1000,
        ),
        on_complete=hand_back,
        observer=observer or metrics,
        cache=ScoreCache(settings.score_cache_size) if settings.score_cache_size else None,
    )
    if pool is not None:
        return HostPreparation(pool=pool, score=inference.submit, on_prepared=hand_back), inference
    preparer = Preparer(
        encoder=model,
        max_note_chars=settings.max_note_chars,
        max_sentence_tokens=settings.max_sentence_tokens,
        decoders=decoders_for(settings),
        lexicon_rules=settings.lexicon_rules,
    )
    preparation = PreparationThread(
        preparer=preparer, score=inference.submit, on_prepared=hand_back
    )
    return preparation, inference


def take_completed(completed: Completions, metrics: Metrics, *, threshold: float) -> None:
    """Mark records prepared (counting their sentences and skipped parts) and notes scored
    (counting the sentences labelled as biomarker mentions, as in the output event: score >=
    ``threshold`` or a lexicon rule)."""
    while True:
        try:
            done = completed.get_nowait()
        except queue.Empty:
            return
        if isinstance(done, Record):
            done.prepared = True
            metrics.sentences_in.inc(sum(len(note.scores) for note in done.notes))
            for skip in done.skipped:
                metrics.skipped.labels(reason=skip.reason).inc()
        else:
            done.record.note_scored(done)
            if done.error is None:  # a note that failed is dead-lettered: it labels nothing
                labelled = [written_score(score) >= threshold for score in done.scores]
                by_model = sum(labelled)
                by_rule_alone = sum(1 for index in done.rules if not labelled[index])
                metrics.sentences_flagged.inc(by_model + by_rule_alone)
                metrics.sentences_flagged_by_rule.inc(by_rule_alone)


def check_threads(threads: dict[str, WorkerThread]) -> None:
    """:class:`FatalError` naming the first thread that stopped, and where it failed (for a
    host process: its own failure's class and location, or its exit code)."""
    for name, thread in threads.items():
        if not thread.alive():
            failure = thread.failure
            if isinstance(failure, HostProcessFailed):  # its message names no note text
                raise FatalError(f"{name} thread stopped: HostProcessFailed: {failure}")
            where = where_raised(failure) if failure is not None else "unknown"
            raise FatalError(f"{name} thread stopped: {type(failure).__name__} at {where}")
