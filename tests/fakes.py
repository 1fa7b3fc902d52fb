"""In-memory stand-ins for unit tests: notes without a model, Kafka without a broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_END, KafkaError, KafkaException, TopicPartition

from worker.events import NoteEvent, SourceRef
from worker.notes import Note, Record, SentenceJob
from worker.scoring import PlainScorer


def note_of(rows: Sequence[Sequence[int]], record: Record | None = None) -> Note:
    """A note whose sentences are ``rows`` of token ids, ready to submit."""
    owner = record or Record(source=SourceRef("t", 0, 0, None), key=None, value=b"{}")
    note = Note(record=owner, event=NoteEvent({}))
    note.expect(len(rows))
    note.jobs = [SentenceJob(note, index, row) for index, row in enumerate(rows)]
    return note


# --------------------------------------------------------------------------- a model
class ModelCrash(BaseException):
    """Stands for what kills a worker process (a segfault, the OOM killer)."""


@dataclass(frozen=True, slots=True)
class Encoded:
    ids: list[int]
    truncated: bool = False


class WordModel(PlainScorer):
    """Tokens are words (id = word length); a sentence's score is 0.9 if it says PSA."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches = 0

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """A sentence saying CRASH takes the worker down (as a segfault in a tokenizer would)."""
        if any("CRASH" in text for text in texts):
            raise ModelCrash("the tokenizer is gone")
        if any("BREAK" in text for text in texts):
            raise ValueError("a text the tokenizer cannot take")
        return [
            Encoded([99 if word == "PSA" else len(word) for word in text.split()] or [1])
            for text in texts
        ]

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.batches += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        return [0.9 if 99 in row else 0.1 for row in batch]

    device_type = "cpu"

    def device_memory_bytes(self) -> int | None:
        return None

    def encoder_spec(self) -> None:
        return None  # words are no tokenizer: host processes cannot run this model


# --------------------------------------------------------------------------- Kafka
class FakeMessage:
    """A fetched record with confluent-kafka's ``Message`` accessors."""

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Any = None,
        timestamp: int = 1_700_000_000_000,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._value, self._key, self._headers, self._timestamp = value, key, headers, timestamp

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, self._timestamp)

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return self._headers


Key = tuple[str, int]


class FakeBroker:
    """Topics as lists of messages, and the group's committed offsets."""

    def __init__(self) -> None:
        self.logs: dict[Key, list[FakeMessage]] = {}
        self.committed: dict[Key, int] = {}
        self.metadata: dict[Key, str | None] = {}
        self.topics: set[str] = set()

    def create(self, topic: str, partitions: int = 1) -> None:
        self.topics.add(topic)
        for partition in range(partitions):
            self.logs.setdefault((topic, partition), [])

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        partition: int = 0,
        key: bytes | None = None,
        headers: Any = None,
    ) -> FakeMessage:
        log = self.logs.setdefault((topic, partition), [])
        message = FakeMessage(topic, partition, len(log), value, key=key, headers=headers)
        log.append(message)
        return message

    def read(self, topic: str) -> list[FakeMessage]:
        return [m for (t, _p), log in sorted(self.logs.items()) if t == topic for m in log]


class FakeConsumer:
    """A group member over :class:`FakeBroker`. Rebalances queued with :meth:`rebalance` run
    inside the next ``consume()``, as librdkafka runs its callbacks."""

    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.assigned: set[Key] = set()
        self.paused: set[Key] = set()
        self.positions: dict[Key, int] = {}
        self.stored: dict[Key, int] = {}
        self.callbacks: dict[str, Any] = {}
        self._losing = False  # the rebalance callback running is on_lost
        self.pending: list[tuple[str, list[Key]]] = []
        self.pause_calls = 0
        self.commits = 0
        self.closed = False
        self.lock = threading.Lock()

    # the test side
    def rebalance(self, kind: str, keys: list[Key]) -> None:
        with self.lock:
            self.pending.append((kind, keys))

    # the consumer API
    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        keys = sorted(key for key in self.broker.logs if key[0] in topics)
        self.rebalance("assign", keys)

    def assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.assigned.add((tp.topic, tp.partition))
            self.positions[(tp.topic, tp.partition)] = tp.offset

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.add(key)
            self.positions[key] = self.broker.committed.get(key, 0)

    def incremental_unassign(self, partitions: list[TopicPartition]) -> None:
        """As librdkafka's with auto-commit: the stored offsets of revoked partitions are
        committed as they go (not of lost ones: this member no longer owns them)."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assigned.discard(key)
            if key in self.stored and not self._losing:
                self.broker.committed[key] = self.stored.pop(key)
                self.broker.metadata[key] = None

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        with self.lock:
            pending, self.pending = self.pending, []
        for kind, keys in pending:
            partitions = [TopicPartition(topic, partition) for topic, partition in keys]
            self._losing = kind == "lost"
            try:
                self.callbacks[f"on_{kind}"](self, partitions)
            finally:
                self._losing = False
        messages: list[FakeMessage] = []
        for key in sorted(self.assigned - self.paused):
            log = self.broker.logs.get(key, [])
            while len(messages) < num_messages and self.positions[key] < len(log):
                messages.append(log[self.positions[key]])
                self.positions[key] += 1
        if not messages and timeout:
            time.sleep(min(timeout, 0.002))
        return messages

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.pause_calls += 1
        self.paused.update((tp.topic, tp.partition) for tp in partitions)

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        result = []
        for tp in partitions:
            key = (tp.topic, tp.partition)
            offset = self.broker.committed.get(key, -1001)
            metadata = self.broker.metadata.get(key)
            if metadata is None:
                result.append(TopicPartition(tp.topic, tp.partition, offset))
            else:
                result.append(TopicPartition(tp.topic, tp.partition, offset, metadata))
        return result

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        return [
            TopicPartition(
                tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), -1001)
            )
            for tp in partitions
        ]

    def seek(self, partition: TopicPartition) -> None:
        """As librdkafka: ``OFFSET_BEGINNING`` is the log's start, ``OFFSET_END`` its end now."""
        key = (partition.topic, partition.partition)
        offset = partition.offset
        if offset == OFFSET_END:
            offset = len(self.broker.logs.get(key, []))
        self.positions[key] = max(0, offset)

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = 1.0, cached: bool = False
    ) -> tuple[int, int]:
        return (0, len(self.broker.logs.get((partition.topic, partition.partition), [])))

    def store_offsets(self, *, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            key = (tp.topic, tp.partition)
            if key not in self.assigned:
                raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))
            self.stored[key] = tp.offset

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = False) -> None:
        for tp in offsets:
            self.broker.committed[(tp.topic, tp.partition)] = tp.offset
            self.broker.metadata[(tp.topic, tp.partition)] = tp.metadata
        self.commits += 1

    def auto_commit(self) -> None:
        """What librdkafka's auto-commit does with the stored offsets."""
        self.broker.committed.update(self.stored)
        self.broker.metadata.update(dict.fromkeys(self.stored))

    def consumer_group_metadata(self) -> object:
        return object()

    def close(self) -> None:
        """As librdkafka's: a subscribed consumer revokes its assignment first (running the
        revoke callback), then commits the stored offsets."""
        if self.callbacks and self.assigned:
            revoked = [
                TopicPartition(topic, partition) for topic, partition in sorted(self.assigned)
            ]
            self.callbacks["on_revoke"](self, revoked)
        self.auto_commit()  # librdkafka commits stored offsets when a consumer closes
        self.closed = True


