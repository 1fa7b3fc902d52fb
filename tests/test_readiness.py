"""Readiness means able to work: both runtimes, the broker link, stalled threads, idle members."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError

from tests.fakes import Encoded, FakeBroker, FakeConsumer, FakeProducer, WordModel
from worker.config import load_settings
from worker.events import Provenance
from worker.faust_runtime.engine import Engine, Incoming
from worker.health import readiness, readiness_window
from worker.kafka.errors import STATS_INTERVAL_MS, KafkaErrors
from worker.kafka.ports import KafkaClients
from worker.metrics import Metrics
from worker.pipeline import Pipeline
from worker.runs import run_until

IN, OUT, DLQ = "notes", "enriched", "dlq"
PROVENANCE = Provenance("word", "1", "0" * 64, 0.5, "rules")
NOTE = b'{"note_id": "n1", "text": "Serum PSA was 4.2 ng/mL."}'


def _ready(**changes: Any) -> tuple[bool, str]:
    state: dict[str, Any] = {
        "stopping": False,
        "model_running": True,
        "brokers": None,
        "heartbeats": {"loop": 100.0, "inference": 100.0},
        "window_s": 30.0,
        "partitions": 2,
        "now": 110.0,
    }
    return readiness(**{**state, **changes})


def _stats(*states: str) -> str:
    """A librdkafka statistics report (the fields read here) with brokers in ``states``."""
    brokers = {f"b{i}:9092/{i}": {"nodeid": i, "state": s} for i, s in enumerate(states)}
    return json.dumps({"type": "consumer", "brokers": brokers})


# --------------------------------------------------------------------------- the rule
def test_a_member_that_can_work_is_ready_and_one_without_partitions_is_ready_idle() -> None:
    assert _ready() == (True, "ok")
    assert _ready(partitions=0) == (True, "idle")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"stopping": True}, "stopping"),
        ({"model_running": False}, "model not running"),
        ({"brokers": "brokers unreachable (_ALL_BROKERS_DOWN)"}, "brokers unreachable"),
        ({"heartbeats": {"loop": 110.0, "inference": 70.0}}, "no progress for 40s (inference)"),
        ({"heartbeats": {"loop": 75.0, "inference": 110.0}}, "no progress for 35s (loop)"),
    ],
)
def test_not_ready_names_why(changes: dict[str, Any], reason: str) -> None:
    for partitions in (0, 2):  # an idle member is held to the same conditions
        ready, why = _ready(partitions=partitions, **changes)
        assert not ready
        assert why.startswith(reason)


def test_the_progress_window_is_half_the_liveness_timeout() -> None:
    assert readiness_window(60.0) == 30.0


# --------------------------------------------------------------------------- the broker link
def test_brokers_are_not_usable_before_they_first_answered() -> None:
    errors = KafkaErrors()
    assert errors.brokers_problem() == "brokers not reached yet"
    errors.connected = True  # the start-up metadata request answered
    assert errors.brokers_problem() is None


@pytest.mark.parametrize("code", [KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT])
def test_lost_brokers_are_unreachable_until_a_statistics_report_shows_a_connection_up(
    code: int,
) -> None:
    metrics = Metrics()
    errors = KafkaErrors(metrics)
    errors.connected = True
    errors.on_error(KafkaError(code))
    name = KafkaError(code).name()
    assert errors.brokers_problem() == f"brokers unreachable ({name})"
    assert errors.fatal is None
    errors.on_stats(_stats("DOWN", "CONNECT", "INIT"))
    errors.on_stats("not json")
    assert errors.brokers_problem() == f"brokers unreachable ({name})"
    errors.on_stats(_stats("DOWN", "UP"))
    assert errors.brokers_problem() is None
    count = metrics.registry.get_sample_value("biomarker_kafka_errors_total", {"code": name})
    assert count == 1


def test_every_kafka_error_is_counted_by_code_fatal_ones_too() -> None:
    metrics = Metrics()
    errors = KafkaErrors(metrics)
    errors.on_error(KafkaError(KafkaError._MSG_TIMED_OUT))
    errors.on_error(KafkaError(KafkaError._MSG_TIMED_OUT))
    errors.on_error(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED))
    assert errors.fatal is not None
    sample = metrics.registry.get_sample_value
    assert sample("biomarker_kafka_errors_total", {"code": "_MSG_TIMED_OUT"}) == 2
    assert sample("biomarker_kafka_errors_total", {"code": "SASL_AUTHENTICATION_FAILED"}) == 1
    assert errors.brokers_problem() == "brokers not reached yet"  # neither marks a link down


def test_the_clients_report_errors_and_statistics_here() -> None:
    errors = KafkaErrors()
    hooks = errors.hooks()
    assert hooks["error_cb"] == errors.on_error
    assert hooks["stats_cb"] == errors.on_stats
    assert hooks["statistics.interval.ms"] == STATS_INTERVAL_MS


# --------------------------------------------------------------------------- the Kafka pipeline
class _IdleConsumer(FakeConsumer):
    """A member the group gives no partition (more members than partitions)."""

    def subscribe(self, topics: list[str], **callbacks: Any) -> None:
        self.callbacks = callbacks
        self.rebalance("assign", [])


class _StuckModel(WordModel):
    """Scoring blocks until released: a wedged model call."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.release.wait(30)
        return super().predict_ids(batch)


