"""Settings the worker would only fail on later are refused at validation: librdkafka's ranges,
consume batches, finite timeouts, device names; and what ``config`` and ``run`` say about
settings the Kafka client or the runtime refuses (one line, exit 2, never a value)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException
from pydantic import SecretStr

from worker.cli import main
from worker.config import WorkerSettings, load_settings
from worker.errors import ConfigError, FatalError
from worker.kafka.clients import consumer_config, security_config

REPO = Path(__file__).resolve().parent.parent
CHART_SCHEMA = REPO / "helm" / "biomarker-worker" / "values.schema.json"
ERROR = "biomarker-worker config: error: "


@pytest.fixture(autouse=True)
def _no_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the BIOMARKER_* variables it sets."""
    for key in list(os.environ):
        if key.upper().startswith("BIOMARKER_"):
            monkeypatch.delenv(key)


def _problems(**env: str) -> tuple[str, ...]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(f"BIOMARKER_{key}", value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
    return caught.value.problems


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("BIOMARKER_")}
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        capture_output=True,
        cwd=REPO,
        env={**clean, "HF_HUB_OFFLINE": "1", **env},
        text=True,
        timeout=300,
        check=False,
    )


# --- Upper bounds and finite numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("session_timeout_ms", "3600001", "less than or equal to 3600000"),
        ("session_timeout_ms", str(2**32 + 15_000), "less than or equal to 3600000"),
        ("max_poll_interval_ms", "99999999999", "less than or equal to 86400000"),
        ("commit_interval_ms", "86400001", "less than or equal to 86400000"),
        ("consume_batch_size", "1000001", "less than or equal to 1000000"),
        ("max_wait_ms", "60001", "less than or equal to 60000"),
        ("max_wait_ms", "inf", "a finite number"),
        ("drain_timeout_s", "86401", "less than or equal to 86400"),
        ("drain_timeout_s", "nan", "a finite number"),
        ("revoke_timeout_s", "1e10", "less than or equal to 86400"),
        ("revoke_timeout_s", "inf", "a finite number"),
        ("liveness_timeout_s", "inf", "a finite number"),
        ("liveness_timeout_s", "-inf", "a finite number"),
        ("threshold", "nan", "a finite number"),
    ],
)
def test_values_beyond_what_the_worker_can_use_are_refused(
    name: str, value: str, rule: str
) -> None:
    extra = {"MAX_POLL_INTERVAL_MS": "86400000"} if name == "session_timeout_ms" else {}
    variable = f"BIOMARKER_{name.upper()}"
    assert _problems(**{name.upper(): value, **extra}) == (
        f"env {variable}: {name}: Input should be {rule}",
    )


def test_the_largest_values_are_accepted() -> None:
    settings = WorkerSettings(
        session_timeout_ms=3_600_000,
        max_poll_interval_ms=86_400_000,
        commit_interval_ms=86_400_000,
        consume_batch_size=1_000_000,
        max_wait_ms=60_000,
        drain_timeout_s=86_400,
        revoke_timeout_s=86_400,
        liveness_timeout_s=86_400,
    )
    assert settings.consume_batch_size == 1_000_000


def _make_consumer(config: dict[str, Any]) -> None:
    Consumer({**config, "bootstrap.servers": "127.0.0.1:1"}).close()


def test_the_client_bounds_are_librdkafkas() -> None:
    """At the settings' limits librdkafka builds the consumer; one beyond, it refuses."""
    most = WorkerSettings(
        session_timeout_ms=3_600_000, max_poll_interval_ms=86_400_000, commit_interval_ms=86_400_000
    )
    _make_consumer(consumer_config(most))
    for key, limit in [
        ("session.timeout.ms", 3_600_000),
        ("max.poll.interval.ms", 86_400_000),
        ("auto.commit.interval.ms", 86_400_000),
    ]:
        with pytest.raises(KafkaException, match="outside allowed range"):
            _make_consumer({**consumer_config(most), key: limit + 1, "group.id": "g"})
    with pytest.raises(KafkaException, match=r"must be >= `session\.timeout\.ms`"):
        _make_consumer(
            {"group.id": "g", "session.timeout.ms": 15_000, "max.poll.interval.ms": 10_000}
        )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"MAX_POLL_INTERVAL_MS": "10000"},
            "env BIOMARKER_MAX_POLL_INTERVAL_MS: max_poll_interval_ms must be at least "
            "session_timeout_ms",
        ),
        (
            {"SESSION_TIMEOUT_MS": "400000"},
            "env BIOMARKER_SESSION_TIMEOUT_MS: max_poll_interval_ms must be at least "
            "session_timeout_ms",
        ),
        (
            {"SESSION_TIMEOUT_MS": "60000", "MAX_POLL_INTERVAL_MS": "30000"},
            "env BIOMARKER_MAX_POLL_INTERVAL_MS: max_poll_interval_ms must be at least "
            "session_timeout_ms",
        ),
    ],
)
def test_a_poll_interval_below_the_session_timeout_is_refused(
    env: dict[str, str], line: str
) -> None:
    assert _problems(**env) == (line,)


