"""Bounded replays against the in-memory fakes: resuming a range partly or wholly committed, the
exit code of a replay cut short (signal, aborted last transaction), rewinds that stay inside the
range, the default group, and the one-line errors of odd bounds."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from tests.fakes import FakeBroker, FakeConsumer, FakeProducer, WordModel
from tests.test_pipeline_unit import IN, Kit
from worker.cli import main
from worker.cli.replay import run_replay
from worker.errors import UsageError
from worker.kafka.replay import ReplayPlan, Window, parse_offsets, parse_timestamp, plan_replay
from worker.kafka.replay import replay_group as group_of
from worker.pipeline import EXIT_FATAL, EXIT_OK, Pipeline

ABORTABLE = KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True)


@pytest.fixture(autouse=True)
def _signal_handlers() -> Iterator[None]:
    """run_replay installs SIGTERM/SIGINT handlers: put pytest's back afterwards."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _run(kit: Kit, pipeline: Pipeline, timeout_s: float = 10) -> tuple[int, float]:
    """Run until the replay stops by itself (or the safety deadline); exit code, seconds."""
    started = time.monotonic()
    code = kit.run(pipeline, lambda: False, timeout_s=timeout_s)
    return code, time.monotonic() - started


# ---------------------------------------------------------------- resuming a committed range
def test_a_retry_counts_partitions_committed_at_their_end_as_done() -> None:
    kit = Kit(partitions=2)
    kit.fill(20)  # 10 records per partition
    kit.broker.committed[(IN, 0)] = 10  # an earlier attempt finished partition 0
    kit.broker.committed[(IN, 1)] = 4
    pipeline = kit.pipeline(replay=ReplayPlan(topic=IN, ranges={0: (0, 10), 1: (0, 10)}))
    code, elapsed = _run(kit, pipeline)
    assert code == EXIT_OK and elapsed < 5  # ended by itself, not by the deadline
    assert pipeline.source.replay_finished
    assert sorted(kit.sources()) == [(1, offset) for offset in range(4, 10)]
    assert kit.broker.committed == {(IN, 0): 10, (IN, 1): 10}


def test_a_replay_whose_whole_range_is_committed_ends_at_once() -> None:
    kit = Kit(partitions=2)
    kit.fill(20)
    kit.broker.committed.update({(IN, 0): 10, (IN, 1): 10})
    plan = ReplayPlan(topic=IN, ranges={0: (0, 10), 1: (0, 10)})
    pipeline = kit.pipeline(replay=plan)
    deadline = threading.Timer(5, pipeline.request_stop)  # a replay that hung: not finished
    deadline.start()
    try:
        assert run_replay(pipeline, plan, pipeline.settings) == EXIT_OK
    finally:
        deadline.cancel()
    assert pipeline.source.replay_finished and kit.outputs() == []


def test_done_at_start_only_names_non_empty_ranges_committed_at_their_end() -> None:
    plan = ReplayPlan(topic=IN, ranges={0: (0, 10), 1: (0, 10), 2: (5, 5), 3: (0, 10)})
    assert plan.done_at_start({0: 10, 1: 4, 2: 5, 3: 12}) == {0: 10}
    assert [tp.partition for tp in plan.assignment({0: 10, 1: 4, 3: 12})] == [1, 3]


# ---------------------------------------------------------------- stopped by a signal
def _signal_soon(sig: signal.Signals, after_s: float) -> None:
    def send() -> None:
        time.sleep(after_s)
        os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_replay_stopped_by_a_signal_before_its_end_exits_130_with_its_summary_on_stderr(
    sig: signal.Signals, capsys: pytest.CaptureFixture[str]
) -> None:
    kit = Kit(partitions=1)
    kit.fill(2000, partitions=1)
    plan = ReplayPlan(topic=IN, ranges={0: (0, 2000)})
    pipeline = kit.pipeline(
        model=WordModel(delay_s=0.05), replay=plan, max_inflight_notes=4, consume_batch_size=2
    )
    _signal_soon(sig, 0.3)
    assert run_replay(pipeline, plan, pipeline.settings) == 130
    captured = capsys.readouterr()
    assert "stopped before the end of its range" in captured.err
    assert "records in range" not in captured.out
    assert 0 < kit.broker.committed[(IN, 0)] < 2000  # a retry resumes from here


def test_a_replay_signalled_after_it_finished_its_range_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kit = Kit(partitions=1)
    kit.fill(10, partitions=1)
    close = kit.consumer.close

    def signalled_while_closing() -> None:  # the signal comes during the drain's close
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        close()

    kit.consumer.close = signalled_while_closing  # type: ignore[method-assign]
    plan = ReplayPlan(topic=IN, ranges={0: (0, 10)})
    pipeline = kit.pipeline(replay=plan)
    assert run_replay(pipeline, plan, pipeline.settings) == EXIT_OK
    assert "10 records in range, 10 delivered" in capsys.readouterr().out