class _StuckTokenizer(WordModel):
    """Tokenising blocks until released: a note that sends preparation into an endless loop."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        self.release.wait(30)
        return super().encode(texts)


def _pipeline(
    consumer: type[FakeConsumer] = FakeConsumer, model: Any = None, **settings: Any
) -> tuple[Pipeline, FakeBroker]:
    broker = FakeBroker()
    broker.create(IN, 2)
    broker.create(OUT)
    broker.create(DLQ)
    values = {"input_topic": IN, "output_topic": OUT, "dlq_topic": DLQ, **settings}
    pipeline = Pipeline(
        settings=load_settings(overrides=values),
        model=model or WordModel(),
        provenance=PROVENANCE,
        clients=KafkaClients(consumer=consumer(broker), producer=FakeProducer(broker)),
    )
    return pipeline, broker


def _run_observing(
    pipeline: Pipeline, until: Callable[[list[tuple[bool, str]]], bool], timeout_s: float = 20
) -> list[tuple[bool, str]]:
    """Run ``pipeline`` and record its readiness until ``until(seen)`` holds."""
    seen: list[tuple[bool, str]] = []
    deadline = time.monotonic() + timeout_s

    def done() -> bool:
        state = pipeline.readiness()
        if not seen or seen[-1] != state:
            seen.append(state)
        return until(seen) or time.monotonic() > deadline

    run_until(pipeline, done)
    return seen


def test_an_idle_member_is_ready_and_a_stopping_one_is_not() -> None:
    pipeline, _ = _pipeline(consumer=_IdleConsumer)
    assert pipeline.readiness() == (False, "model not running")  # not started yet
    seen = _run_observing(pipeline, lambda seen: seen[-1] == (True, "idle"))
    assert seen[-1] == (True, "idle")
    assert pipeline.readiness() == (False, "stopping")


def test_a_member_whose_brokers_are_down_is_not_ready_until_they_answer_again() -> None:
    pipeline, _ = _pipeline()
    steps: Iterator[Callable[[], None]] = iter(
        [
            lambda: pipeline.errors.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN)),
            lambda: pipeline.errors.on_stats(_stats("UP")),
        ]
    )

    def until(seen: list[tuple[bool, str]]) -> bool:
        if seen[-1] == (True, "ok") or seen[-1][1].startswith("brokers unreachable"):
            step = next(steps, None)
            if step is None:
                return True
            step()
        return False

    seen = _run_observing(pipeline, until)
    assert seen[-3:] == [
        (True, "ok"),
        (False, "brokers unreachable (_ALL_BROKERS_DOWN)"),
        (True, "ok"),
    ]


@pytest.mark.parametrize(
    ("stuck", "thread"), [(_StuckModel, "inference"), (_StuckTokenizer, "preparation")]
)
def test_a_stalled_thread_makes_the_member_not_ready_and_not_live(
    stuck: type[_StuckModel | _StuckTokenizer], thread: str
) -> None:
    model = stuck()
    # A 2 s readiness window: long enough that a busy machine never stalls the loop that long,
    # short enough for the test.
    pipeline, broker = _pipeline(model=model, liveness_timeout_s=4.0)
    broker.append(IN, NOTE)
    oldest: list[float] = []

    def until(seen: list[tuple[bool, str]]) -> bool:
        if seen[-1][1].endswith(f"({thread})"):
            oldest.append(time.monotonic() - min(pipeline.heartbeats()))
            model.release.set()  # and let the pipeline drain
            return True
        return False

    try:
        seen = _run_observing(pipeline, until)
    finally:
        model.release.set()
    assert (True, "ok") in seen  # idle before the note came: not stuck
    ready, why = seen[-1]
    assert not ready
    assert why.startswith("no progress for") and why.endswith(f"({thread})")
    assert oldest[0] > readiness_window(4.0)  # the liveness probe reads the same heartbeats


class _OneLaneStuck(WordModel):
    """Two lanes; a call holding the word of 77 letters never returns until released, the
    other lane keeps scoring."""

    concurrency = 2

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if any(77 in row for row in batch):
            self.release.wait(30)
        return super().predict_ids(batch)


def test_a_model_call_stuck_on_one_lane_is_seen_while_the_other_lane_keeps_scoring() -> None:
    model = _OneLaneStuck()
    pipeline, broker = _pipeline(
        model=model, liveness_timeout_s=4.0, max_batch_sentences=1, score_cache_size=0
    )
    broker.append(IN, b'{"note_id": "wedged", "text": "' + b"x" * 76 + b'."}', partition=0)
    fed = threading.Event()

    def feed() -> None:  # other notes keep finishing on the free lane, to the end
        number = 0
        while not fed.is_set():
            broker.append(IN, b'{"note_id": "n%d", "text": "PSA now."}' % number, partition=1)
            number += 1
            time.sleep(0.02)

    threading.Thread(target=feed, daemon=True).start()
    scored_meanwhile: list[int] = []

    def until(seen: list[tuple[bool, str]]) -> bool:
        if seen[-1][1].endswith("(inference)"):
            scored_meanwhile.append(len(broker.read(OUT)))
            fed.set()
            model.release.set()
            return True
        return False

    try:
        seen = _run_observing(pipeline, until)
    finally:
        fed.set()
        model.release.set()
    assert not seen[-1][0] and seen[-1][1].startswith("no progress for")
    assert scored_meanwhile and scored_meanwhile[0] > 10  # the other lane was not stuck


def test_a_revoke_that_waits_for_work_still_in_progress_keeps_the_member_live() -> None:
    """The loop serves the revoke (deliveries, completions) for up to ``revoke_timeout_s``:
    that is progress, so the member stays ready and live while notes keep being scored."""
    consumers: list[FakeConsumer] = []

    def consumer(broker: FakeBroker) -> FakeConsumer:
        consumers.append(FakeConsumer(broker))
        return consumers[-1]

    pipeline, broker = _pipeline(
        consumer=consumer,  # type: ignore[arg-type]
        model=WordModel(delay_s=0.3),
        liveness_timeout_s=2.0,
        revoke_timeout_s=10.0,
        max_batch_sentences=1,
        score_cache_size=0,
    )
    for number in range(20):
        broker.append(
            IN, b'{"note_id": "n%d", "text": "Serum PSA was %d.2 ng/mL."}' % (number, number)
        )
    revoked: list[float] = []

    def until(seen: list[tuple[bool, str]]) -> bool:
        if not revoked and pipeline.tracker.inflight >= 5:
            consumers[0].rebalance("revoke", [(IN, 0)])
            revoked.append(time.monotonic())
        return bool(revoked) and len(pipeline.tracker.partitions) == 1  # partition 1 stays

    seen = _run_observing(pipeline, until)
    assert revoked and time.monotonic() - revoked[0] > readiness_window(2.0)  # a long revoke
    assert all(state in ((True, "ok"), (True, "idle")) for state in seen[1:]), seen


def test_a_batch_waiting_for_a_lane_does_not_age_the_inference_heartbeat() -> None:
    """One lane, one batch waiting in the extra slot behind the running one: the heartbeat is
    as old as the running batch, not the waiting one's wait plus its run (twice as old)."""
    pipeline, broker = _pipeline(
        model=WordModel(delay_s=1.0),
        liveness_timeout_s=60.0,
        max_batch_sentences=1,
        score_cache_size=0,
    )
    for number in range(5):
        broker.append(IN, b'{"note_id": "n%d", "text": "PSA %d."}' % (number, number))
    ages: list[float] = []

    def until(_seen: list[tuple[bool, str]]) -> bool:
        ages.append(time.monotonic() - pipeline.heartbeats()[-1])
        return len(broker.read(OUT)) == 5

    _run_observing(pipeline, until, timeout_s=30)
    assert len(broker.read(OUT)) == 5
    assert max(ages) < 1.6, max(ages)  # a batch takes 1 s; counted from the queue: ~2 s


