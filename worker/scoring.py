"""Scoring sentence jobs in batches: the scorer interface, batch planning, split-and-retry.

:func:`score_jobs` scores a list of jobs now (the offline ``classify`` path and the faust
runtime); :class:`worker.inference.InferenceLoop` does the same continuously for the Kafka
worker. Both write results into the jobs' notes with :func:`record_batch`.

A batch that raises is split in halves and retried; a single sentence that still fails marks its
note's :attr:`~worker.notes.Note.error` (the record then goes to the dead-letter topic), and the
rest flows on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import structlog

from worker.batching import (
    CPU_LIMITS,
    BatchingSettings,
    BatchLimits,
    padded,
    plan_batches,
    plan_packed,
)
from worker.notes import Note, SentenceJob

log = structlog.get_logger(__name__)


class Scorer(Protocol):
    """What batching needs from a model: probabilities for a batch of token-id rows.

    ``concurrency``: how many ``predict_ids`` calls may run at once, on different threads.
    ``packs``: a batch's cost does not depend on which sentences share it (several sentences per
    row), so batches may follow arrival order. ``computed_positions``: positions (real plus
    padding) one batch of these lengths costs. ``batch_limits``: the batch limits the settings
    leave unset. :class:`PlainScorer` gives the defaults of a plain padded model.
    """

    pad_multiple: int
    concurrency: int
    packs: bool
    batch_limits: BatchLimits

    def computed_positions(self, lengths: Sequence[int]) -> int: ...

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]: ...


class PlainScorer:
    """Defaults for a scorer of padded rows: one call at a time, CPU batch limits."""

    pad_multiple: int = 1
    concurrency: int = 1
    packs: bool = False
    batch_limits: BatchLimits = CPU_LIMITS

    def computed_positions(self, lengths: Sequence[int]) -> int:
        return len(lengths) * padded(max(lengths), self.pad_multiple) if lengths else 0

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        raise NotImplementedError


class BatchObserver(Protocol):
    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None: ...


@runtime_checkable
class CacheObserver(Protocol):
    """A :class:`BatchObserver` that also counts the sentences the score cache answered
    (:mod:`worker.score_cache`); an observer without this method is simply not told."""

    def cache_answered(self, *, sentences: int, tokens: int) -> None: ...


@dataclass(slots=True)
class Failure:
    """A sentence the model could not score, even alone."""

    error: BaseException


Results = list[float | Failure]


class NonFiniteScore(ArithmeticError):
    """The model gave a sentence a NaN or infinite score (e.g. a float16 overflow, damaged
    weights): it is not a probability, so the sentence failed."""


def _score_with_split(scorer: Scorer, rows: Sequence[Sequence[int]]) -> Results:
    try:
        scores = list(scorer.predict_ids(rows))
        return [score if math.isfinite(score) else Failure(NonFiniteScore()) for score in scores]
    except Exception as exc:  # model errors (e.g. device OOM): split and retry, never crash
        if len(rows) == 1:
            return [Failure(exc)]
        log.warning("batch_failed_splitting", rows=len(rows), error_class=type(exc).__name__)
        middle = len(rows) // 2
        return _score_with_split(scorer, rows[:middle]) + _score_with_split(scorer, rows[middle:])


def timed_score(scorer: Scorer, rows: Sequence[Sequence[int]]) -> tuple[Results, float]:
    started = time.perf_counter()
    results = _score_with_split(scorer, rows)
    return results, time.perf_counter() - started


def plan_for(
    scorer: Scorer, lengths: Sequence[int], settings: BatchingSettings, parts: int
) -> list[list[int]]:
    """Batches for this scorer: arrival-order runs when it packs, else length-sorted batches,
    largest first (the longest batch starts first, so the lanes finish together)."""
    if scorer.packs:
        return plan_packed(lengths, settings, parts)
    multiple = settings.pad_multiple

    def cost(batch: list[int]) -> int:  # padded tokens; the last row is the longest
        return len(batch) * padded(lengths[batch[-1]], multiple)

    return sorted(plan_batches(lengths, settings), key=cost, reverse=True)


def record_batch(
    scorer: Scorer,
    jobs: Sequence[SentenceJob],
    results: Sequence[float | Failure],
    seconds: float,
    *,
    on_complete: Callable[[Note], None],
    observer: BatchObserver | None,
) -> None:
    """Write one batch's scores into its notes; hand on every note that is now complete."""
    if observer is not None:
        lengths = [len(job.ids) for job in jobs]
        observer.batch_done(
            sentences=len(jobs),
            tokens=sum(lengths),
            padded_tokens=scorer.computed_positions(lengths),
            seconds=seconds,
        )
    _write_scores(jobs, results, on_complete)


