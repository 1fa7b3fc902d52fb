"""The Kafka worker: consume notes, score their sentences, produce enriched events, commit.

Guarantees (see docs/ARCHITECTURE.md):

1. An input offset is stored for commit only after its output or dead-letter record is
   acknowledged by the brokers (idempotent producer, ``acks=all``), and only as the contiguous
   per-partition watermark (:mod:`worker.kafka.offsets`). librdkafka's auto-commit sends what
   is stored; revoke and shutdown commit synchronously.
2. Outputs of one input partition are produced in input offset order, with the input's key.
3. The consumer keeps polling while the model works (no ``max.poll.interval.ms`` eviction); when
   too many notes are in flight, the assigned partitions are paused, and resumed once half drained.
4. On revoke: stop taking work for those partitions, give in-flight work ``revoke_timeout_s``,
   commit what is done, forget the rest (the next owner re-reads it). On loss: forget, no commit.
5. SIGTERM/SIGINT: stop fetching, drain within ``drain_timeout_s``, flush, commit, leave the group.
6. Fatal errors (producer fatal, authentication, dead inference thread): exit 1 at once; only
   delivered work was ever stored, so nothing unfinished is committed.
"""

from __future__ import annotations

import functools
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol, cast

import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from worker.batching import batching_for
from worker.config import WorkerSettings
from worker.errors import FatalError, InvalidEvent
from worker.events import Headers, Provenance, SourceRef, dead_letter_headers
from worker.heap import startup_objects_frozen
from worker.inference import InferenceLoop, Scorer
from worker.kafka.clients import consumer_config, producer_config
from worker.kafka.commits import OffsetCommitter, StoredOffsets, TransactionalOffsets
from worker.kafka.offsets import PartitionState, PendingNote
from worker.logs import kafka_logger
from worker.metrics import Metrics
from worker.processing import Encoder, Preparer, render
from worker.ratelimit import TokenBucket
from worker.replay import ReplayPlan

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_FATAL = 1
_FATAL_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
#: Fatal only until the brokers first answered: a TLS handshake that fails then (an untrusted
#: broker certificate, a client certificate the broker wants) is configuration; once connected,
#: librdkafka also reports some connection drops during a handshake this way, and retries.
_FATAL_BEFORE_CONNECTED = {KafkaError._SSL}
_IDLE_POLL_S = 0.1
_BUSY_POLL_S = 0.005
_PREPARE_CHUNK = 32  # notes parsed, segmented and tokenised per hand-over to the model
_GAUGE_INTERVAL_S = 5.0
_METADATA_TIMEOUT_S = 30.0  # how long the start-up topic check waits for the brokers


class Model(Encoder, Scorer, Protocol):
    """What the pipeline needs from :class:`worker.model.classifier.SequenceClassifier`."""