# --------------------------------------------------------------------------- the faust engine
def test_the_faust_engine_has_the_same_readiness() -> None:
    async def scenario() -> list[tuple[bool, str]]:
        async def send(topic: str, key: Any, value: Any, headers: Any) -> Any:
            raise AssertionError("nothing is produced here")

        async def commit(offsets: dict[tuple[str, int], int]) -> bool:
            return True

        engine = Engine(
            settings=load_settings(overrides={"input_topic": IN, "liveness_timeout_s": 0.6}),
            model=WordModel(),
            provenance=PROVENANCE,
            send=send,
            commit=commit,
        )
        states = [engine.readiness()]
        engine.start()
        await asyncio.sleep(0.05)
        states.append(engine.readiness())
        engine.assigned({(IN, 0)})
        states.append(engine.readiness())
        engine.last_progress -= 1.0  # the event loop's pump stopped a second ago
        states.append(engine.readiness())
        await engine.drain()
        states.append(engine.readiness())
        return states

    states = asyncio.run(scenario())
    assert states[:3] == [(False, "model not running"), (True, "idle"), (True, "ok")]
    assert states[3] == (False, "no progress for 1s (loop)")
    assert states[4] == (False, "stopping")


def test_the_faust_engine_watches_its_preparation_thread_too() -> None:
    """A note that never finishes preparing (an endless loop in segmentation or the tokenizer)
    makes the faust member not ready and not live, as it does the confluent pipeline's."""
    model = _StuckTokenizer()

    async def scenario() -> tuple[tuple[bool, str], float]:
        async def send(topic: str, key: Any, value: Any, headers: Any) -> Any:
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

        async def commit(offsets: dict[tuple[str, int], int]) -> bool:
            return True

        engine = Engine(
            settings=load_settings(overrides={"input_topic": IN, "liveness_timeout_s": 1.0}),
            model=model,
            provenance=PROVENANCE,
            send=send,
            commit=commit,
        )
        engine.start()
        engine.assigned({(IN, 0)})
        await engine.accept(Incoming(IN, 0, 0, None, None, NOTE, None))
        await asyncio.sleep(readiness_window(1.0) + 0.5)
        state, oldest = engine.readiness(), time.monotonic() - min(engine.heartbeats())
        model.release.set()
        await engine.drain()
        return state, oldest

    try:
        state, oldest = asyncio.run(scenario())
    finally:
        model.release.set()
    assert not state[0] and state[1].endswith("(preparation)")
    assert oldest > readiness_window(1.0)  # the liveness probe reads the same heartbeats


