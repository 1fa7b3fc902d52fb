"""One chaos run, start to end: cluster, topics, workers, paced input, faults, drain, audit.

Everything started here (brokers, workers) is stopped by PID in ``finally``, also on Ctrl-C and
errors.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from devkit.chaos.audit import AuditInput, audit
from devkit.chaos.corpus import ChaosCorpus, build_corpus
from devkit.chaos.faults import ASSIGNED, FaultContext, now_ms
from devkit.chaos.fleet import Fleet
from devkit.chaos.monitor import OffsetMonitor, OffsetSample
from devkit.chaos.options import ChaosOptions
from devkit.chaos.producer import PacedProducer
from devkit.chaos.reader import read_dead_letters, read_inputs, read_outputs
from devkit.chaos.recovery import recoveries
from devkit.chaos.schedule import drain, run_faults, wait_until
from devkit.chaos.worker_logs import summarise
from devkit.kafka_admin import ClusterAdmin
from devkit.localkafka import KAFKA_VERSION, LocalKafka, create_topics
from worker.config import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
INPUT, OUTPUT, DLQ, GROUP = "chaos-notes", "chaos-enriched", "chaos-dlq", "chaos-worker"
_JOIN_TIMEOUT_S = 300.0


def worker_env(options: ChaosOptions, bootstrap: str) -> dict[str, str]:
    """The workers' environment: this one minus inherited worker settings, plus the run's."""
    names = [f"BIOMARKER_{name.upper()}" for name in WorkerSettings.model_fields]
    settings = {*names, *(f"{name}_FILE" for name in names), "BIOMARKER_CONFIG_FILE"}
    env = {key: value for key, value in os.environ.items() if key not in settings}
    env.update(
        {
            "BIOMARKER_BOOTSTRAP_SERVERS": bootstrap,
            "BIOMARKER_INPUT_TOPIC": INPUT,
            "BIOMARKER_OUTPUT_TOPIC": OUTPUT,
            "BIOMARKER_DLQ_TOPIC": DLQ,
            "BIOMARKER_GROUP_ID": GROUP,
            "BIOMARKER_TORCH_THREADS": str(options.threads_per_worker()),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    if options.session_timeout_ms is not None:
        env["BIOMARKER_SESSION_TIMEOUT_MS"] = str(options.session_timeout_ms)
    if options.model_path:
        env["BIOMARKER_MODEL_PATH"] = options.model_path
    if options.exactly_once:
        env["BIOMARKER_PROCESSING_GUARANTEE"] = "exactly-once"
    env.update({f"BIOMARKER_{key.upper()}": value for key, value in options.worker_env.items()})
    return env


class _Clock:
    def __init__(self, say: Callable[[str], None]) -> None:
        self._started = time.monotonic()
        self._say = say

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def say(self, message: str) -> None:
        self._say(f"[{self.elapsed:7.1f}s] {message}")


def _final_offsets(monitor: OffsetMonitor) -> OffsetSample:
    for _ in range(30):  # the cluster is healthy by now; retry a coordinator still loading
        sample = monitor.sample()
        if sample is not None:
            return sample
        time.sleep(1.0)
    raise RuntimeError("the final committed and end offsets could not be read")


def _verdict(options: ChaosOptions, result: dict[str, Any]) -> list[str]:
    found = result["audit"]
    problems = []
    if found["lost"]:
        problems.append(f"{found['lost']} inputs lost")
    if not found["committed_equals_log_end"]:
        problems.append("committed != log end")
    if options.exactly_once and found["duplicates"]:
        problems.append(f"{found['duplicates']} duplicates under exactly-once")
    if found["misfiled"]:
        problems.append(f"{sum(found['misfiled'].values())} misfiled")
    return problems


def _warnings(result: dict[str, Any]) -> list[str]:
    """Findings that do not fail the run: they cost time, not data."""
    workers = result["workers"]
    found = []
    if workers["hung_after_signal"]:
        found.append(f"{workers['hung_after_signal']} workers ignored a signal (see hang_dumps)")
    if workers["unexpected_exits"]:
        found.append(f"{workers['unexpected_exits']} unexpected worker exits")
    if result["ending"] != "drained":
        found.append(f"the drain ended: {result['ending']}")
    return found


def run_chaos(options: ChaosOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole scenario and return the result (see :mod:`devkit.chaos.report`)."""
    clock = _Clock(say)
    corpus = build_corpus(
        options.notes, seed=options.seed, with_oversized="oversized-output" in options.faults
    )
    clock.say(f"{options.notes} inputs from {corpus.source}: {corpus.kinds()}")
    owns_workdir = options.workdir is None
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="biomarker-chaos-"))
    with ExitStack() as stack:
        if owns_workdir:
            stack.callback(shutil.rmtree, workdir, True)
        cluster = LocalKafka.start(nodes=3, workdir=workdir / "kafka", die_with_parent=True)
        stack.callback(cluster.stop)
        clock.say(f"3-node KRaft cluster at {cluster.bootstrap_servers}")
        return _run_on(
            cluster, corpus=corpus, options=options, workdir=workdir, clock=clock, stack=stack
        )