def test_the_poll_interval_rule_is_the_classic_protocols_only() -> None:
    """The consumer protocol (KIP-848) sends no session.timeout.ms: librdkafka accepts it."""
    settings = WorkerSettings(group_protocol="consumer", max_poll_interval_ms=10_000)
    assert "session.timeout.ms" not in consumer_config(settings)
    _make_consumer({**consumer_config(settings)})
    assert WorkerSettings(max_poll_interval_ms=15_000).session_timeout_ms == 15_000


# --- Devices --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device", ["cuda:x", "cuda:", "cuda:-1", "cuda:0 ", " cuda", "cuda:01", "gpu"]
)
def test_malformed_devices_are_refused(device: str) -> None:
    assert _problems(DEVICE=device) == (
        "env BIOMARKER_DEVICE: device: must be auto, cpu, cuda or cuda:<index>",
    )


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_device_names_are_accepted(device: str) -> None:
    assert WorkerSettings(device=device).device == device


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("cuda:1", "device 'cuda:1' requested but the CUDA devices are cuda:0"),
        ("cuda:7", "device 'cuda:7' requested but the CUDA devices are cuda:0"),
        ("cuda:x", "device 'cuda:x' is not auto, cpu, cuda or cuda:<index>"),
        ("cuda:0 ", "device 'cuda:0 ' is not auto, cpu, cuda or cuda:<index>"),
    ],
)
def test_a_device_this_machine_lacks_is_a_fatal_error(
    device: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from worker.model.classifier import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(FatalError) as caught:
        resolve_device(device)
    assert str(caught.value) == message
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    assert resolve_device("cuda") == torch.device("cuda")


# --- Empty secrets, --set, variables that are not settings ----------------------------------------


def test_an_empty_oauthbearer_config_is_unset_for_the_client_too() -> None:
    oidc = {
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "worker",
        "sasl.oauthbearer.client.secret": "s3cr3t",
    }
    common: dict[str, Any] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "OAUTHBEARER",
        "kafka_extra": oidc,
    }
    unset = security_config(WorkerSettings(**common))
    empty = security_config(WorkerSettings(**common, sasl_oauthbearer_config=SecretStr("")))
    assert empty == unset
    assert empty["sasl.oauthbearer.method"] == "oidc" and "sasl.oauthbearer.config" not in empty
    given = security_config(
        WorkerSettings(**common, sasl_oauthbearer_config=SecretStr("principal=worker"))
    )
    assert given["sasl.oauthbearer.config"] == "principal=worker"
    assert "sasl.oauthbearer.method" not in given


@pytest.mark.parametrize(
    ("item", "line"),
    [
        ("sasl_password: hunter2", "--set expects KEY=VALUE for sasl_password"),
        ("SASL-PASSWORD hunter2", "--set expects KEY=VALUE for SASL-PASSWORD"),
        ("hunter2", "--set expects KEY=VALUE"),
        ("=hunter2", "--set expects KEY=VALUE"),
    ],
)
def test_a_malformed_set_names_the_key_only(
    item: str, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "--set", item]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{ERROR}{line}\n")


def test_the_setup_scripts_variable_is_not_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOMARKER_SETUP_FORCE", "1")
    assert load_settings().threshold == 0.5


