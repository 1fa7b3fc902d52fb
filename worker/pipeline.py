"""The Kafka worker: a loop that wires the steps of one consumer-group member.

    KafkaSource.poll ──> PreparationThread ──> InferenceLoop
          │                    │ prepared records     │ scored notes
          ▼                    ▼                      ▼
    OffsetTracker <────── the completions queue (this loop drains it)
          │ ready records, in offset order
          ▼
    Renderer ──> KafkaSink ──(delivery reports)──> OffsetTracker ──> OffsetCommitter

With ``host_processes`` > 1 the preparation and the renderer's work run in host processes
(:mod:`worker.host_pool`); the renderer hands records out in the order they became ready. They
start with :meth:`Pipeline.run`, while it checks the topics, and the worker joins its group
only once they are ready: one that cannot start stops the worker before it owns a partition.

Completions reach the loop one way: the preparation thread and the inference thread put
prepared records and scored notes on one queue, which only this loop reads; every record's state
is therefore read and written by this thread alone.

Guarantees (see docs/ARCHITECTURE.md):

1. An input offset is staged for commit only after every output (or the dead letter) of its
   record is acknowledged by the brokers (idempotent producer, ``acks=all``), and only as the
   contiguous per-partition watermark (:mod:`worker.kafka.offsets`).
2. Outputs of one input partition are produced in input offset order, with the input's key.
   One exception: an output the brokers refused with its whole produce batch is produced
   again by itself (to tell whether it, or another record of the batch, was the cause), after
   outputs that followed it; with exactly-once its transaction is aborted and re-read instead.
3. The consumer keeps polling while notes are prepared and scored on other threads; when too
   many records or bytes are in flight, fetching pauses until half has drained.
4. On revoke: stop taking work for those partitions, give in-flight work ``revoke_timeout_s``,
   commit what is done, forget the rest (the next owner re-reads it). On loss: forget, no commit.
5. On stop: stop fetching, drain within ``drain_timeout_s``, flush, commit, leave the group.
6. Fatal errors (producer fatal, authentication, a dead worker thread): exit 1 at once; only
   delivered work was ever staged, so nothing unfinished is committed. A drain or a revoke
   stops waiting as soon as a worker thread (or host process) is dead.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Protocol

import structlog
from confluent_kafka import KafkaException

from worker.completions import WorkerThread, check_threads, take_completed, worker_threads
from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.events import Provenance
from worker.health import readiness, readiness_window
from worker.heap import FreeMemoryReturner, startup_objects_frozen
from worker.host_pool import HostRenderer, InlineRenderer, Renderer, host_pool_for
from worker.kafka.commits import (
    OffsetCommitter,
    StoredOffsets,
    TransactionalOffsets,
    auto_commits_counted,
)
from worker.kafka.deadline import ClientHung, call_with_deadline
from worker.kafka.errors import KafkaErrors
from worker.kafka.group_lag import GroupLagCollector
from worker.kafka.offsets import OffsetTracker, PartitionState
from worker.kafka.ports import KafkaClients, kafka_clients
from worker.kafka.replay import ReplayPlan
from worker.kafka.sink import KafkaSink, SinkTopics
from worker.kafka.source import KafkaSource
from worker.kafka.topics import budgets_for, check_topics
from worker.logs import kafka_logger, where_raised
from worker.metrics import Metrics
from worker.model.wordpieces import SentenceEncoderSpec
from worker.notes import Note, Record
from worker.prepare import Encoder
from worker.scoring import Scorer

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
_IDLE_POLL_S = 0.1
_BUSY_POLL_S = 0.005
_GAUGE_INTERVAL_S = 5.0
#: How long leaving the group may take besides finishing revoked work (``revoke_timeout_s``): the
#: chart's ``shutdown.closeAllowanceSeconds``. A close still blocked then is :class:`ClientHung`.
_CLOSE_DEADLINE_S = 10.0


class Model(Encoder, Scorer, Protocol):
    """What the pipeline needs from :class:`worker.model.classifier.SequenceClassifier`."""

    @property
    def device_type(self) -> str: ...

    def device_memory_bytes(self) -> int | None: ...

    def encoder_spec(self) -> SentenceEncoderSpec | None: ...


class Pipeline:
    """One worker process: a consumer-group member with its producer and worker threads."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        model: Model,
        provenance: Provenance,
        metrics: Metrics | None = None,
        clients: KafkaClients | None = None,
        group_id: str | None = None,
        output_topic: str | None = None,
        replay: ReplayPlan | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics = metrics or Metrics()
        self.provenance = provenance
        self.errors = KafkaErrors(metrics)
        hooks = {**self.errors.hooks(), "logger": kafka_logger()}
        #: The whole group's lag, read from the brokers (not for fakes, nor a replay's range).
        self._group_lag = (
            GroupLagCollector(
                settings, metrics, group_id=group_id, hooks={"logger": kafka_logger()}
            )
            if clients is None and replay is None
            else None
        )
        clients = clients or kafka_clients(
            settings,
            group_id=group_id,
            hooks=hooks,
            consumer_hooks={"on_commit": auto_commits_counted(metrics)},
        )
        self._producer = clients.producer
        self._topic_limits = clients.topic_limits
        self._model = model
        self._topics = SinkTopics(output_topic or settings.output_topic, settings.dlq_topic)
        self.tracker = OffsetTracker()
        self._completed: queue.SimpleQueue[Record | Note] = queue.SimpleQueue()
        pool = host_pool_for(settings, device=model.device_type, encoder=model.encoder_spec())
        self._preparation, self._inference = worker_threads(
            settings, model, metrics, self._completed.put, pool=pool
        )
        include_text = settings.include_sentence_text
        self._renderer: Renderer = (
            HostRenderer(pool=pool, provenance=provenance, include_text=include_text)
            if pool is not None
            else InlineRenderer(provenance=provenance, include_text=include_text)
        )
        self.source = KafkaSource(
            consumer=clients.consumer,
            tracker=self.tracker,
            settings=settings,
            errors=self.errors,
            metrics=metrics,
            replay=replay,
            rate_limit=rate_limit,
        )
        self._transactions: TransactionalOffsets | None = None
        self._committer: OffsetCommitter = StoredOffsets(consumer=clients.consumer, metrics=metrics)
        if settings.processing_guarantee == "exactly-once":
            self._committer = self._transactions = TransactionalOffsets(
                consumer=clients.consumer,
                producer=clients.producer,
                metrics=metrics,
                interval_s=settings.commit_interval_ms / 1000,
                collect=self._stage_offsets,
                rewind=self.source.rewind,
                on_waiting=self._alive,  # between tries of a slow transaction init
            )
        self.sink = KafkaSink(
            producer=clients.producer,
            topics=self._topics,
            committer=self._committer,
            errors=self.errors,
            metrics=metrics,
            on_delivered=self.tracker.delivered,
            on_blocked=self._stage_offsets,
        )
        self._stopping = threading.Event()
        self._signal: str | None = None  # the stop signal received, set by a signal handler
        self._memory = FreeMemoryReturner()
        self.last_progress = time.monotonic()
        self._next_gauges = 0.0
        #: A client call hung inside librdkafka, or a model call did not return: the process
        #: must exit without tearing down (``os._exit``), which would block on that same call.
        self.hung = False
        self._closing = False
        self._aborting = False  # the fatal path is closing the consumer
        self._started = False  # the consumer was subscribed (or assigned a replay's ranges)

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, reason: str = "requested") -> None:
        """Ask the loop to drain and exit (bounded runs, tests, the end of a replay); signal
        handlers call :meth:`signalled` instead."""
        if not self._stopping.is_set():
            log.info("stop_requested", reason=reason)
        self._stopping.set()

    def signalled(self, name: str) -> None:
        """Note a stop signal; the loop drains on its next turn. A handler runs in the main
        thread between two bytecodes, possibly while that thread holds the log's write lock
        (or an ``Event``'s), so it only assigns an attribute: logging from it could deadlock."""
        self._signal = name

    def run(self) -> int:
        """Consume until stopped (or a replay is finished); return the process exit code."""
        try:
            self._preparation.start()  # host processes start while the topics are checked
            inputs = [item.topic for item in self.settings.input_topics]
            wanted = [*inputs, self._topics.output, self._topics.dead_letter]
            check_topics(
                self._producer,
                wanted,
                errors=self.errors,
                bootstrap=self.settings.bootstrap_servers,
            )
            self._apply_budgets()
            if self._transactions is not None:
                self._transactions.initialise()
            self._inference.start()
            if not self._await_preparation():  # stopped first: leave, having joined nothing
                log.info("stopped_before_start", reason=self._signal or "requested")
                self._abort()
                return EXIT_OK
            self.source.start(self)
            self._started = True
            if self._group_lag is not None:
                self._group_lag.start()
            log.info(
                "worker_started",
                inputs={item.topic: item.format for item in self.settings.input_topics},
                output_topic=self._topics.output,
            )
            with startup_objects_frozen():
                while not self._stopping.is_set():
                    self._step()
                    if self._signal is not None:
                        self.request_stop(reason=self._signal)
                    elif self.source.finished():
                        self.request_stop(reason="replay finished")
                self._drain()
        except ClientHung as exc:  # the client is stuck inside librdkafka: do not touch it
            log.error("client_hung", error=str(exc), in_flight=self.tracker.heads())
            self.hung = True
            self._abort()
            return EXIT_FATAL
        except FatalError as exc:
            log.error("fatal_error", error=str(exc), in_flight=self.tracker.heads())
            self._abort()
            return EXIT_FATAL
        except Exception as exc:  # a bug: still leave the group at once and name what ran
            log.error(
                "unexpected_error",
                error_class=type(exc).__name__,
                where=where_raised(exc),  # not the message: it may quote note text
                in_flight=self.tracker.heads(),
            )
            self._abort()
            return EXIT_FATAL
        finally:
            if self._group_lag is not None:
                self._group_lag.stop()
            self._preparation.stop()
            self._inference.stop()
            if running := self._inference.batches_running():
                log.warning("model_calls_unfinished", batches=running)
                self.hung = True  # the interpreter would wait for their threads forever
        log.info("worker_stopped")
        return EXIT_OK

    def _alive(self) -> None:
        """The loop is busy on purpose outside its steps (a start-up step that retries, a
        revoke or a drain serving in-flight work): it is alive."""
        self.last_progress = time.monotonic()

    def _await_preparation(self) -> bool:
        """Wait until the preparation takes records (host processes are ready) before joining
        the group: a host process that cannot start is then a fatal error that no partition's
        attempt count records. The wait is bounded by the pool's start timeout; the loop's
        heartbeat moves meanwhile. False: a stop came first."""
        while not self._preparation.wait_ready(0.2):
            check_threads({"preparation": self._preparation})
            self._alive()
            if self._signal is not None or self._stopping.is_set():
                return False
        return True

    def _apply_budgets(self) -> None:
        output, dead_letter = self._topics.output, self._topics.dead_letter
        limits = self._topic_limits([output, dead_letter])
        budgets = budgets_for(self.settings, limits, output_topic=output)
        self.sink.max_output_bytes = budgets.max_output_bytes
        self.sink.max_dead_letter_bytes = budgets.max_dead_letter_bytes
        self._preparation.limit_sentences(budgets.max_note_sentences)

    @property
    def delivered(self) -> int:
        """Outputs plus dead letters acknowledged by the brokers so far (exactly-once: in
        committed transactions)."""
        return self.sink.delivered

    def heartbeats(self) -> list[float]:
        """Monotonic times the loop, the preparation and the inference thread last made
        progress."""
        return list(self._heartbeats().values())

    def _heartbeats(self) -> dict[str, float]:
        return {
            "loop": self.last_progress,
            "preparation": self._preparation.heartbeat,
            "inference": self._inference.last_progress,
        }

    def readiness(self) -> tuple[bool, str]:
        """Able to work (:func:`worker.health.readiness`); owning no partitions is ``idle``,
        not having joined the group yet (host processes starting) ``starting``."""
        ready = readiness(
            stopping=self._stopping.is_set()
            or self._signal is not None
            or self.errors.fatal is not None,
            model_running=self._inference.alive(),
            brokers=self.errors.brokers_problem(),
            heartbeats=self._heartbeats(),
            window_s=readiness_window(self.settings.liveness_timeout_s),
            partitions=len(self.tracker.partitions),
        )
        if ready[0] and not self._started:
            return False, "starting"
        return ready

    # ------------------------------------------------------------------ the loop
    def _step(self) -> None:
        self._check_fatal()
        records = self.source.poll(_BUSY_POLL_S if self.tracker.inflight else _IDLE_POLL_S)
        if records:
            self.metrics.events_in.inc(len(records))
            self._preparation.submit([record for record in records if not record.prepared])
        self._pump()
        self.source.release_held()
        self._committer.tick()
        self.source.throttle(
            self.tracker.inflight,
            self.tracker.inflight_bytes,
            self._inference.queued_sentences,
            preparing=self._preparation.pending,
        )
        self.last_progress = time.monotonic()
        self._memory.tick(idle=not self.tracker.inflight, now=self.last_progress)
        if self.last_progress >= self._next_gauges:
            self._next_gauges = self.last_progress + _GAUGE_INTERVAL_S
            self.metrics.queue_sentences.set(self._inference.queued_sentences)
            memory = self._model.device_memory_bytes()
            if memory is not None:
                self.metrics.device_memory.set(memory)
            self.source.update_lag()

    def _pump(self, timeout: float = 0.0) -> None:
        """Take completions, produce every ready record, serve delivery reports, stage offsets."""
        take_completed(self._completed, self.metrics, threshold=self.provenance.threshold)
        self._renderer.submit(self.tracker.take_ready())
        for record, outs in self._renderer.take():
            self.sink.send(record, outs)
        self.sink.poll(timeout)
        self._stage_offsets()

    def _stage_offsets(self) -> None:
        offsets = self.tracker.committable()
        offsets = self.source.crashes.progressed(offsets, self.tracker.partitions)
        if offsets:
            self._committer.stage(offsets)

    def _check_fatal(self) -> None:
        self.errors.check()
        check_threads(self._threads())

    def _threads(self) -> dict[str, WorkerThread]:
        return {"preparation": self._preparation, "inference": self._inference}

    # ------------------------------------------------------------------ rebalances
    def revoking(self, states: list[PartitionState]) -> None:
        """Give the revoked partitions' work ``revoke_timeout_s``, then commit what is done."""
        if self._aborting:
            return  # the fatal path's close: only leave the group (its stored offsets commit)
        self._finish(states, deadline=time.monotonic() + self.settings.revoke_timeout_s)
        self._committer.commit(_committable(states))

    def lost(self) -> None:
        self._committer.partitions_lost()

    def _finish(self, states: list[PartitionState], *, deadline: float) -> None:
        """Let in-flight work of ``states`` complete and be acknowledged, until ``deadline``;
        at once if it cannot (a fatal error, a dead worker thread or host process: the caller's
        next check stops the worker)."""
        while any(state.inflight for state in states) and time.monotonic() < deadline:
            if self.errors.fatal is not None:
                return
            if not all(thread.alive() for thread in self._threads().values()):
                return
            self._pump(timeout=0.02)
            # The loop is serving the revoke or the drain: it is alive. A model or preparation
            # that stopped progressing still shows in its own heartbeat.
            self._alive()

    # ------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        self.source.stopping = True
        self.source.set_paused(True)
        states = list(self.tracker.partitions.values())
        self._finish(states, deadline=deadline)
        self.sink.flush(max(0.0, deadline - time.monotonic()))
        self._stage_offsets()
        self._check_fatal()
        self._committer.commit(_committable(states))
        self.source.finished()  # a replay whose last records completed during the drain is done
        # A partition whose record is still unfinished did not stop cleanly: its count stays
        # (a record that hangs until the liveness probe's SIGTERM is pinned like a crash).
        self.source.crashes.released([state for state in states if not state.inflight])
        self.source.crashes.hold()  # ... also through the revoke that close() runs
        left = self.tracker.inflight
        self._closing = True  # a close that hangs is not tried again by _abort
        call_with_deadline(
            self.source.close,
            seconds=self.settings.revoke_timeout_s + _CLOSE_DEADLINE_S,
            what="close",
        )
        log.info("drained", unfinished_notes=left)

    def _abort(self) -> None:
        """Fatal path: leave the group (so the partitions move at once, not after the session
        timeout); only delivered work was staged, so closing is safe."""
        if self._closing:
            return
        # librdkafka's close() runs the revoke callback: it must neither wait for work that
        # cannot finish nor clear the attempt counts this failure is meant to leave.
        self._aborting = True
        self.source.crashes.hold()
        if self._transactions is not None and not self.hung:
            try:
                self._transactions.abandon()
            except ClientHung as exc:  # the producer is stuck: exit without touching it again
                log.warning("abort_failed", error=str(exc))
                self.hung = True
        try:
            call_with_deadline(self.source.close, seconds=_CLOSE_DEADLINE_S, what="close")
        except (KafkaException, RuntimeError, ClientHung) as exc:
            log.warning("close_failed", error_class=type(exc).__name__, error=str(exc))


def _committable(states: list[PartitionState]) -> dict[tuple[str, int], int]:
    return {
        state.key: state.committable
        for state in states
        if state.committable is not None and state.active
    }
