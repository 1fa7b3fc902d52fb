"""The worker with two host processes against the real broker, in-process: bad input and failing
batches dead-lettered with the original bytes; backpressure. (Every note once, in order, scored
as alone: tests/test_pipeline_kafka.py, parametrized over host processes; crash, rebalance and
SIGTERM runs: tests/test_resilience_kafka.py.)"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.kafka_helpers import KafkaTestKit, note
from tests.test_pipeline_kafka import BAD_INPUTS, _FailsOnLongBatches, _source, run_worker
from worker.model.classifier import SequenceClassifier
from worker.pipeline import Model
from worker.schemas import DEAD_LETTER_SCHEMA, validator

pytestmark = pytest.mark.kafka

HOSTS = {"host_processes": 2}


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)


def test_bad_inputs_and_a_failing_batch_are_dead_lettered_from_host_processes(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    kit.create(partitions=1)
    poison = orjson.dumps({"note_id": "poison", "text": "Short one. " + "psa " * 60 + "."})
    bad = [value for _, value in sorted(BAD_INPUTS.items())]
    values = [note(0), *bad, note(1), poison, *(note(i) for i in range(2, 30))]
    kit.produce(values)
    flaky: Model = _FailsOnLongBatches(model)
    run_worker(kit, flaky, expected=len(values), max_note_chars=1000, **HOSTS)

    dead = kit.read(kit.dlq, len(bad) + 1)
    assert [record.value for record in dead] == [*bad, poison]  # original bytes, in order
    reasons = [record.headers["x-biomarker-error-class"].decode() for record in dead]
    assert reasons == [*sorted(BAD_INPUTS), "inference_failed"]
    for record in dead:
        validator(DEAD_LETTER_SCHEMA).validate(
            {name: value.decode() for name, value in record.headers.items()}
        )
    assert len(kit.read(kit.output, 30)) == 30
    assert kit.committed() == {0: len(values)}


def test_backpressure_with_host_processes_still_delivers_everything(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    kit.create(partitions=2)
    count = 600
    kit.produce([note(i) for i in range(count)])
    pipeline = run_worker(
        kit, model, expected=count, max_inflight_notes=20, consume_batch_size=50, **HOSTS
    )
    pauses = pipeline.metrics.registry.get_sample_value("biomarker_pauses_total")
    assert pauses is not None and pauses >= 1
    assert len({_source(r) for r in kit.read(kit.output, count)}) == count
