"""Both streaming runtimes on the same notes, broker and model, in one run.

``python -m bench.runtimes [--notes 300] [--rounds 3] [--bootstrap HOST:PORT]``

* saturation (backlog): every note is in the input topic before the worker starts; throughput
  from the moment the worker holds its partitions to its last output (``bench.stats``);
* paced: notes offered at a share of the slower runtime's backlog rate; p50/p99 latency;
* CPU per sentence: CPU seconds of the worker process from partitions assigned to the last
  note delivered, divided by the sentences scored (the broker's CPU is not counted).

The default (confluent-kafka) runtime runs in this process (``worker.pipeline.Pipeline``, as
``bench.e2e`` does; CPU from ``time.process_time`` deltas); the faust runtime runs as
``python -m worker run --runtime faust`` with ``BIOMARKER_*`` variables (CPU from
``/proc/PID/stat``). Both load the default model (``worker.loading.load_classifier``) with the
same settings. Rounds interleave the runtimes with a rotating order, so the drift of a shared
machine falls on each in turn; the median round of each is reported, and the ratios of those.
Writes ``bench/results/runtimes.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Consumer, TopicPartition

from bench.corpus import Corpus, load_corpus
from bench.e2e import PipelineRun, _pipeline
from bench.kafka_io import Topics, collect, produce_backlog, produce_paced
from bench.machine import cpu_seconds, machine_info
from bench.runner import _broker
from bench.stats import summarise
from worker.config import load_settings
from worker.loading import load_classifier
from worker.model.classifier import SequenceClassifier
from worker.runs import run_until

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "runtimes.json"
RUNTIMES = ("confluent", "faust")
#: Settings both runtimes get (everything else: the worker's defaults).
OVERRIDES: dict[str, Any] = {"device": "cpu", "log_level": "warning"}

#: Run one runtime over ``corpus`` on ``topics``: a backlog already produced (rate None) or
#: notes offered at ``rate`` notes/s; returns ``started_ms`` and ``cpu_s``.
Measure = Callable[[Topics, Corpus, "float | None"], dict[str, Any]]


# ---------------------------------------------------------------------------- default runtime
def _confluent(bootstrap: str, partitions: int, model: SequenceClassifier) -> Measure:
    run = PipelineRun(bootstrap, partitions, OVERRIDES)
    return lambda topics, corpus, rate: _inprocess(run, topics, model, corpus, paced=rate)


def _inprocess(
    run: PipelineRun,
    topics: Topics,
    model: SequenceClassifier,
    corpus: Corpus,
    *,
    paced: float | None,
) -> dict[str, Any]:
    pipeline, _metrics, watch = _pipeline(run, topics, model, corpus.notes)
    marks: dict[str, float] = {}

    def done() -> bool:
        if "cpu_start" not in marks and pipeline.readiness()[0]:
            marks["cpu_start"] = time.process_time()
        finished = watch(pipeline)
        if finished and "cpu_end" not in marks:
            marks["cpu_end"] = time.process_time()
        return finished

    producer = None
    if paced is not None:
        producer = produce_paced(topics, corpus, paced, start=lambda: pipeline.readiness()[0])
    code = run_until(pipeline, done)
    if producer is not None:
        producer.join(10)
    if code != 0 or watch.started_ms is None:
        raise RuntimeError(f"confluent runtime exited {code}")
    return {
        "started_ms": watch.started_ms,
        "cpu_s": marks["cpu_end"] - marks["cpu_start"],
    }


# ---------------------------------------------------------------------------- faust runtime
def _faust(bootstrap: str, partitions: int) -> Measure:
    return lambda topics, corpus, rate: _subprocess(
        bootstrap, partitions, topics, corpus, paced=rate
    )


def _subprocess(
    bootstrap: str,
    partitions: int,
    topics: Topics,
    corpus: Corpus,
    *,
    paced: float | None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "BIOMARKER_RUNTIME": "faust",
        "BIOMARKER_BOOTSTRAP_SERVERS": bootstrap,
        "BIOMARKER_INPUT_TOPIC": topics.input,
        "BIOMARKER_OUTPUT_TOPIC": topics.output,
        "BIOMARKER_DLQ_TOPIC": topics.dlq,
        "BIOMARKER_GROUP_ID": topics.group,
        "BIOMARKER_LOG_LEVEL": "info",  # partitions_assigned marks the start
        **{f"BIOMARKER_{k.upper()}": str(v) for k, v in OVERRIDES.items() if k != "log_level"},
    }
    env.pop("BIOMARKER_MODEL_PATH", None)  # the default model, as in this process
    with tempfile.TemporaryDirectory() as scratch:
        log_path = Path(scratch) / "worker.log"
        with log_path.open("wb") as log:  # cwd scratch: faust keeps a data directory there
            process = subprocess.Popen(
                [sys.executable, "-m", "worker", "run"],
                env={**env, "PYTHONPATH": str(REPO)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=scratch,
            )
        try:
            deadline = time.monotonic() + timeout
            started_ms = None
            while started_ms is None:
                started_ms = _assigned_ms(log_path)
                _check(process, log_path, deadline)
                time.sleep(0.02)
            cpu_start = cpu_seconds(process.pid)
            producer = None
            if paced is not None:
                producer = produce_paced(topics, corpus, paced, start=lambda: True)
            outputs = _Watermarks(bootstrap, topics.output, partitions)
            try:  # one consumer for the whole wait: a client per poll costs CPU on 2 cores
                while outputs.count() < corpus.notes:
                    _check(process, log_path, deadline)
                    time.sleep(0.1)
                cpu_end = cpu_seconds(process.pid)
            finally:
                outputs.close()
            if producer is not None:
                producer.join(10)
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
            if code != 0:
                raise RuntimeError(f"faust runtime exited {code}: {_tail(log_path)}")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return {"started_ms": started_ms, "cpu_s": cpu_end - cpu_start}


class _Watermarks:
    """Records in a topic (sum of high watermarks), read through one long-lived consumer."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-wm-{uuid.uuid4().hex[:6]}"}
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def count(self) -> int:
        return sum(
            self._consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in self._partitions
        )

    def close(self) -> None:
        self._consumer.close()