def test_a_replay_whose_last_records_complete_during_the_drain_exits_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM while the rest of the range is in flight: the drain delivers and commits it all."""
    kit = Kit(partitions=1)
    kit.fill(4, partitions=1)
    plan = ReplayPlan(topic=IN, ranges={0: (0, 4)})
    pipeline = kit.pipeline(model=WordModel(delay_s=0.6), replay=plan, drain_timeout_s=20)
    _signal_soon(signal.SIGTERM, 0.3)
    assert run_replay(pipeline, plan, pipeline.settings) == EXIT_OK
    assert kit.broker.committed[(IN, 0)] == 4
    assert "4 records in range, 4 delivered" in capsys.readouterr().out


# ---------------------------------------------------------------- exactly-once
def test_an_exactly_once_replay_whose_last_transaction_aborts_exits_1_and_a_retry_ends_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    kit = Kit(partitions=1)
    kit.fill(20, partitions=1)
    plan = ReplayPlan(topic=IN, ranges={0: (10, 15)})
    eos = {"processing_guarantee": "exactly-once", "commit_interval_ms": 60_000}
    kit.producer.fail_commit = [ABORTABLE]
    pipeline = kit.pipeline(replay=plan, **eos)
    assert run_replay(pipeline, plan, pipeline.settings) == EXIT_FATAL
    assert kit.producer.aborted == 1 and kit.broker.committed == {} and kit.outputs() == []
    assert "stopped before the end of its range" in capsys.readouterr().err
    # the Job's retry: a new process in the same group
    kit.consumer, kit.producer = FakeConsumer(kit.broker), FakeProducer(kit.broker)
    retry = kit.pipeline(replay=plan, **eos)
    assert run_replay(retry, plan, retry.settings) == EXIT_OK
    assert sorted(offset for _p, offset in kit.sources()) == list(range(10, 15))
    assert kit.broker.committed == {(IN, 0): 15}


@pytest.mark.parametrize("reset", ["earliest", "latest"])
def test_an_exactly_once_rewind_stays_inside_the_replay_range(reset: str) -> None:
    kit = Kit(partitions=1)
    kit.fill(130, partitions=1)
    seeks: list[int] = []
    seek = kit.consumer.seek

    def recorded(tp: TopicPartition) -> None:
        seeks.append(tp.offset)
        seek(tp)

    kit.consumer.seek = recorded  # type: ignore[method-assign]
    kit.producer.fail_commit = [ABORTABLE]  # the first transaction, before anything committed
    pipeline = kit.pipeline(
        model=WordModel(delay_s=0.03),
        replay=ReplayPlan(topic=IN, ranges={0: (30, 130)}),
        processing_guarantee="exactly-once",
        commit_interval_ms=100,
        consume_batch_size=1,
        max_inflight_notes=2,
        auto_offset_reset=reset,
    )
    code, _elapsed = _run(kit, pipeline, timeout_s=20)
    assert code == EXIT_OK and kit.producer.aborted == 1 and pipeline.source.replay_finished
    rewinds = [offset for offset in seeks if offset == 30 or offset < 0]
    assert rewinds == [30]  # back to the range's start, never a logical offset
    assert sorted(offset for _p, offset in kit.sources()) == list(range(30, 130))
    assert kit.broker.committed == {(IN, 0): 130}


def test_records_below_the_range_start_are_never_taken() -> None:
    kit = Kit(partitions=1)
    kit.fill(10, partitions=1)
    assign = kit.consumer.assign

    def from_the_log_start(partitions: list[TopicPartition]) -> None:
        assign([TopicPartition(tp.topic, tp.partition, 0) for tp in partitions])

    kit.consumer.assign = from_the_log_start  # type: ignore[method-assign]
    pipeline = kit.pipeline(replay=ReplayPlan(topic=IN, ranges={0: (5, 10)}))
    code, _elapsed = _run(kit, pipeline)
    assert code == EXIT_OK
    assert kit.sources() == [(0, offset) for offset in range(5, 10)]


# ---------------------------------------------------------------- the default group
def test_the_default_group_is_one_per_window_input_and_output_and_stable() -> None:
    def group(window: Window, topic: str = IN, output: str = "out") -> str:
        return group_of("live", topic, output, window)

    day = Window(from_timestamp=parse_timestamp("2026-01-01T00:00:00Z"))
    same_day = Window(from_timestamp=1767225600000)
    assert group(day) == group(same_day) == group(day)  # a retry resumes
    assert group(day).startswith("live-replay-")
    others = {
        group(Window(from_timestamp=1767225600001)),
        group(Window(to_timestamp=1767225600000)),
        group(Window(from_offsets={0: 5})),
        group(Window(from_offsets={0: 5}, to_offsets={0: 9})),
        group(day, topic="other-notes"),
        group(day, output="other-out"),
    }
    assert group(day) not in others and len(others) == 6


def test_the_cli_gives_the_planning_consumer_the_derived_group_and_the_json_logger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configs: list[dict[str, Any]] = []

    def refused(config: dict[str, Any]) -> None:  # stop before any broker is asked
        configs.append(config)
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "stop here"))

    monkeypatch.setattr("worker.cli.replay.Consumer", refused)
    monkeypatch.setenv("BIOMARKER_GROUP_ID", "live")
    for window in (["--to-offsets", "0:10"], ["--to-offsets", "0:20"], ["--to-offsets", "0:10"]):
        assert main(["replay", "--input-topic", IN, "--output-topic", "out", *window]) == 2
    groups = [config["group.id"] for config in configs]
    assert groups[0] == groups[2] != groups[1]
    assert groups[0] == group_of("live", IN, "out", Window(to_offsets={0: 10}))
    assert all(config["logger"].name == "biomarker.librdkafka" for config in configs)


def test_the_group_id_help_says_how_the_default_is_made() -> None:
    from worker.cli import build_parser

    parser = build_parser()
    help_text = parser._subparsers._group_actions[0].choices["replay"].format_help()  # type: ignore[union-attr]
    assert "replay-<hash of the window" in " ".join(help_text.split())


# ---------------------------------------------------------------- bounds and numbers
class _PlanningConsumer:
    """What plan_replay asks of a consumer, over a FakeBroker."""

    def __init__(self, broker: FakeBroker) -> None:
        self._consumer = FakeConsumer(broker)
        self._broker = broker

    def list_topics(self, topic: str, timeout: float) -> Any:
        partitions = {p: None for (t, p) in self._broker.logs if t == topic}

        class _Topic:
            error = None

        described = _Topic()
        described.partitions = partitions  # type: ignore[attr-defined]

        class _Metadata:
            topics = {topic: described} if partitions else {}

        return _Metadata()

    def get_watermark_offsets(self, tp: TopicPartition, **_: Any) -> tuple[int, int]:
        return self._consumer.get_watermark_offsets(tp)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ({"to_offsets": {7: 5}}, "no partition 7"),
        ({"from_offsets": {0: 2}, "to_offsets": {1: 5}}, "names partition 1"),
    ],
)
def test_to_offsets_for_a_partition_that_would_be_ignored_are_a_usage_error(
    bounds: dict[str, Any], message: str
) -> None:
    kit = Kit(partitions=3)
    kit.fill(30, partitions=3)
    with pytest.raises(UsageError, match=message):
        plan_replay(_PlanningConsumer(kit.broker), IN, **bounds)  # type: ignore[arg-type]
    plan = plan_replay(
        _PlanningConsumer(kit.broker),  # type: ignore[arg-type]
        IN,
        from_offsets={0: 2, 1: 3},
        to_offsets={1: 5},
    )
    assert plan.ranges == {0: (2, 10), 1: (3, 5)}


@pytest.mark.parametrize("spec", ["0:1\u00b2", "\u00b2:1", "0:99999999999999999999"])
def test_odd_offsets_are_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError):
        parse_offsets(spec)


@pytest.mark.parametrize(
    "value",
    ["\u00b2", "1\u00b2", "99999999999999999999", "1969-12-31T23:59:59.999Z", "1900-01-01"],
)
def test_odd_timestamps_are_a_usage_error(value: str) -> None:
    with pytest.raises(UsageError):
        parse_timestamp(value)


def test_timestamps_in_range_parse() -> None:
    assert parse_timestamp("0") == 0
    assert parse_timestamp("1970-01-01T00:00:00.001Z") == 1
    assert parse_timestamp(str(2**63 - 1)) == 2**63 - 1


@pytest.mark.parametrize(
    "args",
    [
        ["--from-offsets", "0:1\u00b2"],
        ["--to-timestamp", "1\u00b2"],
        ["--from-timestamp", "1969-12-31T23:59:59Z"],
        ["--rate-limit", "inf"],
        ["--rate-limit", "nan"],
        ["--rate-limit", "0"],
    ],
)
def test_odd_numbers_on_the_command_line_are_one_line_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_brokers(_config: dict[str, Any]) -> None:  # reached only when the flags passed
        raise AssertionError("the flags were accepted")

    monkeypatch.setattr("worker.cli.replay.Consumer", no_brokers)
    assert main(["replay", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("biomarker-worker replay: error:")


def test_a_stuck_call_ends_run_and_replay_through_os_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    """run and replay share the exit that does not wait for a stuck client or model call."""
    import inspect
    from types import SimpleNamespace

    from worker.cli import replay as replay_command
    from worker.cli import run as run_command

    exits: list[int] = []
    monkeypatch.setattr(run_command.os, "_exit", exits.append)
    run_command.exit_now_if_hung(SimpleNamespace(hung=False), 0)  # type: ignore[arg-type]
    run_command.exit_now_if_hung(SimpleNamespace(hung=True), 130)  # type: ignore[arg-type]
    assert exits == [130]
    assert "exit_now_if_hung(pipeline, code)" in inspect.getsource(replay_command.run_replay)
