"""librdkafka configuration built from :class:`~worker.config.WorkerSettings`.

Settings that would break the processing guarantee are fixed here and cannot be overridden
through ``kafka_extra``: offsets are stored by the worker only after delivery (or committed inside
the producer transaction), and the producer is idempotent with ``acks=all``. With exactly-once,
``transaction.timeout.ms`` is raised to cover the longest a transaction stays open, unless
``kafka_extra`` sets it (validation then checks that it does cover it).
"""

from __future__ import annotations

import uuid
from typing import Any

from worker.config import WorkerSettings
from worker.config.settings import TRANSACTION_TIMEOUT_MS
from worker.errors import UsageError

_PRODUCER_LOCKED = {"enable.idempotence": True, "acks": "all"}


def _consumer_locked(settings: WorkerSettings) -> dict[str, Any]:
    if settings.processing_guarantee == "exactly-once":  # offsets commit inside transactions
        return {
            "enable.auto.offset.store": False,
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    return {"enable.auto.offset.store": False, "enable.auto.commit": True}


def transactional_id(settings: WorkerSettings) -> str:
    if settings.transactional_id:
        return settings.transactional_id
    member = settings.group_instance_id or uuid.uuid4().hex[:12]
    return f"{settings.group_id}-{member}"


def security_config(settings: WorkerSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"security.protocol": settings.security_protocol.lower()}
    optional = {
        "sasl.mechanism": settings.sasl_mechanism,
        "sasl.username": settings.sasl_username,
        "ssl.ca.location": settings.ssl_ca_location,
        "ssl.certificate.location": settings.ssl_certificate_location,
        "ssl.key.location": settings.ssl_key_location,
    }
    secrets = {
        "sasl.password": settings.sasl_password,
        "sasl.oauthbearer.config": settings.sasl_oauthbearer_config,
        "ssl.key.password": settings.ssl_key_password,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    # An empty secret is unset, as for validation (an empty Secret key mounted as a file).
    config.update(
        {
            key: value.get_secret_value()
            for key, value in secrets.items()
            if value is not None and value.get_secret_value()
        }
    )
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = (
            settings.ssl_endpoint_identification_algorithm
        )
    if settings.sasl_mechanism == "OAUTHBEARER" and "sasl.oauthbearer.config" not in config:
        config["sasl.oauthbearer.method"] = "oidc"
    return config


def common_config(settings: WorkerSettings) -> dict[str, Any]:
    """Connection and security settings every client shares."""
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "client.id": settings.client_id,
        **security_config(settings),
    }


def _with_extra(
    config: dict[str, Any], settings: WorkerSettings, locked: dict[str, Any]
) -> dict[str, Any]:
    clash = sorted(set(settings.kafka_extra) & set(locked))
    if clash:
        guarantee = settings.processing_guarantee
        raise UsageError(f"kafka_extra must not set {', '.join(clash)}: {guarantee} needs them")
    return {**config, **settings.kafka_extra, **locked}


def consumer_config(settings: WorkerSettings, *, group_id: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        **common_config(settings),
        "group.id": group_id or settings.group_id,
        "auto.offset.reset": settings.auto_offset_reset,
        "auto.commit.interval.ms": settings.commit_interval_ms,
        "enable.partition.eof": False,
        "max.poll.interval.ms": settings.max_poll_interval_ms,
    }
    if settings.group_protocol == "consumer":
        config["group.protocol"] = "consumer"  # KIP-848: incremental, broker-side assignment
    else:
        config["partition.assignment.strategy"] = "cooperative-sticky"
        config["session.timeout.ms"] = settings.session_timeout_ms
    if settings.group_instance_id:
        config["group.instance.id"] = settings.group_instance_id
    return _with_extra(config, settings, _consumer_locked(settings))


def producer_config(settings: WorkerSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        **common_config(settings),
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": 8_388_608,
    }
    locked = dict(_PRODUCER_LOCKED)
    if settings.processing_guarantee == "exactly-once":
        locked["transactional.id"] = transactional_id(settings)
        # A transaction stays open up to the commit interval plus a drain or revoke: the
        # timeout must cover that, or the coordinator aborts it and fences the producer.
        if settings.transaction_timeout_ms > TRANSACTION_TIMEOUT_MS:
            config["transaction.timeout.ms"] = settings.transaction_timeout_ms
    return _with_extra(config, settings, locked)
