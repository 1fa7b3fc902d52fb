"""Refused outputs and rewinds against the real broker: a record the brokers refuse is
dead-lettered alone and its partition moves on (both guarantees); an exactly-once abort before
the group's first commit reads again from where the assignment started."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from devkit.kafka_admin import create_topics
from tests.fakes import WordModel
from tests.kafka_helpers import KafkaTestKit, Record, note
from tests.test_pipeline_unit import PROVENANCE
from worker.kafka.ports import KafkaClients, kafka_clients
from worker.pipeline import EXIT_OK, Pipeline
from worker.runs import run_until

pytestmark = pytest.mark.kafka


def _topics(kit: KafkaTestKit, *, compacted_output: bool) -> None:
    create_topics(kit.bootstrap, {kit.input: 1, kit.dlq: 1})
    config = {"cleanup.policy": "compact"} if compacted_output else {}
    create_topics(kit.bootstrap, {kit.output: 1}, topic_config=config)
    admin = AdminClient({"bootstrap.servers": kit.bootstrap})
    wanted = {kit.input, kit.output, kit.dlq}
    deadline = time.monotonic() + 30
    while not wanted <= set(admin.list_topics(timeout=10).topics) and time.monotonic() < deadline:
        time.sleep(0.2)


def _committed_reaches(kit: KafkaTestKit, count: int, timeout_s: float) -> Callable[[], bool]:
    deadline = time.monotonic() + timeout_s
    checked = [0.0]

    def done() -> bool:
        now = time.monotonic()
        if now > deadline:
            return True
        if now - checked[0] < 0.5:
            return False
        checked[0] = now
        return kit.committed().get(0) == count

    return done


def _output_offsets(records: list[Record]) -> list[int]:
    return sorted(r.json()["biomarker"]["provenance"]["source"]["offset"] for r in records)


def _dead_letters(records: list[Record]) -> list[tuple[int, bytes]]:
    return [
        (int(r.headers["x-biomarker-source-offset"]), r.headers["x-biomarker-error-class"])
        for r in records
    ]


def _pipeline(kit: KafkaTestKit, clients: KafkaClients | None = None, **values: Any) -> Pipeline:
    settings = kit.settings(commit_interval_ms=200, drain_timeout_s=5, **values)
    return Pipeline(settings=settings, model=WordModel(), provenance=PROVENANCE, clients=clients)


def test_exactly_once_a_refused_output_is_dead_lettered_and_its_partition_moves_on(
    kit: KafkaTestKit,
) -> None:
    """A record with no key whose output goes to a compacted topic (INVALID_RECORD): the
    transaction aborts, and the record ends as one output_rejected dead letter."""
    _topics(kit, compacted_output=True)
    kit.produce([note(0), note(1), note(2)], keys=[b"a", None, b"c"])
    pipeline = _pipeline(kit, processing_guarantee="exactly-once", group_instance_id="w0")
    assert run_until(pipeline, _committed_reaches(kit, 3, 60)) == EXIT_OK
    assert kit.committed() == {0: 3}
    assert _output_offsets(kit.read(kit.output, 2)) == [0, 2]  # read_committed
    assert _dead_letters(kit.read(kit.dlq, 1)) == [(1, b"output_rejected")]


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_one_keyless_input_among_ten_is_the_only_one_dead_lettered(
    kit: KafkaTestKit, guarantee: str
) -> None:
    """The brokers refuse the whole produce batch the keyless output is in: its valid
    neighbours are produced again by themselves, not dead-lettered with it."""
    _topics(kit, compacted_output=True)
    keys = [None if i == 5 else f"k{i}".encode() for i in range(10)]
    kit.produce([note(i) for i in range(10)], keys=keys)
    pipeline = _pipeline(kit, processing_guarantee=guarantee, group_instance_id="w0")
    if guarantee == "exactly-once":
        done = _committed_reaches(kit, 10, 60)
    else:
        deadline = time.monotonic() + 60
        done = lambda: pipeline.delivered >= 10 or time.monotonic() > deadline  # noqa: E731
    assert run_until(pipeline, done) == EXIT_OK
    assert kit.committed() == {0: 10}
    assert _output_offsets(kit.read(kit.output, 9)) == [i for i in range(10) if i != 5]
    assert _dead_letters(kit.read(kit.dlq, 1)) == [(5, b"output_rejected")]


class _FirstCommitAborts:
    """The real producer, whose first ``commit_transaction`` after ``armed`` fails with an
    abortable error (as librdkafka's does after a failed delivery or a coordinator change)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = threading.Event()
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit_transaction(self, timeout: float) -> None:
        if self.armed.is_set() and not self.failed:
            self.failed = True
            error = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)
            raise KafkaException(error)
        self.inner.commit_transaction(timeout)


def test_exactly_once_latest_abort_before_the_first_commit_reads_again_what_it_read(
    kit: KafkaTestKit,
) -> None:
    """auto_offset_reset=latest and a new group: the rewind must not apply the reset policy
    again (that would skip every record read since the assignment)."""
    _topics(kit, compacted_output=False)
    settings = kit.settings(
        processing_guarantee="exactly-once", auto_offset_reset="latest", commit_interval_ms=200
    )
    real = kafka_clients(settings, group_id=None, hooks={})
    producer = _FirstCommitAborts(real.producer)
    clients = KafkaClients(consumer=real.consumer, producer=producer)
    pipeline = _pipeline(
        kit, clients, processing_guarantee="exactly-once", auto_offset_reset="latest"
    )
    t0 = time.monotonic()

    def feed() -> None:
        while not pipeline.tracker.partitions and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        time.sleep(5)  # the reset policy places the consumer at the end (then still empty)
        producer.armed.set()
        kit.produce([note(i) for i in range(5)], keys=[f"k{i}".encode() for i in range(5)])
        while not producer.failed and time.monotonic() - t0 < 30:
            time.sleep(0.1)
        kit.produce([note(i) for i in range(5, 10)], keys=[f"k{i}".encode() for i in range(5, 10)])

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    assert run_until(pipeline, _committed_reaches(kit, 10, 60)) == EXIT_OK
    feeder.join(5)
    assert producer.failed
    assert _output_offsets(kit.read(kit.output, 10)) == list(range(10))
    assert kit.committed() == {0: 10}