def _assigned_ms(log_path: Path) -> int | None:
    for line in log_path.read_bytes().splitlines():
        if b'"partitions_assigned"' in line:
            body = orjson.loads(line)
            if body.get("partitions"):
                stamp = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
                return int(stamp.timestamp() * 1000)
    return None


def _check(process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"faust runtime exited {process.returncode}: {_tail(log_path)}")
    if time.monotonic() > deadline:
        raise RuntimeError("faust runtime did not finish in time")


def _tail(log_path: Path) -> str:
    return log_path.read_bytes()[-2000:].decode(errors="replace")


# ---------------------------------------------------------------------------- one run
def _result(
    topics: Topics, corpus: Corpus, measured: dict[str, Any], mode: str, warmup: int = 0
) -> dict[str, Any]:
    deliveries = collect(topics, corpus)
    skip = set(corpus.keys[:warmup])
    kept = [d for d in deliveries if d.key not in skip]
    started = measured["started_ms"] if mode == "saturation" else min(d.sent_ms for d in kept)
    result = summarise(kept, started, mode=mode)
    result.pop("latencies_ms")
    cpu = float(measured["cpu_s"])
    result["cpu_s"] = round(cpu, 2)
    result["cpu_ms_per_sentence"] = round(1000 * cpu / corpus.sentences, 3)
    if warmup:
        result["warmup_notes"] = warmup
    return result


