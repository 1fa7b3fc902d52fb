"""The Kafka pipeline's logic against in-memory fakes (tests/fakes.py): fast feedback.

The real-broker tests (``*_kafka.py``) are the proof; these drive the same code paths - revoke,
loss, backpressure, dead letters, fatal deliveries, transactional rewind, replay ranges - in
well under a second each.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError

from tests.ehr_messages import bundle, document_reference
from tests.fakes import FakeBroker, FakeConsumer, FakeProducer, WordModel
from worker.config import load_settings
from worker.events import Provenance
from worker.kafka.ports import KafkaClients
from worker.kafka.replay import ReplayPlan
from worker.pipeline import EXIT_FATAL, EXIT_OK, Pipeline
from worker.runs import run_until

IN, OUT, DLQ = "notes", "enriched", "dlq"
PROVENANCE = Provenance("word", "1", "0" * 64, 0.5, "rules")


def _note(i: int, text: str = "Seen today. PSA was 4.2 ng/mL. Follow up.") -> bytes:
    return orjson.dumps({"note_id": f"n{i}", "text": text})


class Kit:
    def __init__(self, partitions: int = 2) -> None:
        self.broker = FakeBroker()
        self.broker.create(IN, partitions)
        self.broker.create(OUT)
        self.broker.create(DLQ)
        self.consumer = FakeConsumer(self.broker)
        self.producer = FakeProducer(self.broker)

    def fill(self, count: int, partitions: int = 2) -> None:
        for i in range(count):
            self.broker.append(IN, _note(i), partition=i % partitions, key=f"k{i}".encode())

    def pipeline(
        self, model: Any = None, replay: ReplayPlan | None = None, **settings: Any
    ) -> Pipeline:
        values = {"input_topic": IN, "output_topic": OUT, "dlq_topic": DLQ, **settings}
        return Pipeline(
            settings=load_settings(overrides=values),
            model=model or WordModel(),
            provenance=PROVENANCE,
            clients=KafkaClients(consumer=self.consumer, producer=self.producer),
            replay=replay,
        )

    def run(self, pipeline: Pipeline, done: Callable[[], bool], timeout_s: float = 20) -> int:
        deadline = time.monotonic() + timeout_s
        return run_until(pipeline, lambda: done() or time.monotonic() > deadline)

    def outputs(self) -> list[dict[str, Any]]:
        return [orjson.loads(m.value() or b"") for m in self.broker.read(OUT)]

    def sources(self) -> list[tuple[int, int]]:
        return [
            (
                o["biomarker"]["provenance"]["source"]["partition"],
                o["biomarker"]["provenance"]["source"]["offset"],
            )
            for o in self.outputs()
        ]


def test_every_note_is_delivered_in_partition_order_and_committed() -> None:
    kit = Kit()
    kit.fill(40)
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 40) == EXIT_OK
    sources = kit.sources()
    assert len(sources) == 40
    for partition in (0, 1):
        offsets = [o for p, o in sources if p == partition]
        assert offsets == sorted(offsets) == list(range(20))
    assert kit.broker.committed == {(IN, 0): 20, (IN, 1): 20}
    first = kit.broker.read(OUT)[0]
    assert first.key() is not None and first.key().startswith(b"k")
    assert kit.outputs()[0]["biomarker"]["summary"]["biomarker_sentence_count"] == 1


def test_bad_records_go_to_the_dead_letter_topic_with_their_bytes() -> None:
    kit = Kit(partitions=1)
    bad = [b"\xff\xfe", b"{not json", orjson.dumps({"note_id": "x"}), None]
    kit.broker.append(IN, _note(0))
    for value in bad:
        kit.broker.append(IN, value, key=b"bad", headers=[("trace", b"1")])
    kit.broker.append(IN, _note(5))
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 6) == EXIT_OK
    letters = kit.broker.read(DLQ)
    assert [m.value() for m in letters] == bad
    reasons = [dict(m.headers())["x-biomarker-error-class"] for m in letters]
    assert reasons == [b"not_utf8", b"not_json", b"schema_violation", b"null_value"]
    assert all(dict(m.headers())["trace"] == b"1" and m.key() == b"bad" for m in letters)
    assert len(kit.outputs()) == 2
    assert kit.broker.committed == {(IN, 0): 6}


def test_revoke_finishes_in_flight_work_commits_it_and_ignores_later_fetches() -> None:
    kit = Kit()
    kit.fill(20)
    pipeline = kit.pipeline(model=WordModel(delay_s=0.01))
    revoked = False

    def revoke_partition_one() -> bool:
        nonlocal revoked
        if not revoked and pipeline.delivered >= 2:
            kit.consumer.rebalance("revoke", [(IN, 1)])
            revoked = True
        return revoked and (IN, 1) not in kit.consumer.assigned and pipeline.delivered >= 20

    assert kit.run(pipeline, revoke_partition_one) == EXIT_OK
    assert kit.broker.committed[(IN, 1)] == 10  # fetched before the revoke: finished, committed
    assert kit.broker.committed[(IN, 0)] == 10
    # the rebalance's revoke, then the one closing the consumer runs for partition 0
    assert (
        pipeline.metrics.registry.get_sample_value("biomarker_rebalances_total", {"kind": "revoke"})
        == 2
    )


def test_lost_partitions_are_forgotten_without_a_commit() -> None:
    kit = Kit(partitions=1)
    kit.fill(10, partitions=1)
    gate = WordModel(delay_s=0.2)  # slow: the loss comes while notes are in flight
    pipeline = kit.pipeline(model=gate)
    lost = False

    def lose() -> bool:
        nonlocal lost
        if not lost and pipeline.tracker.inflight:
            kit.consumer.rebalance("lost", [(IN, 0)])
            lost = True
        return lost and not pipeline.tracker.partitions

    assert kit.run(pipeline, lose) == EXIT_OK
    assert kit.broker.committed.get((IN, 0), 0) < 10
    assert kit.consumer.stored == {}
    assert (
        pipeline.metrics.registry.get_sample_value("biomarker_rebalances_total", {"kind": "lost"})
        == 1
    )


def test_records_with_several_notes_retractions_and_skips() -> None:
    """A FHIR topic: a Bundle's notes each get an output keyed by note id; a retraction comes
    out under the retracted id; a record with no note is skipped and still committed."""
    kit = Kit(partitions=1)
    kit.broker.append(
        IN,
        bundle(
            document_reference("a", "Serum PSA was 4.2 ng/mL. Seen today."),
            document_reference("b", "HER2 positive.", replaces="old"),
        ),
    )
    kit.broker.append(IN, b'{"resourceType": "Patient", "id": "p"}')
    kit.broker.append(IN, b"<not fhir")
    pipeline = kit.pipeline(input_format="fhir", max_note_sentences=1_000)
    assert kit.run(pipeline, lambda: kit.broker.committed.get((IN, 0)) == 3) == EXIT_OK
    outputs = kit.broker.read(OUT)
    assert [(m.key(), dict(m.headers() or [])["x-biomarker-event"]) for m in outputs] == [
        (b"DocumentReference/old", b"retraction"),
        (b"DocumentReference/a", b"note"),
        (b"DocumentReference/b", b"note"),
    ]
    ids = {orjson.loads(m.value() or b"")["biomarker"]["output_id"] for m in outputs}
    assert len(ids) == 3
    [letter] = kit.broker.read(DLQ)
    assert dict(letter.headers() or [])["x-biomarker-error-class"] == b"not_fhir"
    skipped = pipeline.metrics.registry.get_sample_value(
        "biomarker_skipped_total", {"reason": "no_note_text"}
    )
    assert skipped == 1


def test_backpressure_pauses_then_resumes_and_loses_nothing() -> None:
    kit = Kit()
    kit.fill(200)
    pipeline = kit.pipeline(
        model=WordModel(delay_s=0.002), max_inflight_notes=10, consume_batch_size=8
    )
    assert kit.run(pipeline, lambda: pipeline.delivered >= 200) == EXIT_OK
    assert kit.consumer.pause_calls >= 2  # paused under load (and once more at shutdown)
    assert (pipeline.metrics.registry.get_sample_value("biomarker_pauses_total") or 0) >= 1
    assert sorted(kit.sources()) == sorted((i % 2, i // 2) for i in range(200))


def test_backpressure_bounds_sentences_waiting_for_the_model() -> None:
    """Few notes but many sentences each: the sentence bound pauses fetching, not the count."""
    kit = Kit()
    long_note = " ".join(f"Sentence {i} was seen." for i in range(40))
    for i in range(60):
        kit.broker.append(IN, _note(i, long_note), partition=i % 2)
    pipeline = kit.pipeline(
        model=WordModel(delay_s=0.002), max_inflight_sentences=100, consume_batch_size=4
    )
    peak = 0

    def done() -> bool:
        nonlocal peak
        peak = max(peak, pipeline._inference.queued_sentences)
        return pipeline.delivered >= 60

    assert kit.run(pipeline, done) == EXIT_OK
    assert (pipeline.metrics.registry.get_sample_value("biomarker_pauses_total") or 0) >= 1
    # past the bound: at most what was being prepared (two polls of 4 notes x 40 sentences)
    # and one poll's worth fetched before the pause
    assert peak <= 100 + 3 * 4 * 40
    assert len(kit.outputs()) == 60


def test_slow_preparation_never_stalls_polling() -> None:
    """Tokenising takes 0.5 s per call (huge notes): the loop still polls every few ms, so
    ``max.poll.interval.ms`` cannot be exceeded by note content."""

    class SlowEncoder(WordModel):
        def encode(self, texts: Any) -> Any:
            time.sleep(0.5)
            return super().encode(texts)

    kit = Kit()
    kit.fill(12)
    polls: list[float] = []
    consume = kit.consumer.consume

    def timed_consume(num_messages: int, timeout: float) -> Any:
        polls.append(time.monotonic())
        return consume(num_messages, timeout)

    kit.consumer.consume = timed_consume  # type: ignore[method-assign]
    pipeline = kit.pipeline(model=SlowEncoder(), consume_batch_size=2)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 12) == EXIT_OK
    gaps = [later - earlier for earlier, later in itertools.pairwise(polls)]
    assert len(polls) > 20 and max(gaps) < 0.45  # 0.5 s preparations ran meanwhile


def test_a_full_local_queue_is_waited_out() -> None:
    kit = Kit()
    kit.fill(10)
    kit.producer.full = 5
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 10) == EXIT_OK
    assert len(kit.outputs()) == 10


def test_a_failed_delivery_is_fatal_and_commits_nothing_past_it() -> None:
    kit = Kit(partitions=1)
    kit.fill(10, partitions=1)
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
    kit.producer.refuse = lambda topic, value: timed_out if b'"n3"' in (value or b"") else None
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: False, timeout_s=5) == EXIT_FATAL
    assert kit.broker.committed.get((IN, 0), 0) <= 3
    assert kit.consumer.closed


def test_an_output_the_brokers_refuse_as_too_large_becomes_a_dead_letter() -> None:
    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    kit.producer.refuse = lambda topic, value: (
        too_large if topic == OUT and b'"n1"' in (value or b"") else None
    )
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 3) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    assert letter.value() == _note(1)
    assert dict(letter.headers())["x-biomarker-error-class"] == b"output_too_large"
    assert kit.broker.committed == {(IN, 0): 3}


def test_an_output_over_the_local_size_limit_becomes_a_dead_letter() -> None:
    kit = Kit(partitions=1)
    text = ". " * 3_000  # small input, large output: one result per sentence
    kit.broker.append(IN, _note(0, text))
    kit.broker.append(IN, _note(1))
    kit.producer.max_bytes = 20_000
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    assert dict(letter.headers())["x-biomarker-error-class"] == b"output_too_large"
    assert len(kit.outputs()) == 1 and kit.broker.committed == {(IN, 0): 2}


def test_a_dead_letter_too_large_goes_out_truncated_with_its_size_and_hash() -> None:
    kit = Kit(partitions=1)
    original = b"x" * 100_000  # not JSON
    kit.broker.append(IN, original)
    kit.producer.max_bytes = 80_000
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 1) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    headers = dict(letter.headers())
    assert headers["x-biomarker-error-class"] == b"not_json"
    assert headers["x-biomarker-truncated"] == b"true"
    assert headers["x-biomarker-original-size"] == b"100000"
    assert headers["x-biomarker-original-sha256"] == hashlib.sha256(original).hexdigest().encode()
    assert letter.value() == original[: len(letter.value() or b"")]
    assert kit.broker.committed == {(IN, 0): 1}


def test_an_aborted_transaction_rewinds_and_redelivers_exactly_once() -> None:
    kit = Kit(partitions=1)
    kit.fill(30, partitions=1)
    abortable = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
    kit.producer.fail_commit = [abortable]
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    done = lambda: kit.broker.committed.get((IN, 0)) == 30  # noqa: E731
    assert kit.run(pipeline, done) == EXIT_OK
    assert kit.producer.aborted == 1
    assert sorted(kit.sources()) == [(0, i) for i in range(30)]  # no duplicate is visible
    assert (
        pipeline.metrics.registry.get_sample_value(
            "biomarker_commits_total", {"outcome": "aborted"}
        )
        == 1
    )


def test_an_abort_purging_queued_outputs_rewinds_instead_of_stopping() -> None:
    """librdkafka's abort purges outputs still queued, with delivery reports that say so: the
    worker rewinds and produces them again; a purge is not a failed delivery."""

    class StalledProducer(FakeProducer):
        stalled = True  # the brokers do not answer until the abort

        def poll(self, timeout: float = 0.0) -> int:
            return 0 if self.stalled else super().poll(timeout)

        def flush(self, timeout: float = 0.0) -> int:
            return len(self.queued) if self.stalled else super().flush(timeout)

        def abort_transaction(self, timeout: float) -> None:
            super().abort_transaction(timeout)
            self.stalled = False

    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    kit.producer = StalledProducer(kit.broker)
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    code = kit.run(pipeline, lambda: kit.broker.committed.get((IN, 0)) == 3, timeout_s=10)
    assert code == EXIT_OK and pipeline.errors.fatal is None
    assert kit.producer.aborted == 1
    assert sorted(kit.sources()) == [(0, 0), (0, 1), (0, 2)]


def test_exactly_once_commits_records_without_outputs_and_never_a_revoked_offset_later() -> None:
    """A record with nothing to produce (a Patient resource) commits in a transaction of its
    own: on revoke, not in a later transaction of another partition, where it would overwrite
    the new owner's progress."""
    patient = b'{"resourceType": "Patient", "id": "p"}'
    kit = Kit(partitions=2)
    kit.broker.append(IN, patient, partition=1)
    pipeline = kit.pipeline(
        processing_guarantee="exactly-once", commit_interval_ms=100, input_format="fhir"
    )
    phase = 0
    on_revoke: int | None = None

    def script() -> bool:
        nonlocal phase, on_revoke
        state = pipeline.tracker.get((IN, 1))
        if phase == 0 and state is not None and state.committable == 1:
            kit.consumer.rebalance("revoke", [(IN, 1)])
            phase = 1
        elif phase == 1 and (IN, 1) not in kit.consumer.assigned:
            on_revoke = kit.broker.committed.get((IN, 1))
            kit.broker.committed[(IN, 1)] = 50  # the new owner moved on
            kit.broker.append(IN, bundle(document_reference("a", "PSA 4.2 ng/mL.")), partition=0)
            phase = 2
        return phase == 2 and kit.broker.committed.get((IN, 0)) == 1

    assert kit.run(pipeline, script, timeout_s=10) == EXIT_OK
    assert on_revoke == 1  # committed on revoke
    assert kit.broker.committed[(IN, 1)] == 50


