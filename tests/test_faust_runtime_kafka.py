"""The faust runtime against the real broker: the default runtime's guarantees, re-proven.

The crash, membership and drain tests run for both runtimes in tests/test_resilience_kafka.py;
here: 1,000 notes with one output each, every bad-input kind, and the refused configurations.
Counts are smaller than tests/test_pipeline_kafka.py's (2-core machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.kafka_helpers import REPO, KafkaTestKit, note, start_worker
from tests.test_pipeline_kafka import BAD_INPUTS
from tests.test_resilience_kafka import sources, stop, wait_for
from worker.schemas import DEAD_LETTER_SCHEMA, OUTPUT_SCHEMA, validator

pytestmark = pytest.mark.kafka


def faust_env(kit: KafkaTestKit, model_dir: Path, **extra: str) -> dict[str, str]:
    return kit.env(model_dir, runtime="faust", **extra)


def test_thousand_notes_one_output_each(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    kit.create(partitions=3)
    count = 1000
    kit.produce(
        [note(i) for i in range(count)], keys=[f"p-{i % 17}".encode() for i in range(count)]
    )
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    worker = start_worker(faust_env(kit, tiny_model_dir), tmp_path / "w.log", cwd=workdir)
    wait_for(lambda: sum(kit.committed().values()) == count, 180, "all inputs committed")
    assert stop(worker) == 0
    assert list(workdir.iterdir()) == []  # faust's data directory is not the (read-only) cwd
    outputs = kit.read(kit.output, count)
    found = sources(outputs)
    assert len(found) == count and max(found.values()) == 1  # exactly one output per input
    check = validator(OUTPUT_SCHEMA)
    seen: dict[tuple[int, int], int] = {}
    for record in outputs:
        body = record.json()
        check.validate(body)
        assert record.key == body["patient_id"].encode()
        source = body["biomarker"]["provenance"]["source"]
        lane = (record.partition, source["partition"])
        assert source["offset"] > seen.get(lane, -1)  # per input partition, in offset order
        seen[lane] = source["offset"]


def test_every_bad_input_kind_goes_to_the_dead_letter_topic_and_logs_hold_no_text(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    marker = "ZQXJ7PHIMARKER"
    kit.create(partitions=1)
    kinds = sorted(BAD_INPUTS)
    values: list[bytes | None] = [note(0, f"Seen by Dr. {marker}. PSA 4.2 ng/mL.")]
    keys: list[bytes | None] = [b"k-0"]
    for kind in kinds:
        values += [BAD_INPUTS[kind], note(len(values))]
        keys += [f"bad-{kind}".encode(), f"k-{len(keys)}".encode()]
    kit.produce(values, keys=keys)
    log_path = tmp_path / "w.log"
    env = faust_env(kit, tiny_model_dir, max_note_chars="1000", log_level="debug")
    worker = start_worker(env, log_path)
    wait_for(lambda: kit.committed() == {0: len(values)}, 120, "all inputs committed")
    assert stop(worker) == 0

    dead = {
        record.headers["x-biomarker-error-class"].decode(): record
        for record in kit.read(kit.dlq, len(kinds))
    }
    assert sorted(dead) == kinds
    check = validator(DEAD_LETTER_SCHEMA)
    for index, kind in enumerate(kinds):
        record = dead[kind]
        assert record.value == BAD_INPUTS[kind] and record.key == f"bad-{kind}".encode()
        check.validate({name: value.decode() for name, value in record.headers.items()})
        assert record.headers["x-biomarker-source-offset"] == str(1 + 2 * index).encode()
    assert len(sources(kit.read(kit.output, len(kinds) + 1))) == len(kinds) + 1
    lines = log_path.read_text().splitlines()
    assert lines and all(line.startswith("{") for line in lines if line.strip())
    assert any(orjson.loads(line)["event"] == "dead_letter" for line in lines)
    assert not [line for line in lines if marker in line]


def _run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_exactly_once_is_refused_at_start_up(kit: KafkaTestKit, tiny_model_dir: Path) -> None:
    env = faust_env(kit, tiny_model_dir, processing_guarantee="exactly-once")
    done = _run_cli(env, "-m", "worker", "run")
    assert done.returncode == 2
    assert "faust" in done.stderr and "at-least-once only" in done.stderr


def test_runtime_faust_without_faust_fails_in_one_line(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    hide = "import sys; sys.modules['faust'] = None; from worker.cli import main; sys.exit(main())"
    done = _run_cli(faust_env(kit, tiny_model_dir), "-c", hide, "run")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "faust-streaming" in done.stderr