# --------------------------------------------------------------------------- a real broker
@pytest.mark.kafka
def test_a_real_broker_going_down_and_coming_back_is_followed_without_records(
    tmp_path: Path,
) -> None:
    """The worker's two clients, wired as the pipeline wires them, against a broker that stops
    and restarts: librdkafka reports the outage through ``error_cb`` and the recovery only
    through its statistics; no record flows, as for an idle member."""
    from devkit.localkafka import LocalKafka
    from tests.kafka_helpers import KafkaTestKit
    from worker.kafka.ports import kafka_clients

    with LocalKafka.start(workdir=tmp_path / "kafka") as cluster:
        kit = KafkaTestKit(cluster.bootstrap_servers, prefix="ready")
        kit.create(partitions=1)
        settings = load_settings(
            overrides={
                "bootstrap_servers": cluster.bootstrap_servers,
                "input_topic": kit.input,
                "group_id": kit.group,
            }
        )
        metrics = Metrics()
        errors = KafkaErrors(metrics)
        clients = kafka_clients(settings, group_id=None, hooks=errors.hooks())
        consumer, producer = clients.consumer, clients.producer
        consumer.subscribe(
            [kit.input],
            on_assign=lambda *_: None,
            on_revoke=lambda *_: None,
            on_lost=lambda *_: None,
        )

        def serve_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                assert consumer.consume(1, 0.1) == []
                producer.poll(0)

        try:
            producer.list_topics(timeout=10)
            errors.connected = True  # as the start-up topic check does
            serve_until(lambda: errors.brokers_problem() is None, 10, "a first answer")
            cluster.stop_node(1)
            serve_until(lambda: errors.unreachable is not None, 60, "the outage reported")
            assert errors.brokers_problem() in (
                "brokers unreachable (_ALL_BROKERS_DOWN)",
                "brokers unreachable (_TRANSPORT)",
            )
            cluster.start_node(1)
            serve_until(lambda: errors.brokers_problem() is None, 90, "the recovery seen")
        finally:
            consumer.close()
        assert errors.fatal is None
        lost = metrics.registry.get_sample_value(
            "biomarker_kafka_errors_total", {"code": "_TRANSPORT"}
        )
        assert lost is not None and lost >= 1