def run(
    *, notes: int, rounds: int, partitions: int, paced_notes: int, share: float, bootstrap: str
) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    settings = load_settings(overrides={"bootstrap_servers": bootstrap, **OVERRIDES})
    model = load_classifier(settings)
    model.predict(["warm-up sentence"])
    corpus = load_corpus(model, notes=notes, tag=f"rt-{uuid.uuid4().hex[:6]}")
    measures = {
        "confluent": _confluent(bootstrap, partitions, model),
        "faust": _faust(bootstrap, partitions),
    }
    # An unmeasured pass first: a fresh broker spends its first minute compiling (bench.runner).
    warm = corpus.head(min(100, notes))
    warm_topics = Topics.fresh(bootstrap, "rt-warm", partitions)
    produce_backlog(warm_topics, warm)
    measures["confluent"](warm_topics, warm, None)
    saturation: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNTIMES}
    for number in range(rounds):
        order = RUNTIMES[number % 2 :] + RUNTIMES[: number % 2]
        for name in order:
            topics = Topics.fresh(bootstrap, f"rt-{name}", partitions)
            produce_backlog(topics, corpus)
            measured = measures[name](topics, corpus, None)
            result = _result(topics, corpus, measured, "saturation")
            result["round"], result["position"] = number, order.index(name)
            saturation[name].append(result)
            print(f"round {number} {name}: {result['sentences_per_s']} sentences/s", flush=True)
    median = {name: _median(saturation[name]) for name in RUNTIMES}
    rate = share * min(float(median[name]["notes_per_s"]) for name in RUNTIMES)
    warmup = min(round(rate * 2), max(0, notes - paced_notes))
    paced_corpus = corpus.head(paced_notes + warmup)
    paced: dict[str, dict[str, Any]] = {}
    for name in RUNTIMES if rounds % 2 == 0 else RUNTIMES[::-1]:
        topics = Topics.fresh(bootstrap, f"rt-paced-{name}", partitions)
        measured = measures[name](topics, paced_corpus, rate)
        paced[name] = _result(topics, paced_corpus, measured, "paced", warmup)
        paced[name]["offered_notes_per_s"] = round(rate, 2)
        print(f"paced {name}: p50 {paced[name]['latency']['p50_ms']} ms", flush=True)
    base, other = median["confluent"], median["faust"]
    return {
        "name": "runtimes",
        "machine": machine_info(),
        "load_at_end": os.getloadavg(),
        "model": {"name": model.info.name, "sha256": model.info.sha256[:16]},
        "corpus": corpus.describe(),
        "settings": {**OVERRIDES, "partitions": partitions, "rounds": rounds, "share": share},
        "saturation": {"median": median, "rounds": saturation},
        "paced": paced,
        "ratios_faust_over_confluent": {
            "saturation_sentences_per_s": _ratio(other, base, "sentences_per_s"),
            "cpu_ms_per_sentence": _ratio(other, base, "cpu_ms_per_sentence"),
            "paced_p50_ms": _ratio(
                paced["faust"]["latency"], paced["confluent"]["latency"], "p50_ms"
            ),
            "paced_p99_ms": _ratio(
                paced["faust"]["latency"], paced["confluent"]["latency"], "p99_ms"
            ),
        },
    }


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: float(r["sentences_per_s"]))
    middle = dict(ordered[(len(ordered) - 1) // 2])
    middle["cpu_ms_per_sentence_median"] = statistics.median(
        float(r["cpu_ms_per_sentence"]) for r in results
    )
    return middle


def _ratio(numerator: dict[str, Any], denominator: dict[str, Any], key: str) -> float:
    return round(float(numerator[key]) / max(float(denominator[key]), 1e-9), 3)


def table(results: dict[str, Any]) -> str:
    median, paced = results["saturation"]["median"], results["paced"]
    rows = [
        "| runtime | backlog notes/s | backlog sentences/s | CPU ms/sentence | "
        "paced p50 ms | paced p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name in RUNTIMES:
        sat, lat = median[name], paced[name]["latency"]
        rows.append(
            f"| {name} | {sat['notes_per_s']} | {sat['sentences_per_s']} | "
            f"{sat['cpu_ms_per_sentence_median']} | {lat['p50_ms']:.0f} | {lat['p99_ms']:.0f} |"
        )
    ratios = results["ratios_faust_over_confluent"]
    rows.append(
        f"| faust / confluent | | {ratios['saturation_sentences_per_s']} | "
        f"{ratios['cpu_ms_per_sentence']} | {ratios['paced_p50_ms']} | {ratios['paced_p99_ms']} |"
    )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.runtimes", description=__doc__)
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--paced-notes", type=int, default=200)
    parser.add_argument("--paced-share", type=float, default=0.7)
    parser.add_argument("--bootstrap", help="an existing broker (default: start a local one)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with _broker(args.bootstrap) as (bootstrap, _pids):
        results = run(
            notes=args.notes,
            rounds=args.rounds,
            partitions=args.partitions,
            paced_notes=args.paced_notes,
            share=args.paced_share,
            bootstrap=bootstrap,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