def test_a_message_fetched_before_a_loss_is_not_taken_into_the_new_assignment() -> None:
    """A poll may consume twice: a message of the first call, fetched under the old
    assignment, must not join the partition's new state (a loss and re-assign ran inside the
    second call), or its delivery would commit past records not done again."""
    stores: list[tuple[int, list[int]]] = []

    class LossBetweenCalls(FakeConsumer):
        stage = 0

        def consume(self, num_messages: int, timeout: float) -> list[Any]:
            if self.stage == 0 and self.positions.get((IN, 0), 0) >= 3 and timeout == 0:
                self.stage = 1  # records 0-2 in flight; nothing fetched right now
                return []
            if self.stage == 1 and num_messages == 1:
                messages = super().consume(1, timeout)  # offset 3, old assignment
                self.rebalance("lost", [(IN, 0)])  # served by the next call
                self.rebalance("assign", [(IN, 0)])
                self.stage = 2
                return messages
            if self.stage == 2:
                super().consume(0, 0)  # runs on_lost and on_assign
                self.stage = 3
                return []
            return super().consume(num_messages, timeout)  # from the committed offset

        def store_offsets(self, *, offsets: list[Any]) -> None:
            super().store_offsets(offsets=offsets)
            done = sorted(offset for _partition, offset in kit.sources())
            stores.extend((tp.offset, done) for tp in offsets if tp.partition == 0)

    kit = Kit(partitions=1)
    kit.fill(6, partitions=1)
    kit.consumer = LossBetweenCalls(kit.broker)
    pipeline = kit.pipeline(model=WordModel(delay_s=0.3), consume_batch_size=3)
    done = lambda: kit.consumer.stage == 3 and bool(stores) and stores[-1][0] == 6  # noqa: E731
    assert kit.run(pipeline, done, timeout_s=15) == EXIT_OK
    assert stores and stores[-1][0] == 6
    for offset, produced in stores:  # every offset below a stored one has its output
        assert set(range(offset)) <= set(produced), (offset, produced)


