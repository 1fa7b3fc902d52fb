"""The worker's metrics against in-memory fakes: lag series follow the assignment, flagged
sentences and refused deliveries are counted, build info and the standard collectors."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec
from prometheus_client import CollectorRegistry

from tests.fakes import FakeBroker, FakeConsumer, FakeProducer, WordModel
from worker.config import WorkerSettings, load_settings
from worker.events import Provenance, SourceRef
from worker.faust_runtime.engine import Engine, Incoming
from worker.faust_runtime.outputs import Outputs
from worker.kafka.errors import KafkaErrors
from worker.kafka.group_lag import GroupLagCollector
from worker.kafka.offsets import OffsetTracker, PartitionState
from worker.kafka.ports import KafkaClients
from worker.kafka.source import KafkaSource
from worker.metrics import Metrics, _add_runtime_collectors, set_build_info
from worker.notes import Record
from worker.pipeline import EXIT_OK, Pipeline
from worker.render import Outgoing
from worker.runs import run_until

IN, OUT, DLQ = "notes", "enriched", "dlq"
PROVENANCE = Provenance("word", "1", "0" * 64, 0.5, "rules")
#: Three sentences, one of them about PSA: WordModel scores it 0.9, the others 0.1.
TEXT = "Seen today. PSA was 4.2 ng/mL. Follow up."


def settings(**overrides: Any) -> WorkerSettings:
    return load_settings(
        overrides={"input_topic": IN, "output_topic": OUT, "dlq_topic": DLQ, **overrides}
    )


def series(metrics: Metrics, family: str) -> dict[tuple[str, ...], float]:
    """Label values -> value of every sample of ``family``."""
    return {
        tuple(sample.labels.values()): sample.value
        for metric in metrics.registry.collect()
        if metric.name == family
        for sample in metric.samples
        if not sample.name.endswith("_created")
    }


class _Listener:
    def revoking(self, states: list[PartitionState]) -> None:
        return None

    def lost(self) -> None:
        return None


def test_revoked_and_lost_partitions_leave_the_consumer_lag() -> None:
    broker = FakeBroker()
    broker.create(IN, 3)
    for partition in range(3):
        for _ in range(4):
            broker.append(IN, b"{}", partition=partition)
    consumer = FakeConsumer(broker)
    metrics = Metrics()
    source = KafkaSource(
        consumer=consumer,
        tracker=OffsetTracker(),
        settings=settings(consume_batch_size=1),
        errors=KafkaErrors(),
        metrics=metrics,
    )
    source.start(_Listener())
    source.poll(0)  # the assignment, then one record of partition 0
    source.update_lag()
    assert series(metrics, "biomarker_consumer_lag") == {
        (IN, "0"): 3,
        (IN, "1"): 4,
        (IN, "2"): 4,
    }
    consumer.rebalance("revoke", [(IN, 1)])
    source.poll(0)
    assert set(series(metrics, "biomarker_consumer_lag")) == {(IN, "0"), (IN, "2")}
    consumer.rebalance("lost", [(IN, 2)])
    source.poll(0)
    source.update_lag()
    assert set(series(metrics, "biomarker_consumer_lag")) == {(IN, "0")}
    assert series(metrics, "biomarker_assigned_partitions") == {(): 1}


def _pipeline(broker: FakeBroker, producer: FakeProducer, **overrides: Any) -> Pipeline:
    return Pipeline(
        settings=settings(**overrides),
        model=WordModel(),
        provenance=PROVENANCE,
        clients=KafkaClients(consumer=FakeConsumer(broker), producer=producer),
    )


def _run(pipeline: Pipeline, expected: int) -> int:
    deadline = time.monotonic() + 20
    return run_until(
        pipeline, lambda: pipeline.delivered >= expected or time.monotonic() > deadline
    )


@pytest.mark.parametrize("lexicon_rules", [True, False])
def test_sentences_a_lexicon_rule_labels_alone_are_flagged_and_counted(
    lexicon_rules: bool,
) -> None:
    broker = FakeBroker()
    for topic in (IN, OUT, DLQ):
        broker.create(topic)
    text = "Seen today. PSA was 4.2 ng/mL. Hgb was 12.3 today. Follow up."
    for i in range(3):
        broker.append(IN, orjson.dumps({"note_id": f"n{i}", "text": text}))
    pipeline = _pipeline(broker, FakeProducer(broker), lexicon_rules=lexicon_rules)
    assert _run(pipeline, 3) == EXIT_OK
    registry = pipeline.metrics.registry
    # the model flags the PSA sentence; the hemoglobin rule alone the Hgb one
    flagged = registry.get_sample_value("biomarker_sentences_flagged_total")
    by_rule = registry.get_sample_value("biomarker_sentences_flagged_by_rule_total")
    assert (flagged, by_rule) == ((6, 3) if lexicon_rules else (3, 0))
    for record in broker.read(OUT):
        sentences = orjson.loads(record.value() or b"")["biomarker"]["sentences"]
        assert [s["label"] for s in sentences] == [0, 1, int(lexicon_rules), 0]
        rules = ["psa", "hemoglobin"] if lexicon_rules else [None, None]
        assert [s.get("rule") for s in sentences] == [None, *rules, None]


def test_flagged_sentences_are_counted_once_per_sentence_and_refusals_by_topic_and_code() -> None:
    broker = FakeBroker()
    for topic in (IN, OUT, DLQ):
        broker.create(topic)
    for i in range(6):
        broker.append(IN, orjson.dumps({"note_id": f"n{i}", "text": TEXT}))
    producer = FakeProducer(broker)
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer.refuse = lambda topic, value: (
        too_large if topic == OUT and b'"n2"' in (value or b"") else None
    )
    pipeline = _pipeline(broker, producer)
    assert _run(pipeline, 6) == EXIT_OK
    registry = pipeline.metrics.registry
    assert registry.get_sample_value("biomarker_sentences_out_total") == 18
    assert registry.get_sample_value("biomarker_sentences_flagged_total") == 6
    assert series(pipeline.metrics, "biomarker_delivery_errors") == {
        ("output", "MSG_SIZE_TOO_LARGE"): 1
    }
    assert len(broker.read(DLQ)) == 1  # the refused output's record, dead-lettered


def test_a_failed_dead_letter_delivery_is_counted_under_dlq() -> None:
    broker = FakeBroker()
    for topic in (IN, OUT, DLQ):
        broker.create(topic)
    broker.append(IN, b"{not json")
    producer = FakeProducer(broker)
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    producer.refuse = lambda topic, value: timed_out if topic == DLQ else None
    pipeline = _pipeline(broker, producer)
    _run(pipeline, 1)  # fatal: the worker stops
    assert series(pipeline.metrics, "biomarker_delivery_errors") == {("dlq", "_MSG_TIMED_OUT"): 1}


class MessageSizeTooLargeError(Exception):
    """Stands for aiokafka's error of the same name (a broker error with its code)."""

    errno = 10


