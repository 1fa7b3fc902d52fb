"""The command line: one-line errors with exit 2, classify without Kafka, config handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from worker.cli import main
from worker.cli.checkout import checkout_only
from worker.config import load_settings
from worker.errors import FatalError, UsageError
from worker.schemas import OUTPUT_SCHEMA, validator

REPO = Path(__file__).resolve().parent.parent


def _cli(
    *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["run", "--threshold", "abc"], {}),
        (["run", "--threshold", "3"], {}),
        (["run", "--set", "no_such_key=1"], {}),
        (["run"], {"BIOMARKER_MAX_INFLIGHT_NOTES": "-5"}),
        (["run", "--config", "/nonexistent.yaml"], {}),
        (["nonsense-command"], {}),
        (["classify", "/nonexistent.jsonl", "--model", "/nonexistent-model"], {}),
        (["replay"], {"BIOMARKER_KAFKA_EXTRA": '{"no.such.property": "1"}'}),
    ],
)
def test_bad_arguments_and_config_are_one_line_exit_2(args: list[str], env: dict[str, str]) -> None:
    result = _cli(*args, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]
    assert b"Traceback" not in result.stderr


def test_unloadable_model_exits_1_with_json_log_line(tmp_path: Path) -> None:
    # An existing directory passes the settings check; it holds no checkpoint (a missing
    # directory is a configuration error, exit 2: see tests/test_config.py).
    result = _cli("run", "--model", str(tmp_path), "--bootstrap-servers", "127.0.0.1:1")
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    events = [orjson.loads(line) for line in result.stderr.splitlines() if line.startswith(b"{")]
    assert any(e["event"] == "startup_failed" for e in events)


def test_yaml_file_env_and_flags_precedence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("threshold: 0.3\ngroup_id: from-file\ntoken_budget: 1024\n")
    monkeypatch.setenv("BIOMARKER_GROUP_ID", "from-env")
    monkeypatch.setenv("BIOMARKER_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BIOMARKER_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("BIOMARKER_SASL_USERNAME", "worker")
    monkeypatch.setenv("BIOMARKER_SASL_PASSWORD", "hunter2")
    settings = load_settings(config_file=config, overrides={"token_budget": 2048})
    assert settings.threshold == 0.3 and settings.group_id == "from-env"
    assert settings.token_budget == 2048
    assert settings.masked()["sasl_password"] == "***"
    config.write_text("thresold: 0.3\n")
    with pytest.raises(UsageError, match="thresold"):
        load_settings(config_file=config)


def test_classify_notes_from_stdin(tiny_model_dir: Path) -> None:
    lines = [
        orjson.dumps({"note_id": "a", "text": "Serum PSA was 4.2 ng/mL. Pain resolved."}),
        b"not json",
        orjson.dumps({"note_id": "b", "text": "HPI: knee pain.\nLabs: Hgb 12.3."}),
    ]
    result = _cli(
        "classify",
        "-",
        "--model",
        str(tiny_model_dir),
        "--include-text",
        stdin=b"\n".join(lines) + b"\n",
    )
    assert result.returncode == 0, result.stderr
    outputs = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [o["note_id"] for o in outputs] == ["a", "b"]
    for output in outputs:
        validator(OUTPUT_SCHEMA).validate(output)
        for sentence in output["biomarker"]["sentences"]:
            assert sentence["text"] == output["text"][sentence["start"] : sentence["end"]]
    assert b"line 2: not_json" in result.stderr


def test_classify_gives_notes_of_different_files_different_ids(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_bytes(
            orjson.dumps({"note_id": name, "text": "Serum PSA was 4.2 ng/mL."}) + b"\n"
        )
    result = _cli(
        "classify",
        str(tmp_path / "a.jsonl"),
        str(tmp_path / "b.jsonl"),
        "--model",
        str(tiny_model_dir),
    )
    assert result.returncode == 0, result.stderr
    outputs = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert len({o["biomarker"]["output_id"] for o in outputs}) == 2


def test_classify_sentences_interface(tiny_model_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "sentences.jsonl"
    source.write_bytes(b'{"id": "s1", "text": "PSA 4.2"}\n{"id": 7, "text": "knee pain"}\n')
    result = _cli("classify", str(source), "--sentences", "--model", str(tiny_model_dir))
    assert result.returncode == 0, result.stderr
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["s1", 7]
    assert all(0 <= r["score"] <= 1 for r in rows)
    # Labelled as the worker labels a note's sentence: a lexicon rule's match is 1 whatever
    # the (tiny, untrained) model scores, and names its category.
    assert rows[0]["label"] == 1 and rows[0]["rule"] == "psa"
    assert set(rows[1]) == {"id", "label", "score"}

    model_only = _cli(
        "classify",
        str(source),
        "--sentences",
        "--model",
        str(tiny_model_dir),
        env={"BIOMARKER_LEXICON_RULES": "false"},
    )
    assert model_only.returncode == 0, model_only.stderr
    for row in (orjson.loads(line) for line in model_only.stdout.splitlines()):
        assert set(row) == {"id", "label", "score"}
        assert row["label"] == int(row["score"] >= 0.5)


def test_main_returns_usage_exit_code_in_process() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["run", "--threshold", "x"])
    assert caught.value.code == 2


def test_checkout_only_turns_a_missing_package_into_one_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An install from the wheel: the checkout's package cannot be imported.
    monkeypatch.setitem(sys.modules, "training", None)
    monkeypatch.setitem(sys.modules, "training.train", None)
    with pytest.raises(UsageError) as caught, checkout_only("train"):
        from training.train import train  # noqa: F401
    assert str(caught.value) == (
        "needs a source checkout of biomarker-worker with the [train] extra "
        "(pip install -e '.[train]')"
    )
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_checkout_only_names_a_missing_extra_and_keeps_other_errors() -> None:
    missing_extra = r"\[bench\] extra .*: no module named 'no_such_dep'$"
    with pytest.raises(UsageError, match=missing_extra), checkout_only("bench"):
        import no_such_dep  # type: ignore[import-not-found]  # noqa: F401
    no_checkout = r"^needs a source checkout of biomarker-worker \(pip install -e \.\)$"
    with pytest.raises(UsageError, match=no_checkout), checkout_only():
        import devkit.no_such_module  # type: ignore[import-not-found]  # noqa: F401
    # A module missing from the service itself is a broken install: the traceback stays.
    with pytest.raises(ModuleNotFoundError), checkout_only("train"):
        import worker.no_such_module  # type: ignore[import-not-found]  # noqa: F401


def test_checkout_only_command_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "training", None)
    monkeypatch.setitem(sys.modules, "training.train", None)
    assert main(["train", "--base", "b", "--train", "t.jsonl", "--out", "out"]) == 2
    assert capsys.readouterr().err == (
        "biomarker-worker train: error: needs a source checkout of biomarker-worker with the "
        "[train] extra (pip install -e '.[train]')\n"
    )


def test_a_command_that_gives_up_prints_one_line_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def give_up(_args: object) -> int:
        raise FatalError("scoring failed")

    monkeypatch.setattr("worker.cli.show_config.handle", give_up)
    assert main(["config"]) == 1
    assert capsys.readouterr().err == "biomarker-worker config: error: scoring failed\n"
