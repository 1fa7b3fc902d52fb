"""Producing, reading and inspecting topics of the test broker."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from devkit.localkafka import create_topics
from worker.config import WorkerSettings, load_settings

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


def _record(message: Message) -> Record:
    return Record(
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        key=message.key(),
        value=message.value(),
        headers=dict(message.headers() or []),
    )


class KafkaTestKit:
    """Topic names unique to one test plus helpers around them."""

    def __init__(self, bootstrap: str, *, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.input = f"{prefix}-notes"
        self.output = f"{prefix}-enriched"
        self.dlq = f"{prefix}-dlq"
        self.group = f"{prefix}-worker"

    def create(self, partitions: int = 3) -> None:
        create_topics(
            self.bootstrap, {self.input: partitions, self.output: partitions, self.dlq: 1}
        )

    def settings(self, **overrides: Any) -> WorkerSettings:
        """Validated worker settings on these topics (CPU), with ``overrides``."""
        topology = {
            "bootstrap_servers": self.bootstrap,
            "input_topic": self.input,
            "output_topic": self.output,
            "dlq_topic": self.dlq,
            "group_id": self.group,
            "device": "cpu",
        }
        return load_settings(overrides={**topology, **overrides})

    def env(self, model_dir: Path, **extra: str) -> dict[str, str]:
        """BIOMARKER_* variables for a worker subprocess on these topics."""
        variables = {
            "BIOMARKER_BOOTSTRAP_SERVERS": self.bootstrap,
            "BIOMARKER_INPUT_TOPIC": self.input,
            "BIOMARKER_OUTPUT_TOPIC": self.output,
            "BIOMARKER_DLQ_TOPIC": self.dlq,
            "BIOMARKER_GROUP_ID": self.group,
            "BIOMARKER_MODEL_PATH": str(model_dir),
            "BIOMARKER_DEVICE": "cpu",
            "BIOMARKER_TORCH_THREADS": "1",
            "BIOMARKER_SESSION_TIMEOUT_MS": "10000",
            "BIOMARKER_COMMIT_INTERVAL_MS": "200",
        }
        variables.update({f"BIOMARKER_{k.upper()}": v for k, v in extra.items()})
        return variables

    def produce(
        self,
        values: list[bytes | None],
        keys: list[bytes | None] | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        producer = Producer(
            {"bootstrap.servers": self.bootstrap, "linger.ms": 10, "enable.idempotence": True}
        )
        for i, value in enumerate(values):
            key = keys[i] if keys else None
            producer.produce(self.input, value=value, key=key, headers=headers)
            if i % 1000 == 999:
                producer.poll(0)
        assert producer.flush(30) == 0

    def read(self, topic: str, expected: int, timeout: float = 60.0) -> list[Record]:
        """Read a topic from the beginning until ``expected`` records or the timeout."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{topic}-{time.monotonic_ns()}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        consumer.subscribe([topic])
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    records.append(_record(message))
        # Linger briefly to catch records beyond ``expected`` (duplicates) already written.
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    records.append(_record(message))
        consumer.close()
        return records

    def committed(self) -> dict[int, int]:
        """The group's committed offsets of the input topic, per partition."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        metadata = admin.list_topics(self.input, timeout=10)
        partitions = [TopicPartition(self.input, p) for p in metadata.topics[self.input].partitions]
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group})
        try:
            for attempt in range(20):
                try:
                    result = consumer.committed(partitions, timeout=10)
                    break
                except KafkaException:  # coordinator loading or moving: retry
                    if attempt == 19:
                        raise
                    time.sleep(0.25)
        finally:
            consumer.close()
        return {tp.partition: tp.offset for tp in result if tp.offset >= 0}


#: Worker processes started by the current test; conftest kills leftovers after each test.
STARTED: list[subprocess.Popen[bytes]] = []


def start_worker(
    env: dict[str, str], log_path: Path, *, module: str = "worker", cwd: Path = REPO
) -> subprocess.Popen[bytes]:
    """``biomarker-worker run`` as a separate process (stderr JSON logs to ``log_path``)."""
    import os

    command = [sys.executable, "-m", module] + (["run"] if module == "worker" else [])
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
    STARTED.append(process)
    return process


def note(i: int, text: str | None = None) -> bytes:
    body = text or (
        f"Patient {i} seen today. Serum PSA was {i % 10}.2 ng/mL. "
        "The patient tolerated the procedure well."
    )
    return orjson.dumps(
        {"note_id": f"n-{i}", "text": body, "patient_id": f"p-{i % 17}", "metadata": {"seq": i}}
    )
