"""Topics, producers and readers of the benchmark's broker runs.

Latency of a note = CreateTime of its enriched output (stamped when the worker hands it to its
producer) minus CreateTime of its input (stamped when the benchmark's producer sent it). Outputs
are matched to inputs by record key (the note id), so every runtime is measured the same way.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.corpus import Corpus
from devkit.localkafka import create_topics


@dataclass(frozen=True, slots=True)
class Topics:
    """Input/output/dead-letter topics and a consumer group, unique to one measurement."""

    bootstrap: str
    input: str
    output: str
    dlq: str
    group: str

    @classmethod
    def fresh(cls, bootstrap: str, label: str, partitions: int) -> Topics:
        tag = f"bench-{label}-{uuid.uuid4().hex[:6]}"
        topics = cls(bootstrap, f"{tag}-in", f"{tag}-out", f"{tag}-dlq", f"{tag}-group")
        wanted = {topics.input: partitions, topics.output: partitions, topics.dlq: 1}
        create_topics(bootstrap, wanted)
        _wait_for_metadata(bootstrap, set(wanted))
        return topics


def _wait_for_metadata(bootstrap: str, names: set[str], timeout: float = 30.0) -> None:
    """Created topics can take a moment to show in metadata; the worker checks them at start."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while not names <= set(admin.list_topics(timeout=10).topics):
        if time.monotonic() > deadline:
            raise RuntimeError(f"topics {sorted(names)} not visible after {timeout}s")
        time.sleep(0.1)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One note's journey: input and output CreateTime (ms) and its sentence count."""

    key: bytes
    sent_ms: int
    done_ms: int
    sentences: int

    @property
    def latency_ms(self) -> int:
        return self.done_ms - self.sent_ms


def _producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "enable.idempotence": True,
            "compression.type": "none",  # aiokafka (faust peer) has no lz4 without extras
            "message.max.bytes": 8_388_608,
        }
    )


def produce_backlog(topics: Topics, corpus: Corpus) -> None:
    """Write every note of ``corpus`` to the input topic and wait for the acknowledgements."""
    producer = _producer(topics.bootstrap)
    for value, key in zip(corpus.events, corpus.keys, strict=True):
        while True:
            try:
                producer.produce(topics.input, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("backlog not acknowledged within 60 s")


def produce_paced(
    topics: Topics, corpus: Corpus, rate: float, *, start: Callable[[], bool]
) -> threading.Thread:
    """A thread that waits for ``start()`` then writes the notes at ``rate`` notes/s."""

    def pace() -> None:
        while not start():
            time.sleep(0.05)
        producer = _producer(topics.bootstrap)
        began = time.monotonic()
        for index, (value, key) in enumerate(zip(corpus.events, corpus.keys, strict=True)):
            delay = began + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            producer.produce(topics.input, value=value, key=key)
            producer.poll(0)
        producer.flush(60)

    thread = threading.Thread(target=pace, name="paced-producer", daemon=True)
    thread.start()
    return thread


def _timestamps(
    bootstrap: str, topic: str, expected: int, timeout: float
) -> dict[bytes, tuple[int, int]]:
    """key -> (first CreateTime, copies) for a topic read from the beginning."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    seen: dict[bytes, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(seen) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                key = message.key()
                if message.error() is not None or key is None:
                    continue
                stamp = message.timestamp()[1]
                first, copies = seen.get(key, (stamp, 0))
                seen[key] = (min(first, stamp), copies + 1)
    finally:
        consumer.close()
    return seen


def collect(topics: Topics, corpus: Corpus, *, timeout: float = 60.0) -> list[Delivery]:
    """Match outputs to inputs by key; raise when any note has no output."""
    sentences = dict(zip(corpus.keys, corpus.sentences_per_note, strict=True))
    sent = _timestamps(topics.bootstrap, topics.input, corpus.notes, timeout)
    done = _timestamps(topics.bootstrap, topics.output, corpus.notes, timeout)
    missing = [key for key in corpus.keys if key not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} of {corpus.notes} notes have no output in {timeout}s")
    return sorted(
        (
            Delivery(key, sent[key][0], done[key][0], sentences[key])
            for key in corpus.keys
            if key in sent
        ),
        key=lambda d: d.done_ms,
    )


def output_count(bootstrap: str, topic: str, partitions: int) -> int:
    """Records in ``topic`` (sum of high watermarks): cheap progress check while workers run."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks"})
    try:
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
            for p in range(partitions)
        )
    finally:
        consumer.close()