# --- config refuses what run refuses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"KAFKA_EXTRA": '{"acks": "all"}'}, "kafka_extra must not set acks"),
        ({"KAFKA_EXTRA": '{"enable.auto.commit": "false"}'}, "kafka_extra must not set enable"),
        (
            {"PROCESSING_GUARANTEE": "exactly-once", "KAFKA_EXTRA": '{"isolation.level": "x"}'},
            "kafka_extra must not set isolation.level",
        ),
        (
            {"RUNTIME": "faust", "KAFKA_EXTRA": '{"linger.ms": "5"}'},
            "faust runtime: kafka_extra holds librdkafka properties",
        ),
        (
            {"RUNTIME": "faust", "GROUP_PROTOCOL": "consumer"},
            "faust runtime: group_protocol consumer (KIP-848) is not supported by aiokafka",
        ),
    ],
)
def test_config_refuses_what_run_refuses(
    env: dict[str, str],
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"BIOMARKER_{key}", value)
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"{ERROR}{line}") and len(err.splitlines()) == 1


def test_config_refuses_a_mapping_file_and_a_client_property_run_would_refuse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``config`` builds the decoders and the Kafka clients as ``run`` does before the model
    loads: a mapping that does not compile, or a value librdkafka refuses, is exit 2."""
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("id: /a\ntext: {path: /b, decode: [base64, 'charset:nope']}\n")
    monkeypatch.setenv("BIOMARKER_INPUT_FORMAT", "mapping")
    monkeypatch.setenv("BIOMARKER_INPUT_MAPPING", str(mapping))
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "unknown charset" in err and len(err.splitlines()) == 1

    monkeypatch.delenv("BIOMARKER_INPUT_FORMAT")
    monkeypatch.delenv("BIOMARKER_INPUT_MAPPING")
    monkeypatch.setenv("BIOMARKER_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("BIOMARKER_KAFKA_EXTRA", json.dumps({"linger.ms": "abc"}))
    assert main(["config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"{ERROR}the Kafka client refused its settings: Invalid value")


def test_run_turns_a_refused_client_property_into_one_line(tiny_model_dir: Path) -> None:
    """librdkafka refuses a kafka_extra value when the clients are built: exit 2, no traceback."""
    result = _cli(
        "run",
        "--model",
        str(tiny_model_dir),
        env={
            "BIOMARKER_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "BIOMARKER_KAFKA_EXTRA": json.dumps({"linger.ms": "abc"}),
        },
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert errors == [
        "biomarker-worker run: error: the Kafka client refused its settings: Invalid value for "
        'configuration property "queue.buffering.max.ms"'  # linger.ms's alias
    ]


def test_run_checks_the_client_properties_before_it_loads_the_model(tmp_path: Path) -> None:
    """A refused property is reported before the model loads (a missing model would fail)."""
    result = _cli(
        "run",
        "--model",
        str(tmp_path),  # an empty directory: loading it would fail
        env={
            "BIOMARKER_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "BIOMARKER_KAFKA_EXTRA": json.dumps({"fetch.wait.max.ms": "abc"}),
        },
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "startup_failed" not in result.stderr
    assert (
        "the Kafka client refused its settings: Invalid value for configuration property "
        '"fetch.wait.max.ms"' in result.stderr
    )


# --- The chart's schema has the same bounds -------------------------------------------------------

#: Chart values (dotted under the schema's properties) and the settings they set.
CHART_SETTINGS = {
    "kafka.sessionTimeoutMs": "session_timeout_ms",
    "kafka.maxPollIntervalMs": "max_poll_interval_ms",
    "kafka.commitIntervalMs": "commit_interval_ms",
    "inference.consumeBatchSize": "consume_batch_size",
    "inference.maxWaitMs": "max_wait_ms",
    "shutdown.drainTimeoutSeconds": "drain_timeout_s",
    "shutdown.revokeTimeoutSeconds": "revoke_timeout_s",
    "livenessTimeoutSeconds": "liveness_timeout_s",
}


def _field_maximum(name: str) -> float:
    for item in WorkerSettings.model_fields[name].metadata:
        if hasattr(item, "le"):
            return float(item.le)
    raise AssertionError(f"{name} has no upper bound")


@pytest.mark.parametrize(("value", "setting"), sorted(CHART_SETTINGS.items()))
def test_the_chart_schema_has_the_settings_upper_bounds(value: str, setting: str) -> None:
    node = json.loads(CHART_SCHEMA.read_text("utf-8"))
    for part in value.split("."):
        node = node["properties"][part]
    assert float(node["maximum"]) == _field_maximum(setting)


def test_the_chart_schema_device_pattern_is_the_settings() -> None:
    import re

    node = json.loads(CHART_SCHEMA.read_text("utf-8"))["properties"]["model"]["properties"]
    pattern = re.compile(node["device"]["pattern"])
    for device in ["", "auto", "cpu", "cuda", "cuda:0", "cuda:12"]:
        assert pattern.search(device), device
    for device in ["cuda:", "cuda:01", "cuda:x", "gpu", "cuda:0 "]:
        assert not pattern.search(device), device


@pytest.mark.parametrize(
    "sets",
    [
        {"kafka.sessionTimeoutMs": 3_600_001},
        {"kafka.maxPollIntervalMs": 86_400_001},
        {"inference.consumeBatchSize": 1_000_001},
        {"shutdown.revokeTimeoutSeconds": 1e10},
        {"livenessTimeoutSeconds": 86_401},
        {"model.device": "cuda:01"},
    ],
)
def test_the_chart_refuses_values_beyond_the_bounds(sets: dict[str, Any]) -> None:
    from tests.test_helm_chart import render_error

    error = render_error(sets=sets)
    assert "values don't meet the specifications of the schema" in error, error


@pytest.mark.parametrize(
    ("argv", "flags"),
    [
        (["config", "--input-topic", "notes"], "--input-topic"),
        (["config", "--set", "input_format=fhir"], "--set input_format"),
    ],
)
def test_a_single_input_flag_is_refused_where_inputs_is_set(
    argv: list[str],
    flags: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Flags beat variables: a flag that inputs would silently outweigh is an error instead."""
    monkeypatch.setenv("BIOMARKER_INPUTS", '[{"topic": "ehr.hl7v2", "format": "hl7v2"}]')
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{ERROR}{flags} cannot be used while inputs is set (by the config file, "
        "BIOMARKER_INPUTS or --set): inputs names the topics and their formats\n"
    )


