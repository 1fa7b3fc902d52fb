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

from worker.benchmark.corpus import Corpus
from worker.benchmark.kafka_io import Topics, collect, output_count, produce_backlog
from worker.benchmark.stats import summarise

_READY_TIMEOUT_S = 180.0


def _group_ready(bootstrap: str, group: str, members: int, partitions: int) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        description = admin.describe_consumer_groups([group])[group].result(timeout=10)
    except Exception:  # group not created yet
        return False
    assigned = sum(len(m.assignment.topic_partitions) for m in description.members)
    return len(description.members) == members and assigned == partitions


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
            deadline = time.monotonic() + _READY_TIMEOUT_S
            while not _group_ready(bootstrap, topics.group, processes, partitions):
                if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
                    logs.seek(0)
                    tail = logs.read()[-2000:].decode(errors="replace")
                    raise RuntimeError(f"workers did not form a stable group: {tail}")
                time.sleep(0.5)
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
    result = summarise(
        collect(topics, corpus),
        started_ms,
        mode=f"{processes} process(es)",
        torch_threads=threads,
    )
    result.pop("latencies_ms")
    return result
