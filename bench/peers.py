"""Launch the faust-streaming peer (:mod:`bench.faust_peer`) and measure it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import Corpus
from bench.kafka_io import Topics, collect, produce_backlog
from bench.stats import summarise


def run_faust(
    bootstrap: str,
    corpus: Corpus,
    *,
    model: Path,
    partitions: int,
    take: int,
    token_budget: int,
    threads: int | None,
    backend: str,
    dtype: str = "auto",
    timeout: float = 900.0,
) -> dict[str, Any]:
    """The faust agent over a backlog of ``corpus``, in its own process."""
    topics = Topics.fresh(bootstrap, "faust", partitions)
    produce_backlog(topics, corpus)
    command = [
        sys.executable,
        "-m",
        "bench.faust_peer",
        *("--bootstrap", bootstrap, "--input", topics.input, "--output", topics.output),
        *("--group", topics.group, "--model", str(model), "--notes", str(corpus.notes)),
        *("--partitions", str(partitions), "--take", str(take)),
        *("--token-budget", str(token_budget), "--backend", backend),
        *("--dtype", dtype),
        *(("--threads", str(threads)) if threads else ()),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile() as logs, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "started.json"
        command += ["--report", str(report)]
        try:
            code = subprocess.run(  # in scratch: faust keeps an app data directory in its cwd
                command,
                env=env,
                stdout=logs,
                stderr=logs,
                timeout=timeout,
                check=False,
                cwd=scratch,
            ).returncode
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"faust peer did not finish in {timeout}s") from exc
        if code != 0:
            logs.seek(0)
            tail = logs.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"faust peer exited {code}: {tail}")
        started_ms = int(orjson.loads(report.read_bytes())["started_ms"])
    return summarise(collect(topics, corpus), started_ms, mode=f"faust take({take})")
