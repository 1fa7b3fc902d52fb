"""Scoring of tokenised sentences: the batching loop that keeps the model busy.

The Kafka side hands over :class:`SentenceJob` lists with :meth:`InferenceLoop.submit` and keeps
polling; a background thread batches continuously (see :class:`InferenceLoop`): whenever a lane
of the model is free it runs the next planned batch, and when none is planned it takes the oldest
waiting sentences as the next window once a token budget waits or the oldest has waited
``max_wait_s``. Torch releases the GIL while it computes, so Kafka I/O, JSON and tokenisation
overlap with the model.

A batch that raises is split in halves and retried; a single sentence that still fails marks its
note's :attr:`NoteWork.error` (the note then goes to the dead-letter topic), and the rest flows on.

A scorer with ``concurrency`` > 1 (a CPU classifier: one single-threaded batch per core instead of
one batch spread over every core; a GPU classifier: two batches, so one is packed and launched
while the other's kernels run) gets that many lanes, each a worker thread; results are applied
by the loop's own thread as batches finish, so note bookkeeping stays single-threaded.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from worker.batching import BatchingSettings, padded, plan_batches, plan_packed

log = structlog.get_logger(__name__)

_POOL_FACTOR = 4  # a window holds up to this many budgets when they wait, for better sorting
_IDLE_WAKE_S = 0.1  # the loop wakes at least this often (stop requests, liveness)


class Scorer(Protocol):
    """What the loop needs from a model: probabilities for a batch of token-id rows.

    Optional attributes: ``concurrency`` (default 1) says how many ``predict_ids`` calls may run
    at once, on different threads, for the best throughput; ``packs`` (default False) says that a
    batch's cost does not depend on which sentences share it (several sentences per row), so
    batches may follow arrival order; ``computed_positions(lengths)`` says how many positions a
    batch of those lengths costs (default: rows x longest); ``batch_limits``
    (:class:`worker.batching.BatchLimits`, default CPU's) gives the batch size limits that the
    settings leave unset.
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


def packs(scorer: Scorer) -> bool:
    """True when the scorer packs several sentences per row (padding-free batches)."""
    return bool(getattr(scorer, "packs", False))


def plan_for(
    scorer: Scorer, lengths: Sequence[int], settings: BatchingSettings, parts: int
) -> list[list[int]]:
    """Batches for this scorer: arrival-order runs when it packs, else length-sorted batches,
    largest first (the longest batch starts first, so the lanes finish together)."""
    if packs(scorer):
        return plan_packed(lengths, settings, parts)
    multiple = settings.pad_multiple

    def cost(batch: list[int]) -> int:  # padded tokens; the last row is the longest
        return len(batch) * padded(lengths[batch[-1]], multiple)

    return sorted(plan_batches(lengths, settings), key=cost, reverse=True)


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
) -> None:
    """Score ``jobs`` now, on the calling thread (and ``concurrency`` helpers); report each note
    as soon as it is done. The offline path (``classify``); the worker uses :class:`InferenceLoop`.
    """
    live = [job for job in jobs if not job.work.cancelled]
    lanes = concurrency_of(scorer)
    batches = plan_for(scorer, [len(job.ids) for job in live], settings, lanes)
    plan = [[live[i].ids for i in batch] for batch in batches]

    def apply(executor: Executor | None) -> None:
        for batch, (results, seconds) in zip(batches, _scored(scorer, plan, executor), strict=True):
            _record(
                scorer,
                [live[i] for i in batch],
                results,
                seconds,
                on_complete=on_complete,
                observer=observer,
            )

    if lanes > 1 and len(batches) > 1:
        with ThreadPoolExecutor(lanes, thread_name_prefix="score") as pool:
            apply(pool)
    else:
        apply(None)


def computed_positions(scorer: Scorer, lengths: Sequence[int]) -> int:
    """Positions (real plus padding) the scorer computes for one batch of ``lengths``."""
    count = getattr(scorer, "computed_positions", None)
    if count is not None:
        return int(count(lengths))
    return len(lengths) * padded(max(lengths), scorer.pad_multiple) if lengths else 0


def _record(
    scorer: Scorer,
    jobs: Sequence[SentenceJob],
    results: Sequence[float | _Failure],
    seconds: float,
    *,
    on_complete: Callable[[NoteWork], None],
    observer: BatchObserver | None,
) -> None:
    """Write one batch's scores into its notes; report every note that is now complete."""
    if observer is not None:
        lengths = [len(job.ids) for job in jobs]
        observer.batch_done(
            sentences=len(jobs),
            tokens=sum(lengths),
            padded_tokens=computed_positions(scorer, lengths),
            seconds=seconds,
        )
    for job, result in zip(jobs, results, strict=True):
        work = job.work
        if isinstance(result, _Failure):
            work.error = f"{type(result.error).__name__} while classifying sentence {job.index}"
        else:
            work.scores[job.index] = result
        work.remaining -= 1
        if work.remaining == 0:
            on_complete(work)


@dataclass(slots=True)
class _Submitted:
    """Jobs handed over by one :meth:`InferenceLoop.submit`; ``start`` skips those planned."""

    at: float
    jobs: list[SentenceJob]
    start: int = 0


@dataclass(slots=True)
class _Scored:
    jobs: list[SentenceJob]
    results: list[float | _Failure]
    seconds: float


@dataclass(slots=True)
class _Crashed:
    error: BaseException


