"""Scoring of tokenised sentences: the batching loop that keeps the model busy.

The Kafka side hands over :class:`SentenceJob` lists with :meth:`InferenceLoop.submit` and keeps
polling; a single background thread pools jobs until a micro-batch's token budget is reached or
``max_wait_s`` has passed since the first waiting job, then runs length-sorted batches. Torch
releases the GIL while it computes, so Kafka I/O, JSON and tokenisation overlap with the model.

A batch that raises is split in halves and retried; a single sentence that still fails marks its
note's :attr:`NoteWork.error` (the note then goes to the dead-letter topic), and the rest flows on.

A scorer with ``concurrency`` > 1 (a CPU classifier: one single-threaded batch per core instead of
one batch spread over every core) gets its batches on that many worker threads; results are still
applied in plan order by the loop's own thread, so note bookkeeping stays single-threaded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from worker.batching import BatchingSettings, padded, plan_batches

log = structlog.get_logger(__name__)

_POOL_FACTOR = 4  # pool up to this many budgets when they are already queued, for better sorting


class Scorer(Protocol):
    """What the loop needs from a model: probabilities for a batch of token-id rows.

    An optional ``concurrency`` attribute (default 1) says how many ``predict_ids`` calls may run
    at once, on different threads, for the best throughput.
    """

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


def concurrency_of(scorer: Scorer) -> int:
    return max(1, int(getattr(scorer, "concurrency", 1)))


def _timed_score(
    scorer: Scorer, rows: Sequence[Sequence[int]]
) -> tuple[list[float | _Failure], float]:
    started = time.perf_counter()
    results = _score_with_split(scorer, rows)
    return results, time.perf_counter() - started


def _scored(
    scorer: Scorer, plan: list[list[Sequence[int]]], executor: Executor | None
) -> Iterator[tuple[list[float | _Failure], float]]:
    """Results of each batch of ``plan``, in plan order (computed ahead on ``executor``)."""
    if executor is None:
        for rows in plan:
            yield _timed_score(scorer, rows)
        return
    futures: list[Future[tuple[list[float | _Failure], float]]] = [
        executor.submit(_timed_score, scorer, rows) for rows in plan
    ]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


def score_jobs(
    scorer: Scorer,
    jobs: Sequence[SentenceJob],
    settings: BatchingSettings,
    *,
    on_complete: Callable[[NoteWork], None],
    observer: BatchObserver | None = None,
    executor: Executor | None = None,
) -> None:
    """Score ``jobs`` in length-sorted micro-batches; report each note as soon as it is done.

    Batches run on ``executor`` when given, else on a temporary pool when the scorer's
    ``concurrency`` is above 1, else on the calling thread.
    """
    live = [job for job in jobs if not job.work.cancelled]
    batches = plan_batches([len(job.ids) for job in live], settings)

    def apply(pool: Executor | None) -> None:
        _apply(
            scorer,
            live,
            batches,
            settings=settings,
            on_complete=on_complete,
            observer=observer,
            executor=pool,
        )

    if executor is None and concurrency_of(scorer) > 1 and len(batches) > 1:
        with ThreadPoolExecutor(concurrency_of(scorer), thread_name_prefix="score") as pool:
            apply(pool)
    else:
        apply(executor)


def _apply(
    scorer: Scorer,
    live: list[SentenceJob],
    batches: list[list[int]],
    *,
    settings: BatchingSettings,
    on_complete: Callable[[NoteWork], None],
    observer: BatchObserver | None,
    executor: Executor | None,
) -> None:
    plan = [[live[i].ids for i in batch] for batch in batches]
    for batch, rows, (results, elapsed) in zip(
        batches, plan, _scored(scorer, plan, executor), strict=True
    ):
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
        workers = concurrency_of(scorer)
        self._executor = (
            ThreadPoolExecutor(workers, thread_name_prefix="inference-batch")
            if workers > 1
            else None
        )

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
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

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
                        executor=self._executor,
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
