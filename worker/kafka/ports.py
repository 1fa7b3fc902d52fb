"""The parts of confluent-kafka's ``Consumer`` and ``Producer`` the worker uses.

The worker's Kafka steps take these protocols, so unit tests drive them with in-memory fakes
(``tests/fakes.py``); :func:`kafka_clients` builds the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from worker.config import WorkerSettings
from worker.errors import UsageError
from worker.kafka.clients import common_config, consumer_config, producer_config

#: ``TopicPartition`` and ``Message`` objects of confluent-kafka (or fakes with their methods).
TopicPartitionLike = Any
MessageLike = Any
RebalanceCallback = Callable[[Any, list[Any]], None]


class ConsumerPort(Protocol):
    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: RebalanceCallback,
        on_revoke: RebalanceCallback,
        on_lost: RebalanceCallback,
    ) -> None: ...

    def assign(self, partitions: list[TopicPartitionLike]) -> None: ...

    def incremental_assign(self, partitions: list[TopicPartitionLike]) -> None: ...

    def incremental_unassign(self, partitions: list[TopicPartitionLike]) -> None: ...

    def consume(self, num_messages: int, timeout: float) -> list[MessageLike]: ...

    def pause(self, partitions: list[TopicPartitionLike]) -> None: ...

    def resume(self, partitions: list[TopicPartitionLike]) -> None: ...

    def committed(
        self, partitions: list[TopicPartitionLike], timeout: float
    ) -> list[TopicPartitionLike]: ...

    def position(self, partitions: list[TopicPartitionLike]) -> list[TopicPartitionLike]: ...

    def seek(self, partition: TopicPartitionLike) -> None: ...

    def get_watermark_offsets(
        self, partition: TopicPartitionLike, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...

    def store_offsets(self, *, offsets: list[TopicPartitionLike]) -> None: ...

    def commit(self, *, offsets: list[TopicPartitionLike], asynchronous: Literal[False]) -> Any: ...

    def consumer_group_metadata(self) -> Any: ...

    def close(self) -> None: ...


class ProducerPort(Protocol):
    def produce(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: Any,
        on_delivery: Callable[[Any, Any], None],
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...

    def list_topics(self, *, timeout: float) -> Any: ...

    def init_transactions(self, timeout: float) -> None: ...

    def begin_transaction(self) -> None: ...

    def send_offsets_to_transaction(
        self, offsets: list[TopicPartitionLike], metadata: Any, timeout: float
    ) -> None: ...

    def commit_transaction(self, timeout: float) -> None: ...

    def abort_transaction(self, timeout: float) -> None: ...


#: ``max.message.bytes`` of each named topic, as the brokers report it (missing: unknown).
TopicLimits = Callable[[list[str]], dict[str, int]]


@dataclass(frozen=True, slots=True)
class KafkaClients:
    consumer: ConsumerPort
    producer: ProducerPort
    topic_limits: TopicLimits = lambda _topics: {}


def kafka_clients(
    settings: WorkerSettings,
    *,
    group_id: str | None,
    hooks: dict[str, Any],
    consumer_hooks: dict[str, Any] | None = None,
) -> KafkaClients:
    """The real librdkafka clients, with the worker's error callback and logger
    (``consumer_hooks``: the consumer's alone, such as ``on_commit``)."""
    from confluent_kafka import Consumer, Producer

    admin_config = {**common_config(settings), **hooks}
    consumer_hooks = {**hooks, **(consumer_hooks or {})}
    return KafkaClients(
        consumer=Consumer({**consumer_config(settings, group_id=group_id), **consumer_hooks}),
        producer=Producer({**producer_config(settings), **hooks}),
        topic_limits=lambda topics: _described_limits(admin_config, topics),
    )


def check_client_settings(settings: WorkerSettings, *, group_id: str | None = None) -> None:
    """Build (and at once close) the consumer and producer ``settings`` make, so a property
    librdkafka refuses (a ``kafka_extra`` value, a file path it cannot read) stops the worker
    with one line (:class:`UsageError`) before it loads a model. Nothing is subscribed or
    produced. Left out with OAUTHBEARER's OIDC method: a client built with it asks the
    identity provider for a token at once, and its close waits for the answer."""
    import logging

    from confluent_kafka import Consumer, KafkaException, Producer

    quiet = logging.getLogger("worker.client_check")  # the probe clients' connection attempts
    quiet.addHandler(logging.NullHandler())  # are not news: the real clients report the same
    quiet.propagate = False
    hooks = {"logger": quiet}
    consumer = consumer_config(settings, group_id=group_id)
    if str(consumer.get("sasl.oauthbearer.method", "")).lower() == "oidc":
        return
    try:
        Consumer({**consumer, **hooks}).close()
        Producer({**producer_config(settings), **hooks}).flush(0)
    except KafkaException as exc:
        raise UsageError(f"the Kafka client refused its settings: {client_error(exc)}") from None


def client_error(exc: Exception) -> str:
    """librdkafka's words for a client error (its ``KafkaError``), on one line."""
    error = exc.args[0] if exc.args else exc
    return " ".join(str(error.str() if hasattr(error, "str") else error).split())


def _described_limits(config: dict[str, Any], topics: list[str]) -> dict[str, int]:
    """``max.message.bytes`` per topic from DescribeConfigs; topics it cannot read are left
    out (e.g. an ACL without DescribeConfigs), and the caller falls back to its defaults."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AdminClient,
        ConfigResource,
        ResourceType,
    )

    admin = AdminClient(config)
    resources = [ConfigResource(ResourceType.TOPIC, topic) for topic in topics]
    limits: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources, request_timeout=15).items():
        try:
            entry = future.result(timeout=20).get("max.message.bytes")
        except KafkaException:
            continue
        if entry is not None and entry.value is not None:
            limits[resource.name] = int(entry.value)
    return limits