class Pipeline:
    """One worker process: a consumer-group member with a producer and an inference thread."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        model: Model,
        provenance: Provenance,
        metrics: Metrics | None = None,
        group_id: str | None = None,
        output_topic: str | None = None,
        stop_when: Callable[[Pipeline], bool] | None = None,
        replay: ReplayPlan | None = None,
        rate_limit: float | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.provenance = provenance
        self.output_topic = output_topic or settings.output_topic
        self._stop_when = stop_when
        self._group_id = group_id or settings.group_id
        self._replay = replay
        self._bucket = TokenBucket(rate_limit) if rate_limit else None
        self._preparer = Preparer(
            encoder=model,
            max_note_chars=settings.max_note_chars,
            max_sentence_tokens=settings.max_sentence_tokens,
        )
        self._inference = InferenceLoop(
            scorer=model,
            settings=batching_for(
                model,
                token_budget=settings.token_budget,
                max_batch_sentences=settings.max_batch_sentences,
                max_wait_s=settings.max_wait_ms / 1000,
            ),
            on_complete=lambda _work: None,
            observer=self.metrics,
        )
        hooks = {"error_cb": self._on_error, "logger": kafka_logger()}
        self._consumer = Consumer({**consumer_config(settings, group_id=group_id), **hooks})
        self._producer = Producer({**producer_config(settings), **hooks})
        self._transactions: TransactionalOffsets | None = None
        self._committer: OffsetCommitter
        if settings.processing_guarantee == "exactly-once":
            self._transactions = TransactionalOffsets(
                consumer=self._consumer,
                producer=self._producer,
                metrics=self.metrics,
                interval_s=settings.commit_interval_ms / 1000,
                collect=self._store_offsets,
                rewind=self._rewind,
            )
            self._committer = self._transactions
        else:
            self._committer = StoredOffsets(consumer=self._consumer, metrics=self.metrics)
        self.partitions: dict[tuple[str, int], PartitionState] = {}
        self._acked: set[PartitionState] = set()
        self._paused = False
        self._stopping = threading.Event()
        self._fatal: FatalError | None = None
        self._connected = False  # the brokers answered the start-up metadata request
        self.last_progress = time.monotonic()
        self._next_gauges = 0.0
        self._device_memory = getattr(model, "device_memory_bytes", lambda: None)
        self.delivered = 0  # outputs plus dead letters acknowledged by the brokers

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, *_: Any) -> None:
        """Ask the loop to drain and exit (signal handler and tests)."""
        if not self._stopping.is_set():
            log.info("stop_requested")
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("signal_received", signal=signal.Signals(signum).name)
            self.request_stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Consume until stopped; return the process exit code."""
        try:
            self._check_topics()
            if self._transactions is not None:
                self._transactions.initialise()
        except FatalError as exc:
            log.error("fatal_error", error=str(exc))
            self._abort()
            return EXIT_FATAL
        self._inference.start()
        if self._replay is None:
            self._consumer.subscribe(
                [self.settings.input_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        else:
            self._assign_replay(self._replay)
        log.info(
            "worker_started",
            input_topic=self.settings.input_topic,
            output_topic=self.output_topic,
            group_id=self._group_id,
        )
        try:
            with startup_objects_frozen():
                while not self._stopping.is_set():
                    self._step()
                    if self._finished():
                        self.request_stop()
                self._drain()
        except FatalError as exc:
            log.error("fatal_error", error=str(exc))
            self._abort()
            return EXIT_FATAL
        finally:
            self._inference.stop()
        log.info("worker_stopped")
        return EXIT_OK

    def _check_topics(self) -> None:
        """Fail fast when a topic is missing instead of timing out deliveries later."""
        wanted = [self.settings.input_topic, self.output_topic, self.settings.dlq_topic]
        deadline = time.monotonic() + _METADATA_TIMEOUT_S
        while True:
            try:
                metadata = self._producer.list_topics(timeout=1.0)
                self._connected = True
                break
            except KafkaException as exc:
                # Serve the error callback: a rejected password or an untrusted broker
                # certificate is reported there, and is a clearer reason than the timeout.
                self._producer.poll(0)
                if self._fatal is not None:
                    raise self._fatal from exc
                if time.monotonic() >= deadline:
                    raise FatalError(
                        f"cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}"
                    ) from exc
        missing = [topic for topic in wanted if topic not in metadata.topics]
        if missing:
            raise FatalError(f"topic(s) missing: {', '.join(missing)} (create them first)")

    def _finished(self) -> bool:
        if self._replay is not None and self._replay.finished(self.partitions):
            return True
        return self._stop_when is not None and self._stop_when(self)

    def _assign_replay(self, plan: ReplayPlan) -> None:
        """Manual assignment of the plan's ranges, resuming from this group's commits."""
        every = [TopicPartition(plan.topic, p) for p in plan.ranges]
        committed = {
            tp.partition: tp.offset
            for tp in self._consumer.committed(every, timeout=30)
            if tp.offset >= 0
        }
        assignment = plan.assignment(committed)
        for tp in assignment:
            self.partitions[(tp.topic, tp.partition)] = PartitionState(tp.topic, tp.partition)
        for partition, (start, end) in plan.ranges.items():
            state = self.partitions.get((plan.topic, partition))
            resumed = committed.get(partition, start)
            if state is not None and start < resumed <= end:
                state.committable = resumed
        self._consumer.assign(assignment)
        log.info("replay_assigned", partitions=_names(assignment), notes=plan.total)

    def heartbeats(self) -> list[float]:
        """Monotonic times the main loop and the inference thread last made progress."""
        return [self.last_progress, self._inference.last_progress]

    def readiness(self) -> tuple[bool, str]:
        if self._stopping.is_set():
            return False, "stopping"
        if not self.partitions:
            return False, "no partitions assigned"
        return True, "ok"

    @property
    def inflight(self) -> int:
        return sum(state.inflight for state in self.partitions.values())

    # ------------------------------------------------------------------ main loop
    def _step(self) -> None:
        self._check_fatal()
        timeout = _BUSY_POLL_S if self.inflight else _IDLE_POLL_S
        wanted = self.settings.consume_batch_size
        if self._bucket is not None:
            wanted = self._bucket.take(wanted, wait=timeout)
        messages = self._consume(wanted, timeout) if wanted else []
        if self._bucket is not None:
            self._bucket.refund(wanted - len(messages))
        if messages:
            self._ingest(messages)
        self._emit_ready()
        self._producer.poll(0)
        self._store_offsets()
        self._committer.tick()
        self._apply_backpressure()
        self.last_progress = time.monotonic()
        if self.last_progress >= self._next_gauges:
            self._next_gauges = self.last_progress + _GAUGE_INTERVAL_S
            self._update_gauges()

    def _consume(self, wanted: int, timeout: float) -> list[Message]:
        """Up to ``wanted`` records, returned as soon as any are there.

        librdkafka's batch consume waits out its whole timeout unless the batch fills: an idle
        worker would hold a lone note for up to ``_IDLE_POLL_S``. So: take what is fetched
        already; if nothing is, wait for one record, then take what came with it."""
        messages = self._consumer.consume(wanted, 0)
        if messages:
            return messages
        messages = self._consumer.consume(1, timeout)
        if messages and wanted > 1:
            messages += self._consumer.consume(wanted - 1, 0)
        return messages

    def _update_gauges(self) -> None:
        self.metrics.queue_sentences.set(self._inference.queued_sentences)
        memory = self._device_memory()
        if memory is not None:
            self.metrics.device_memory.set(memory)
        assigned = [TopicPartition(t, p) for (t, p) in self.partitions]
        if not assigned:
            return
        try:
            positions = self._consumer.position(assigned)
        except KafkaException:
            return
        for tp in positions:
            state = self.partitions.get((tp.topic, tp.partition))
            if state is None:
                continue
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
            done = state.committable if state.committable is not None else tp.offset
            if high >= 0 and done is not None and done >= 0:
                self.metrics.consumer_lag.labels(partition=str(tp.partition)).set(high - done)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal
        if not self._inference.alive():
            failure = self._inference.failure
            raise FatalError(f"inference thread stopped: {type(failure).__name__}: {failure}")

    def _ingest(self, messages: list[Message]) -> None:
        notes: list[PendingNote] = []
        for message in messages:
            error = message.error()
            if error is not None:
                self._on_error(error)
                continue
            topic, partition, offset = message.topic(), message.partition(), message.offset()
            if topic is None or partition is None or offset is None:
                continue
            state = self.partitions.get((topic, partition))
            if state is None or not state.active:
                continue  # fetched just before a revoke: the new owner reads it again
            if self._replay is not None and offset >= self._replay.end(partition):
                continue  # past the replay window
            _kind, timestamp = message.timestamp()
            note = PendingNote(
                state=state,
                offset=offset,
                timestamp=timestamp if timestamp > 0 else None,
                key=message.key(),
                value=message.value(),
                headers=cast(Headers | None, message.headers()),
            )
            state.add(note)
            notes.append(note)
        self.metrics.events_in.inc(len(notes))
        # In chunks, so the model starts on the first notes of a large poll while the main
        # thread prepares the rest (a 500-note poll is about a second of tokenising on one core).
        for start in range(0, len(notes), _PREPARE_CHUNK):
            jobs = self._preparer.prepare(notes[start : start + _PREPARE_CHUNK])
            self.metrics.sentences_in.inc(len(jobs))
            self._inference.submit(jobs)

    def _emit_ready(self) -> None:
        for state in self.partitions.values():
            for note in state.take_ready():
                self._produce(note)

    def _produce(self, note: PendingNote) -> None:
        state = note.state
        source = SourceRef(state.topic, state.partition, note.offset, note.timestamp)
        failure = note.failure
        if failure is None:
            topic = self.output_topic
            value: bytes | None = render(
                note,
                source=source,
                provenance=self.provenance,
                include_text=self.settings.include_sentence_text,
            )
            headers = note.headers
        else:
            topic = self.settings.dlq_topic
            value = note.value
            headers = [*(note.headers or []), *dead_letter_headers(failure, source)]
            log.warning(
                "dead_letter",
                topic=state.topic,
                partition=state.partition,
                offset=note.offset,
                reason=failure.reason,
                message=failure.message,
            )
        callback = functools.partial(self._on_delivery, note, failure)
        self._committer.before_produce()
        while True:
            try:
                self._producer.produce(
                    topic, value=value, key=note.key, headers=headers, on_delivery=callback
                )
                return
            except BufferError:  # local queue full: serve delivery reports, then retry
                self._producer.poll(0.05)
                self._store_offsets()

    def _on_delivery(
        self, note: PendingNote, failure: InvalidEvent | None, error: KafkaError | None, _m: Any
    ) -> None:
        if error is not None:
            # The idempotent producer already retried until delivery.timeout.ms: stop without
            # storing this offset; the restarted worker re-reads it.
            self._fatal = FatalError(f"delivery failed: {error.str()}")
            return
        note.delivered = True
        self.delivered += 1
        note.value = None  # the original bytes are no longer needed
        self._acked.add(note.state)
        if failure is None:
            self.metrics.events_out.inc()
        else:
            self.metrics.dead_letters.labels(reason=failure.reason).inc()
        if note.timestamp is not None:
            self.metrics.latency_seconds.observe(max(0.0, time.time() - note.timestamp / 1000))

    def _store_offsets(self) -> None:
        if not self._acked:
            return
        offsets = []
        for state in self._acked:
            committable = state.acknowledge()
            if committable is not None and state.active:
                offsets.append(TopicPartition(state.topic, state.partition, committable))
        self._acked.clear()
        if offsets:
            self._committer.stage(offsets)

    def _apply_backpressure(self) -> None:
        inflight = self.inflight
        self.metrics.inflight_notes.set(inflight)
        limit = self.settings.max_inflight_notes
        assigned = [TopicPartition(t, p) for (t, p) in self.partitions]
        if not self._paused and inflight >= limit:
            self._consumer.pause(assigned)
            self._paused = True
            self.metrics.paused.set(1)
            self.metrics.pauses.inc()
            log.debug("paused", inflight=inflight)
        elif self._paused and inflight <= limit // 2:
            self._consumer.resume(assigned)
            self._paused = False
            self.metrics.paused.set(0)
            log.debug("resumed", inflight=inflight)

    # ------------------------------------------------------------------ rebalancing
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions[(tp.topic, tp.partition)] = PartitionState(tp.topic, tp.partition)
        consumer.incremental_assign(partitions)
        # librdkafka keeps a partition's pause flag across unassign/assign (e.g. after a loss
        # while paused), so set the state explicitly both ways.
        if self._paused or self._stopping.is_set():
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        self.metrics.rebalances.labels(kind="assign").inc()
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions_assigned", partitions=_names(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        states = [self.partitions[key] for key in _keys(partitions) if key in self.partitions]
        self._finish(states, deadline=time.monotonic() + self.settings.revoke_timeout_s)
        self._committer.commit(states)
        dropped = sum(state.abandon() for state in states)
        for state in states:
            self.partitions.pop((state.topic, state.partition), None)
        consumer.incremental_unassign(partitions)
        self.metrics.rebalances.labels(kind="revoke").inc()
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.info("partitions_revoked", partitions=_names(partitions), abandoned=dropped)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._committer.partitions_lost()
        dropped = 0
        for key in _keys(partitions):
            state = self.partitions.pop(key, None)
            if state is not None:
                dropped += state.abandon()
        consumer.incremental_unassign(partitions)
        self.metrics.rebalances.labels(kind="lost").inc()
        self.metrics.assigned_partitions.set(len(self.partitions))
        log.warning("partitions_lost", partitions=_names(partitions), abandoned=dropped)

    def _finish(self, states: list[PartitionState], *, deadline: float) -> None:
        """Let in-flight work of ``states`` complete and be acknowledged, until ``deadline``."""
        while any(state.inflight for state in states) and time.monotonic() < deadline:
            if self._fatal is not None:
                return
            self._emit_ready()
            self._producer.poll(0.02)
            self._store_offsets()

    def _rewind(self) -> None:
        """After an aborted transaction: forget all in-flight work, re-read from the commits."""
        assigned = [TopicPartition(t, p) for (t, p) in self.partitions]
        for state in self.partitions.values():
            state.abandon()
        self.partitions = {key: PartitionState(*key) for key in self.partitions}
        if not assigned:
            return
        reset = OFFSET_BEGINNING if self.settings.auto_offset_reset == "earliest" else OFFSET_END
        for tp in self._consumer.committed(assigned, timeout=30):
            offset = tp.offset if tp.offset >= 0 else reset
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        log.warning("rewound_to_committed", partitions=_names(assigned))

    # ------------------------------------------------------------------ shutdown
    def _drain(self) -> None:
        deadline = time.monotonic() + self.settings.drain_timeout_s
        self._consumer.pause([TopicPartition(t, p) for (t, p) in self.partitions])
        states = list(self.partitions.values())
        self._finish(states, deadline=deadline)
        self._producer.flush(max(0.0, deadline - time.monotonic()))
        self._store_offsets()
        self._check_fatal()
        self._committer.commit(states)
        left = self.inflight
        self._consumer.close()
        log.info("drained", unfinished_notes=left)

    def _abort(self) -> None:
        """Fatal path: leave the group; only delivered work was stored, so closing is safe."""
        try:
            self._consumer.close()
        except (KafkaException, RuntimeError) as exc:
            log.warning("close_failed", error=str(exc))

    def _on_error(self, error: KafkaError) -> None:
        code = error.code()
        configuration = not self._connected and code in _FATAL_BEFORE_CONNECTED
        if error.fatal() or code in _FATAL_CODES or configuration:
            self._fatal = FatalError(f"kafka: {error.str()}")
        else:
            log.warning(
                "kafka_error", code=error.name(), error=error.str(), retriable=error.retriable()
            )


def _keys(partitions: list[TopicPartition]) -> list[tuple[str, int]]:
    return [(tp.topic, tp.partition) for tp in partitions]


def _names(partitions: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in partitions]