def test_replay_input_topic_still_picks_one_of_the_inputs() -> None:
    from worker.cli import build_parser
    from worker.cli.options import settings_from_args

    args = build_parser().parse_args(["replay", "--input-topic", "ehr.fhir"])
    env = '[{"topic": "ehr.hl7v2", "format": "hl7v2"}, {"topic": "ehr.fhir", "format": "fhir"}]'
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOMARKER_INPUTS", env)
        settings = settings_from_args(args, selects_input=True)
    assert [item.topic for item in settings.inputs] == ["ehr.hl7v2", "ehr.fhir"]


def test_an_empty_value_unsets_a_setting_that_may_be_unset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The image sets BIOMARKER_METRICS_PORT=9108; an empty value turns the server off."""
    monkeypatch.setenv("BIOMARKER_METRICS_PORT", "")
    monkeypatch.setenv("BIOMARKER_TOKEN_BUDGET", " ")
    settings = load_settings()
    assert settings.metrics_port is None and settings.token_budget is None
    monkeypatch.setenv("BIOMARKER_METRICS_PORT", "9108")
    assert load_settings(overrides={"metrics_port": ""}).metrics_port is None  # --set metrics_port=
    # A setting that cannot be unset still refuses an empty value.
    monkeypatch.setenv("BIOMARKER_THRESHOLD", "")
    with pytest.raises(ConfigError, match="threshold"):
        load_settings()


def test_the_client_probe_never_asks_an_identity_provider_for_a_token() -> None:
    """With OAUTHBEARER's OIDC method a client fetches a token as soon as it is built (and its
    close waits for the answer): the probe leaves such clients out, so `config` sends nothing
    and `run` loses no time before the model loads."""
    from worker.kafka.ports import check_client_settings

    idp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    idp.bind(("127.0.0.1", 0))
    idp.listen()
    idp.settimeout(1.0)
    url = f"http://127.0.0.1:{idp.getsockname()[1]}/token"
    settings = load_settings(
        overrides={
            "bootstrap_servers": "127.0.0.1:1",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "OAUTHBEARER",
            "kafka_extra": {
                "sasl.oauthbearer.token.endpoint.url": url,
                "sasl.oauthbearer.client.id": "worker",
                "sasl.oauthbearer.client.secret": "s3cret",
            },
        }
    )
    started = time.monotonic()
    try:
        check_client_settings(settings)
        assert time.monotonic() - started < 2
        with pytest.raises(TimeoutError):
            idp.accept()  # nobody asked for a token
    finally:
        idp.close()
