"""Scoring of tokenised sentences: the batching loop that keeps the model busy.

The Kafka side hands over :class:`SentenceJob` lists with :meth:`InferenceLoop.submit` and keeps
polling; a single background thread pools jobs until a micro-batch's token budget is reached or
``max_wait_s`` has passed since the first waiting job, then runs length-sorted batches. Torch
releases the GIL while it computes, so Kafka I/O, JSON and tokenisation overlap with the model.

A batch that raises is split in halves and retried; a single sentence that still fails marks its
note's :attr:`NoteWork.error` (the note then goes to the dead-letter topic), and the rest flows on.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from worker.batching import BatchingSettings, padded, plan_batches

log = structlog.get_logger(__name__)

_POOL_FACTOR = 4  # pool up to this many budgets when they are already queued, for better sorting


class Scorer(Protocol):
    """What the loop needs from a model: probabilities for a batch of token-id rows."""

    pad_multiple: int

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]: ...


class BatchObserver(Protocol):
    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None: ...


@dataclass(slots=True, eq=False)
class NoteWork:
    """The sentences of one note while they are being scored.

    Only the inference thread writes ``scores``/``remaining``/``error``; the owner reads them after
    the work comes back through the completion callback (a queue hand-off orders the two).
    """

    scores: list[float]
    remaining: int
    owner: Any = None
    error: str | None = None
    cancelled: bool = False

    @classmethod
    def for_sentences(cls, count: int, owner: Any = None) -> NoteWork:
        return cls(scores=[0.0] * count, remaining=count, owner=owner)


@dataclass(slots=True)
class SentenceJob:
    work: NoteWork
    index: int
    ids: Sequence[int]


@dataclass(slots=True)
class _Failure:
    error: BaseException


def _score_with_split(scorer: Scorer, rows: Sequence[Sequence[int]]) -> list[float | _Failure]:
    try:
        return list(scorer.predict_ids(rows))
    except Exception as exc:  # model errors (e.g. device OOM): split and retry, never crash
        if len(rows) == 1:
            return [_Failure(exc)]
        log.warning("batch_failed_splitting", rows=len(rows), error_class=type(exc).__name__)
        middle = len(rows) // 2
        return _score_with_split(scorer, rows[:middle]) + _score_with_split(scorer, rows[middle:])


def score_jobs(
    scorer: Scorer,
    jobs: Sequence[SentenceJob],
    settings: BatchingSettings,
    *,
    on_complete: Callable[[NoteWork], None],
    observer: BatchObserver | None = None,
) -> None:
    """Score ``jobs`` in length-sorted micro-batches; report each note as soon as it is done."""
    live = [job for job in jobs if not job.work.cancelled]
    for batch in plan_batches([len(job.ids) for job in live], settings):
        rows = [live[i].ids for i in batch]
        started = time.perf_counter()
        results = _score_with_split(scorer, rows)
        elapsed = time.perf_counter() - started
        if observer is not None:
            longest = max(len(row) for row in rows)
            observer.batch_done(
                sentences=len(rows),
                tokens=sum(len(row) for row in rows),
                padded_tokens=len(rows) * padded(longest, settings.pad_multiple),
                seconds=elapsed,
            )
        for i, result in zip(batch, results, strict=True):
            job = live[i]
            work = job.work
            if isinstance(result, _Failure):
                work.error = f"{type(result.error).__name__} while classifying sentence {job.index}"
            else:
                work.scores[job.index] = result
            work.remaining -= 1
            if work.remaining == 0:
                on_complete(work)


class InferenceLoop:
    """The background thread that pools submitted jobs and scores them."""

    def __init__(
        self,
        *,
        scorer: Scorer,
        settings: BatchingSettings,
        on_complete: Callable[[NoteWork], None],
        observer: BatchObserver | None = None,
    ) -> None:
        self._scorer = scorer
        self._settings = settings
        self._on_complete = on_complete
        self._observer = observer
        self._queue: queue.SimpleQueue[list[SentenceJob]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.failure: BaseException | None = None
        self.last_progress = time.monotonic()
        self._queued_sentences = 0
        self._lock = threading.Lock()

    @property
    def queued_sentences(self) -> int:
        return self._queued_sentences

    def start(self) -> None:
        self._thread.start()

    def submit(self, jobs: list[SentenceJob]) -> None:
        if jobs:
            with self._lock:
                self._queued_sentences += len(jobs)
            self._queue.put(jobs)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.last_progress = time.monotonic()
                pool = self._gather()
                if pool:
                    with self._lock:
                        self._queued_sentences -= len(pool)
                    score_jobs(
                        self._scorer,
                        pool,
                        self._settings,
                        on_complete=self._on_complete,
                        observer=self._observer,
                    )
        except BaseException as exc:  # reported to the owner, which exits non-zero
            self.failure = exc
            log.error("inference_thread_failed", error_class=type(exc).__name__, error=str(exc))

    def _gather(self) -> list[SentenceJob]:
        """Wait for work, then pool it until a batch's budget is reached or the deadline passes."""
        try:
            pool = list(self._queue.get(timeout=0.1))
        except queue.Empty:
            return []
        budget = self._settings.token_budget
        tokens = sum(len(job.ids) for job in pool)
        deadline = time.monotonic() + self._settings.max_wait_s
        while tokens < budget:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            pool.extend(chunk)
            tokens += sum(len(job.ids) for job in chunk)
        while tokens < budget * _POOL_FACTOR:  # take what is already queued, without waiting
            try:
                chunk = self._queue.get_nowait()
            except queue.Empty:
                break
            pool.extend(chunk)
            tokens += sum(len(job.ids) for job in chunk)
        return pool
