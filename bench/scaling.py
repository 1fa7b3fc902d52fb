"""Several ``biomarker-worker run`` processes in one consumer group, torch threads split.

The workers start on an empty topic; once the group is stable with every partition assigned, the
backlog is written and the group's throughput is measured from the output timestamps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench.corpus import Corpus
from bench.kafka_io import Topics, collect, output_count, produce_backlog
from bench.stats import summarise

_READY_TIMEOUT_S = 180.0


def _group_ready(bootstrap: str, group: str, members: int, partitions: int) -> bool:
    """Stable, with every partition owned and (when there are enough partitions) every member
    owning some: cooperative rebalancing assigns in two rounds, and a backlog written between
    them is read by a member that must then hand it over."""
    from confluent_kafka import ConsumerGroupState

    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:  # group not created yet
        return False
    owned = [len(m.assignment.topic_partitions) for m in description.members]
    return (
        description.state == ConsumerGroupState.STABLE
        and len(owned) == members
        and sum(owned) == partitions
        and (members > partitions or min(owned) > 0)
    )


def _wait_for_group(
    bootstrap: str, group: str, members: int, partitions: int, workers: list[Any]
) -> None:
    """Until the group has been ready on two checks a second apart (or a worker died)."""
    deadline = time.monotonic() + _READY_TIMEOUT_S
    streak = 0
    while streak < 2:
        if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
            raise RuntimeError("workers did not form a stable group")
        streak = streak + 1 if _group_ready(bootstrap, group, members, partitions) else 0
        time.sleep(1.0)


def _env(topics: Topics, model: Path, threads: int, settings: dict[str, Any]) -> dict[str, str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "BIOMARKER_BOOTSTRAP_SERVERS": topics.bootstrap,
        "BIOMARKER_INPUT_TOPIC": topics.input,
        "BIOMARKER_OUTPUT_TOPIC": topics.output,
        "BIOMARKER_DLQ_TOPIC": topics.dlq,
        "BIOMARKER_GROUP_ID": topics.group,
        "BIOMARKER_MODEL_PATH": str(model),
        "BIOMARKER_TORCH_THREADS": str(threads),
        "BIOMARKER_LOG_LEVEL": "warning",
    }
    env.update({f"BIOMARKER_{key.upper()}": str(value) for key, value in settings.items()})
    return env


def run_workers(
    bootstrap: str,
    corpus: Corpus,
    *,
    model: Path,
    processes: int,
    threads: int,
    partitions: int,
    settings: dict[str, Any],
    timeout: float = 900.0,
) -> dict[str, Any]:
    """Throughput of ``processes`` worker processes with ``threads`` torch threads each."""
    topics = Topics.fresh(bootstrap, f"scale{processes}", partitions)
    env = _env(topics, model, threads, settings)
    with tempfile.TemporaryFile() as logs:
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "worker", "run"], env=env, stdout=logs, stderr=logs
            )
            for _ in range(processes)
        ]
        try:
            try:
                _wait_for_group(bootstrap, topics.group, processes, partitions, workers)
            except RuntimeError as exc:
                logs.seek(0)
                tail = logs.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"{exc}: {tail}") from exc
            started_ms = int(time.time() * 1000)
            produce_backlog(topics, corpus)
            deadline = time.monotonic() + timeout
            while output_count(bootstrap, topics.output, partitions) < corpus.notes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{processes} workers did not finish in {timeout}s")
                time.sleep(1.0)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.send_signal(signal.SIGTERM)
            for worker in workers:
                try:
                    worker.wait(60)
                except subprocess.TimeoutExpired:
                    worker.kill()
    duplicates = output_count(bootstrap, topics.output, partitions) - corpus.notes
    result = summarise(
        collect(topics, corpus),
        started_ms,
        mode=f"{processes} process(es)",
        torch_threads=threads,
        duplicate_outputs=duplicates,
    )
    result.pop("latencies_ms")
    return result
