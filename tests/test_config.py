"""Strict configuration: unknown keys, every problem at once with its source, *_FILE secrets,
masking, security consistency and missing files; exit 2 from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from worker.cli import main
from worker.config import (
    NOT_SETTINGS,
    OWNED_CLIENT_KEYS,
    WorkerSettings,
    is_secret_client_key,
    load_settings,
)
from worker.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
ERROR = "biomarker-worker config: error: "
SECRET = "s3cr3t-Pa55"
MISSING_CA = "/nonexistent/kafka-tls/ca.crt"
CERT = str(REPO / "README.md")  # an existing file


@pytest.fixture(autouse=True)
def _no_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the BIOMARKER_* variables it sets."""
    for key in list(os.environ):
        if key.upper().startswith("BIOMARKER_"):
            monkeypatch.delenv(key)


def _config(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    code = main(["config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def _problems(**env: str) -> tuple[str, ...]:
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with pytest.raises(ConfigError) as caught:
            load_settings()
    return caught.value.problems


# --- The five bad inputs, through the command line -------------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param(
            {"BIOMARKER_THRESHHOLD": "0.9"},
            "env BIOMARKER_THRESHHOLD: unknown setting; did you mean BIOMARKER_THRESHOLD?",
            id="typo",
        ),
        pytest.param(
            {"BIOMARKER_KAFKA_EXTRA": "linger.ms=5"},
            "env BIOMARKER_KAFKA_EXTRA: kafka_extra is not valid JSON "
            "(Expecting value: line 1 column 1 (char 0))",
            id="kafka-extra-not-json",
        ),
        pytest.param(
            {
                "BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL",
                "BIOMARKER_SASL_MECHANISM": "SCRAM-SHA-512",
            },
            "env BIOMARKER_SASL_MECHANISM: sasl_mechanism SCRAM-SHA-512 needs sasl_username and "
            "sasl_password",
            id="sasl-without-credentials",
        ),
        pytest.param(
            {"BIOMARKER_SECURITY_PROTOCOL": "SSL", "BIOMARKER_SSL_CA_LOCATION": MISSING_CA},
            f"env BIOMARKER_SSL_CA_LOCATION: ssl_ca_location {MISSING_CA} does not exist",
            id="missing-ca",
        ),
    ],
)
def test_a_bad_input_is_one_line_naming_key_source_and_rule(
    env: dict[str, str],
    line: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, out, err = _config(capsys, monkeypatch, env=env)
    assert (code, out, err) == (2, "", f"{ERROR}{line}\n")


def test_three_errors_from_env_file_and_flag_are_listed_at_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("thresold: 0.3\ngroup_id: from-file\n")
    code, out, err = _config(
        capsys,
        monkeypatch,
        "--config",
        str(config),
        "--threshold",
        "3",
        env={"BIOMARKER_DEVICE": "gpu"},
    )
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"{ERROR}file {config}:thresold: unknown setting; did you mean threshold?",
        f"{ERROR}env BIOMARKER_DEVICE: device: must be auto, cpu, cuda or cuda:<index>",
        f"{ERROR}flag --threshold: threshold: Input should be less than or equal to 1",
    ]


def test_malformed_json_settings_exit_2_without_a_traceback(tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.upper().startswith("BIOMARKER_")},
        "HF_HUB_OFFLINE": "1",
        "BIOMARKER_KAFKA_EXTRA": '{"linger.ms": 5}',
        "BIOMARKER_INPUTS": "hl7v2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "worker", "config"],
        capture_output=True,
        cwd=REPO,
        env=env,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{ERROR}env BIOMARKER_INPUTS: inputs is not valid JSON "
        "(Expecting value: line 1 column 1 (char 0))",
        f"{ERROR}env BIOMARKER_KAFKA_EXTRA: kafka_extra['linger.ms']: Input should be a valid "
        "string",
    ]


# --- Strictness --------------------------------------------------------------------------------


def test_variables_that_are_not_settings_are_allowed() -> None:
    with pytest.MonkeyPatch.context() as patch:
        for variable in NOT_SETTINGS:
            patch.setenv(variable, "/tmp/x" if variable != "BIOMARKER_CONFIG_FILE" else "")
        assert load_settings().threshold == 0.5


