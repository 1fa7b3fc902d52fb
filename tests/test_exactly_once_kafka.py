"""The optional exactly-once mode: outputs and offsets commit in one transaction."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.kafka_helpers import KafkaTestKit, note, start_worker
from tests.test_pipeline_kafka import run_worker
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
