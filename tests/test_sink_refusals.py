"""Outputs the brokers refuse, against in-memory fakes: a refused batch blames only its bad
record, and with exactly-once a refusal aborts the transaction and the partition still moves on
(tests/test_eos_refusals_kafka.py is the proof on a real broker)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from tests.fakes import FakeProducer
from tests.test_pipeline_unit import DLQ, IN, OUT, Kit, _note
from worker.pipeline import EXIT_OK

GUARANTEES = ["at-least-once", "exactly-once"]


def _fill(kit: Kit, count: int, keyless: set[int]) -> None:
    for i in range(count):
        key = None if i in keyless else f"k{i}".encode()
        kit.broker.append(IN, _note(i), key=key)


def _dead_letters(kit: Kit) -> list[tuple[int, bytes]]:
    return [
        (
            int(dict(m.headers())["x-biomarker-source-offset"]),
            dict(m.headers())["x-biomarker-error-class"],
        )
        for m in kit.broker.read(DLQ)
    ]


def _count(pipeline: Any, name: str, labels: dict[str, str] | None = None) -> float:
    value = pipeline.metrics.registry.get_sample_value(name, labels or {})
    return value or 0.0


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_one_keyless_record_in_a_refused_batch_is_the_only_dead_letter(guarantee: str) -> None:
    kit = Kit(partitions=1)
    kit.producer.compacted = {OUT}
    _fill(kit, 10, keyless={5})
    pipeline = kit.pipeline(processing_guarantee=guarantee, commit_interval_ms=100)
    assert kit.run(pipeline, lambda: pipeline.delivered >= 10) == EXIT_OK
    assert sorted(kit.sources()) == [(0, i) for i in range(10) if i != 5]
    assert _dead_letters(kit) == [(5, b"output_rejected")]
    assert kit.broker.committed == {(IN, 0): 10}


def test_exactly_once_a_refused_output_aborts_and_the_record_is_dead_lettered() -> None:
    """librdkafka accepts nothing more in a transaction once a delivery failed: the worker
    aborts, and on the record's next reads produces it by itself, then its dead letter."""
    kit = Kit(partitions=1)
    kit.producer.compacted = {OUT}
    _fill(kit, 3, keyless={1})
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    done = lambda: kit.broker.committed.get((IN, 0)) == 3  # noqa: E731
    assert kit.run(pipeline, done) == EXIT_OK
    assert pipeline.errors.fatal is None
    assert sorted(kit.sources()) == [(0, 0), (0, 2)]
    assert _dead_letters(kit) == [(1, b"output_rejected")]
    assert kit.producer.aborted == 2  # its batch refused, then itself
    assert pipeline._committer.refusals is not None
    assert len(pipeline._committer.refusals) == 0  # forgotten once committed past
    # what the aborted transactions held is not counted as delivered
    assert _count(pipeline, "biomarker_events_out_total") == 2
    assert _count(pipeline, "biomarker_dead_letters_total", {"reason": "output_rejected"}) == 1


def test_exactly_once_a_refused_dead_letter_goes_out_truncated_on_the_next_read() -> None:
    kit = Kit(partitions=1)
    original = b"x" * 100_000  # not JSON: a dead letter
    kit.broker.append(IN, original, key=b"k")
    kit.broker.append(IN, _note(1), key=b"k1")
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    kit.producer.refuse = lambda topic, value: (
        too_large if topic == DLQ and len(value or b"") > 70_000 else None
    )
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    assert kit.run(pipeline, lambda: kit.broker.committed.get((IN, 0)) == 2) == EXIT_OK
    [letter] = kit.broker.read(DLQ)
    assert dict(letter.headers())["x-biomarker-truncated"] == b"true"
    assert letter.value() == original[: len(letter.value() or b"")]
    assert kit.sources() == [(0, 1)]


def test_outputs_acknowledged_inside_an_aborted_transaction_are_not_counted() -> None:
    """Reports that arrive after the abort (the brokers had acknowledged the outputs inside
    the transaction) are neither delivered nor counted: the outputs are produced again."""

    class LateReports(FakeProducer):
        stalled = True
        late: tuple[Any, ...] = ()

        def poll(self, timeout: float = 0.0) -> int:
            late, self.late = self.late, ()
            for _topic, message, on_delivery in late:  # acknowledged, then aborted
                on_delivery(None, message)
            return 0 if self.stalled else super().poll(timeout)

        def flush(self, timeout: float = 0.0) -> int:
            return len(self.queued) if self.stalled else super().flush(timeout)

        def abort_transaction(self, timeout: float) -> None:
            self.aborted += 1
            self.stalled = False
            self.late, self.queued = tuple(self.queued), []
            self.in_transaction = None

    kit = Kit(partitions=1)
    kit.fill(3, partitions=1)
    kit.producer = LateReports(kit.broker)
    pipeline = kit.pipeline(processing_guarantee="exactly-once", commit_interval_ms=100)
    assert kit.run(pipeline, lambda: kit.broker.committed.get((IN, 0)) == 3) == EXIT_OK
    assert kit.producer.aborted == 1
    assert sorted(kit.sources()) == [(0, 0), (0, 1), (0, 2)]
    assert pipeline.delivered == 3
    assert _count(pipeline, "biomarker_events_out_total") == 3


def test_at_least_once_two_bad_records_in_one_batch_are_each_dead_lettered_alone() -> None:
    kit = Kit(partitions=1)
    kit.producer.compacted = {OUT}
    _fill(kit, 8, keyless={2, 6})
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 8) == EXIT_OK
    assert sorted(kit.sources()) == [(0, i) for i in (0, 1, 3, 4, 5, 7)]
    assert sorted(_dead_letters(kit)) == [(2, b"output_rejected"), (6, b"output_rejected")]


class _StallsAfterARefusal(FakeProducer):
    """After the first refused batch the brokers stall for a while: flushes time out (nothing
    is delivered) a number of times, then everything is served again."""

    stalls = 0
    refused_once = False

    def poll(self, timeout: float = 0.0) -> int:
        if self.stalls:
            return 0
        served = [message for _topic, message, _callback in self.queued]
        count = super().poll(timeout)
        if not self.refused_once and any(message.key() is None for message in served):
            self.refused_once = True
            self.stalls = 14
        return count

    def flush(self, timeout: float = 0.0) -> int:
        if self.stalls:
            self.stalls -= 1
            return len(self.queued)  # timed out: nothing delivered
        return super().flush(timeout)


def test_outputs_to_retry_alone_wait_while_the_brokers_stall() -> None:
    """A suspect is produced by itself only once the queue is empty: while the flush before it
    times out, the suspects wait (else they would share a batch again, and its refusal would
    dead-letter every innocent one of them)."""
    kit = Kit(partitions=1)
    kit.producer = _StallsAfterARefusal(kit.broker)
    kit.producer.compacted = {OUT}
    _fill(kit, 10, keyless={5})
    pipeline = kit.pipeline()
    assert kit.run(pipeline, lambda: pipeline.delivered >= 10) == EXIT_OK
    assert sorted(kit.sources()) == [(0, i) for i in range(10) if i != 5]
    assert _dead_letters(kit) == [(5, b"output_rejected")]
