"""Bounded replays (backfills): which offsets of which partitions to process, and when to stop.

The range of every partition is fixed when the replay starts: ``[start, end)`` from explicit
offsets, from timestamps (Kafka's offsets-for-times: the first record at or after the time), or
from the log's start and the end offsets snapshotted at start. A replay that is restarted (a
Kubernetes Job retry) resumes from its own group's committed offsets inside that range.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition

from worker.errors import UsageError

_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """Per-partition ``(start, end)`` offsets, end exclusive, of one topic."""

    topic: str
    ranges: dict[int, tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(max(0, end - start) for start, end in self.ranges.values())

    def end(self, partition: int) -> int:
        return self.ranges[partition][1]

    def done(self, partition: int, committable: int | None) -> bool:
        """Whether ``partition``'s committable offset has reached its end (or its range is
        empty)."""
        start, end = self.ranges[partition]
        return start >= end or (committable or start) >= end

    def finished(self, committable: Mapping[int, int | None]) -> bool:
        """True when every partition's committable offset (by partition) has reached its end."""
        return all(
            self.done(partition, committable[partition])
            if partition in committable
            else start >= end
            for partition, (start, end) in self.ranges.items()
        )

    def assignment(self, committed: Mapping[int, int]) -> list[TopicPartition]:
        """Where to start each non-empty partition, resuming from ``committed`` when in range."""
        chosen = []
        for partition, (start, end) in sorted(self.ranges.items()):
            resume = committed.get(partition, -1)
            offset = resume if start <= resume <= end else start
            if offset < end:
                chosen.append(TopicPartition(self.topic, partition, offset))
        return chosen


def parse_offsets(spec: str) -> dict[int, int]:
    """``"0:100,1:250"`` -> ``{0: 100, 1: 250}``."""
    result: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        partition, sep, offset = item.partition(":")
        if not sep or not partition.isdigit() or not offset.isdigit():
            raise UsageError(f"offsets must look like 0:100,1:250 (got {item!r})")
        result[int(partition)] = int(offset)
    return result


def parse_timestamp(value: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (a time without zone is UTC), as epoch ms."""
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not a timestamp (ISO-8601 or epoch ms): {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def plan_replay(
    consumer: Consumer,
    topic: str,
    *,
    from_timestamp: int | None = None,
    to_timestamp: int | None = None,
    from_offsets: dict[int, int] | None = None,
    to_offsets: dict[int, int] | None = None,
) -> ReplayPlan:
    """Resolve the requested window into fixed offset ranges, clamped to what the log holds."""
    metadata = consumer.list_topics(topic, timeout=_TIMEOUT_S)
    described = metadata.topics.get(topic)
    if described is None or described.error is not None:
        raise UsageError(f"topic {topic!r} does not exist")
    partitions = sorted(described.partitions)
    if from_offsets:
        partitions = [p for p in partitions if p in from_offsets]
        unknown = set(from_offsets) - set(described.partitions)
        if unknown:
            raise UsageError(f"topic {topic!r} has no partition {min(unknown)}")
    starts = _at_time(consumer, topic, partitions, from_timestamp)
    ends = _at_time(consumer, topic, partitions, to_timestamp)
    ranges: dict[int, tuple[int, int]] = {}
    for partition in partitions:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=_TIMEOUT_S, cached=False
        ) or (0, 0)
        if from_offsets:
            start = from_offsets[partition]
        else:  # no record at or after from_timestamp: nothing to replay here
            start = starts.get(partition, high if from_timestamp is not None else low)
        end = (to_offsets or {}).get(partition, ends.get(partition, high))
        ranges[partition] = (max(start, low), min(end, high))
    return ReplayPlan(topic=topic, ranges=ranges)


def _at_time(
    consumer: Consumer, topic: str, partitions: list[int], timestamp: int | None
) -> dict[int, int]:
    """First offset at or after ``timestamp`` per partition (omitted: none, i.e. the end)."""
    if timestamp is None:
        return {}
    query = [TopicPartition(topic, p, timestamp) for p in partitions]
    try:
        found = consumer.offsets_for_times(query, timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise UsageError(f"offsets-for-times failed: {exc}") from exc
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