def record_cached(
    jobs: Sequence[SentenceJob],
    scores: Results,
    *,
    on_complete: Callable[[Note], None],
    observer: BatchObserver | None,
) -> None:
    """Write scores the score cache answered into their notes, as :func:`record_batch` does."""
    if isinstance(observer, CacheObserver):
        observer.cache_answered(sentences=len(jobs), tokens=sum(len(job.ids) for job in jobs))
    _write_scores(jobs, scores, on_complete)


def _write_scores(
    jobs: Sequence[SentenceJob],
    results: Sequence[float | Failure],
    on_complete: Callable[[Note], None],
) -> None:
    for job, result in zip(jobs, results, strict=True):
        note = job.note
        if isinstance(result, Failure):
            note.error = f"{type(result.error).__name__} while classifying sentence {job.index}"
        else:
            note.scores[job.index] = result
        note.remaining -= 1
        if note.remaining == 0:
            on_complete(note)


def _scored(
    scorer: Scorer, plan: list[list[Sequence[int]]], executor: Executor | None
) -> Iterator[tuple[Results, float]]:
    """Results of each batch of ``plan``, in plan order (computed ahead on ``executor``)."""
    if executor is None:
        for rows in plan:
            yield timed_score(scorer, rows)
        return
    futures: list[Future[tuple[Results, float]]] = [
        executor.submit(timed_score, scorer, rows) for rows in plan
    ]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def score_notes(
    scorer: Scorer,
    notes: Sequence[Note],
    settings: BatchingSettings,
    *,
    on_complete: Callable[[Note], None] = lambda _note: None,
    observer: BatchObserver | None = None,
) -> None:
    """Score every sentence of ``notes`` now, on the calling thread (and ``concurrency``
    helpers); hand on each note as soon as it is complete (a note without sentences at once)."""
    jobs: list[SentenceJob] = []
    for note in notes:
        if note.remaining == 0:
            on_complete(note)
        jobs.extend(note.jobs)
        note.jobs = []
    score_jobs(scorer, jobs, settings, on_complete=on_complete, observer=observer)


def score_jobs(
    scorer: Scorer,
    jobs: Sequence[SentenceJob],
    settings: BatchingSettings,
    *,
    on_complete: Callable[[Note], None] = lambda _note: None,
    observer: BatchObserver | None = None,
) -> None:
    """Score ``jobs`` now; report each note whose last sentence was among them."""
    live = [job for job in jobs if not job.note.cancelled]
    lanes = max(1, scorer.concurrency)
    batches = plan_for(scorer, [len(job.ids) for job in live], settings, lanes)
    plan = [[live[i].ids for i in batch] for batch in batches]

    def apply(executor: Executor | None) -> None:
        for batch, (results, seconds) in zip(batches, _scored(scorer, plan, executor), strict=True):
            batch_jobs = [live[i] for i in batch]
            record_batch(
                scorer, batch_jobs, results, seconds, on_complete=on_complete, observer=observer
            )

    if lanes > 1 and len(batches) > 1:
        with ThreadPoolExecutor(lanes, thread_name_prefix="score") as pool:
            apply(pool)
    else:
        apply(None)