class _Metadata:
    def __init__(self, topics: set[str]) -> None:
        self.topics = dict.fromkeys(topics)


class FakeProducer:
    """Produces into :class:`FakeBroker`. ``refuse(topic, value)`` may return a
    :class:`KafkaError` for a delivery report; ``full`` makes that many produce calls raise
    ``BufferError``; values over ``max_bytes`` raise like librdkafka's local size check.

    Topics in ``compacted`` refuse a record without a key as the brokers do: the whole batch
    it was sent in (every message to that topic served by the same ``poll``) fails with
    ``INVALID_RECORD``. As librdkafka's, a transaction in which a delivery failed accepts
    nothing more (``produce`` raises ``_STATE``) and cannot commit: it must be aborted."""

    def __init__(self, broker: FakeBroker, *, max_bytes: int = 1_000_000) -> None:
        self.broker = broker
        self.max_bytes = max_bytes
        self.refuse: Any = lambda topic, value: None
        self.full = 0
        self.queued: list[tuple[str, FakeMessage, Any]] = []
        self.in_transaction: list[FakeMessage] | None = None
        self.transaction_offsets: dict[Key, int] = {}
        self.fail_commit: list[KafkaError] = []
        self.aborted = 0
        self.compacted: set[str] = set()
        self.doomed = False  # a delivery in the open transaction failed

    def produce(
        self, topic: str, *, value: bytes | None, key: bytes | None, headers: Any, on_delivery: Any
    ) -> None:
        if self.doomed:
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        if value is not None and len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        message = FakeMessage(topic, 0, -1, value, key=key, headers=headers)
        self.queued.append((topic, message, on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        served, self.queued = self.queued, []
        invalid = {t for t, m, _ in served if t in self.compacted and m.key() is None}
        for topic, message, on_delivery in served:
            error = self.refuse(topic, message.value())
            if error is None and topic in invalid:
                error = KafkaError(KafkaError.INVALID_RECORD, "Broker: Invalid record")
            if error is not None and self.in_transaction is not None:
                self.doomed = True
            if error is None:
                if self.in_transaction is not None:
                    self.in_transaction.append(message)
                else:
                    self._append(message)
            on_delivery(error, message)
        return len(served)

    def _append(self, message: FakeMessage) -> None:
        self.broker.append(
            message.topic(), message.value(), key=message.key(), headers=message.headers()
        )

    def flush(self, timeout: float = 0.0) -> int:
        """Serve until the queue is empty (also what delivery reports produced meanwhile)."""
        for _round in range(100):
            if not self.queued:
                break
            self.poll()
        return len(self.queued)

    def list_topics(self, *, timeout: float) -> _Metadata:
        return _Metadata(self.broker.topics)

    def init_transactions(self, timeout: float) -> None:
        return None

    def begin_transaction(self) -> None:
        self.in_transaction = []
        self.transaction_offsets = {}

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartition], metadata: object, timeout: float
    ) -> None:
        if self.doomed:
            raise KafkaException(_must_abort())
        self.transaction_offsets.update({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def commit_transaction(self, timeout: float) -> None:
        if self.doomed:
            raise KafkaException(_must_abort())
        if self.fail_commit:
            raise KafkaException(self.fail_commit.pop())
        for message in self.in_transaction or []:
            self._append(message)
        self.broker.committed.update(self.transaction_offsets)
        self.in_transaction = None

    def abort_transaction(self, timeout: float) -> None:
        """As librdkafka: outputs still queued are purged, their delivery reports say so."""
        self.aborted += 1
        self.doomed = False
        purged, self.queued = self.queued, []
        for _topic, message, on_delivery in purged:
            on_delivery(KafkaError(KafkaError._PURGE_QUEUE), message)
        self.in_transaction = None


def _must_abort() -> KafkaError:
    return KafkaError(
        KafkaError._STATE,
        "Failed to produce messages: abort the transaction",
        txn_requires_abort=True,
    )
