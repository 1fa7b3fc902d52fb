"""The classifier as an asyncio component: records in, outputs out, offsets when delivered.

No faust import: the runtime (:mod:`worker.faust_runtime.agent`) gives it a ``send`` (produce one
record, return its delivery future) and a ``commit`` (commit offsets now). It reuses the core as
the confluent pipeline does: :class:`~worker.prepare.PreparationThread`,
:class:`~worker.inference.InferenceLoop`, :class:`~worker.kafka.offsets.OffsetTracker` (the
contiguous committable watermark, no gap heuristics) and :func:`~worker.render.outgoing`.

Everything here runs on the event loop's thread; the preparation and inference threads hand
records and notes back through a queue that only :meth:`Engine._pump` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from worker.completions import check_threads, take_completed, worker_threads
from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.events import Headers, Provenance, SourceRef
from worker.faust_runtime.outputs import Outputs, Send, Sent
from worker.health import readiness, readiness_window
from worker.kafka.offsets import OffsetTracker, PartitionKey, PartitionState
from worker.kafka.topics import Budgets
from worker.logs import where_raised
from worker.metrics import Metrics
from worker.notes import Note, Record
from worker.pipeline import Model
from worker.render import outgoing

log = structlog.get_logger(__name__)

#: Commit these offsets (next offset to read) now; False when the group moved on.
Commit = Callable[[dict[PartitionKey, int]], Awaitable[bool]]

_TICK_S = 0.005
_CHUNK = 64  # records handed to the preparation thread at once, at most


@dataclass(frozen=True, slots=True)
class Incoming:
    """One input message, as faust hands it over."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers | None