def test_the_faust_output_path_counts_refusals_with_the_same_codes() -> None:
    metrics = Metrics()

    async def send(topic: str, key: Any, value: Any, headers: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if topic == OUT:
            future.set_exception(MessageSizeTooLargeError())
        else:
            future.set_result(None)
        return future

    async def deliver() -> None:
        outputs = Outputs(send=send, output_topic=OUT, dead_letter_topic=DLQ, metrics=metrics)
        record = Record(source=SourceRef(IN, 0, 0, None), key=None, value=b"{}")
        out = Outgoing("output", b"{}", None)
        await outputs.wait(record, await outputs.send(record, [out]))

    asyncio.run(deliver())
    assert series(metrics, "biomarker_delivery_errors") == {("output", "MSG_SIZE_TOO_LARGE"): 1}
    assert series(metrics, "biomarker_dead_letters") == {("output_too_large",): 1}


@pytest.mark.parametrize("how", ["over_budget", "refused"])
def test_the_faust_output_path_sends_one_dead_letter_per_record(how: str) -> None:
    metrics = Metrics()
    produced: list[tuple[str, Any]] = []

    async def send(topic: str, key: Any, value: Any, headers: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if topic == OUT and how == "refused" and len(value) > 100:
            future.set_exception(MessageSizeTooLargeError())
        else:
            produced.append((topic, value))
            future.set_result(None)
        return future

    async def deliver() -> None:
        outputs = Outputs(send=send, output_topic=OUT, dead_letter_topic=DLQ, metrics=metrics)
        if how == "over_budget":
            outputs.max_output_bytes = 100
        record = Record(source=SourceRef(IN, 0, 0, None), key=None, value=b"{}")
        outs = [Outgoing("output", value, None) for value in (b"x" * 200, b"{}", b"y" * 200)]
        await outputs.wait(record, await outputs.send(record, outs))

    asyncio.run(deliver())
    letters = [value for topic, value in produced if topic == DLQ]
    assert letters == [b"{}"]  # the record's own value, once
    kept = [value for topic, value in produced if topic == OUT]
    assert kept == ([] if how == "over_budget" else [b"{}"])
    assert series(metrics, "biomarker_dead_letters") == {("output_too_large",): 1}


def test_the_faust_assignment_gauge_counts_assigned_partitions_not_those_with_records() -> None:
    async def commit(offsets: Any) -> bool:
        return True

    async def send(topic: str, key: Any, value: Any, headers: Any) -> Any:
        raise AssertionError("nothing is produced here")

    engine = Engine(
        settings=settings(revoke_timeout_s=0.05),
        model=WordModel(),
        provenance=PROVENANCE,
        send=send,
        commit=commit,
    )

    async def rebalance() -> None:
        engine.assigned({(IN, 0), (IN, 1), (IN, 2)})
        await engine.accept(Incoming(IN, 0, 0, None, None, b"{}", None))
        assert series(engine.metrics, "biomarker_assigned_partitions") == {(): 3}
        await engine.revoke({(IN, 0)})

    asyncio.run(rebalance())
    assert series(engine.metrics, "biomarker_assigned_partitions") == {(): 2}
    assert series(engine.metrics, "biomarker_rebalances") == {("assign",): 1, ("revoke",): 1}


@dataclass(frozen=True)
class _Info:
    name: str = "bert-biomarker"
    sha256: str = "ab" * 32
    device: str = "cpu"
    dtype: str = "float32"


def test_build_info_names_version_runtime_and_model() -> None:
    from worker import __version__

    metrics = Metrics()
    set_build_info(metrics, runtime="faust", model=_Info())
    labels = {
        "version": __version__,
        "runtime": "faust",
        "model": "bert-biomarker",
        "model_sha256": "ab" * 32,
        "device": "cpu",
        "dtype": "float32",
    }
    assert metrics.registry.get_sample_value("biomarker_build_info", labels) == 1


def test_process_platform_and_gc_collectors_are_registered_once() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    _add_runtime_collectors(registry)  # a second time: no duplicate series
    names = [sample.name for family in registry.collect() for sample in family.samples]
    assert names.count("python_info") == 1
    assert names.count("process_cpu_seconds_total") == 1
    assert any(name.startswith("python_gc_") for name in names)


class _Admin:
    """An ``AdminClient`` over two partitions: 5 records each, the group committed 2 on
    partition 0 and nothing on 1, whose log starts at 1; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.down = False

    def list_topics(self, timeout: float) -> Any:
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "brokers down"))
        return SimpleNamespace(topics={IN: SimpleNamespace(error=None, partitions={0: 0, 1: 0})})

    def list_consumer_group_offsets(self, requests: list[Any], request_timeout: float) -> Any:
        [request] = requests
        committed = [TopicPartition(IN, 0, 2), TopicPartition(IN, 1, -1001)]
        return {request.group_id: _done(ConsumerGroupTopicPartitions(request.group_id, committed))}

    def list_offsets(self, specs: dict[Any, Any], **_options: Any) -> Any:
        latest = OffsetSpec.latest()
        return {
            tp: _done(SimpleNamespace(offset=5 if spec == latest else 1))
            for tp, spec in specs.items()
        }


def _done(result: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(result)
    return future


def test_group_lag_counts_uncommitted_partitions_from_the_log_start_or_not_at_all() -> None:
    earliest, latest = Metrics(), Metrics()
    assert GroupLagCollector(settings(), earliest, admin=_Admin()).collect_once()
    assert series(earliest, "biomarker_group_lag") == {(IN, "0"): 3, (IN, "1"): 4}
    late = settings(auto_offset_reset="latest")
    assert GroupLagCollector(late, latest, admin=_Admin()).collect_once()
    assert series(latest, "biomarker_group_lag") == {(IN, "0"): 3, (IN, "1"): 0}


def test_a_failed_group_lag_round_drops_the_members_series_and_does_not_raise() -> None:
    metrics = Metrics()
    admin = _Admin()
    collector = GroupLagCollector(settings(), metrics, admin=admin)
    assert collector.collect_once()
    admin.down = True
    assert collector.collect_once() is False
    assert series(metrics, "biomarker_group_lag") == {}


def test_flagged_sentences_follow_the_score_as_written() -> None:
    """0.4999996 is written 0.5 and labelled 1 at threshold 0.5: the metrics count it so."""
    import queue

    from worker.completions import take_completed
    from worker.events import NoteEvent
    from worker.notes import Note

    record = Record(source=SourceRef("notes", 0, 0, None), key=None, value=b"{}")
    note = Note(record=record, event=NoteEvent({"text": "a. b. c."}))
    note.expect(3)
    note.scores = [0.4999996, 0.4999994, 0.9]
    note.rules = {1: "psa"}
    record.notes.append(note)
    record.unscored = 1
    completed: queue.SimpleQueue[Any] = queue.SimpleQueue()
    completed.put(note)
    metrics = Metrics(CollectorRegistry())
    take_completed(completed, metrics, threshold=0.5)
    registry = metrics.registry
    assert registry.get_sample_value("biomarker_sentences_flagged_total") == 3
    assert registry.get_sample_value("biomarker_sentences_flagged_by_rule_total") == 1


def test_periodic_commits_are_counted_and_a_failed_one_is_a_failure() -> None:
    from worker.kafka.commits import auto_commits_counted

    metrics = Metrics()
    on_commit = auto_commits_counted(metrics)
    on_commit(None, [])
    on_commit(KafkaError(KafkaError._NO_OFFSET), [])  # nothing new to commit: not a commit
    on_commit(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), [])
    counts = {
        sample.labels["outcome"]: sample.value
        for family in metrics.registry.collect()
        if family.name == "biomarker_commits"
        for sample in family.samples
        if sample.name == "biomarker_commits_total"
    }
    assert counts == {"ok": 1, "failed": 1}
