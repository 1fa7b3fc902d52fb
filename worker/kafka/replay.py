"""Bounded replays (backfills): which offsets of which partitions to process, and when to stop.

The range of every partition is fixed when the replay starts: ``[start, end)`` from explicit
offsets, from timestamps (Kafka's offsets-for-times: the first record at or after the time), or
from the log's start and the end offsets snapshotted at start. A replay that is restarted (a
Kubernetes Job retry) resumes from its own group's committed offsets inside that range; a
partition committed at its end is done.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

from worker.errors import UsageError

_TIMEOUT_S = 30.0
#: Offsets and epoch milliseconds are signed 64-bit numbers in Kafka.
_INT64_END = 2**63


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

    def covers(self, partition: int, offset: int) -> bool:
        """Whether ``offset`` lies in ``partition``'s range."""
        start, end = self.ranges[partition]
        return start <= offset < end

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

    def resume(self, partition: int, committed: int | None) -> int:
        """Where ``partition`` (re)starts: its ``committed`` offset when that lies in its range,
        else its start; never a logical offset, never outside the range."""
        start, end = self.ranges[partition]
        return committed if committed is not None and start <= committed <= end else start

    def assignment(self, committed: Mapping[int, int]) -> list[TopicPartition]:
        """Where to start each partition that has something left to read, resuming from
        ``committed`` when in range."""
        chosen = []
        for partition, (_start, end) in sorted(self.ranges.items()):
            offset = self.resume(partition, committed.get(partition))
            if offset < end:
                chosen.append(TopicPartition(self.topic, partition, offset))
        return chosen

    def done_at_start(self, committed: Mapping[int, int]) -> dict[int, int]:
        """Non-empty partitions that ``committed`` already puts at their end (an earlier attempt
        finished them), each with its end: :meth:`assignment` leaves them out, and
        :meth:`finished` must count them as done."""
        done = {}
        for partition, (start, end) in self.ranges.items():
            if start < end and self.resume(partition, committed.get(partition)) >= end:
                done[partition] = end
        return done


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also accepts digits ``int`` refuses, such as ``²``)."""
    return text.isascii() and text.isdigit()


def parse_offsets(spec: str) -> dict[int, int]:
    """``"0:100,1:250"`` -> ``{0: 100, 1: 250}``."""
    result: dict[int, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        partition, sep, offset = item.partition(":")
        if not sep or not _digits(partition) or not _digits(offset):
            raise UsageError(f"offsets must look like 0:100,1:250 (got {item!r})")
        if int(offset) >= _INT64_END:
            raise UsageError(f"offset out of range (below 2**63): {item!r}")
        result[int(partition)] = int(offset)
    return result


def parse_timestamp(value: str) -> int:
    """Epoch milliseconds, or an ISO-8601 time (a time without zone is UTC), as epoch ms; from
    1970 on (Kafka reads the negative times -1 and -2 as "latest" and "earliest")."""
    if _digits(value):
        ms = int(value)
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
        except (ValueError, OverflowError):
            raise UsageError(f"not a timestamp (ISO-8601 or epoch ms): {value!r}") from None
    if not 0 <= ms < _INT64_END:
        raise UsageError(f"timestamp out of range (1970 or later, below 2**63 ms): {value!r}")
    return ms


@dataclass(frozen=True, slots=True)
class Window:
    """The requested bounds of a replay, as parsed (``None``: not given)."""

    from_timestamp: int | None = None
    to_timestamp: int | None = None
    from_offsets: dict[int, int] | None = None
    to_offsets: dict[int, int] | None = None


def replay_group(group_id: str, topic: str, output_topic: str, window: Window) -> str:
    """The default group of a replay: ``<group_id>-replay-<hash>``, the hash of the requested
    window (as parsed, so equal times written differently agree), the input and the output
    topic. A retry of the same replay gets the same group and resumes from its commits; another
    window or output gets its own and never resumes from this one's. The resolved offsets are
    left out on purpose: an open end (the end offsets at start) moves between retries."""
    identity = {
        "topic": topic,
        "output_topic": output_topic,
        "from_timestamp": window.from_timestamp,
        "to_timestamp": window.to_timestamp,
        "from_offsets": _by_partition(window.from_offsets),
        "to_offsets": _by_partition(window.to_offsets),
    }
    digest = hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{group_id}-replay-{digest[:8]}"


def _by_partition(offsets: dict[int, int] | None) -> dict[str, int] | None:
    return {str(p): o for p, o in sorted(offsets.items())} if offsets else None


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
    if to_offsets:  # a bound that would be ignored: a typo must not widen the replay
        unknown = set(to_offsets) - set(described.partitions)
        if unknown:
            raise UsageError(f"topic {topic!r} has no partition {min(unknown)} (--to-offsets)")
        unbounded = set(to_offsets) - set(from_offsets or described.partitions)
        if unbounded:
            raise UsageError(
                f"--to-offsets names partition {min(unbounded)}, which --from-offsets does not"
            )
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
