"""Worker memory around large notes: RSS at rest, at the peak, and back at rest.

Starts a local broker and one worker process (the default model), streams ordinary notes to
warm it up, then ``--large`` notes of ~196,000 characters (real note text repeated), and samples
the worker's RSS (``/proc/PID/status``) throughout. Prints the figures and writes them to
``bench/results/memory.json``::

    python -m bench.memory [--large 40] [--idle-s 20] [--worker-path OTHER_CHECKOUT]

``--worker-path`` runs the worker of another checkout (e.g. an older commit) for comparison;
``--bursts N`` sends the large notes N times and records the resting RSS after each burst (a
plateau means bounded caches, growth would mean a leak).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from devkit.localkafka import LocalKafka, create_topics
from worker.demo.notes import demo_notes

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
LARGE_CHARS = 196_000


def _rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def _committed(bootstrap: str, topic: str, group: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        found = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(0, found[0].offset)
    except KafkaException:  # the group coordinator is still starting: ask again later
        return 0
    finally:
        consumer.close()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 8_388_608})
    for value in values:
        producer.produce(topic, value=value)
        producer.poll(0)
    producer.flush(60)


def _wait(predicate: Callable[[], bool], timeout_s: float, pid: int, samples: list[float]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not finish in time")
        samples.append(_rss_mb(pid)[0])
        time.sleep(0.5)


def run(large: int, idle_s: float, worker_path: str | None, bursts: int = 1) -> dict[str, Any]:
    _source, notes = demo_notes(400)
    ordinary = [orjson.dumps(note) for note in notes[:200]]
    text = " ".join(note["text"] for note in notes)
    big = [
        orjson.dumps({"note_id": f"large-{i}", "text": (text * 3)[:LARGE_CHARS]})
        for i in range(large)
    ]
    with tempfile.TemporaryDirectory() as work, LocalKafka.start(workdir=Path(work)) as kafka:
        bootstrap = kafka.bootstrap_servers
        topics = {"mem-in": 1, "mem-out": 1, "mem-dlq": 1}
        create_topics(bootstrap, topics, topic_config={"max.message.bytes": "8388608"})
        env = {
            **os.environ,
            "BIOMARKER_BOOTSTRAP_SERVERS": bootstrap,
            "BIOMARKER_INPUT_TOPIC": "mem-in",
            "BIOMARKER_OUTPUT_TOPIC": "mem-out",
            "BIOMARKER_DLQ_TOPIC": "mem-dlq",
            "BIOMARKER_GROUP_ID": "mem",
            "BIOMARKER_LOG_LEVEL": "warning",
        }
        cwd = str(Path(work))
        if worker_path:
            env["PYTHONPATH"] = worker_path
        worker = subprocess.Popen([sys.executable, "-m", "worker", "run"], env=env, cwd=cwd)
        samples: list[float] = []
        try:
            _produce(bootstrap, "mem-in", ordinary)

            def done(count: int) -> Callable[[], bool]:
                return lambda: _committed(bootstrap, "mem-in", "mem") >= count

            _wait(done(len(ordinary)), 600, worker.pid, samples)
            time.sleep(idle_s)
            baseline = _rss_mb(worker.pid)[0]
            after_bursts: list[float] = []
            started = time.monotonic()
            for burst in range(bursts):
                _produce(bootstrap, "mem-in", big)
                _wait(done(len(ordinary) + large * (burst + 1)), 1800, worker.pid, samples)
                rest: list[float] = []
                for _ in range(int(idle_s)):
                    time.sleep(1)
                    rest.append(_rss_mb(worker.pid)[0])
                after_bursts.append(round(rest[-1], 1))
            large_s = time.monotonic() - started - bursts * int(idle_s)
            peak = _rss_mb(worker.pid)[1]
        finally:
            worker.terminate()
            worker.wait(60)
    return {
        "worker": worker_path or "this checkout",
        "large_notes": large,
        "large_note_chars": LARGE_CHARS,
        "rss_mb_after_warmup": round(baseline, 1),
        "rss_mb_peak": round(peak, 1),
        "rss_mb_after_idle": round(rest[-1], 1),
        "idle_s": idle_s,
        "large_notes_seconds": round(large_s, 1),
        "back_to_baseline_within_mb": round(rest[-1] - baseline, 1),
        "bursts": bursts,
        "rss_mb_after_each_burst": after_bursts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("--large", type=int, default=40)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument(
        "--bursts", type=int, default=1, help="send the large notes this many times"
    )
    parser.add_argument("--worker-path", help="run the worker of another checkout")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.large, args.idle_s, args.worker_path, args.bursts)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    existing = orjson.loads(args.out.read_bytes()) if args.out.exists() else {}
    existing[result["worker"]] = result
    args.out.write_bytes(orjson.dumps(existing, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
