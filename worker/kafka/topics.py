"""Start-up checks: the topics exist, the brokers answer, and what one record may cost."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaException

from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.kafka.errors import KafkaErrors
from worker.kafka.ports import ProducerPort

log = structlog.get_logger(__name__)

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


#: Kafka's default ``max.message.bytes``, assumed where the brokers do not say.
DEFAULT_MESSAGE_BYTES = 1_048_588
#: The producer's ``message.max.bytes`` (worker/kafka/clients.py) unless ``kafka_extra`` sets it.
PRODUCER_MESSAGE_BYTES = 8_388_608
#: Kept free below a topic's limit for the record's key, headers and batch framing.
RECORD_OVERHEAD_BYTES = 16_384
#: What one sentence adds to an enriched event (its index, offsets, label, score: ~85 bytes).
BYTES_PER_SENTENCE = 100


@dataclass(frozen=True, slots=True)
class Budgets:
    """What one record may cost, derived from the topics' limits at start-up."""

    max_output_bytes: int
    max_dead_letter_bytes: int
    max_note_sentences: int


def budgets_for(settings: WorkerSettings, limits: dict[str, int], *, output_topic: str) -> Budgets:
    """Per-note budgets: the settings where set (checked against the brokers' limits), else
    derived from the output and dead-letter topics' ``max.message.bytes``."""
    producer_max = int(settings.kafka_extra.get("message.max.bytes", PRODUCER_MESSAGE_BYTES))

    def usable(topic: str) -> int:
        limit = limits.get(topic)
        if limit is None:
            log.warning("topic_limit_unknown", topic=topic, assumed=DEFAULT_MESSAGE_BYTES)
        return min(limit or DEFAULT_MESSAGE_BYTES, producer_max) - RECORD_OVERHEAD_BYTES

    output = usable(output_topic)
    if settings.max_output_bytes is not None:
        if output_topic in limits and settings.max_output_bytes > output:
            raise FatalError(
                f"max_output_bytes {settings.max_output_bytes} is above what topic "
                f"{output_topic} accepts ({limits[output_topic]} bytes max.message.bytes, "
                f"{RECORD_OVERHEAD_BYTES} kept for headers and framing)"
            )
        output = settings.max_output_bytes
    sentences = settings.max_note_sentences or max(1, output // BYTES_PER_SENTENCE)
    budgets = Budgets(output, usable(settings.dlq_topic), sentences)
    log.info(
        "budgets",
        max_output_bytes=budgets.max_output_bytes,
        max_dead_letter_bytes=budgets.max_dead_letter_bytes,
        max_note_sentences=budgets.max_note_sentences,
    )
    return budgets
