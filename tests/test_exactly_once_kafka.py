"""The optional exactly-once mode: outputs and offsets commit in one transaction."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.kafka_helpers import KafkaTestKit, note, start_worker
from tests.test_pipeline_kafka import run_until, run_worker
from tests.test_resilience_kafka import _LONG, inputs_per_partition, sources, stop, wait_for
from worker.model.classifier import SequenceClassifier

pytestmark = pytest.mark.kafka


def test_transactional_outputs_dead_letters_and_offsets(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    kit.create(partitions=2)
    kit.produce([note(i) for i in range(300)] + [b"not json"])
    model = SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)
    run_worker(kit, model, expected=301, processing_guarantee="exactly-once")
    outputs = kit.read(kit.output, 300)  # the reader is read_committed (librdkafka default)
    assert len(outputs) == 300 and len(sources(outputs)) == 300
    assert [r.value for r in kit.read(kit.dlq, 1)] == [b"not json"]
    assert sum(kit.committed().values()) == 301


def test_sigkill_and_restart_give_exactly_one_committed_output_per_input(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    kit.create(partitions=3)
    count = 2000
    kit.produce([note(i, _LONG) for i in range(count)])
    env = kit.env(
        tiny_model_dir,
        processing_guarantee="exactly-once",
        group_instance_id="worker-0",  # stable transactional.id: the restart fences the old one
        token_budget="512",
    )
    worker = start_worker(env, tmp_path / "worker-1.log")
    wait_for(lambda: sum(kit.committed().values()) >= 300, 120, "first transactions")
    worker.kill()
    worker.wait(timeout=30)
    assert sum(kit.committed().values()) < count, "the kill must land mid-stream"

    worker = start_worker(env, tmp_path / "worker-2.log")
    wait_for(lambda: sum(kit.committed().values()) == count, 240, "all inputs committed")
    assert stop(worker) == 0
    delivered = sources(kit.read(kit.output, count))
    per_partition = inputs_per_partition(kit, count)
    expected = Counter({(p, o): 1 for p, size in per_partition.items() for o in range(size)})
    assert delivered == expected  # every input exactly once, as read_committed consumers see it


def test_records_without_outputs_commit_in_transactions_of_their_own(
    kit: KafkaTestKit, tiny_model_dir: Path
) -> None:
    """FHIR resources that carry no note produce nothing: their offsets still commit, each
    interval, in transactions that hold offsets only (not left for a later transaction that a
    note happens to open, which could come after the partition moved to another member)."""
    kit.create(partitions=2)
    count = 20
    kit.produce([orjson.dumps({"resourceType": "Patient", "id": f"p{i}"}) for i in range(count)])
    model = SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)
    deadline = time.monotonic() + 60
    checked = [0.0]

    def all_committed(_pipeline: object) -> bool:
        now = time.monotonic()
        if now - checked[0] < 1.0:
            return now > deadline
        checked[0] = now
        return sum(kit.committed().values()) == count or now > deadline

    run_until(kit, model, all_committed, processing_guarantee="exactly-once", input_format="fhir")
    assert sum(kit.committed().values()) == count