def test_a_transactional_call_that_hangs_past_its_deadline_is_fatal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """librdkafka's send_offsets_to_transaction may block past its own timeout when the
    coordinator dies: the worker gives up on the process instead of hanging with it."""
    monkeypatch.setattr("worker.kafka.commits._TIMEOUT_S", 0.2)
    monkeypatch.setattr("worker.kafka.commits._GRACE_S", 0.3)
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    release = threading.Event()
    kit.producer.send_offsets_to_transaction = lambda *args: release.wait(30)  # type: ignore[method-assign]
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    started = time.monotonic()
    try:
        assert kit.run(pipeline, lambda: False, timeout_s=10) == EXIT_FATAL
    finally:
        release.set()
    assert pipeline.hung
    assert time.monotonic() - started < 8
    assert kit.consumer.closed  # left the group, so its partitions move at once
    assert kit.broker.committed.get((IN, 0)) is None


def test_a_close_that_hangs_at_shutdown_ends_the_run_after_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Leaving the group may block inside librdkafka: after the drain has committed, the run
    gives up on the close (the process then exits without tearing the client down)."""
    monkeypatch.setattr("worker.pipeline._CLOSE_DEADLINE_S", 0.3)
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    release = threading.Event()
    closes: list[float] = []

    def hanging_close() -> None:
        closes.append(time.monotonic())
        release.wait(30)

    kit.consumer.close = hanging_close  # type: ignore[method-assign]
    pipeline = kit.pipeline(revoke_timeout_s=0.2)
    try:
        code = kit.run(pipeline, lambda: len(kit.broker.read(OUT)) == 5, timeout_s=10)
        stopped = time.monotonic()
    finally:
        release.set()
    assert code == EXIT_FATAL and pipeline.hung
    assert len(closes) == 1  # not tried again
    assert stopped - closes[0] < 5
    assert kit.broker.committed[(IN, 0)] == 5  # the drain committed before the close


def test_a_replay_reads_its_range_only_and_stops_by_itself() -> None:
    kit = Kit(partitions=2)
    kit.fill(20)
    plan = ReplayPlan(topic=IN, ranges={0: (2, 5), 1: (7, 7)})
    pipeline = kit.pipeline(replay=plan)
    assert kit.run(pipeline, lambda: False) == EXIT_OK  # returns without being stopped
    assert kit.sources() == [(0, 2), (0, 3), (0, 4)]
    assert kit.broker.committed == {(IN, 0): 5}


def test_a_missing_topic_is_fatal_before_anything_is_read() -> None:
    kit = Kit()
    kit.broker.topics.discard(DLQ)
    kit.fill(3)
    pipeline = kit.pipeline()
    assert pipeline.run() == EXIT_FATAL
    assert kit.broker.committed == {} and not kit.broker.read(OUT)


@pytest.mark.parametrize(
    ("extra", "clash"),
    [
        ({"enable.auto.offset.store": "true"}, "enable.auto.offset.store"),
        ({"enable.idempotence": "false"}, "enable.idempotence"),
        ({"acks": "1"}, "acks"),
    ],
)
def test_client_settings_the_guarantee_needs_cannot_be_overridden(
    extra: dict[str, str], clash: str
) -> None:
    from worker.errors import UsageError
    from worker.kafka.clients import consumer_config, producer_config

    settings = load_settings(overrides={"kafka_extra": extra})
    with pytest.raises(UsageError, match=clash):
        consumer_config(settings)
        producer_config(settings)


def test_locked_client_settings_win_and_other_extras_pass_through() -> None:
    from worker.kafka.clients import consumer_config, producer_config

    settings = load_settings(overrides={"kafka_extra": {"fetch.max.bytes": "1000000"}})
    consumer = consumer_config(settings)
    producer = producer_config(settings)
    assert (
        consumer["enable.auto.offset.store"] is False and consumer["fetch.max.bytes"] == "1000000"
    )
    assert producer["enable.idempotence"] is True and producer["acks"] == "all"
    exactly_once = load_settings(overrides={"processing_guarantee": "exactly-once"})
    assert consumer_config(exactly_once)["isolation.level"] == "read_committed"
    assert "transactional.id" in producer_config(exactly_once)


def test_a_note_with_too_many_sentences_is_dead_lettered_before_tokenising() -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0, ". " * 5_000))
    kit.broker.append(IN, _note(1))
    model = WordModel()
    pipeline = kit.pipeline(model=model, max_note_sentences=1_000)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    assert dict(letter.headers())["x-biomarker-error-class"] == b"too_many_sentences"
    assert letter.value() == _note(0, ". " * 5_000)
    assert len(kit.outputs()) == 1


def test_budgets_follow_the_topics_limits_and_a_setting_above_them_is_fatal() -> None:
    from worker.errors import FatalError
    from worker.kafka.topics import RECORD_OVERHEAD_BYTES, budgets_for

    settings = load_settings(overrides={"output_topic": OUT, "dlq_topic": DLQ})
    budgets = budgets_for(settings, {OUT: 1_000_000, DLQ: 2_000_000}, output_topic=OUT)
    assert budgets.max_output_bytes == 1_000_000 - RECORD_OVERHEAD_BYTES
    assert budgets.max_dead_letter_bytes == 2_000_000 - RECORD_OVERHEAD_BYTES
    assert budgets.max_note_sentences == budgets.max_output_bytes // 100
    unknown = budgets_for(settings, {}, output_topic=OUT)  # DescribeConfigs not allowed
    assert unknown.max_output_bytes == 1_048_588 - RECORD_OVERHEAD_BYTES
    too_high = load_settings(overrides={"output_topic": OUT, "max_output_bytes": 5_000_000})
    with pytest.raises(FatalError, match="max_output_bytes 5000000 is above"):
        budgets_for(too_high, {OUT: 1_000_000}, output_topic=OUT)


def test_the_output_budget_dead_letters_an_oversized_output_without_producing_it() -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0, "PSA up. " * 300))
    kit.broker.append(IN, _note(1))
    pipeline = kit.pipeline(max_output_bytes=10_000, max_note_sentences=1_000)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    headers = dict(letter.headers())
    assert headers["x-biomarker-error-class"] == b"output_too_large"
    assert b"the limit is 10000" in headers["x-biomarker-error-message"]


def test_kafka_extra_cannot_set_what_a_validated_setting_owns() -> None:
    from worker.errors import UsageError

    with pytest.raises(UsageError, match=r"max\.poll\.interval\.ms"):
        load_settings(overrides={"kafka_extra": {"max.poll.interval.ms": "1000"}})
    with pytest.raises(UsageError, match="BIOMARKER_SESSION_TIMEOUT_MS"):
        load_settings(overrides={"kafka_extra": {"session.timeout.ms": "500"}})
    # TLS and SASL properties the worker derives from settings it checks (host-name checking,
    # files that must exist): kafka_extra may not quietly replace them.
    for key, setting in [
        ("ssl.endpoint.identification.algorithm", "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM"),
        ("ssl.ca.location", "SSL_CA_LOCATION"),
        ("ssl.key.password", "SSL_KEY_PASSWORD"),
        ("sasl.oauthbearer.config", "SASL_OAUTHBEARER_CONFIG"),
    ]:
        with pytest.raises(UsageError, match=f"BIOMARKER_{setting}"):
            load_settings(overrides={"kafka_extra": {key: "none"}})


def test_a_record_that_keeps_crashing_the_worker_is_dead_lettered_as_poison() -> None:
    kit = Kit(partitions=1)
    for i in range(12):
        text = "It went CRASH here." if i == 5 else "PSA was 4.2 ng/mL. Fine."
        kit.broker.append(IN, _note(i, text))
    codes = []
    for _restart in range(8):  # Kubernetes restarts the pod; each run is a new group member
        kit.consumer = FakeConsumer(kit.broker)
        pipeline = kit.pipeline(poison_after_crashes=3)
        codes.append(kit.run(pipeline, lambda p=pipeline: p.delivered >= 12 - 5, timeout_s=10))
        if codes[-1] == EXIT_OK:
            break
    # Two crashes at offset 0 (the batch), then read one at a time: three on the record itself.
    assert codes == [EXIT_FATAL] * 5 + [EXIT_OK]
    [letter] = kit.broker.read(DLQ)
    assert letter.value() == _note(5, "It went CRASH here.")
    assert dict(letter.headers())["x-biomarker-error-class"] == b"poison"
    assert sorted(o for _p, o in kit.sources()) == [i for i in range(12) if i != 5]
    assert kit.broker.committed == {(IN, 0): 12}
    assert kit.broker.metadata[(IN, 0)] is None  # the count is cleared once past


def test_after_crashes_innocent_records_read_with_the_culprit_are_not_blamed() -> None:
    kit = Kit(partitions=1)
    for i in range(6):
        kit.broker.append(IN, _note(i, "It went CRASH here." if i == 4 else "Fine."))
    for attempt in (1, 2):
        kit.consumer = FakeConsumer(kit.broker)
        assert kit.run(kit.pipeline(), lambda: False, timeout_s=10) == EXIT_FATAL
        assert kit.broker.committed == {(IN, 0): 0}  # nothing delivered: blamed on offset 0
        assert kit.broker.metadata[(IN, 0)] == f"biomarker-attempts={attempt}"
    kit.consumer = FakeConsumer(kit.broker)
    assert kit.run(kit.pipeline(), lambda: False, timeout_s=10) == EXIT_FATAL
    # Read one at a time after two crashes: 0-3 are done, the count sits on offset 4.
    assert kit.broker.committed == {(IN, 0): 4}
    assert kit.broker.metadata[(IN, 0)] == "biomarker-attempts=1;record"
    assert not kit.broker.read(DLQ)


def test_a_lost_partition_given_back_to_the_same_worker_is_not_a_crash() -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0))
    pipeline = kit.pipeline()
    lost_once = []

    careful_after_reassign = []

    def lose_then_finish() -> bool:
        if pipeline.tracker.partitions and not lost_once:
            kit.consumer.rebalance("lost", [(IN, 0)])
            kit.consumer.rebalance("assign", [(IN, 0)])
            lost_once.append(True)
        if lost_once and (state := pipeline.tracker.partitions.get((IN, 0))) is not None:
            careful_after_reassign.append(pipeline.source.crashes.careful(state))
        return bool(lost_once) and pipeline.delivered >= 1

    assert kit.run(pipeline, lose_then_finish) == EXIT_OK
    assert kit.broker.committed == {(IN, 0): 1}
    # The count it found was its own: no crash, so no careful reading.
    assert careful_after_reassign and not any(careful_after_reassign)


def test_a_clean_stop_without_progress_clears_the_attempt_it_counted() -> None:
    kit = Kit(partitions=1)
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: bool(pipeline.tracker.partitions)) == EXIT_OK
    assert kit.broker.committed == {(IN, 0): 0}
    assert kit.broker.metadata[(IN, 0)] is None


def test_a_record_that_breaks_preparation_goes_alone_to_the_dead_letter_topic() -> None:
    kit = Kit(partitions=1)
    for i in range(6):
        kit.broker.append(IN, _note(i, "It will BREAK here." if i == 2 else "PSA 4."))
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 6) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    assert letter.value() == _note(2, "It will BREAK here.")
    assert dict(letter.headers())["x-biomarker-error-class"] == b"preparation_failed"
    assert sorted(o for _p, o in kit.sources()) == [0, 1, 3, 4, 5]


def test_an_input_header_named_like_the_workers_never_sets_the_reason_label() -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, b"{not json", headers=[("x-biomarker-error-class", b"Jane Doe")])
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 1) == EXIT_OK
    registry = pipeline.metrics.registry
    assert registry.get_sample_value("biomarker_dead_letters_total", {"reason": "not_json"}) == 1
    assert registry.get_sample_value("biomarker_dead_letters_total", {"reason": "Jane Doe"}) is None


class _NaNForPSA(WordModel):
    """Scores a PSA sentence NaN (as a float16 overflow or damaged weights would)."""

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        return [float("nan") if 99 in row else 0.1 for row in batch]


def test_a_non_finite_score_dead_letters_its_note_and_is_never_written() -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0, "Seen today. PSA was high."))
    kit.broker.append(IN, _note(1, "Seen today. Follow up."))
    pipeline = kit.pipeline(model=_NaNForPSA())
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    assert [output["note_id"] for output in kit.outputs()] == ["n1"]
    (letter,) = kit.broker.read(DLQ)
    headers = dict(letter.headers())
    assert headers["x-biomarker-error-class"] == b"inference_failed"
    assert b"NonFiniteScore" in headers["x-biomarker-error-message"]
    assert kit.broker.committed[(IN, 0)] == 2


def _three_note_bundle(kit: Kit) -> None:
    big = "PSA up. " * 300
    kit.broker.append(
        IN,
        bundle(
            document_reference("a", big),
            document_reference("b", "Seen today."),
            document_reference("c", big),
        ),
    )


def test_a_record_with_outputs_over_budget_gives_one_dead_letter_and_no_outputs() -> None:
    kit = Kit(partitions=1)
    _three_note_bundle(kit)
    pipeline = kit.pipeline(input_format="fhir", max_output_bytes=10_000, max_note_sentences=1_000)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 1) == EXIT_OK
    assert kit.broker.committed[(IN, 0)] == 1
    assert kit.broker.read(OUT) == []  # one output per note, or one dead letter per record
    (letter,) = kit.broker.read(DLQ)
    assert dict(letter.headers())["x-biomarker-error-class"] == b"output_too_large"
    assert letter.value() == kit.broker.read(IN)[0].value()
    dead = pipeline.metrics.registry.get_sample_value(
        "biomarker_dead_letters_total", {"reason": "output_too_large"}
    )
    assert dead == 1


def test_two_refused_outputs_of_one_record_give_one_dead_letter() -> None:
    kit = Kit(partitions=1)
    _three_note_bundle(kit)
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    kit.producer.refuse = lambda topic, value: (
        too_large if topic == OUT and len(value or b"") > 10_000 else None
    )
    pipeline = kit.pipeline(input_format="fhir", max_note_sentences=1_000)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    assert kit.broker.committed[(IN, 0)] == 1
    assert [message.key() for message in kit.broker.read(OUT)] == [b"DocumentReference/b"]
    (letter,) = kit.broker.read(DLQ)
    assert dict(letter.headers())["x-biomarker-error-class"] == b"output_too_large"


def test_a_stop_that_leaves_its_record_unfinished_keeps_the_attempt_count() -> None:
    """SIGTERM while a record hangs (the liveness probe's restart) is counted like a crash: the
    count is not cleared by the drain nor by the revoke that closing the consumer runs."""
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0))
    stuck = WordModel(delay_s=1.5)
    pipeline = kit.pipeline(model=stuck, drain_timeout_s=0.2, revoke_timeout_s=0.2)
    assert kit.run(pipeline, lambda: stuck.batches >= 1) == EXIT_OK
    assert kit.broker.committed.get((IN, 0)) == 0
    assert kit.broker.metadata[(IN, 0)] == "biomarker-attempts=1"
    assert kit.broker.read(OUT) == []
    # its model call had not returned: the process must exit without waiting for its thread
    assert pipeline.hung


class _BrokenDevice(WordModel):
    """Every model call fails, as after a CUDA error that sticks."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.calls += 1
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_model_that_fails_every_sentence_stops_the_worker_instead_of_dead_lettering_all() -> None:
    kit = Kit(partitions=1)
    for i in range(40):
        kit.broker.append(IN, _note(i))
    broken = _BrokenDevice()
    pipeline = kit.pipeline(model=broken, score_cache_size=0)
    assert kit.run(pipeline, lambda: False, timeout_s=10) == EXIT_FATAL
    assert kit.broker.read(DLQ) == []  # nothing dead-lettered, nothing committed: re-read
    assert kit.broker.committed.get((IN, 0), 0) == 0
    assert kit.broker.metadata.get((IN, 0)) == "biomarker-attempts=1"  # counted as a crash


def test_a_few_sentences_that_fail_alone_still_dead_letter_only_their_notes() -> None:
    kit = Kit(partitions=1)
    for i in range(40):
        text = "Seen today. PSA was high." if i % 10 == 3 else "Seen today. Follow up."
        kit.broker.append(IN, _note(i, text))
    pipeline = kit.pipeline(model=_NaNForPSA(), score_cache_size=0)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 40) == EXIT_OK
    assert len(kit.broker.read(DLQ)) == 4
    assert len(kit.broker.read(OUT)) == 36


class _RaisesOnPSA(WordModel):
    """Raises on any batch holding a PSA sentence (an input-dependent model error)."""

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if any(99 in row for row in batch):
            raise RuntimeError("an input the model cannot take")
        return [0.1 for _ in batch]


@pytest.mark.parametrize("model", [_NaNForPSA, _RaisesOnPSA])
def test_one_note_whose_every_sentence_fails_is_dead_lettered_not_the_worker_stopped(
    model: type[WordModel],
) -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0, " ".join(["PSA was high."] * 40)))
    kit.broker.append(IN, _note(1, "Seen today. Follow up."))
    pipeline = kit.pipeline(model=model(), score_cache_size=0)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 2) == EXIT_OK
    assert len(kit.broker.read(DLQ)) == 1
    assert [output["note_id"] for output in kit.outputs()] == ["n1"]