class Engine:
    """Prepare, score, render, deliver, then commit; see the module docstring."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        model: Model,
        provenance: Provenance,
        send: Send,
        commit: Commit,
        metrics: Metrics | None = None,
        on_fatal: Callable[[FatalError], None] = lambda _exc: None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.provenance = provenance
        self._model = model
        self._commit = commit
        self._on_fatal = on_fatal
        self.tracker = OffsetTracker()
        #: Input partitions faust assigned to this member (the tracker knows only those with
        #: records read).
        self.assignment: set[PartitionKey] = set()
        self._completed: queue.SimpleQueue[Record | Note] = queue.SimpleQueue()
        self._preparation, self._inference = worker_threads(
            settings, model, metrics, self._completed_put
        )
        self.outputs = Outputs(
            send=send,
            output_topic=settings.output_topic,
            dead_letter_topic=settings.dlq_topic,
            metrics=metrics,
        )
        self._pending: list[Record] = []
        self._to_commit: dict[PartitionKey, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._deliveries: set[asyncio.Task[None]] = set()
        self.failure: FatalError | None = None
        self.stopping = False
        self.started = False
        self.last_progress = time.monotonic()
        self._revokes = 0  # rebalances begun: a message held across one is stale

    # ------------------------------------------------------------------ lifecycle
    def apply_budgets(self, budgets: Budgets) -> None:
        """Per-note budgets from the topics' limits (before :meth:`start`)."""
        self.outputs.max_output_bytes = budgets.max_output_bytes
        self.outputs.max_dead_letter_bytes = budgets.max_dead_letter_bytes
        self._preparation.limit_sentences(budgets.max_note_sentences)

    def start(self) -> None:
        """Start the worker threads and the pump (on the running event loop)."""
        if self.started:
            return
        self.started = True
        self._loop = asyncio.get_running_loop()
        self._inference.start()
        self._preparation.start()
        self._tasks = [
            asyncio.create_task(self._pump_forever(), name="biomarker-pump"),
            asyncio.create_task(self._commit_forever(), name="biomarker-commit"),
        ]

    def heartbeats(self) -> list[float]:
        """Monotonic times the pump, the preparation and the inference thread last made
        progress, as the confluent pipeline reports them."""
        return list(self._heartbeats().values())

    def _heartbeats(self) -> dict[str, float]:
        return {
            "loop": self.last_progress,
            "preparation": self._preparation.heartbeat,
            "inference": self._inference.last_progress,
        }

    def readiness(self) -> tuple[bool, str]:
        """Able to work, as the confluent pipeline means it (:func:`worker.health.readiness`).

        Brokers: faust's client (aiokafka) reports no client-wide errors to hook, so nothing
        marks them unreachable here; the start-up topic check reached them before faust started.
        """
        return readiness(
            stopping=self.stopping or self.failure is not None,
            model_running=self.started and self._inference.alive(),
            brokers=None,
            heartbeats=self._heartbeats(),
            window_s=readiness_window(self.settings.liveness_timeout_s),
            partitions=len(self.assignment),
        )

    # ------------------------------------------------------------------ input
    async def accept(self, message: Incoming) -> None:
        """Take one input message; waits while too much is in flight (backpressure: faust's
        stream buffer fills and it pauses the partition)."""
        revokes = self._revokes
        if not self._room.is_set():
            self.metrics.pauses.inc()
            self.metrics.paused.set(1)
            await self._room.wait()
            self.metrics.paused.set(0)
        if self.stopping or self.failure is not None:
            return
        if self._revokes != revokes:
            # held across a rebalance (faust's are eager: every partition was revoked, and the
            # revoke may have dropped work before this offset): the partition's next owner,
            # this worker too, reads it again from the committed offset
            return
        key = (message.topic, message.partition)
        state = self.tracker.get(key) or self._assign(key)
        if state.waiting and message.offset <= state.waiting[-1][0]:
            return  # a re-read after faust sought back: that record is already in flight
        if state.unacked and message.offset <= state.unacked[-1][0]:
            return
        if state.committable is not None and message.offset < state.committable:
            return
        source = SourceRef(message.topic, message.partition, message.offset, message.timestamp_ms)
        record = Record(
            source=source, key=message.key, value=message.value, headers=message.headers
        )
        self.tracker.add(state, message.offset, record)
        self.metrics.events_in.inc()
        self._pending.append(record)
        if len(self._pending) >= _CHUNK:
            self._flush_pending()
        self._update_room()
        self._wake.set()

    def _assign(self, key: PartitionKey) -> PartitionState:
        [state] = self.tracker.assign([key])
        return state

    def _flush_pending(self) -> None:
        if self._pending:
            self._preparation.submit(self._pending)
            self._pending = []

    def _update_room(self) -> None:
        full = (
            self.tracker.inflight >= self.settings.max_inflight_notes
            or self.tracker.inflight_bytes >= self.settings.max_inflight_bytes
            or self._inference.queued_sentences >= self.settings.max_inflight_sentences
        )
        if full:
            self._room.clear()
        elif self.tracker.inflight <= self.settings.max_inflight_notes // 2:
            self._room.set()

    def _completed_put(self, item: Record | Note) -> None:
        """From the worker threads: hand a prepared record or a scored note to the loop."""
        self._completed.put(item)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    # ------------------------------------------------------------------ the pump
    async def _pump_forever(self) -> None:
        while self.failure is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _TICK_S if self._pending else 0.1)
            self._wake.clear()
            try:
                await self._pump()
            except FatalError as exc:
                self._fail(exc)
            except Exception as exc:  # a bug: stop without committing, name where
                where = where_raised(exc)
                self._fail(FatalError(f"unexpected {type(exc).__name__} at {where}"))

    async def _pump(self) -> None:
        self._check_threads()
        self._flush_pending()
        take_completed(self._completed, self.metrics, threshold=self.provenance.threshold)
        include_text = self.settings.include_sentence_text
        for record in list(self.tracker.take_ready()):
            outs = outgoing(record, provenance=self.provenance, include_text=include_text)
            sent = await self.outputs.send(record, outs)  # in offset order
            task = asyncio.create_task(self._delivered(record, sent))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
        self.last_progress = time.monotonic()
        self.metrics.inflight_notes.set(self.tracker.inflight)
        self.metrics.inflight_bytes.set(self.tracker.inflight_bytes)
        self.metrics.queue_sentences.set(self._inference.queued_sentences)
        self._update_room()

    async def _delivered(self, record: Record, sent: list[Sent]) -> None:
        """Wait for every output of ``record``; only then may its offset be committed."""
        try:
            await self.outputs.wait(record, sent)
        except FatalError as exc:
            self._fail(exc)
            return
        if record.cancelled:
            return
        self.tracker.delivered(record)
        self._to_commit.update(self.tracker.committable())
        self._wake.set()

    def _check_threads(self) -> None:
        check_threads({"preparation": self._preparation, "inference": self._inference})

    def _fail(self, exc: FatalError) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("fatal_error", error=str(exc), in_flight=self.tracker.heads())
            self._room.set()
            self._on_fatal(exc)

    # ------------------------------------------------------------------ commits
    async def _commit_forever(self) -> None:
        interval = self.settings.commit_interval_ms / 1000
        while self.failure is None:
            await asyncio.sleep(interval)
            await self.commit_now()

    async def commit_now(self, keys: set[PartitionKey] | None = None) -> None:
        """Commit the delivered watermark (of ``keys``, or of every partition)."""
        if self.failure is not None:
            return  # a fatal error: never commit again; the restart re-reads
        offsets = {k: v for k, v in self._to_commit.items() if keys is None or k in keys}
        if not offsets:
            return
        ok = await self._commit(offsets)
        self.metrics.commits.labels(outcome="ok" if ok else "failed").inc()
        if ok:
            for key, offset in offsets.items():
                if self._to_commit.get(key) == offset:
                    del self._to_commit[key]

    # ------------------------------------------------------------------ rebalances, stop
    def assigned(self, keys: set[PartitionKey]) -> None:
        """This member's whole new assignment (faust's rebalances are eager)."""
        self.assignment = set(keys)
        self.metrics.assigned_partitions.set(len(self.assignment))
        self.metrics.rebalances.labels(kind="assign").inc()

    async def revoke(self, keys: set[PartitionKey]) -> None:
        """Partitions leave: finish their work for ``revoke_timeout_s``, commit, forget."""
        self._revokes += 1
        states = [s for k, s in self.tracker.partitions.items() if k in keys]
        await self._finish(states, time.monotonic() + self.settings.revoke_timeout_s)
        await self.commit_now(keys)
        dropped = self.tracker.remove(keys)
        for key in keys:
            self._to_commit.pop(key, None)
        self._pending = [r for r in self._pending if not r.cancelled]
        self.assignment -= keys
        self.metrics.assigned_partitions.set(len(self.assignment))
        if keys:  # faust's rebalances are eager: an empty revoke starts the first assignment
            self.metrics.rebalances.labels(kind="revoke").inc()
        log.info("partitions_revoked", partitions=sorted(map(list, keys)), unfinished=dropped)
        self._update_room()

    def model_calls_unfinished(self) -> int:
        """Batches whose model call had not returned when the threads stopped (after
        :meth:`drain`): the process must then exit without waiting for their threads."""
        return self._inference.batches_running()

    async def drain(self) -> None:
        """Stop taking input, finish in flight for ``drain_timeout_s``, commit, stop threads."""
        self.stopping = True
        self._room.set()
        states = list(self.tracker.partitions.values())
        await self._finish(states, time.monotonic() + self.settings.drain_timeout_s)
        await self.commit_now()
        left = self.tracker.inflight
        for task in self._tasks:
            task.cancel()
        self._preparation.stop()
        self._inference.stop()
        log.info("drained", unfinished_notes=left)

    async def _finish(self, states: list[PartitionState], deadline: float) -> None:
        self._flush_pending()
        while (
            any(state.inflight for state in states)
            and time.monotonic() < deadline
            and self.failure is None
        ):
            self._wake.set()
            await asyncio.sleep(0.01)
