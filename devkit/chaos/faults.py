"""The faults of a chaos run. Each takes the run's :class:`FaultContext`, does its damage, undoes
it, and returns what it did; the run records when it started and when it was cleared.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from devkit.chaos.corpus import InputRecord
from devkit.chaos.fleet import Fleet
from devkit.chaos.options import ChaosOptions
from devkit.chaos.producer import PacedProducer
from devkit.kafka_admin import AdminUnavailable, ClusterAdmin
from devkit.localkafka import LocalKafka

#: The worker logs this once a rebalance gave it partitions: our readiness signal.
ASSIGNED = "partitions_assigned"
_JOIN_TIMEOUT_S = 120.0


@dataclass(slots=True)
class FaultContext:
    cluster: LocalKafka
    fleet: Fleet
    admin: ClusterAdmin
    producer: PacedProducer
    options: ChaosOptions
    group: str
    output_topic: str
    oversized: InputRecord | None
    say: Callable[[str], None]


@dataclass(slots=True)
class FaultWindow:
    name: str
    start_ms: int
    clear_ms: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def now_ms() -> int:
    return int(time.time() * 1000)


def coordinator(ctx: FaultContext, timeout: float = 60.0) -> int:
    """The group coordinator's node id (retried while the cluster moves it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ctx.admin.coordinator(ctx.group)
        except AdminUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def _restart_and_wait(ctx: FaultContext, index: int, *, slow_delay_ms: int = 0) -> float:
    """Start slot ``index``; seconds until it logged its first assignment (or the timeout)."""
    started = time.monotonic()
    ctx.fleet.start(index, slow_delay_ms=slow_delay_ms)
    ctx.fleet.wait_for_log(index, ASSIGNED, _JOIN_TIMEOUT_S)
    return round(time.monotonic() - started, 1)


def worker_kill(ctx: FaultContext) -> dict[str, Any]:
    """SIGKILL a worker (round robin), restarted at once like a pod; ``kills`` times."""
    kills = []
    for k in range(ctx.options.kills):
        if k:
            time.sleep(ctx.options.kill_interval_s)
        index = k % len(ctx.fleet.slots)
        ctx.fleet.kill(index)
        kills.append({"slot": index, "at_ms": now_ms()})
        ctx.say(f"  SIGKILL worker {index}, restarted")
        ctx.fleet.start(index)
    return {"kills": kills}


def rolling_restart(ctx: FaultContext) -> dict[str, Any]:
    """SIGTERM each worker in turn; the next goes once its replacement has partitions."""
    steps = []
    for slot in ctx.fleet.slots:
        began = time.monotonic()
        code = ctx.fleet.terminate(slot.index, timeout=90)
        stopped_s = round(time.monotonic() - began, 1)
        ready_s = _restart_and_wait(ctx, slot.index)
        steps.append(
            {"slot": slot.index, "exit_code": code, "stop_s": stopped_s, "ready_s": ready_s}
        )
        ctx.say(f"  worker {slot.index}: SIGTERM exit {code} in {stopped_s}s, back in {ready_s}s")
    return {"steps": steps}


def coordinator_kill(ctx: FaultContext) -> dict[str, Any]:
    """SIGKILL the broker coordinating the group; restart it ``broker_down_s`` later."""
    node = coordinator(ctx)
    ctx.cluster.stop_node(node, kill=True)
    ctx.say(f"  SIGKILL broker {node} (group coordinator)")
    time.sleep(ctx.options.broker_down_s)
    ctx.cluster.start_node(node)
    ctx.cluster.wait_ready()
    after = coordinator(ctx)  # asked only once every broker is back (see devkit.kafka_admin)
    ctx.say(f"  broker {node} back; coordinator now broker {after}")
    return {"node": node, "coordinator_after": after}


def output_outage(ctx: FaultContext) -> dict[str, Any]:
    """min.insync.replicas unmet on the output topic for ``outage_s``.

    With replication factor 3, raising min.insync.replicas above 3 changes nothing (the brokers
    accept it, and acks=all writes go on succeeding). Instead the topic's min.insync.replicas
    goes to 3 and one broker that is not the group coordinator stops (gracefully): 2 live
    replicas < 3, so every output write fails with NOT_ENOUGH_REPLICAS (retried by the
    idempotent producer) while input, dead letters and offset commits (min.insync 2) carry on.
    The outage ends by setting min.insync.replicas back to 2; the broker then restarts.
    """
    keep = coordinator(ctx)
    victim = max(node.node_id for node in ctx.cluster.nodes if node.node_id != keep)
    ctx.admin.set_topic_config(ctx.output_topic, {"min.insync.replicas": "3"})
    ctx.cluster.stop_node(victim)
    ctx.say(f"  output min.insync.replicas=3, broker {victim} stopped")
    time.sleep(ctx.options.outage_s)
    ctx.admin.set_topic_config(ctx.output_topic, {"min.insync.replicas": "2"})
    cleared = now_ms()
    ctx.cluster.start_node(victim)
    ctx.cluster.wait_ready()
    ctx.say(f"  output min.insync.replicas=2, broker {victim} back")
    return {"stopped_node": victim, "cleared_ms": cleared}


def slow_model(ctx: FaultContext) -> dict[str, Any]:
    """Worker 0 runs a model ``slow_delay_ms`` slower per batch for ``slow_s``."""
    ctx.fleet.terminate(0, timeout=90)
    ready_s = _restart_and_wait(ctx, 0, slow_delay_ms=ctx.options.slow_delay_ms)
    ctx.say(f"  worker 0 slow ({ctx.options.slow_delay_ms} ms per batch), ready in {ready_s}s")
    time.sleep(ctx.options.slow_s)
    lost = ctx.fleet.log_contains(0, "partitions_lost")
    code = ctx.fleet.terminate(0, timeout=90)
    ctx.fleet.start(0)  # the next fault waits for the recovery anyway
    ctx.say(f"  worker 0 normal again (slow one exited {code}, partitions lost: {lost})")
    return {"slow_exit_code": code, "slow_partitions_lost": lost, "slow_ready_s": ready_s}


def oversized_output(ctx: FaultContext) -> dict[str, Any]:
    """One note whose enriched output would exceed a Kafka message; it must be dead-lettered."""
    if ctx.oversized is None:
        return {"produced": False}
    delivered = ctx.producer.produce_now(ctx.oversized)
    if delivered is None:
        return {"produced": False}
    ctx.say(f"  oversized-output note at partition {delivered.partition} offset {delivered.offset}")
    return {"produced": True, "partition": delivered.partition, "offset": delivered.offset}


FAULT_ACTIONS: dict[str, Callable[[FaultContext], dict[str, Any]]] = {
    "worker-kill": worker_kill,
    "rolling-restart": rolling_restart,
    "coordinator-kill": coordinator_kill,
    "output-outage": output_outage,
    "slow-model": slow_model,
    "oversized-output": oversized_output,
}


def inject(ctx: FaultContext, name: str) -> FaultWindow:
    """Run fault ``name``; an error inside it is recorded, and the run goes on."""
    window = FaultWindow(name=name, start_ms=now_ms())
    try:
        window.details = FAULT_ACTIONS[name](ctx)
    except Exception as exc:
        window.details = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        ctx.say(f"  fault {name} failed: {window.details['error']}")
    window.clear_ms = int(window.details.pop("cleared_ms", now_ms()))
    return window
