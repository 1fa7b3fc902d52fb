"""Worker processes against the real broker: SIGKILL, rebalances, SIGTERM, PHI-free logs.

The crash, membership and drain tests run once per runtime (confluent-kafka and faust), and once
more with the confluent runtime's host work in two host processes (``host_processes`` 2).
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from tests.kafka_helpers import KafkaTestKit, Record, note, start_worker

pytestmark = pytest.mark.kafka

_LONG = (
    "HISTORY OF PRESENT ILLNESS:  The patient is a 60-year-old man seen today. "
    "Serum PSA was 4.2 ng/mL. Hgb 12.3, creatinine 1.1. He denies chest pain. "
    "The knee procedure was tolerated well. Labs were otherwise normal. Plan as below."
)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def sources(records: list[Record]) -> Counter[tuple[int, int]]:
    found: Counter[tuple[int, int]] = Counter()
    for record in records:
        source = record.json()["biomarker"]["provenance"]["source"]
        found[(source["partition"], source["offset"])] += 1
    return found


def joined(log_path: Path) -> bool:
    return "partitions_assigned" in log_path.read_text()


def stop(process: subprocess.Popen[bytes], timeout: float = 60) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


def inputs_per_partition(kit: KafkaTestKit, total: int) -> dict[int, int]:
    """How many records each input partition holds (from a full read of the input topic)."""
    return dict(Counter(record.partition for record in kit.read(kit.input, total)))


@dataclass(frozen=True)
class Scale:
    """How large each runtime's run of a test is: the faust runtime's runs are smaller (its
    eager rebalances and single-threaded event loop are slower on this 2-core machine); each run
    still crosses the property it proves (mid-stream kill, mid-stream stop, members joining and
    leaving with work in flight)."""

    notes: int  # notes in the stream
    first: int  # commits before the kill or stop
    limit_s: float  # time for the rest to be committed
    env: dict[str, str] = field(default_factory=dict)  # extra settings for every worker


RUNTIMES = ("confluent", "confluent-hosts", "faust")


def runtime_env(kit: KafkaTestKit, model_dir: Path, runtime: str, **extra: str) -> dict[str, str]:
    """``confluent-hosts``: the confluent runtime with two host processes."""
    if runtime == "confluent-hosts":
        return kit.env(model_dir, runtime="confluent", host_processes="2", **extra)
    return kit.env(model_dir, runtime=runtime, **extra)


_SIGKILL = {
    "confluent": Scale(3000, 300, 240, {"token_budget": "512", "max_inflight_notes": "400"}),
    "confluent-hosts": Scale(2000, 300, 240, {"token_budget": "512", "max_inflight_notes": "400"}),
    "faust": Scale(1500, 200, 180, {"token_budget": "512", "max_inflight_notes": "400"}),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigkill_mid_stream_never_commits_past_undelivered_output(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path, runtime: str
) -> None:
    scale = _SIGKILL[runtime]
    kit.create(partitions=3)
    count = scale.notes
    kit.produce([note(i, _LONG) for i in range(count)])
    env = runtime_env(kit, tiny_model_dir, runtime, **scale.env)
    worker = start_worker(env, tmp_path / "worker-1.log")
    samples: list[dict[int, int]] = []

    def progressed() -> bool:
        samples.append(kit.committed())
        return sum(samples[-1].values()) >= scale.first

    wait_for(progressed, 120, "first commits")
    worker.kill()  # SIGKILL while batches are in flight
    worker.wait(timeout=30)

    at_kill = kit.committed()
    delivered = sources(kit.read(kit.output, count, timeout=5))
    assert sum(at_kill.values()) < count, "the kill must land mid-stream"
    for sample in [*samples, at_kill]:
        for partition, committed in sample.items():
            missing = [o for o in range(committed) if (partition, o) not in delivered]
            assert not missing, (
                f"committed {committed} on p{partition} without outputs {missing[:5]}"
            )

    worker = start_worker(env, tmp_path / "worker-2.log")
    wait_for(lambda: sum(kit.committed().values()) == count, scale.limit_s, "all committed")
    assert stop(worker) == 0
    final = sources(kit.read(kit.output, count))
    per_partition = inputs_per_partition(kit, count)
    for partition, size in per_partition.items():
        assert all((partition, o) in final for o in range(size))
    assert sum(per_partition.values()) == count


_MEMBERS = {
    "confluent": Scale(5000, 200, 240, {"revoke_timeout_s": "5"}),
    "confluent-hosts": Scale(2000, 200, 240, {"revoke_timeout_s": "5"}),
    "faust": Scale(2000, 100, 240, {"revoke_timeout_s": "5", "token_budget": "512"}),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_three_workers_join_and_leave_during_stream_lose_nothing(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path, runtime: str
) -> None:
    scale = _MEMBERS[runtime]
    kit.create(partitions=6)
    count = scale.notes
    step = count // 5
    stages = [(0, step), (step, 2 * step), (2 * step, 3 * step), (3 * step, count)]
    env = runtime_env(kit, tiny_model_dir, runtime, **scale.env)

    def produce(stage: int) -> None:
        first, last = stages[stage]
        kit.produce([note(i, _LONG) for i in range(first, last)])

    produce(0)
    workers = [start_worker(env, tmp_path / "worker-a.log")]
    wait_for(lambda: sum(kit.committed().values()) > scale.first, 120, "worker a progress")
    for stage, name in ((1, "b"), (2, "c")):  # b and c join while a backlog is being worked
        workers.append(start_worker(env, tmp_path / f"worker-{name}.log"))
        produce(stage)
        wait_for(lambda n=name: joined(tmp_path / f"worker-{n}.log"), 120, f"worker {name} joins")
    produce(3)
    assert sum(kit.committed().values()) < count, "a must leave with work in flight"
    assert stop(workers[0]) == 0  # a leaves while the stream is running
    wait_for(lambda: sum(kit.committed().values()) == count, scale.limit_s, "all committed")
    assert [stop(w) for w in workers[1:]] == [0, 0]

    delivered = sources(kit.read(kit.output, count))
    per_partition = inputs_per_partition(kit, count)
    assert sum(per_partition.values()) == count
    lost = [
        (p, o) for p, size in per_partition.items() for o in range(size) if (p, o) not in delivered
    ]
    assert not lost
    logs = "".join((tmp_path / f"worker-{n}.log").read_text() for n in "abc")
    assert "partitions_revoked" in logs and "partitions_assigned" in logs


_SIGTERM = {
    "confluent": Scale(3000, 300, 240, {"token_budget": "512"}),
    # At most 300 notes in flight, as for faust: the drain must not finish the whole backlog.
    "confluent-hosts": Scale(3000, 300, 240, {"token_budget": "512", "max_inflight_notes": "300"}),
    # At most 300 notes in flight: the drain cannot finish the whole backlog before it stops.
    "faust": Scale(1500, 200, 180, {"token_budget": "512", "max_inflight_notes": "300"}),
}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sigterm_drains_commits_and_restart_has_no_duplicates(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path, runtime: str
) -> None:
    scale = _SIGTERM[runtime]
    kit.create(partitions=3)
    count = scale.notes
    kit.produce([note(i, _LONG) for i in range(count)])
    env = runtime_env(kit, tiny_model_dir, runtime, **scale.env)
    worker = start_worker(env, tmp_path / "worker-1.log")
    wait_for(lambda: sum(kit.committed().values()) >= scale.first, 120, "first commits")
    assert stop(worker) == 0

    committed = kit.committed()
    first = sources(kit.read(kit.output, count, timeout=5))
    assert sum(committed.values()) < count, "the stop must land mid-stream"
    assert max(first.values()) == 1
    for partition in range(3):  # everything produced was committed, nothing more
        produced = [o for (p, o) in first if p == partition]
        assert committed.get(partition, 0) == (max(produced) + 1 if produced else 0)
        assert sorted(produced) == list(range(len(produced)))

    worker = start_worker(env, tmp_path / "worker-2.log")
    wait_for(lambda: sum(kit.committed().values()) == count, scale.limit_s, "all committed")
    assert stop(worker) == 0
    final = sources(kit.read(kit.output, count))
    assert len(final) == count and max(final.values()) == 1


def test_logs_are_json_and_never_contain_note_text(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    marker = "ZQXJ7PHIMARKER"
    kit.create(partitions=1)
    values = [
        note(1, f"Patient {marker} has PSA 4.2 ng/mL. Seen by Dr. {marker}."),
        orjson.dumps({"note_id": 7, "text": f"{marker} wrong id type"}),
        orjson.dumps({"note_id": "x", "text": [marker]}),
        f"not json {marker}".encode(),
        f'{{"note_id": "{marker}", "text": "caf\xe9 {marker}"}}'.encode("latin-1"),
        orjson.dumps({"note_id": "big", "text": marker * 100}),
    ]
    kit.produce(values, keys=[marker.encode()] * len(values))
    log_path = tmp_path / "worker.log"
    worker = start_worker(
        kit.env(tiny_model_dir, log_level="debug", max_note_chars="500"), log_path
    )
    wait_for(lambda: kit.committed() == {0: len(values)}, 120, "all inputs committed")
    assert stop(worker) == 0
    lines = log_path.read_text().splitlines()
    events = [orjson.loads(line) for line in lines if line.startswith("{")]
    assert any(e["event"] == "dead_letter" and "offset" in e for e in events)
    assert not [line for line in lines if marker in line]


def test_broker_restart_mid_stream_loses_nothing(tiny_model_dir: Path, tmp_path: Path) -> None:
    """The only broker goes down (SIGKILL) and comes back on the same ports and data.

    Like Kubernetes, the test restarts the worker if it exits (a fatal producer error is a
    legitimate way to react to a broker crash); nothing may be lost either way.
    """
    from devkit.localkafka import LocalKafka

    with LocalKafka.start(workdir=tmp_path / "kafka") as cluster:
        kit = KafkaTestKit(cluster.bootstrap_servers, prefix="restart")
        kit.create(partitions=2)
        count = 2000
        kit.produce([note(i, _LONG) for i in range(count)])
        env = kit.env(tiny_model_dir, token_budget="512")
        logs = [tmp_path / "w0.log"]
        worker = start_worker(env, logs[0])
        wait_for(lambda: sum(kit.committed().values()) >= 200, 120, "first commits")
        cluster.stop_node(1, kill=True)
        time.sleep(3)
        cluster.start_node(1)
        cluster.wait_ready()

        def done() -> bool:
            nonlocal worker
            if worker.poll() is not None:  # restart policy: Always
                logs.append(tmp_path / f"w{len(logs)}.log")
                worker = start_worker(env, logs[-1])
            return sum(kit.committed().values()) == count

        try:
            wait_for(done, 240, "all inputs committed")
        finally:
            for log in logs:
                print(log.name, log.read_text()[-3000:])
        assert stop(worker) == 0
        delivered = sources(kit.read(kit.output, count))
        per_partition = inputs_per_partition(kit, count)
        assert sum(per_partition.values()) == count
        assert all((p, o) in delivered for p, size in per_partition.items() for o in range(size))


def test_a_record_that_keeps_killing_the_worker_goes_to_the_dead_letter_topic(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The process is SIGKILLed whenever it prepares one note. Restarted like a pod (static
    membership, so no session timeout is waited out), it pins the crashes on that record and,
    after ``poison_after_crashes`` of them, dead-letters it as poison and carries on."""
    kit.create(partitions=1)
    count = 30
    pill = orjson.dumps({"note_id": "pill", "text": "POISON-PILL in this note."})
    kit.produce([note(i) for i in range(12)] + [pill] + [note(i) for i in range(13, count)])
    env = kit.env(tiny_model_dir, group_instance_id="worker-0", poison_after_crashes="2")
    logs: list[Path] = []
    exits: list[int] = []
    worker = None
    started = time.monotonic()
    while sum(kit.committed().values()) < count and time.monotonic() - started < 180:
        if worker is None or worker.poll() is not None:
            if worker is not None:
                exits.append(worker.returncode)
            logs.append(tmp_path / f"w{len(logs)}.log")
            worker = start_worker(env, logs[-1], module="tests.crashing_worker")
        time.sleep(0.2)
    assert worker is not None
    assert stop(worker) == 0
    # Two crashes at offset 0 (the batch read with the pill), then read one record at a time:
    # two more pinned on the pill, which the next attempt dead-letters.
    assert exits == [-signal.SIGKILL] * 4
    assert kit.committed() == {0: count}
    [letter] = kit.read(kit.dlq, 1)
    assert letter.value == pill
    assert letter.headers["x-biomarker-error-class"] == b"poison"
    assert len(sources(kit.read(kit.output, count - 1))) == count - 1
    named = [
        orjson.loads(line)
        for log in logs[1:]
        for line in log.read_text().splitlines()
        if '"partition_after_crash"' in line
    ]
    assert [(e["partition"], e["offset"], e["attempts"]) for e in named] == [
        (0, 0, 1),
        (0, 0, 2),
        (0, 12, 1),
        (0, 12, 2),
    ]