_Event = _Submitted | _Scored | _Crashed | None  # None only wakes the loop (stop)


class InferenceLoop:
    """Continuous batching on a background thread.

    Each of the scorer's ``concurrency`` lanes runs one batch at a time on an executor thread;
    up to lanes + 1 batches are in flight (the extra one waits in the executor's queue, so a
    finishing batch is followed at once). When the planned batches run out, the oldest waiting
    sentences (arrival order) become the next window, once a budget of tokens waits or the oldest
    sentence has waited ``max_wait_s``; :func:`plan_for` cuts it into batches (arrival-order runs
    spread over the idle lanes for a packing scorer, else length-sorted batches). Windows in
    arrival order complete notes progressively under load, and the next window starts while the
    last batches of the previous one still run, so no lane idles at window boundaries.
    """

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
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.failure: BaseException | None = None
        self.last_progress = time.monotonic()
        self._queued_sentences = 0
        self._lock = threading.Lock()
        workers = concurrency_of(scorer)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="inference-batch")
        self._lanes = workers
        self._slots = workers + 1
        self._packs = packs(scorer)
        self._in_flight = 0
        self._waiting: deque[_Submitted] = deque()
        self._waiting_tokens = 0
        self._planned: deque[list[SentenceJob]] = deque()

    @property
    def queued_sentences(self) -> int:
        """Sentences submitted and not yet planned into a batch."""
        return self._queued_sentences

    def start(self) -> None:
        self._thread.start()

    def submit(self, jobs: list[SentenceJob]) -> None:
        if jobs:
            with self._lock:
                self._queued_sentences += len(jobs)
            self._events.put(_Submitted(time.monotonic(), jobs))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._events.put(None)
        self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._dispatch()
                if self._in_flight == 0:
                    self.last_progress = time.monotonic()  # idle counts as progressing
                try:
                    event = self._events.get(timeout=self._wait_s())
                except queue.Empty:
                    continue
                self._handle(event)
                self._handle_queued()
        except BaseException as exc:  # reported to the owner, which exits non-zero
            self.failure = exc
            log.error("inference_thread_failed", error_class=type(exc).__name__, error=str(exc))

    def _wait_s(self) -> float:
        """How long to wait for an event: until the oldest sentence is due, if a slot is free."""
        if self._waiting and not self._planned and self._in_flight < self._slots:
            due = self._waiting[0].at + self._settings.max_wait_s
            return min(_IDLE_WAKE_S, max(0.0, due - time.monotonic()))
        return _IDLE_WAKE_S

    def _handle_queued(self) -> None:
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            self._handle(event)

    def _handle(self, event: _Event) -> None:
        if isinstance(event, _Submitted):
            self._waiting.append(event)
            self._waiting_tokens += sum(len(job.ids) for job in event.jobs)
        elif isinstance(event, _Scored):
            self._in_flight -= 1
            self.last_progress = time.monotonic()
            _record(
                self._scorer,
                event.jobs,
                event.results,
                event.seconds,
                on_complete=self._on_complete,
                observer=self._observer,
            )
        elif isinstance(event, _Crashed):
            raise event.error

    def _dispatch(self) -> None:
        """Fill the free slots: planned batches first, then a new window when one is due."""
        while self._in_flight < self._slots:
            if not self._planned:
                if not self._window_due():
                    return
                idle = max(1, self._lanes - self._in_flight)
                self._plan(self._take_window(idle), idle)
                continue
            batch = [job for job in self._planned.popleft() if not job.work.cancelled]
            if batch:
                self._in_flight += 1
                self._executor.submit(self._score, batch)

    def _window_due(self) -> bool:
        if not self._waiting:
            return False
        if self._waiting_tokens >= self._settings.token_budget:
            return True
        return time.monotonic() >= self._waiting[0].at + self._settings.max_wait_s

    def _take_window(self, idle: int) -> list[SentenceJob]:
        """The oldest waiting sentences in arrival order: a budget per idle lane for a packing
        scorer, else up to ``_POOL_FACTOR`` budgets (a larger pool sorts into less padding).
        A note may continue in the next window; it completes when its last sentence is scored.
        """
        cap = self._settings.token_budget * (idle if self._packs else _POOL_FACTOR)
        window: list[SentenceJob] = []
        tokens = 0
        while self._waiting and tokens < cap:
            chunk = self._waiting[0]
            jobs = chunk.jobs
            end = chunk.start
            while end < len(jobs) and (tokens + len(jobs[end].ids) <= cap or not tokens):
                tokens += len(jobs[end].ids)
                end += 1
            window.extend(jobs[chunk.start : end])
            if end < len(jobs):
                chunk.start = end
                break
            self._waiting.popleft()
        self._waiting_tokens -= tokens
        with self._lock:
            self._queued_sentences -= len(window)
        return window

    def _plan(self, window: list[SentenceJob], parts: int) -> None:
        live = [job for job in window if not job.work.cancelled]
        lengths = [len(job.ids) for job in live]
        for batch in plan_for(self._scorer, lengths, self._settings, parts):
            self._planned.append([live[i] for i in batch])

    def _score(self, jobs: list[SentenceJob]) -> None:
        """Runs on an executor thread; the result goes back to the loop as an event."""
        try:
            results, seconds = _timed_score(self._scorer, [job.ids for job in jobs])
            self._events.put(_Scored(jobs, results, seconds))
        except BaseException as exc:
            self._events.put(_Crashed(exc))
