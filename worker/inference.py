"""Continuous batching for the Kafka worker: the loop that keeps the model busy.

The polling loop hands notes over with :meth:`InferenceLoop.submit` and keeps polling; a
background thread batches continuously: whenever a lane of the model is free it runs the next
planned batch, and when none is planned it takes the oldest waiting sentences as the next window:
at once while a lane is idle (on a CPU: ``wait_when_idle`` off), otherwise once a token budget
waits or the oldest has waited ``max_wait_s``. Torch releases the GIL while it computes, so Kafka
I/O, JSON and tokenisation overlap with the model.

Completion has one path: every submitted note comes back exactly once through ``on_complete``,
called on the inference thread when its last sentence is scored (or from :meth:`submit` for a
note without sentences). The worker passes a queue's ``put``.

A scorer with ``concurrency`` > 1 (a CPU classifier: one single-threaded batch per core; a GPU
classifier: two batches, so one is packed and launched while the other's kernels run) gets that
many lanes, each a worker thread; results are applied by the loop's own thread as batches finish,
so per-note bookkeeping stays single-threaded.

With a :class:`~worker.score_cache.ScoreCache`, a sentence that repeats one scored recently is
answered from it when its window is planned, and one that repeats a sentence still planned or
running waits for that batch: neither reaches a batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from worker.batching import BatchingSettings
from worker.logs import where_raised
from worker.notes import Note, SentenceJob
from worker.score_cache import ScoreCache
from worker.scoring import (
    BatchObserver,
    Failure,
    NonFiniteScore,
    Results,
    Scorer,
    plan_for,
    record_batch,
    record_cached,
    timed_score,
)

log = structlog.get_logger(__name__)

_POOL_FACTOR = 4  # a window holds up to this many budgets when they wait, for better sorting
_IDLE_WAKE_S = 0.1  # the loop wakes at least this often (stop requests, liveness)
#: This many sentences in a row, of two or more notes, on which the model raised even one at a
#: time, with no sentence scored in between, mean the device or the model is broken.
MODEL_FAILING_AFTER = 32


class ModelFailing(RuntimeError):
    """Every sentence of the last batches failed, even alone: a broken device (a CUDA error
    that sticks), a lost GPU or a damaged model. The worker stops (exit 1) rather than send
    every note it reads to the dead-letter topic as ``inference_failed``."""


@dataclass(slots=True)
class _Submitted:
    """Jobs handed over by one :meth:`InferenceLoop.submit`; ``start`` skips those planned."""

    at: float
    jobs: list[SentenceJob]
    start: int = 0


@dataclass(slots=True)
class _Scored:
    jobs: list[SentenceJob]
    results: Results
    seconds: float
    batch: int  # the number :meth:`InferenceLoop._dispatch` gave it


@dataclass(slots=True)
class _Crashed:
    error: BaseException


_Event = _Submitted | _Scored | _Crashed | None  # None only wakes the loop (stop)


class InferenceLoop:
    """Continuous batching on a background thread.

    Each of the scorer's ``concurrency`` lanes runs one batch at a time on an executor thread;
    up to lanes + 1 batches are in flight (the extra one waits in the executor's queue, so a
    finishing batch is followed at once). When the planned batches run out, the oldest waiting
    sentences (arrival order) become the next window: at once while a lane is idle (CPU: waiting
    for more would only leave it idle), else once a budget of tokens waits or the oldest sentence
    has waited ``max_wait_s``; :func:`plan_for` cuts it into batches (arrival-order runs
    spread over the idle lanes for a packing scorer, else length-sorted batches). Windows in
    arrival order complete notes progressively under load, and the next window starts while the
    last batches of the previous one still run, so no lane idles at window boundaries.
    """

    def __init__(
        self,
        *,
        scorer: Scorer,
        settings: BatchingSettings,
        on_complete: Callable[[Note], None],
        observer: BatchObserver | None = None,
        cache: ScoreCache | None = None,
    ) -> None:
        self._scorer = scorer
        self._cache = cache
        self._settings = settings
        self._on_complete = on_complete
        self._observer = observer
        self._events: queue.SimpleQueue[_Event] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self.failure: BaseException | None = None
        self._progress = time.monotonic()
        self._running: dict[int, float] = {}  # batch number -> when a lane took it
        self._batches = 0
        self._queued_sentences = 0
        self._lock = threading.Lock()
        workers = max(1, scorer.concurrency)
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="inference-batch")
        self._lanes = workers
        self._slots = workers + 1
        self._packs = scorer.packs
        self._in_flight = 0
        self._failing = 0  # sentences in a row the model raised on, even alone
        self._failing_notes: set[int] = set()  # the notes they belong to (by identity)
        self._waiting: deque[_Submitted] = deque()
        self._waiting_tokens = 0
        self._planned: deque[list[SentenceJob]] = deque()

    @property
    def queued_sentences(self) -> int:
        """Sentences submitted and not yet planned into a batch."""
        return self._queued_sentences

    def start(self) -> None:
        self._thread.start()

    def submit(self, notes: Sequence[Note]) -> None:
        """Score these notes' sentences; each note comes back through ``on_complete``."""
        jobs: list[SentenceJob] = []
        for note in notes:
            if note.remaining == 0:
                self._on_complete(note)
            jobs.extend(note.jobs)
            note.jobs = []
        if jobs:
            with self._lock:
                self._queued_sentences += len(jobs)
            self._events.put(_Submitted(time.monotonic(), jobs))

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._events.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def last_progress(self) -> float:
        """Monotonic time the inference side was last known to progress: the start of its
        oldest batch still running (a model call that never returns ages it even while other
        lanes keep scoring), else its last finished batch, or now while it is idle."""
        with self._lock:
            oldest = min(self._running.values(), default=None)
        return self._progress if oldest is None else min(self._progress, oldest)

    def batches_running(self) -> int:
        """Batches handed to a lane and not back (after :meth:`stop`: model calls that did not
        return, whose threads the interpreter would wait for at exit)."""
        return self._in_flight

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._dispatch()
                if self._in_flight == 0:
                    self._progress = time.monotonic()  # idle counts as progressing
                try:
                    event = self._events.get(timeout=self._wait_s())
                except queue.Empty:
                    continue
                self._handle(event)
                self._handle_queued()
        except BaseException as exc:  # reported to the owner, which exits non-zero
            self.failure = exc
            log.error(
                "inference_thread_failed",
                error_class=type(exc).__name__,
                where=where_raised(exc),  # not the message: it may quote the data
            )

    def _wait_s(self) -> float:
        """How long to wait for an event: until the oldest sentence is due, if a slot is free."""
        if self._waiting and not self._planned and self._in_flight < self._slots:
            due = self._waiting[0].at + self._settings.max_wait_s
            return min(_IDLE_WAKE_S, max(0.0, due - time.monotonic()))
        return _IDLE_WAKE_S

    def _check_model(self, jobs: Sequence[SentenceJob], results: Results) -> None:
        """Raise :class:`ModelFailing` (before the batch's notes are dead-lettered) once
        :data:`MODEL_FAILING_AFTER` sentences of at least two notes in a row raised. A score
        that is not finite does not count: it can follow from the input (one note's float16
        overflow), and its note alone is dead-lettered."""
        raised = [
            isinstance(result, Failure) and not isinstance(result.error, NonFiniteScore)
            for result in results
        ]
        if not results or not all(raised):
            self._failing = 0
            self._failing_notes.clear()
            return
        self._failing += len(results)
        self._failing_notes.update(id(job.note) for job in jobs)
        if self._failing >= MODEL_FAILING_AFTER and len(self._failing_notes) >= 2:
            first = results[0]
            log.error(
                "model_failing",
                sentences=self._failing,
                error_class=type(first.error).__name__ if isinstance(first, Failure) else None,
            )
            raise ModelFailing(f"{self._failing} sentences in a row could not be scored")

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
            with self._lock:
                self._running.pop(event.batch, None)
            self._progress = time.monotonic()
            self._check_model(event.jobs, event.results)
            record_batch(
                self._scorer,
                event.jobs,
                event.results,
                event.seconds,
                on_complete=self._on_complete,
                observer=self._observer,
            )
            if self._cache is not None:
                repeats, results = self._cache.settle(event.jobs, event.results)
                if repeats:
                    record_cached(
                        repeats, results, on_complete=self._on_complete, observer=self._observer
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
            batch = [job for job in self._planned.popleft() if self._wanted(job)]
            if batch:
                self._in_flight += 1
                self._batches += 1
                self._executor.submit(self._score, batch, self._batches)

    def _wanted(self, job: SentenceJob) -> bool:
        """A job of a cancelled note is not scored, unless repeats of live notes wait for it."""
        if not job.note.cancelled:
            return True
        return self._cache is not None and self._cache.needed(job)

    def _window_due(self) -> bool:
        if not self._waiting:
            return False
        if self._in_flight < self._lanes and not self._settings.wait_when_idle:
            return True  # an idle lane (CPU): waiting for more would only leave it idle
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
        live = [job for job in window if not job.note.cancelled]
        if self._cache is not None:
            hits, scores, live = self._cache.sort(live)
            if hits:
                record_cached(hits, scores, on_complete=self._on_complete, observer=self._observer)
        lengths = [len(job.ids) for job in live]
        for batch in plan_for(self._scorer, lengths, self._settings, parts):
            self._planned.append([live[i] for i in batch])

    def _score(self, jobs: list[SentenceJob], batch: int) -> None:
        """Runs on an executor thread; the result goes back to the loop as an event."""
        with self._lock:  # from when a lane takes it: the extra slot's wait is not a stall
            self._running[batch] = time.monotonic()
        try:
            results, seconds = timed_score(self._scorer, [job.ids for job in jobs])
            self._events.put(_Scored(jobs, results, seconds, batch))
        except BaseException as exc:
            self._events.put(_Crashed(exc))
