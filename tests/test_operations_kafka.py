"""Operating the worker: replay windows, health and metrics over HTTP, SASL/SCRAM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog.testing

from devkit.localkafka import LocalKafka, create_topics, find_keytool, free_port
from tests.kafka_helpers import REPO, KafkaTestKit, Record, note, start_worker
from worker.config import load_settings
from worker.health import HealthServer, Probes, progress_probe
from worker.loading import provenance_for
from worker.metrics import Metrics
from worker.model.classifier import SequenceClassifier
from worker.pipeline import EXIT_FATAL, Pipeline
from worker.runs import run_until

pytestmark = pytest.mark.kafka


def _note_ids(records: list[Record]) -> set[str]:
    return {record.json()["note_id"] for record in records}


def _replay(
    kit: KafkaTestKit, model_dir: Path, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **kit.env(model_dir), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "worker", "replay", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_replay_of_a_time_window_outputs_exactly_that_window(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    kit.create(partitions=3)
    kit.produce([note(i) for i in range(30)])
    time.sleep(0.3)
    window_start = int(time.time() * 1000)
    time.sleep(0.05)
    kit.produce([note(i) for i in range(30, 60)])
    time.sleep(0.05)
    window_end = int(time.time() * 1000)
    time.sleep(0.3)
    kit.produce([note(i) for i in range(60, 90)])

    result = _replay(
        kit,
        tiny_model_dir,
        "--from-timestamp",
        str(window_start),
        "--to-timestamp",
        str(window_end),
        "--group-id",
        f"{kit.group}-backfill",
    )
    assert result.returncode == 0, result.stderr
    assert "30 records in range, 30 delivered" in result.stdout
    outputs = kit.read(kit.output, 30, timeout=10)
    assert _note_ids(outputs) == {f"n-{i}" for i in range(30, 60)}
    assert len(outputs) == 30


def test_replay_of_offsets_with_rate_limit_and_output_override(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    kit.create(partitions=1)
    kit.produce([note(i) for i in range(20)])
    other = f"{kit.output}-backfill"
    create_topics(kit.bootstrap, {other: 1})
    started = time.monotonic()
    result = _replay(
        kit,
        tiny_model_dir,
        "--from-offsets",
        "0:5",
        "--to-offsets",
        "0:15",
        "--rate-limit",
        "20",
        "--output-topic",
        other,
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started > 0.4  # 10 notes at 20/s cannot take less than ~0.5 s
    outputs = kit.read(other, 10, timeout=10)
    assert sorted(r.json()["biomarker"]["provenance"]["source"]["offset"] for r in outputs) == list(
        range(5, 15)
    )
    assert kit.read(kit.output, 1, timeout=2) == []


def test_replay_of_a_transactionally_written_topic_finishes_past_its_commit_markers(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    """Each committed transaction leaves a commit marker, an offset no consumer receives: the
    range's last offset is one. The replay must end once the consumer's position passes it."""
    from confluent_kafka import Producer

    kit.create(partitions=1)
    producer = Producer(
        {"bootstrap.servers": kit.bootstrap, "transactional.id": f"{kit.group}-writer"}
    )
    producer.init_transactions(30)
    for batch in range(3):
        producer.begin_transaction()
        for i in range(batch * 5, batch * 5 + 5):
            producer.produce(kit.input, note(i))
        producer.commit_transaction(30)
    result = _replay(kit, tiny_model_dir, timeout=90)
    assert result.returncode == 0, result.stderr
    assert "15 delivered" in result.stdout  # 15 notes in 18 offsets (3 markers)
    assert _note_ids(kit.read(kit.output, 15, timeout=10)) == {f"n-{i}" for i in range(15)}


def test_a_replay_stopped_by_sigterm_fails_and_its_retries_resume_then_end_at_once(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A Job's pod stopped mid-range (a node drain) must fail, so the Job retries; the retry, in
    the same default group, resumes from the commits and finishes; a run after that finds every
    partition committed at its end and ends at once."""
    kit.create(partitions=2)
    kit.produce([note(i) for i in range(40)], keys=[f"k{i}".encode() for i in range(40)])
    env = {**os.environ, **kit.env(tiny_model_dir), "HF_HUB_OFFLINE": "1"}
    log_path = tmp_path / "replay.log"
    with log_path.open("wb") as log:
        first = subprocess.Popen(
            [sys.executable, "-m", "worker", "replay", "--rate-limit", "5"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while b"worker_started" not in log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)  # a few notes into the range
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=60) == 130, log_path.read_text()
    assert "stopped before the end of its range" in log_path.read_text()

    retry = _replay(kit, tiny_model_dir, timeout=120)
    assert retry.returncode == 0, retry.stderr
    assert "40 records in range" in retry.stdout and " 40 delivered" not in retry.stdout
    assert _note_ids(kit.read(kit.output, 40, timeout=10)) == {f"n-{i}" for i in range(40)}

    again = _replay(kit, tiny_model_dir, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "40 records in range, 0 delivered" in again.stdout


def test_replay_rejects_conflicting_window_in_one_line(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    result = _replay(kit, tiny_model_dir, "--from-offsets", "0:1", "--from-timestamp", "5")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def test_health_and_metrics_endpoints_of_a_running_worker(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    kit.create(partitions=2)
    port = free_port()
    env = kit.env(tiny_model_dir, metrics_port=str(port), metrics_host="127.0.0.1")
    worker = start_worker(env, tmp_path / "worker.log")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while _get(f"{base}/readyz")[0] != 200:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "never became ready"
            time.sleep(0.3)
        assert _get(f"{base}/livez") == (200, "ok\n")
        kit.produce([note(i) for i in range(40)] + [b"not json"])
        kit.read(kit.output, 40)
        time.sleep(1.5)  # auto-commit interval
        status, body = _get(f"{base}/metrics")
        assert status == 200
        values = {
            line.split(" ")[0]: float(line.split(" ")[1])
            for line in body.splitlines()
            if line and not line.startswith("#")
        }
        assert values["biomarker_events_in_total"] == 41
        assert values["biomarker_events_out_total"] == 40
        assert values['biomarker_dead_letters_total{reason="not_json"}'] == 1
        assert values["biomarker_batch_sentences_count"] >= 1
        assert values["biomarker_assigned_partitions"] == 2
        assert values['biomarker_rebalances_total{kind="assign"}'] >= 1
        assert _get(f"{base}/nope")[0] == 404
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0


def test_liveness_fails_when_progress_stops() -> None:
    beats = [time.monotonic()]
    server = HealthServer(
        host="127.0.0.1",
        port=0,
        probes=Probes(live=progress_probe(lambda: beats, 0.2), ready=lambda: (False, "no")),
        registry=Metrics().registry,
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(f"{base}/livez")[0] == 200
        time.sleep(0.4)
        assert _get(f"{base}/livez") == (503, "no progress for 0s\n")
        assert _get(f"{base}/readyz") == (503, "no\n")
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sasl_kafka() -> Iterator[LocalKafka]:
    cluster = LocalKafka.start(sasl_users={"worker": "s3cret-pw"})
    try:
        yield cluster
    finally:
        cluster.stop()


def _secured_pipeline(
    cluster: LocalKafka, prefix: str, model_dir: Path, security: dict[str, str]
) -> Pipeline:
    """A worker with ``security`` settings that stops after 10 notes."""
    kit = KafkaTestKit(cluster.bootstrap_servers, prefix=prefix)
    settings = load_settings(
        overrides={
            "bootstrap_servers": cluster.bootstrap_servers,
            "input_topic": kit.input,
            "output_topic": kit.output,
            "dlq_topic": kit.dlq,
            "group_id": kit.group,
            **security,
        }
    )
    model = SequenceClassifier.load(model_dir, device="cpu")
    return Pipeline(
        settings=settings,
        model=model,
        provenance=provenance_for(model, settings),
    )


def _run_ten(pipeline: Pipeline) -> int:
    """Run until the ten notes of ``_topics_with_ten_notes`` are delivered."""
    return run_until(pipeline, lambda: pipeline.delivered >= 10)


def _sasl_pipeline(cluster: LocalKafka, prefix: str, model_dir: Path, password: str) -> Pipeline:
    security = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "worker",
        "sasl_password": password,
    }
    return _secured_pipeline(cluster, prefix, model_dir, security)


def _topics_with_ten_notes(cluster: LocalKafka, prefix: str) -> None:
    from confluent_kafka import Producer

    config = cluster.client_config()
    create_topics(config, {f"{prefix}-notes": 1, f"{prefix}-enriched": 1, f"{prefix}-dlq": 1})
    producer = Producer(config)
    for i in range(10):
        producer.produce(f"{prefix}-notes", note(i))
    assert producer.flush(30) == 0


def test_worker_over_sasl_scram(sasl_kafka: LocalKafka, tiny_model_dir: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    _topics_with_ten_notes(sasl_kafka, prefix)
    pipeline = _sasl_pipeline(sasl_kafka, prefix, tiny_model_dir, "s3cret-pw")
    assert _run_ten(pipeline) == 0


@pytest.fixture(scope="module")
def tls_kafka() -> Iterator[LocalKafka]:
    cluster = LocalKafka.start(tls=True)
    try:
        yield cluster
    finally:
        cluster.stop()


def _tls_pipeline(cluster: LocalKafka, prefix: str, model_dir: Path, ca: Path) -> Pipeline:
    security = {"security_protocol": "SSL", "ssl_ca_location": str(ca)}
    return _secured_pipeline(cluster, prefix, model_dir, security)


def test_worker_over_tls_verifies_the_broker(tls_kafka: LocalKafka, tiny_model_dir: Path) -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition
    from confluent_kafka.admin import AdminClient

    # The listener speaks TLS only: a plaintext client gets no metadata.
    with pytest.raises(KafkaException):
        AdminClient({"bootstrap.servers": tls_kafka.bootstrap_servers}).list_topics(timeout=3)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    _topics_with_ten_notes(tls_kafka, prefix)
    config = tls_kafka.client_config()
    assert tls_kafka.tls is not None
    pipeline = _tls_pipeline(tls_kafka, prefix, tiny_model_dir, tls_kafka.tls.ca_pem)
    assert _run_ten(pipeline) == 0
    reader = Consumer({**config, "group.id": f"{prefix}-worker", "enable.auto.commit": False})
    try:
        reader.assign([TopicPartition(f"{prefix}-enriched", 0, 0)])
        outputs = [m for m in iter(lambda: reader.poll(5), None) if m.error() is None]
        committed = reader.committed([TopicPartition(f"{prefix}-notes", 0)], timeout=10)
    finally:
        reader.close()
    assert len(outputs) == 10
    assert committed[0].offset == 10  # the worker's group committed every note


def test_untrusted_broker_certificate_is_fatal(
    tls_kafka: LocalKafka, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from devkit.localtls import make_broker_tls

    prefix = f"t{uuid.uuid4().hex[:8]}"
    create_topics(tls_kafka.client_config(), {f"{prefix}-notes": 1})
    keytool = find_keytool()
    assert keytool is not None
    stranger = make_broker_tls(tmp_path / "other-ca", keytool)  # a CA the broker never used
    pipeline = _tls_pipeline(tls_kafka, prefix, tiny_model_dir, stranger.ca_pem)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        assert pipeline.run() == EXIT_FATAL
    # At once, and with the handshake's reason rather than a metadata timeout.
    assert time.monotonic() - started < 15
    fatal = [entry["error"] for entry in logs if entry["event"] == "fatal_error"]
    assert len(fatal) == 1 and "certificate verify failed" in fatal[0]


def test_wrong_sasl_password_is_fatal(sasl_kafka: LocalKafka, tiny_model_dir: Path) -> None:
    prefix = f"s{uuid.uuid4().hex[:8]}"
    create_topics(sasl_kafka.client_config(), {f"{prefix}-notes": 1})
    pipeline = _sasl_pipeline(sasl_kafka, prefix, tiny_model_dir, "wrong")
    assert pipeline.run() == EXIT_FATAL
