"""Metrics against the real local broker: the whole group's lag from committed offsets, and
what a running worker of each runtime exports."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from devkit.localkafka import free_port
from tests.kafka_helpers import KafkaTestKit, note, start_worker
from worker.kafka.group_lag import GroupLagCollector
from worker.metrics import Metrics

pytestmark = pytest.mark.kafka

#: Records produced to each partition of the input topic.
RECORDS = {0: 5, 1: 7, 2: 9}


def _produce(kit: KafkaTestKit) -> None:
    producer = Producer({"bootstrap.servers": kit.bootstrap, "enable.idempotence": True})
    for partition, count in RECORDS.items():
        for i in range(count):
            producer.produce(kit.input, value=b"{}", key=f"{i}".encode(), partition=partition)
    assert producer.flush(30) == 0


def _commit(kit: KafkaTestKit, partition: int, offset: int) -> None:
    """Commit for the group as a member that owns no partition (no subscription); retried
    while the group coordinator is still loading (a fresh broker)."""
    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": kit.group})
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                offsets = [TopicPartition(kit.input, partition, offset)]
                consumer.commit(offsets=offsets, asynchronous=False)
                break
            except KafkaException:
                assert time.monotonic() < deadline, "the group coordinator never answered"
                time.sleep(0.25)
    finally:
        consumer.close()
    assert kit.committed() == {partition: offset}


def _group_lag(metrics: Metrics) -> dict[int, float]:
    return {
        int(sample.labels["partition"]): sample.value
        for family in metrics.registry.collect()
        if family.name == "biomarker_group_lag"
        for sample in family.samples
    }


def _collect(collector: GroupLagCollector) -> None:
    """One round (retried while the group coordinator is still loading)."""
    deadline = time.monotonic() + 30
    while not collector.collect_once():
        assert time.monotonic() < deadline, "the brokers never answered the lag round"
        time.sleep(0.5)


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_group_lag_covers_every_partition_committed_or_not(kit: KafkaTestKit, reset: str) -> None:
    """Committed: log end minus the commit. Nothing committed: from the log start where the
    group would read from the earliest offset, else 0 (it would skip what is there)."""
    kit.create(partitions=3)
    _produce(kit)
    _commit(kit, partition=1, offset=3)
    settings = kit.settings(auto_offset_reset=reset)
    metrics = Metrics()
    _collect(GroupLagCollector(settings, metrics))
    unread = {p: RECORDS[p] if reset == "earliest" else 0 for p in RECORDS}
    assert _group_lag(metrics) == {0: unread[0], 1: RECORDS[1] - 3, 2: unread[2]}


def _scrape(port: int) -> list[Sample] | None:
    """Every sample of ``/metrics``, or None while the server is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


@pytest.mark.parametrize("runtime", ["confluent", "faust"])
def test_a_running_worker_exports_build_info_group_lag_and_runtime_metrics(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path, runtime: str
) -> None:
    kit.create(partitions=2)
    port = free_port()
    env = kit.env(tiny_model_dir, runtime=runtime, metrics_port=str(port), metrics_host="127.0.0.1")
    log = tmp_path / "worker.log"
    worker = start_worker(env, log)
    try:
        kit.produce([note(i) for i in range(20)])
        assert len(kit.read(kit.output, 20)) == 20, log.read_text()
        deadline = time.monotonic() + 60
        while True:
            samples = _scrape(port) or []
            lag = {s.labels["partition"] for s in samples if s.name == "biomarker_group_lag"}
            if lag == {"0", "1"}:
                break
            assert time.monotonic() < deadline, "no group lag for both partitions"
            time.sleep(0.5)
        values = {s.name: s.value for s in samples if not s.labels}
        [info] = [s for s in samples if s.name == "biomarker_build_info"]
        assert info.value == 1
        assert info.labels["runtime"] == runtime and info.labels["device"] == "cpu"
        assert len(info.labels["model_sha256"]) == 64
        assert values["biomarker_sentences_out_total"] >= 40
        assert (
            0
            <= values["biomarker_sentences_flagged_total"]
            <= values["biomarker_sentences_out_total"]
        )
        assert values["process_resident_memory_bytes"] > 0
        assert any(s.name == "python_gc_collections_total" for s in samples)
        if runtime == "confluent":  # librdkafka's periodic commits count while it runs
            while not any(
                s.name == "biomarker_commits_total" and s.labels == {"outcome": "ok"} and s.value
                for s in samples
            ):
                assert time.monotonic() < deadline, "no periodic commit counted"
                time.sleep(0.5)
                samples = _scrape(port) or []
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0
