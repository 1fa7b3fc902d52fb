"""The faust runtime against secured brokers: SASL/SCRAM and TLS with a verified certificate."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from devkit.localkafka import LocalKafka
from tests.kafka_helpers import KafkaTestKit, start_worker
from tests.test_operations_kafka import _topics_with_ten_notes, sasl_kafka, tls_kafka
from tests.test_resilience_kafka import stop, wait_for

pytestmark = pytest.mark.kafka
__all__ = ["sasl_kafka", "tls_kafka"]  # the module-scoped brokers, shared with that module


def _committed(cluster: LocalKafka, kit: KafkaTestKit) -> int:
    reader = Consumer({**cluster.client_config(), "group.id": kit.group})
    try:
        [found] = reader.committed([TopicPartition(kit.input, 0)], timeout=10)
        return max(found.offset, 0)
    except KafkaException:  # the group's coordinator is still loading: ask again
        return 0
    finally:
        reader.close()


def _run_ten(cluster: LocalKafka, model_dir: Path, tmp_path: Path, **security: str) -> None:
    prefix = f"f{uuid.uuid4().hex[:8]}"
    _topics_with_ten_notes(cluster, prefix)
    kit = KafkaTestKit(cluster.bootstrap_servers, prefix=prefix)
    env = kit.env(model_dir, runtime="faust", **security)
    worker = start_worker(env, tmp_path / "faust.log")
    try:
        wait_for(lambda: _committed(cluster, kit) == 10, 120, "ten notes committed")
    finally:
        assert stop(worker) == 0, (tmp_path / "faust.log").read_text()[-2000:]


def test_faust_runtime_over_sasl_scram(
    sasl_kafka: LocalKafka, tiny_model_dir: Path, tmp_path: Path
) -> None:
    _run_ten(
        sasl_kafka,
        tiny_model_dir,
        tmp_path,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="worker",
        sasl_password="s3cret-pw",
    )


def test_faust_runtime_over_tls(
    tls_kafka: LocalKafka, tiny_model_dir: Path, tmp_path: Path
) -> None:
    assert tls_kafka.tls is not None
    _run_ten(
        tls_kafka,
        tiny_model_dir,
        tmp_path,
        security_protocol="SSL",
        ssl_ca_location=str(tls_kafka.tls.ca_pem),
    )
