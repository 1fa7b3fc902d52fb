"""How long a worker crash stalls its partitions: SIGKILL one of two workers mid-stream.

Starts a local broker, streams notes at a steady rate into a 4-partition topic read by two
worker processes (the default model unless ``--model-path``), SIGKILLs one of them, and
measures, for every partition, the time from the kill until its committed offset moves again.
The largest of those is the stall the crash caused. Scenarios:

- ``dynamic-45s``: dynamic membership, 45 s session timeout (the worker's former default and
  librdkafka's default); the dead member's partitions move when the session expires.
- ``dynamic-15s``: the same with the worker's default of 15 s.
- ``static-15s-restart``: static membership (``group_instance_id``, as the chart's StatefulSet
  sets it) with 15 s, and the killed worker restarted at once, as Kubernetes restarts a pod: the
  replacement takes its partitions back without a rebalance.

Prints a table and writes ``bench/results/recovery.json``::

    python -m bench.recovery [--scenarios dynamic-45s,dynamic-15s,static-15s-restart]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from devkit.lifeline import die_with_parent
from devkit.localkafka import LocalKafka, create_topics
from worker.demo.notes import demo_notes

RESULTS = Path(__file__).resolve().parent / "results" / "recovery.json"
PARTITIONS = 4


@dataclass(frozen=True, slots=True)
class Scenario:
    session_timeout_ms: int
    static: bool
    restart: bool


SCENARIOS = {
    "dynamic-45s": Scenario(45_000, static=False, restart=False),
    "dynamic-15s": Scenario(15_000, static=False, restart=False),
    "static-15s-restart": Scenario(15_000, static=True, restart=True),
}


def _committed(consumer: Consumer, topic: str) -> dict[int, int]:
    wanted = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        found = consumer.committed(wanted, timeout=5)
    except KafkaException:  # the coordinator is busy with the rebalance: ask again
        return {}
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def _stream(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    """Produce demo notes at ``rate`` per second until ``stop``."""
    _source, notes = demo_notes(200)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        note = notes[i % len(notes)]
        producer.produce(topic, orjson.dumps({**note, "note_id": f"r-{i}"}), key=str(i).encode())
        producer.poll(0)
        i += 1
        stop.wait(1 / rate)
    producer.flush(10)


class _Workers:
    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self._env = env
        self._workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, name: str, extra: dict[str, str]) -> subprocess.Popen[bytes]:
        path = self._workdir / f"{name}-{len(self.processes)}.log"
        self.logs.append(path)
        with path.open("ab") as log:
            process = subprocess.Popen(
                [*die_with_parent(), sys.executable, "-m", "worker", "run"],
                env={**self._env, **extra},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._workdir,
            )
        self.processes.append(process)
        return process

    def wait_all_assigned(self, timeout_s: float) -> None:
        """Until every worker started so far logged an assignment of partitions."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            logs = [path.read_text(errors="replace") for path in self.logs]
            if all('"partitions_assigned"' in log for log in logs):
                return
            time.sleep(0.5)
        raise TimeoutError("not every worker got partitions")

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def run_scenario(
    name: str, scenario: Scenario, *, bootstrap: str, model_path: str | None, rate: float
) -> dict[str, Any]:
    topic = f"rec-{name}"
    create_topics(bootstrap, {topic: PARTITIONS, f"{topic}-out": PARTITIONS, f"{topic}-dlq": 1})
    group = f"{topic}-group"
    env = {
        **os.environ,
        "BIOMARKER_BOOTSTRAP_SERVERS": bootstrap,
        "BIOMARKER_INPUT_TOPIC": topic,
        "BIOMARKER_OUTPUT_TOPIC": f"{topic}-out",
        "BIOMARKER_DLQ_TOPIC": f"{topic}-dlq",
        "BIOMARKER_GROUP_ID": group,
        "BIOMARKER_SESSION_TIMEOUT_MS": str(scenario.session_timeout_ms),
        "BIOMARKER_COMMIT_INTERVAL_MS": "500",
        "BIOMARKER_TORCH_THREADS": "1",
        "BIOMARKER_LOG_LEVEL": "info",
    }
    if model_path:
        env["BIOMARKER_MODEL_PATH"] = model_path
    stop = threading.Event()
    streamer = threading.Thread(target=_stream, args=(bootstrap, topic, rate, stop), daemon=True)
    observer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    with tempfile.TemporaryDirectory(prefix="recovery-") as work:
        workers = _Workers(env, Path(work))
        member: dict[str, dict[str, str]] = {"a": {}, "b": {}}
        if scenario.static:
            member = {w: {"BIOMARKER_GROUP_INSTANCE_ID": f"{topic}-{w}"} for w in ("a", "b")}
        try:
            streamer.start()
            workers.start("a", member["a"])
            victim = workers.start("b", member["b"])
            workers.wait_all_assigned(timeout_s=240)
            _wait_all_moving(observer, topic, timeout_s=120)
            time.sleep(5)  # steady state
            before = _committed(observer, topic)
            killed = time.monotonic()
            victim.kill()
            if scenario.restart:
                workers.start("b", member["b"])
            stalls = _time_to_move(observer, topic, before, since=killed, timeout_s=180)
        finally:
            stop.set()
            workers.stop_all()
            observer.close()
            streamer.join(30)
    return {
        "session_timeout_ms": scenario.session_timeout_ms,
        "static_membership": scenario.static,
        "restarted": scenario.restart,
        "stall_s_per_partition": stalls,
        "recovery_s": max(stalls.values()),
    }


def _wait_all_moving(observer: Consumer, topic: str, *, timeout_s: float) -> None:
    """Until every partition has committed twice (both workers joined and working)."""
    deadline = time.monotonic() + timeout_s
    first = _committed(observer, topic)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = _committed(observer, topic)
        if len(now) == PARTITIONS and all(now[p] > first.get(p, -1) for p in now):
            return
    raise TimeoutError("the workers did not start committing on every partition")


def _time_to_move(
    observer: Consumer, topic: str, before: dict[int, int], *, since: float, timeout_s: float
) -> dict[int, float]:
    """Seconds from ``since`` until each partition's committed offset passed ``before``."""
    moved: dict[int, float] = {}
    while len(moved) < PARTITIONS and time.monotonic() - since < timeout_s:
        now = _committed(observer, topic)
        for partition, offset in now.items():
            if partition not in moved and offset > before.get(partition, -1):
                moved[partition] = round(time.monotonic() - since, 1)
        time.sleep(0.25)
    for partition in range(PARTITIONS):
        moved.setdefault(partition, float("inf"))
    return dict(sorted(moved.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recovery")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--model-path", help="checkpoint for the workers (default: embedded)")
    parser.add_argument("--rate", type=float, default=20.0, help="input notes per second")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; known: {', '.join(SCENARIOS)}")
    results: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory() as work,
        LocalKafka.start(workdir=Path(work), die_with_parent=True) as kafka,
    ):
        for name in names:
            results[name] = run_scenario(
                name,
                SCENARIOS[name],
                bootstrap=kafka.bootstrap_servers,
                model_path=args.model_path,
                rate=args.rate,
            )
            print(f"{name:22s} recovery {results[name]['recovery_s']:6.1f} s", flush=True)
    options = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
    args.out.write_bytes(orjson.dumps(results, option=options) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
