"""The worker against the real local broker: delivery, order, dead letters, fatal errors."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.kafka_helpers import KafkaTestKit, Record, note
from worker import pipeline as pipeline_module
from worker.config import WorkerSettings, load_settings
from worker.host_pool import HostRenderer
from worker.lexicon import LEXICON_VERSION, first_label
from worker.loading import provenance_for
from worker.model.classifier import SequenceClassifier
from worker.pipeline import EXIT_FATAL, Model, Pipeline
from worker.runs import run_until as run_pipeline_until
from worker.schemas import DEAD_LETTER_SCHEMA, OUTPUT_SCHEMA, validator

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)


def worker_settings(kit: KafkaTestKit, **overrides: Any) -> WorkerSettings:
    return kit.settings(**overrides)


def run_until(
    kit: KafkaTestKit, model: Any, stop_when: Callable[[Pipeline], bool], **overrides: Any
) -> Pipeline:
    """Run the pipeline in-process until ``stop_when`` says so; it must exit cleanly."""
    settings = worker_settings(kit, **overrides)
    pipeline = Pipeline(settings=settings, model=model, provenance=provenance_for(model, settings))
    assert run_pipeline_until(pipeline, lambda: stop_when(pipeline)) == 0
    assert gc.get_freeze_count() == 0  # the loop's frozen start-up heap is released
    return pipeline


def run_worker(kit: KafkaTestKit, model: Any, *, expected: int, **overrides: Any) -> Pipeline:
    """Run the pipeline in-process until ``expected`` records were delivered."""
    return run_until(kit, model, lambda p: p.delivered >= expected, **overrides)


def _source(record: Record) -> tuple[int, int]:
    source = record.json()["biomarker"]["provenance"]["source"]
    return source["partition"], source["offset"]


@pytest.mark.parametrize("host_processes", [1, 2], ids=["worker-threads", "host-processes"])
def test_thousand_notes_one_output_each_valid_ordered(
    kit: KafkaTestKit, model: SequenceClassifier, host_processes: int
) -> None:
    kit.create(partitions=3)
    count = 1000
    kit.produce(
        [note(i) for i in range(count)], keys=[f"p-{i % 17}".encode() for i in range(count)]
    )
    pipeline = run_worker(
        kit, model, expected=count, threshold=0.4995, host_processes=host_processes
    )
    # With two, the host processes did the preparing and rendering.
    assert isinstance(pipeline._renderer, HostRenderer) == (host_processes > 1)

    outputs = kit.read(kit.output, count)
    assert len(outputs) == count
    sources = [_source(record) for record in outputs]
    assert len(set(sources)) == count  # exactly one output per input
    output_validator = validator(OUTPUT_SCHEMA)
    for record in outputs:
        output_validator.validate(record.json())
    # Same key as the input; per (output partition, input partition) the input offsets grow.
    seen: dict[tuple[int, int], int] = {}
    for record in outputs:
        body = record.json()
        assert record.key == body["patient_id"].encode()
        partition, offset = _source(record)
        lane = (record.partition, partition)
        assert offset > seen.get(lane, -1)
        seen[lane] = offset
    # Scores are the classifier's own, sentence by sentence; a lexicon rule's sentence is 1.
    named = 0
    for record in outputs[:50]:
        body = record.json()
        text = body["text"]
        result = body["biomarker"]
        assert result["provenance"]["lexicon_version"] == LEXICON_VERSION
        sentences = [text[s["start"] : s["end"]] for s in result["sentences"]]
        expected_scores = model.predict(sentences)
        for sentence, score, sentence_text in zip(
            result["sentences"], expected_scores, sentences, strict=True
        ):
            assert sentence["score"] == pytest.approx(score, abs=1e-4)
            assert sentence.get("rule") == first_label(sentence_text)
            assert sentence["label"] == int(sentence["score"] >= 0.4995 or "rule" in sentence)
            named += "rule" in sentence
        assert body["metadata"] == {"seq": int(body["note_id"].split("-")[1])}
    assert named > 0
    assert sum(kit.committed().values()) == count
    registry = pipeline.metrics.registry
    sentences = registry.get_sample_value("biomarker_sentences_in_total")
    assert sentences == sum(len(r.json()["biomarker"]["sentences"]) for r in outputs)
    # The notes repeat their sentences (the test model's small vocabulary even reads the note
    # numbers alike): the score cache answered most of them, the scores above are the
    # classifier's all the same, and every sentence counts as scored.
    assert registry.get_sample_value("biomarker_sentences_out_total") == sentences
    hits = registry.get_sample_value("biomarker_score_cache_hits_total") or 0
    assert count < hits < sentences  # the first of each went to the model
    flagged = registry.get_sample_value("biomarker_sentences_flagged_total")
    assert flagged == sum(
        r.json()["biomarker"]["summary"]["biomarker_sentence_count"] for r in outputs
    )
    by_rule = registry.get_sample_value("biomarker_sentences_flagged_by_rule_total")
    assert by_rule == sum(
        s["score"] < 0.4995 and "rule" in s
        for r in outputs
        for s in r.json()["biomarker"]["sentences"]
    )


BAD_INPUTS = {
    "not_utf8": b'{"note_id": "x", "text": "caf\xe9"}',
    "not_json": b"HISTORY: this is not json",
    "schema_violation": orjson.dumps({"note_id": 5, "text": "Serum PSA 4.2."}),
    "empty_text": orjson.dumps({"note_id": "e", "text": " \n\t "}),
    "text_too_large": orjson.dumps({"note_id": "big", "text": "Hgb 12. " * 200}),
    "null_value": None,
}


@pytest.mark.parametrize("reason", sorted(BAD_INPUTS))
def test_bad_input_goes_to_dead_letter_with_original_bytes(
    kit: KafkaTestKit, model: SequenceClassifier, reason: str
) -> None:
    kit.create(partitions=1)
    bad = BAD_INPUTS[reason]
    kit.produce([note(1), bad, note(2)], keys=[b"k1", b"bad-key", b"k2"])
    run_worker(kit, model, expected=3, max_note_chars=1000)

    dead = kit.read(kit.dlq, 1)
    assert len(dead) == 1
    record = dead[0]
    assert record.value == bad and record.key == b"bad-key"
    headers = {name: value.decode() for name, value in record.headers.items()}
    validator(DEAD_LETTER_SCHEMA).validate(headers)
    assert headers["x-biomarker-error-class"] == reason
    assert headers["x-biomarker-source-offset"] == "1"
    # The worker kept going: the good notes on both sides are enriched, everything committed.
    outputs = kit.read(kit.output, 2)
    assert sorted(_source(r)[1] for r in outputs) == [0, 2]
    assert kit.committed() == {0: 3}


class _FailsOnLongBatches:
    """The real tiny model, except that any sentence of 40+ tokens makes its batch raise."""

    def __init__(self, inner: SequenceClassifier) -> None:
        self.inner = inner
        self.pad_multiple = inner.pad_multiple
        self.concurrency = inner.concurrency
        self.packs = inner.packs
        self.batch_limits = inner.batch_limits
        self.info = inner.info
        self.device_type = inner.device_type

    def encode(self, texts: Any) -> Any:
        return self.inner.encode(texts)

    def encoder_spec(self) -> Any:
        return self.inner.encoder_spec()

    def computed_positions(self, lengths: Any) -> int:
        return self.inner.computed_positions(lengths)

    def device_memory_bytes(self) -> int | None:
        return None

    def predict_ids(self, batch: Any) -> list[float]:
        if any(len(ids) >= 40 for ids in batch):
            raise RuntimeError("simulated device out of memory")
        return self.inner.predict_ids(batch)


def test_failing_sentence_sends_only_its_note_to_dead_letter(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    kit.create(partitions=1)
    poison = orjson.dumps({"note_id": "poison", "text": "Short one. " + "psa " * 60 + "."})
    kit.produce([note(i) for i in range(20)] + [poison] + [note(i) for i in range(20, 40)])
    flaky: Model = _FailsOnLongBatches(model)
    run_worker(kit, flaky, expected=41)

    dead = kit.read(kit.dlq, 1)
    assert [r.value for r in dead] == [poison]
    assert dead[0].headers["x-biomarker-error-class"] == b"inference_failed"
    assert len(kit.read(kit.output, 40)) == 40
    assert kit.committed() == {0: 41}


def test_missing_output_topic_is_fatal_and_commits_nothing(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    kit.create(partitions=1)
    kit.produce([note(1)])
    settings = load_settings(
        overrides={
            "bootstrap_servers": kit.bootstrap,
            "input_topic": kit.input,
            "output_topic": kit.output + "-does-not-exist",
            "dlq_topic": kit.dlq,
            "group_id": kit.group,
        }
    )
    pipeline = Pipeline(settings=settings, model=model, provenance=provenance_for(model, settings))
    assert pipeline.run() == EXIT_FATAL
    assert kit.committed() == {}


def test_backpressure_pauses_and_still_delivers_everything(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    kit.create(partitions=2)
    count = 600
    kit.produce([note(i) for i in range(count)])
    pipeline = run_worker(kit, model, expected=count, max_inflight_notes=20, consume_batch_size=50)
    pauses = pipeline.metrics.registry.get_sample_value("biomarker_pauses_total")
    assert pauses is not None and pauses >= 1
    outputs = kit.read(kit.output, count)
    assert len({_source(r) for r in outputs}) == count


def test_partitions_lost_while_paused_come_back_and_nothing_is_lost(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    """The main loop stalls past ``max.poll.interval.ms`` while backpressure has fetching
    paused: the group takes the partitions away (lost, not revoked), the worker rejoins, fetches
    again and delivers every note."""
    kit.create(partitions=2)
    count = 300
    kit.produce([note(i) for i in range(count)])
    stalls: list[int] = []
    give_up = [math.inf]
    settings = worker_settings(
        kit,
        max_inflight_notes=20,
        consume_batch_size=50,
        session_timeout_ms=6_000,
        max_poll_interval_ms=10_000,
    )
    pipeline = Pipeline(settings=settings, model=model, provenance=provenance_for(model, settings))
    poll = pipeline.source.poll

    def poll_stalling_once(timeout: float) -> list[Any]:
        if not stalls and pipeline.source.paused and pipeline.tracker.inflight:
            stalls.append(pipeline.tracker.inflight)
            time.sleep(13)  # the loop stops polling: librdkafka leaves the group after 10 s
            give_up[0] = time.monotonic() + 60  # a partition left paused never finishes
        return poll(timeout)

    def finished() -> bool:
        partitions = pipeline.tracker.partitions
        done = sum(state.committable or 0 for state in partitions.values())
        complete = bool(stalls) and len(partitions) == 2 and done >= count
        return complete or time.monotonic() > give_up[0]

    pipeline.source.poll = poll_stalling_once  # type: ignore[method-assign]
    assert run_pipeline_until(pipeline, finished) == 0
    registry = pipeline.metrics.registry
    assert stalls and stalls[0] > 0
    assert registry.get_sample_value("biomarker_rebalances_total", {"kind": "lost"}) == 1
    outputs = kit.read(kit.output, count)
    assert len({_source(r) for r in outputs}) == count  # every note, duplicates allowed
    assert sum(kit.committed().values()) == count


def test_an_idle_worker_takes_a_lone_note_without_waiting_out_its_poll(
    kit: KafkaTestKit, model: SequenceClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """librdkafka's batch consume waits out its whole timeout unless the batch fills; the
    worker must hand a lone note on as soon as it is fetched, not when the idle poll ends."""
    monkeypatch.setattr(pipeline_module, "_IDLE_POLL_S", 3.0)
    kit.create(partitions=1)
    sent_at: list[float] = []
    delivered_at: list[float] = []

    def send_when_idle_then_finish(pipeline: Pipeline) -> bool:
        if not sent_at and pipeline.readiness() == (True, "ok") and not pipeline.tracker.inflight:
            kit.produce([note(1)])  # written just before the loop's next (idle) poll
            sent_at.append(time.monotonic())
        if pipeline.delivered and not delivered_at:
            delivered_at.append(time.monotonic())
        return bool(delivered_at)

    run_until(kit, model, send_when_idle_then_finish)
    assert delivered_at[0] - sent_at[0] < 1.5  # waiting out the poll takes 3 s
    assert len(kit.read(kit.output, 1)) == 1


def test_kip848_consumer_group_protocol(kit: KafkaTestKit, model: SequenceClassifier) -> None:
    kit.create(partitions=2)
    kit.produce([note(i) for i in range(100)])
    run_worker(kit, model, expected=100, group_protocol="consumer")
    assert len({_source(r) for r in kit.read(kit.output, 100)}) == 100
    assert sum(kit.committed().values()) == 100
