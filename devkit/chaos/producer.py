"""The chaos run's input stream: records produced at a steady rate from a background thread.

The producer is idempotent with ``acks=all``, so a broker fault delays input but neither loses
nor duplicates it. Delivery reports give each record's partition and offset.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Producer

from devkit.chaos.corpus import InputRecord


@dataclass(slots=True)
class Delivered:
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(slots=True)
class ProducerStats:
    produced: int = 0
    delivered: int = 0
    seconds: float = 0.0  # from the first record to the last delivery of the paced stream
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


class PacedProducer:
    """Produces ``records`` to ``topic`` at ``rate`` records/s until done or stopped."""

    def __init__(
        self, client_config: dict[str, str], topic: str, records: list[InputRecord], rate: float
    ) -> None:
        self._producer = Producer(
            {
                **client_config,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 10,
                "compression.type": "lz4",
                "message.timeout.ms": 600_000,
            }
        )
        self._topic = topic
        self._records = records
        self._rate = rate
        self.stats = ProducerStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-producer", daemon=True)

    @property
    def total(self) -> int:
        return len(self._records)

    def start(self) -> PacedProducer:
        self._thread.start()
        return self

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def produce_now(self, record: InputRecord, timeout: float = 60.0) -> Delivered | None:
        """Produce one record outside the paced stream and wait for its delivery."""
        found: list[Delivered] = []

        def on_delivery(error: Any, message: Any) -> None:
            self._on_delivery(error, message)
            if error is None:
                found.append(
                    Delivered(message.partition(), message.offset(), message.timestamp()[1])
                )

        self._send(record, on_delivery)
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            with self._lock:
                self._producer.poll(0.1)
        return found[0] if found else None

    def flush(self, timeout: float) -> int:
        """Wait for outstanding deliveries (in short steps: :meth:`produce_now` may run)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                left: int = self._producer.flush(0.5)
            if left == 0 or time.monotonic() > deadline:
                return left

    def _send(self, record: InputRecord, on_delivery: Any) -> None:
        while True:
            try:
                with self._lock:
                    self._producer.produce(
                        self._topic,
                        key=record.key,
                        value=record.value,
                        headers=record.headers,
                        on_delivery=on_delivery,
                    )
                    self.stats.produced += 1
                return
            except BufferError:  # local queue full (brokers slow): wait for deliveries
                with self._lock:
                    self._producer.poll(0.2)

    def _on_delivery(self, error: Any, _message: Any) -> None:
        if error is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            name = str(error.name())
            self.stats.errors[name] = self.stats.errors.get(name, 0) + 1

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for i, record in enumerate(self._records):
                if self._stop.is_set():
                    return
                delay = started + i / self._rate - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                self._send(record, self._on_delivery)
                with self._lock:
                    self._producer.poll(0)
            self.flush(120)
        finally:
            self.stats.seconds = round(time.monotonic() - started, 1)
            self._done.set()
