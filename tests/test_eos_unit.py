"""Exactly-once against in-memory fakes: where a rewind goes without a committed offset, how
long ``init_transactions`` may take, and client errors that end as one ``fatal_error`` line."""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

import pytest
import structlog
from confluent_kafka import KafkaError, KafkaException

from tests.fakes import FakeBroker, FakeConsumer, FakeProducer
from tests.test_pipeline_unit import IN, OUT, Kit, _note
from worker.errors import FatalError
from worker.kafka.commits import TransactionalOffsets
from worker.metrics import Metrics
from worker.pipeline import EXIT_FATAL, EXIT_OK

_FENCED = KafkaError(KafkaError._FENCED, "Producer fenced by newer instance", fatal=True)
_ABORTABLE = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)


def test_an_abort_before_the_first_commit_rewinds_to_where_the_assignment_started() -> None:
    """With auto_offset_reset=latest the reset policy would skip every record read since the
    start; the rewind goes back to the first offset this assignment fetched instead."""
    kit = Kit(partitions=1)
    kit.fill(10, partitions=1)
    kit.producer.fail_commit = [_ABORTABLE]
    pipeline = kit.pipeline(
        processing_guarantee="exactly-once", commit_interval_ms=100, auto_offset_reset="latest"
    )
    assert kit.run(pipeline, lambda: kit.broker.committed.get((IN, 0)) == 10) == EXIT_OK
    assert kit.producer.aborted == 1
    assert sorted(kit.sources()) == [(0, i) for i in range(10)]


def _fatal_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] in ("fatal_error", "unexpected_error")]


def _run_fatal(kit: Kit) -> list[MutableMapping[str, Any]]:
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    with structlog.testing.capture_logs() as logs:
        assert kit.run(pipeline, lambda: False, timeout_s=10) == EXIT_FATAL
    return _fatal_lines(logs)


def test_a_producer_fenced_while_polling_is_a_fatal_error_that_says_so() -> None:
    class Fenced(FakeProducer):
        def poll(self, timeout: float = 0.0) -> int:
            if self.in_transaction is not None:
                raise KafkaException(_FENCED)
            return super().poll(timeout)

    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    kit.producer = Fenced(kit.broker)
    [line] = _run_fatal(kit)
    assert line["event"] == "fatal_error" and "fenced" in line["error"]


def test_a_producer_fenced_when_a_transaction_begins_is_a_fatal_error_that_says_so() -> None:
    class Fenced(FakeProducer):
        def begin_transaction(self) -> None:
            raise KafkaException(_FENCED)

    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    kit.producer = Fenced(kit.broker)
    [line] = _run_fatal(kit)
    assert line["event"] == "fatal_error" and "fenced" in line["error"]


def test_committed_offsets_unreadable_in_a_rewind_is_a_fatal_error_that_says_so() -> None:
    class NoCoordinator(FakeConsumer):
        def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Local: Timed out"))

    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    kit.consumer = NoCoordinator(kit.broker)
    kit.producer.fail_commit = [_ABORTABLE]
    [line] = _run_fatal(kit)
    assert line["event"] == "fatal_error"
    assert line["error"] == "rewind: committed offsets unknown: Local: Timed out"


class _NoCoordinator(FakeProducer):
    """``init_transactions`` times out (retriable) the first ``failures`` times."""

    def __init__(self, broker: FakeBroker, failures: int) -> None:
        super().__init__(broker)
        self.failures = failures
        self.tries = 0

    def init_transactions(self, timeout: float) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise KafkaException(
                KafkaError(
                    KafkaError._TIMED_OUT,
                    "Timed out waiting for operation to finish, retry call to resume",
                    retriable=True,
                )
            )


def _committer(producer: FakeProducer, budget_s: float, waits: list[float]) -> Any:
    return TransactionalOffsets(
        consumer=FakeConsumer(producer.broker),
        producer=producer,
        metrics=Metrics(),
        interval_s=1.0,
        collect=lambda: None,
        rewind=lambda: None,
        init_budget_s=budget_s,
        on_waiting=lambda: waits.append(time.monotonic()),
    )


def test_transactions_that_never_become_ready_end_in_bounded_time_with_the_likely_cause() -> None:
    producer = _NoCoordinator(FakeBroker(), failures=1_000)
    waits: list[float] = []
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs, pytest.raises(FatalError) as raised:
        _committer(producer, 3.0, waits).initialise()
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert message.startswith("transaction init: not ready after 2 s")
    assert "transaction.state.log.replication.factor" in message
    warnings = [entry for entry in logs if entry["event"] == "transactions_not_ready"]
    assert len(warnings) == producer.tries - 1 >= 1
    assert "transaction state log" in warnings[0]["hint"]
    assert len(waits) == producer.tries  # the heartbeat hook ran after every try


def test_transactions_that_become_ready_after_a_few_tries_start() -> None:
    producer = _NoCoordinator(FakeBroker(), failures=2)
    _committer(producer, 20.0, []).initialise()
    assert producer.tries == 3


def test_a_fatal_init_error_is_not_retried() -> None:
    class Fenced(FakeProducer):
        tries = 0

        def init_transactions(self, timeout: float) -> None:
            self.tries += 1
            raise KafkaException(_FENCED)

    producer = Fenced(FakeBroker())
    with pytest.raises(FatalError, match="transaction init: Producer fenced"):
        _committer(producer, 20.0, []).initialise()
    assert producer.tries == 1


def test_the_fatal_path_aborts_the_open_transaction_at_once() -> None:
    """A worker that stops for a fatal error (here: a note that kills the tokenizer) aborts
    its open transaction, so read_committed readers of those output partitions do not wait
    for it to time out (with a random transactional id nobody else would abort it)."""
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=60_000)

    def crash_once_outputs_are_in_the_transaction() -> bool:
        if kit.producer.in_transaction and len(kit.broker.logs[(IN, 0)]) == 5:
            kit.broker.append(IN, _note(5, "It went CRASH here."), key=b"k5")
        return False

    assert kit.run(pipeline, crash_once_outputs_are_in_the_transaction, timeout_s=10) == EXIT_FATAL
    assert kit.producer.aborted == 1
    assert kit.producer.in_transaction is None
    assert kit.broker.read(OUT) == [] and kit.broker.committed == {}
