"""Small admin look-ups and changes against a (local) cluster: topics, topic settings, the group
coordinator, committed and end offsets; for tests, benchmarks and fault runs.

Every call is bounded by a timeout and raises :class:`AdminUnavailable` instead of hanging when
the cluster cannot answer, because fault runs call them while brokers are down.

No request here is routed to a group coordinator. Committed offsets are read with a consumer
(:class:`GroupOffsets`), and the coordinator is found from metadata, because librdkafka's admin
requests that go to a coordinator misbehave around a coordinator failover: one aborted the whole
process (assertion in ``rd_kafka_enq_once_del_source_return``) when the coordinator's broker was
killed, and ``describe_consumer_groups`` kept answering NOT_COORDINATOR for over a minute after
that broker came back.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from devkit.kafka_jars import KafkaStartError

OFFSETS_TOPIC = "__consumer_offsets"


def offsets_partition(group: str, partitions: int) -> int:
    """The ``__consumer_offsets`` partition of ``group``: ``Utils.abs(group.hashCode()) %
    partitions``, with Java's String.hashCode over UTF-16 code units."""
    data = group.encode("utf-16-be")
    value = 0
    for i in range(0, len(data), 2):
        value = (31 * value + int.from_bytes(data[i : i + 2], "big")) & 0xFFFFFFFF
    signed = value - (1 << 32) if value >= 1 << 31 else value
    return (0 if signed == -(1 << 31) else abs(signed)) % partitions


class AdminUnavailable(RuntimeError):
    """The cluster did not answer an admin request in time."""


def create_topics(
    bootstrap: str | dict[str, str],
    topics: dict[str, int],
    *,
    replication: int = 1,
    topic_config: dict[str, str] | None = None,
) -> None:
    """Create topics (name -> partitions) and wait for them; existing topics are left alone.

    ``topic_config`` holds topic-level settings for every new topic (e.g. ``min.insync.replicas``).
    """
    config = {"bootstrap.servers": bootstrap} if isinstance(bootstrap, str) else bootstrap
    admin = AdminClient(dict(config))
    futures = admin.create_topics(
        [
            NewTopic(
                name,
                num_partitions=count,
                replication_factor=replication,
                config=dict(topic_config or {}),
            )
            for name, count in topics.items()
        ],
        operation_timeout=30,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=60)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise KafkaStartError(f"cannot create topic {name}: {exc}") from exc


class ClusterAdmin:
    """One AdminClient for a cluster's look-ups (thread-safe, as librdkafka's clients are)."""

    def __init__(self, client_config: dict[str, str], *, timeout_s: float = 10.0) -> None:
        self._admin = AdminClient(dict(client_config))
        self._timeout = timeout_s

    def _wait(self, future: Any, what: str) -> Any:
        try:
            return future.result(timeout=self._timeout)
        except Exception as exc:
            raise AdminUnavailable(f"{what}: {exc}") from exc

    def coordinator(self, group: str) -> int:
        """Node id of the broker that coordinates ``group``: the leader of its partition of
        ``__consumer_offsets`` (the broker's own rule, :func:`offsets_partition`)."""
        try:
            metadata = self._admin.list_topics(OFFSETS_TOPIC, timeout=self._timeout)
        except Exception as exc:
            raise AdminUnavailable(f"metadata of {OFFSETS_TOPIC}: {exc}") from exc
        topic = metadata.topics.get(OFFSETS_TOPIC)
        if topic is None or topic.error is not None or not topic.partitions:
            raise AdminUnavailable(f"{OFFSETS_TOPIC} has no metadata yet")
        leader = int(topic.partitions[offsets_partition(group, len(topic.partitions))].leader)
        if leader < 0:
            raise AdminUnavailable(f"the coordinator of {group} has no leader right now")
        return leader

    def described_coordinator(self, group: str) -> int:
        """The coordinator as ``describe_consumer_groups`` reports it (healthy clusters only)."""
        futures = self._admin.describe_consumer_groups([group], request_timeout=self._timeout)
        description = self._wait(futures[group], f"describe group {group}")
        return int(description.coordinator.id)

    def set_topic_config(self, topic: str, values: dict[str, str]) -> None:
        """Change topic-level settings (incremental: other settings keep their values)."""
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            topic,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in values.items()
            ],
        )
        futures = self._admin.incremental_alter_configs([resource])
        for future in futures.values():
            self._wait(future, f"alter config of {topic}")

    def topic_config(self, topic: str, key: str) -> str | None:
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        futures = self._admin.describe_configs([resource], request_timeout=self._timeout)
        entries = self._wait(futures[resource], f"describe config of {topic}")
        entry = entries.get(key)
        return None if entry is None else str(entry.value)


class GroupOffsets:
    """A group's committed offsets and a topic's log end offsets, read with a consumer that
    never joins the group. Not thread-safe: one per thread."""

    def __init__(
        self, client_config: dict[str, str], group: str, topic: str, partitions: list[int]
    ) -> None:
        self._consumer = Consumer({**client_config, "group.id": group, "enable.auto.commit": False})
        self._topic = topic
        self._partitions = partitions

    def committed(self, timeout: float = 5.0) -> dict[int, int]:
        """Committed offset per partition (partitions without a commit: absent)."""
        wanted = [TopicPartition(self._topic, p) for p in self._partitions]
        try:
            found = self._consumer.committed(wanted, timeout=timeout)
        except KafkaException as exc:
            raise AdminUnavailable(f"committed offsets: {exc}") from exc
        return {tp.partition: tp.offset for tp in found if tp.error is None and tp.offset >= 0}

    def end_offsets(self, timeout: float = 5.0) -> dict[int, int]:
        """Log end offset (high watermark) per partition."""
        ends: dict[int, int] = {}
        for p in self._partitions:
            try:
                _low, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=timeout, cached=False
                )
            except KafkaException as exc:
                raise AdminUnavailable(f"end offset of partition {p}: {exc}") from exc
            ends[p] = int(high)
        return ends

    def close(self) -> None:
        self._consumer.close()