def test_unknown_keys_of_every_source_get_a_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "w.yaml"
    config.write_text("max-wait-ms: 5\ntoken_budgett: 4096\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOMARKER_SASL_PASWORD_FILE", "/run/secrets/pw")
        with pytest.raises(ConfigError) as caught:
            load_settings(
                config_file=config,
                overrides={"log_levle": "debug"},
                flags={"log_levle": "--set log_levle"},
            )
    assert caught.value.problems == (
        f"file {config}:token_budgett: unknown setting; did you mean token_budget?",
        "env BIOMARKER_SASL_PASWORD_FILE: unknown setting; did you mean "
        "BIOMARKER_SASL_PASSWORD_FILE?",
        "flag --set log_levle: unknown setting; did you mean log_level?",
    )


def test_a_bad_config_file_is_reported_without_its_content(tmp_path: Path) -> None:
    config = tmp_path / "w.yaml"
    config.write_text(f"sasl_password: {SECRET}\n  bad: [\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_file=config)
    [line] = caught.value.problems
    assert line.startswith(f"file {config}: the config file is not valid YAML (")
    assert SECRET not in line
    with pytest.raises(ConfigError, match="cannot read the config file: No such file"):
        load_settings(config_file=tmp_path / "missing.yaml")


def test_bad_values_never_echo_a_secret() -> None:
    problems = _problems(
        BIOMARKER_KAFKA_EXTRA=f'{{"sasl.oauthbearer.client.secret": "{SECRET}"',
        BIOMARKER_INPUTS=f'[{{"topic": "{SECRET}", "format": "xml"}}]',
    )
    assert problems == (
        "env BIOMARKER_KAFKA_EXTRA: kafka_extra is not valid JSON "
        "(Expecting ',' delimiter: line 1 column 49 (char 48))",
        "env BIOMARKER_INPUTS: inputs[0].format: Input should be 'note', 'hl7v2', 'fhir', "
        "'cda', 'mapping' or 'auto'",
    )
    assert all(SECRET not in line for line in problems)


# --- *_FILE variables --------------------------------------------------------------------------


def _secret_file(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content)
    return str(path)


def test_file_variables_give_the_chart_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = _secret_file(tmp_path, "tls.crt", "CERT\n")
    key = _secret_file(tmp_path, "tls.key", "KEY\n")
    env = {
        "BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL",
        "BIOMARKER_SASL_MECHANISM": "SCRAM-SHA-512",
        "BIOMARKER_SASL_USERNAME_FILE": _secret_file(tmp_path, "username", "worker\n"),
        "BIOMARKER_SASL_PASSWORD_FILE": _secret_file(tmp_path, "password", f"{SECRET}\n"),
        "BIOMARKER_SSL_CERTIFICATE_LOCATION": cert,
        "BIOMARKER_SSL_KEY_LOCATION": key,
        "BIOMARKER_SSL_KEY_PASSWORD_FILE": _secret_file(tmp_path, "key-pw", f"{SECRET}-key"),
    }
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert settings.sasl_username == "worker"
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == SECRET  # trailing newline stripped
    assert settings.ssl_key_password is not None
    assert settings.ssl_key_password.get_secret_value() == f"{SECRET}-key"
    # The files hold no real certificate or key, which librdkafka would refuse: this test is
    # about how the settings read them, so the client probe is left out.
    monkeypatch.setattr("worker.kafka.ports.check_client_settings", lambda settings: None)
    code, out, err = _config(capsys, monkeypatch)
    assert code == 0 and err == ""
    shown = yaml.safe_load(out)
    assert shown["sasl_password"] == shown["ssl_key_password"] == "***"
    assert SECRET not in out


def test_oauthbearer_config_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    oauth = f"principal=worker clientSecret={SECRET}"
    code, out, _ = _config(
        capsys,
        monkeypatch,
        env={
            "BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL",
            "BIOMARKER_SASL_MECHANISM": "OAUTHBEARER",
            "BIOMARKER_SASL_OAUTHBEARER_CONFIG_FILE": _secret_file(tmp_path, "oauth", oauth),
        },
    )
    assert code == 0 and yaml.safe_load(out)["sasl_oauthbearer_config"] == "***"
    assert SECRET not in out
    settings = load_settings()
    assert settings.sasl_oauthbearer_config is not None
    assert settings.sasl_oauthbearer_config.get_secret_value() == oauth


def test_a_setting_and_its_file_variable_together_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = _config(
        capsys,
        monkeypatch,
        env={
            "BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL",
            "BIOMARKER_SASL_MECHANISM": "PLAIN",
            "BIOMARKER_SASL_USERNAME": "worker",
            "BIOMARKER_SASL_PASSWORD": SECRET,
            "BIOMARKER_SASL_PASSWORD_FILE": _secret_file(tmp_path, "pw", SECRET),
        },
    )
    assert code == 2
    assert err == (
        f"{ERROR}env BIOMARKER_SASL_PASSWORD_FILE: sasl_password is also set by "
        "BIOMARKER_SASL_PASSWORD; set one of them\n"
    )


def test_an_unreadable_file_names_the_variable_and_path_not_the_content(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    problems = _problems(
        BIOMARKER_GROUP_ID_FILE=str(missing), BIOMARKER_CLIENT_ID_FILE=str(tmp_path)
    )
    assert problems == (
        f"env BIOMARKER_CLIENT_ID_FILE: cannot read {tmp_path}: Is a directory",
        f"env BIOMARKER_GROUP_ID_FILE: cannot read {missing}: No such file or directory",
    )


def test_a_json_setting_can_come_from_a_file(tmp_path: Path) -> None:
    extra = _secret_file(tmp_path, "extra.json", '{"linger.ms": "5"}\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BIOMARKER_KAFKA_EXTRA_FILE", extra)
        assert load_settings().kafka_extra == {"linger.ms": "5"}


# --- Masking -----------------------------------------------------------------------------------

CREDENTIAL_KEYS = [
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.jaas.config",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "ssl_key",
    "my.api.token",
    "some.credentials",
]


@pytest.mark.parametrize("key", [*CREDENTIAL_KEYS, "sasl.password"])
def test_credential_keys_are_secret(key: str) -> None:
    assert is_secret_client_key(key)
    assert is_secret_client_key(key.upper())


def test_masked_hides_every_credential_of_kafka_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # (sasl.oauthbearer.config and ssl.key.password are the worker's own settings, which
    # kafka_extra may not set.)
    extra = {
        key: f"{SECRET}-{number}"
        for number, key in enumerate(CREDENTIAL_KEYS)
        if key not in OWNED_CLIENT_KEYS
    }
    clear = {"linger.ms": "5", "sasl.oauthbearer.client.id": "worker"}
    settings = WorkerSettings(kafka_extra={**extra, **clear})
    assert settings.masked()["kafka_extra"] == {**dict.fromkeys(extra, "***"), **clear}
    # Made-up keys and certificates librdkafka would refuse: the client probe is left out.
    monkeypatch.setattr("worker.kafka.ports.check_client_settings", lambda settings: None)
    code, out, _ = _config(capsys, monkeypatch, "--set", f"kafka_extra={json.dumps(extra)}")
    assert code == 0 and SECRET not in out
    assert yaml.safe_load(out)["kafka_extra"] == dict.fromkeys(extra, "***")


# --- Consistency and files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"BIOMARKER_SASL_USERNAME": "worker"},
            "env BIOMARKER_SASL_USERNAME: sasl_username is set but security_protocol PLAINTEXT "
            "has no SASL",
        ),
        (
            {"BIOMARKER_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            "env BIOMARKER_SECURITY_PROTOCOL: sasl_mechanism is required when security_protocol "
            "is SASL_*",
        ),
        (
            {"BIOMARKER_SSL_KEY_PASSWORD": SECRET},
            "env BIOMARKER_SSL_KEY_PASSWORD: ssl_key_password is set but security_protocol "
            "PLAINTEXT has no SSL",
        ),
        (
            {"BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL", "BIOMARKER_SASL_MECHANISM": "OAUTHBEARER"},
            "env BIOMARKER_SASL_MECHANISM: sasl_mechanism OAUTHBEARER needs "
            "sasl_oauthbearer_config or OIDC in kafka_extra (missing "
            "sasl.oauthbearer.token.endpoint.url, sasl.oauthbearer.client.id or "
            "sasl.oauthbearer.client.credentials.client.id, sasl.oauthbearer.client.secret or "
            "sasl.oauthbearer.client.credentials.client.secret)",
        ),
        (
            {
                "BIOMARKER_SECURITY_PROTOCOL": "SASL_SSL",
                "BIOMARKER_SASL_MECHANISM": "OAUTHBEARER",
                "BIOMARKER_KAFKA_EXTRA": '{"sasl.oauthbearer.method": "default"}',
            },
            "env BIOMARKER_SASL_MECHANISM: sasl_mechanism OAUTHBEARER needs "
            "sasl_oauthbearer_config",
        ),
        (
            {"BIOMARKER_SECURITY_PROTOCOL": "SSL", "BIOMARKER_SSL_CERTIFICATE_LOCATION": CERT},
            "env BIOMARKER_SSL_CERTIFICATE_LOCATION: ssl_certificate_location needs "
            "ssl_key_location",
        ),
        (
            {"BIOMARKER_MODEL_PATH": "/nonexistent/model"},
            "env BIOMARKER_MODEL_PATH: model_path /nonexistent/model is neither an existing "
            "directory nor a hub id (org/name)",
        ),
        (
            {"BIOMARKER_INPUT_FORMAT": "mapping", "BIOMARKER_INPUT_MAPPING": "/nonexistent.yaml"},
            "env BIOMARKER_INPUT_MAPPING: input_mapping /nonexistent.yaml is not an existing file",
        ),
        (
            {"BIOMARKER_INPUTS": '[{"topic": "a", "format": "mapping", "mapping": "/no.yaml"}]'},
            "env BIOMARKER_INPUTS: inputs[0].mapping /no.yaml is not an existing file",
        ),
    ],
)
def test_inconsistent_settings_and_missing_files(env: dict[str, str], problem: str) -> None:
    assert _problems(**env) == (problem,)


def test_consistency_problems_are_listed_together() -> None:
    problems = _problems(
        BIOMARKER_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        BIOMARKER_SASL_MECHANISM="PLAIN",
        BIOMARKER_SASL_USERNAME="worker",
        BIOMARKER_SSL_CA_LOCATION=MISSING_CA,
        BIOMARKER_SSL_KEY_LOCATION="/nonexistent/tls.key",
    )
    assert problems == (
        "env BIOMARKER_SASL_MECHANISM: sasl_mechanism PLAIN needs sasl_password",
        "env BIOMARKER_SSL_CA_LOCATION: ssl_ca_location is set but security_protocol "
        "SASL_PLAINTEXT has no SSL",
        "env BIOMARKER_SSL_KEY_LOCATION: ssl_key_location is set but security_protocol "
        "SASL_PLAINTEXT has no SSL",
        "env BIOMARKER_SSL_KEY_LOCATION: ssl_key_location needs ssl_certificate_location",
        f"env BIOMARKER_SSL_CA_LOCATION: ssl_ca_location {MISSING_CA} does not exist",
        "env BIOMARKER_SSL_KEY_LOCATION: ssl_key_location /nonexistent/tls.key is not an "
        "existing file",
    )


def test_complete_security_setups_pass(tmp_path: Path) -> None:
    ca = _secret_file(tmp_path, "ca.crt", "CA")
    oidc = {
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.client.id": "worker",
        "sasl.oauthbearer.client.secret": SECRET,
    }
    jwt = {
        "sasl.oauthbearer.token.endpoint.url": "https://idp.example/token",
        "sasl.oauthbearer.grant.type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "sasl.oauthbearer.assertion.private.key.pem": SECRET,
    }
    for extra in (oidc, {**oidc, "sasl.oauthbearer.method": "oidc"}, jwt):
        settings = load_settings(
            overrides={
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "OAUTHBEARER",
                "ssl_ca_location": ca,
                "kafka_extra": extra,
            }
        )
        assert settings.sasl_oauthbearer_config is None
    hub = load_settings(overrides={"model_path": "sentence-transformers/all-MiniLM-L6-v2"})
    assert hub.model_path == "sentence-transformers/all-MiniLM-L6-v2"
    assert load_settings(overrides={"model_path": str(tmp_path)}).model_path == str(tmp_path)


def test_paths_are_checked_by_load_settings_only() -> None:
    paths = {
        "security_protocol": "SSL",
        "ssl_ca_location": MISSING_CA,
        "model_path": "/nonexistent/model",
        "input_format": "mapping",
        "input_mapping": "/nonexistent.yaml",
    }
    assert WorkerSettings(**paths).ssl_ca_location == MISSING_CA  # settings built in code
    assert load_settings(overrides=paths, check_files=False).model_path == "/nonexistent/model"
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides=paths)
    assert [line.split(":")[0] for line in caught.value.problems] == [
        "override ssl_ca_location",
        "override model_path",
        "override input_mapping",
    ]


def test_direct_construction_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BIOMARKER_THRESHOLD", "0.9")
    assert WorkerSettings().threshold == 0.5
    assert load_settings().threshold == 0.9


def test_command_flags_are_named_as_typed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["classify", "--format", "mapping", "--mapping", "/nonexistent.yaml", "--model", "x"]
    assert main(args) == 2
    assert capsys.readouterr().err.splitlines() == [
        "biomarker-worker classify: error: flag --model: model_path x is neither an existing "
        "directory nor a hub id (org/name)",
        "biomarker-worker classify: error: flag --mapping: input_mapping /nonexistent.yaml is "
        "not an existing file",
    ]
    assert main(["classify", "--set", "input-format=mapping"]) == 2
    assert capsys.readouterr().err == (
        "biomarker-worker classify: error: flag --set input-format: input_mapping is set exactly "
        "when input_format is mapping\n"
    )