def test_a_record_that_hangs_a_host_process_goes_to_the_dead_letter_topic(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A host process hangs whenever it prepares one note: the worker kills it at its deadline
    and exits 1 through its fatal path, which must keep the record's attempt count (the
    consumer's close runs the revoke callback). Restarted like a pod, it pins the hangs on the
    record and dead-letters it as poison."""
    kit.create(partitions=1)
    count = 10
    pill = orjson.dumps({"note_id": "pill", "text": "POISON-PILL in this note."})
    kit.produce([note(i) for i in range(4)] + [pill] + [note(i) for i in range(5, count)])
    env = kit.env(
        tiny_model_dir,
        group_instance_id="worker-0",
        poison_after_crashes="1",
        host_processes="2",
        liveness_timeout_s="4",  # a host process's deadline
    )
    logs: list[Path] = []
    exits: list[int] = []
    worker = None
    started = time.monotonic()
    while sum(kit.committed().values()) < count and time.monotonic() - started < 240:
        if worker is None or worker.poll() is not None:
            if worker is not None:
                exits.append(worker.returncode)
            logs.append(tmp_path / f"w{len(logs)}.log")
            worker = start_worker(env, logs[-1], module="tests.hanging_host_worker")
        time.sleep(0.2)
    assert worker is not None
    assert stop(worker) == 0
    # Two hangs at offset 0 (the batch read with the pill), then read one record at a time:
    # one pinned on the pill, which the next attempt dead-letters. Were the count lost on the
    # fatal path (exit 1, not a kill), the worker would hang on the pill forever.
    assert exits == [1, 1, 1], exits
    named = [
        orjson.loads(line)
        for log in logs[1:]
        for line in log.read_text().splitlines()
        if '"partition_after_crash"' in line
    ]
    assert [(e["offset"], e["attempts"], e["pinned"]) for e in named] == [
        (0, 1, False),
        (0, 2, False),
        (4, 1, True),
    ]
    assert kit.committed() == {0: count}
    [letter] = kit.read(kit.dlq, 1)
    assert letter.value == pill
    assert letter.headers["x-biomarker-error-class"] == b"poison"
    assert len(sources(kit.read(kit.output, count - 1))) == count - 1
