"""Reads whole topics after a chaos run: every record from offset 0 to the end of each
partition (``read_committed`` for transactional outputs), with only the fields the audit needs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from devkit.chaos.corpus import EXPECT_HEADER, KIND_HEADER

ERROR_CLASS_HEADER = "x-biomarker-error-class"
_SOURCE_PARTITION = "x-biomarker-source-partition"
_SOURCE_OFFSET = "x-biomarker-source-offset"


@dataclass(frozen=True, slots=True)
class InputInfo:
    partition: int
    offset: int
    timestamp_ms: int
    kind: str
    expect: str | None


@dataclass(frozen=True, slots=True)
class Copy:
    """One output or dead-letter record, by the input it answers."""

    partition: int
    offset: int
    timestamp_ms: int
    reason: str | None = None  # dead letters only


def _messages(
    client_config: dict[str, str],
    topic: str,
    partitions: list[int],
    *,
    read_committed: bool,
    idle_timeout_s: float = 30.0,
) -> Iterator[Any]:
    consumer = Consumer(
        {
            **client_config,
            "group.id": f"chaos-audit-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed" if read_committed else "read_uncommitted",
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 16_777_216,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    at_end: set[int] = set()
    last_message = time.monotonic()
    try:
        while len(at_end) < len(partitions):
            batch = consumer.consume(1000, 1.0)
            if not batch and time.monotonic() - last_message > idle_timeout_s:
                missing = sorted(set(partitions) - at_end)
                raise TimeoutError(f"reading {topic}: partitions {missing} did not end")
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(int(message.partition() or 0))
                        continue
                    raise RuntimeError(f"reading {topic}: {error}")
                last_message = time.monotonic()
                at_end.discard(message.partition())
                yield message
    finally:
        consumer.close()


def _headers(message: Any) -> dict[str, bytes]:
    raw = message.headers() or []
    return {name: value for name, value in raw if value is not None}


def read_inputs(
    client_config: dict[str, str], topic: str, partitions: list[int]
) -> dict[tuple[int, int], InputInfo]:
    found: dict[tuple[int, int], InputInfo] = {}
    for message in _messages(client_config, topic, partitions, read_committed=False):
        headers = _headers(message)
        expect = headers.get(EXPECT_HEADER)
        info = InputInfo(
            partition=message.partition(),
            offset=message.offset(),
            timestamp_ms=message.timestamp()[1],
            kind=headers.get(KIND_HEADER, b"unknown").decode(),
            expect=expect.decode() if expect is not None else None,
        )
        found[(info.partition, info.offset)] = info
    return found


def read_outputs(
    client_config: dict[str, str], topic: str, partitions: list[int], *, read_committed: bool
) -> list[Copy]:
    copies: list[Copy] = []
    for message in _messages(client_config, topic, partitions, read_committed=read_committed):
        value = message.value()
        source = orjson.loads(value)["biomarker"]["provenance"]["source"]
        copies.append(
            Copy(
                partition=int(source["partition"]),
                offset=int(source["offset"]),
                timestamp_ms=message.timestamp()[1],
            )
        )
    return copies


def read_dead_letters(
    client_config: dict[str, str], topic: str, partitions: list[int], *, read_committed: bool
) -> list[Copy]:
    copies: list[Copy] = []
    for message in _messages(client_config, topic, partitions, read_committed=read_committed):
        headers = _headers(message)
        copies.append(
            Copy(
                partition=int(headers[_SOURCE_PARTITION]),
                offset=int(headers[_SOURCE_OFFSET]),
                timestamp_ms=message.timestamp()[1],
                reason=headers.get(ERROR_CLASS_HEADER, b"unknown").decode(),
            )
        )
    return copies
