"""The start-up check that the topics exist and the brokers answer."""

from __future__ import annotations

import time
from collections.abc import Sequence

from confluent_kafka import KafkaException

from worker.errors import FatalError
from worker.kafka.errors import KafkaErrors
from worker.kafka.ports import ProducerPort

_METADATA_TIMEOUT_S = 30.0  # how long the start-up topic check waits for the brokers


def check_topics(
    producer: ProducerPort,
    topics: Sequence[str],
    *,
    errors: KafkaErrors,
    bootstrap: str,
    timeout_s: float = _METADATA_TIMEOUT_S,
) -> None:
    """Fail fast when a topic is missing instead of timing out deliveries later."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            metadata = producer.list_topics(timeout=1.0)
            errors.connected = True
            break
        except KafkaException as exc:
            # Serve the error callback: a rejected password or an untrusted broker
            # certificate is reported there, and is a clearer reason than the timeout.
            producer.poll(0)
            if errors.fatal is not None:
                raise errors.fatal from exc
            if time.monotonic() >= deadline:
                raise FatalError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    missing = [topic for topic in topics if topic not in metadata.topics]
    if missing:
        raise FatalError(f"topic(s) missing: {', '.join(missing)} (create them first)")