def _run_on(
    cluster: LocalKafka,
    *,
    corpus: ChaosCorpus,
    options: ChaosOptions,
    workdir: Path,
    clock: _Clock,
    stack: ExitStack,
) -> dict[str, Any]:
    client = cluster.client_config()
    create_topics(
        client,
        {INPUT: options.partitions, OUTPUT: options.partitions, DLQ: 1},
        replication=3,
        topic_config={"min.insync.replicas": "2"},
    )
    partitions = list(range(options.partitions))
    admin = ClusterAdmin(client)
    per_slot = (
        {i: {"BIOMARKER_TRANSACTIONAL_ID": f"{GROUP}-slot{i}"} for i in range(options.workers)}
        if options.exactly_once
        else {}
    )
    fleet = Fleet(
        worker_env(options, cluster.bootstrap_servers),
        workdir / "logs",
        options.workers,
        cwd=REPO,
        per_slot_env=per_slot,
    )
    stack.callback(fleet.kill_all)
    fleet.start_all()
    joined = wait_until(
        lambda: all(fleet.log_contains(s.index, ASSIGNED) for s in fleet.slots), _JOIN_TIMEOUT_S
    )
    clock.say(f"{options.workers} workers {'joined' if joined else 'NOT all joined'}")
    monitor = OffsetMonitor(client, group=GROUP, topic=INPUT, partitions=partitions).start()
    stack.callback(monitor.stop)
    producer = PacedProducer(client, INPUT, corpus.stream, options.rate).start()
    stack.callback(producer.stop)
    ctx = FaultContext(
        cluster=cluster,
        fleet=fleet,
        admin=admin,
        producer=producer,
        options=options,
        group=GROUP,
        output_topic=OUTPUT,
        oversized=corpus.oversized,
        say=clock.say,
    )
    windows = run_faults(ctx, producer, monitor)
    producer.wait(timeout=max(60.0, producer.total / options.rate * 3))
    clock.say(f"input stream done ({producer.stats.delivered} delivered); draining")
    ending = drain(monitor, producer.stats.delivered, options, clock.say)
    run_end = now_ms()
    clock.say(f"drain: {ending}; stopping workers")
    exit_codes = fleet.stop_all()
    monitor.stop()
    final = _final_offsets(monitor)
    clock.say("reading input, outputs and dead letters")
    found = audit(
        AuditInput(
            inputs=read_inputs(client, INPUT, partitions),
            outputs=read_outputs(client, OUTPUT, partitions, read_committed=options.exactly_once),
            dead_letters=read_dead_letters(client, DLQ, [0], read_committed=options.exactly_once),
            committed=final.committed,
            end=final.end,
            windows=windows,
        )
    )
    steady, faults = recoveries(windows, monitor.samples, run_end)
    result: dict[str, Any] = {
        "options": {k: v for k, v in vars_of(options).items() if k != "workdir"},
        "kafka_version": KAFKA_VERSION,
        "cluster": {"nodes": 3, "replication_factor": 3, "min_insync_replicas": 2},
        "corpus": {"source": corpus.source, "kinds": corpus.kinds()},
        "run_s": round(clock.elapsed, 1),
        "input_s": producer.stats.seconds,
        "input_rate": round(producer.total / max(0.1, producer.stats.seconds), 1),
        "ending": ending,
        "producer": vars_of(producer.stats),
        "monitor": {"samples": len(monitor.samples), "failed_samples": monitor.failed},
        "steady_lag": steady,
        "faults": faults,
        "workers": {
            **summarise(fleet),
            "final_exit_codes": {str(slot): code for slot, code in exit_codes.items()},
        },
        "audit": found,
    }
    result["problems"] = _verdict(options, result)
    result["warnings"] = _warnings(result)
    result["verdict"] = "fail" if result["problems"] else "pass"
    return result


def vars_of(value: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON-friendly values."""
    fields = getattr(value, "__dataclass_fields__", {})
    shown: dict[str, Any] = {}
    for name in fields:
        item = getattr(value, name)
        shown[name] = str(item) if isinstance(item, Path) else item
    return shown
