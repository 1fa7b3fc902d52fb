"""Settings of a chaos run and their command line (``biomarker-worker chaos --help``)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Every fault, in the order a run injects them.
FAULTS: tuple[str, ...] = (
    "worker-kill",
    "rolling-restart",
    "coordinator-kill",
    "output-outage",
    "slow-model",
    "oversized-output",
)

#: ``--preset ci``: the short run the test suite makes (tests/test_chaos_kafka.py), for a tiny
#: model; flags given next to it still win.
CI_PRESET: dict[str, Any] = {
    "notes": 1_000,
    "workers": 2,
    "partitions": 4,
    "rate": 9.0,
    "settle_s": 4.0,
    "kills": 2,
    "kill_interval_s": 4.0,
    "broker_down_s": 5.0,
    "outage_s": 5.0,
    "slow_s": 8.0,
    "slow_delay_ms": 300,
    "session_timeout_ms": 6_000,
    "recover_timeout_s": 30.0,
    "stuck_after_s": 30.0,
    "drain_timeout_s": 90.0,
}


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    notes: int = 20_000
    workers: int = 3
    partitions: int = 6
    model_path: str | None = None
    exactly_once: bool = False
    out: Path = Path("bench/results/chaos.json")
    rate: float = 18.0
    faults: tuple[str, ...] = FAULTS
    settle_s: float = 30.0
    kills: int = 3
    kill_interval_s: float = 15.0
    broker_down_s: float = 20.0
    outage_s: float = 30.0
    slow_s: float = 60.0
    slow_delay_ms: int = 500
    session_timeout_ms: int | None = None  # the worker's default (15 s)
    torch_threads: int | None = None
    recover_timeout_s: float = 180.0
    stuck_after_s: float = 120.0
    drain_timeout_s: float = 600.0
    workdir: Path | None = None
    seed: int = 7
    worker_env: dict[str, str] = field(default_factory=dict)

    def threads_per_worker(self) -> int:
        if self.torch_threads is not None:
            return self.torch_threads
        return max(1, (os.cpu_count() or 1) // self.workers)


def _faults(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in FAULTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault {unknown[0]!r}; known: {', '.join(FAULTS)}"
        )
    return tuple(name for name in FAULTS if name in names)  # always in the standard order


def _env_pair(value: str) -> tuple[str, str]:
    key, sep, setting = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return key.upper(), setting


def build_parser() -> argparse.ArgumentParser:
    d = ChaosOptions()
    parser = argparse.ArgumentParser(
        prog="biomarker-worker chaos",
        description="Fault-injection run against a local 3-node Kafka cluster: worker kills, a "
        "rolling restart, a coordinator broker kill, an output outage, a slow model and an "
        "oversized output, then an audit of every input (development command).",
    )
    add = parser.add_argument
    add("--preset", choices=["ci"], help="ci: the short run of the test suite (see CI_PRESET)")
    add("--notes", type=int, default=d.notes, help="input records in all (1%% poison)")
    add("--workers", type=int, default=d.workers, help="worker processes")
    add("--partitions", type=int, default=d.partitions, help="partitions of input and output")
    add("--model-path", default=None, help="checkpoint for the workers (default: embedded model)")
    add("--exactly-once", action="store_true", help="transactional workers, read_committed audit")
    add("--out", type=Path, default=d.out, help="results JSON")
    add("--rate", type=float, default=d.rate, help="input records per second")
    add("--faults", type=_faults, default=d.faults, help="comma list of " + ", ".join(FAULTS))
    add("--settle-s", type=float, default=d.settle_s, help="quiet time between faults")
    add("--kills", type=int, default=d.kills, help="worker SIGKILLs")
    add("--kill-interval-s", type=float, default=d.kill_interval_s)
    add("--broker-down-s", type=float, default=d.broker_down_s, help="coordinator broker downtime")
    add("--outage-s", type=float, default=d.outage_s, help="output outage (min.insync unmet)")
    add("--slow-s", type=float, default=d.slow_s, help="how long one worker runs a slow model")
    add("--slow-delay-ms", type=int, default=d.slow_delay_ms, help="delay per model batch")
    add(
        "--session-timeout-ms",
        type=int,
        default=None,
        help="workers' session timeout (default: the worker's own, 15 s)",
    )
    add(
        "--recover-timeout-s",
        type=float,
        default=d.recover_timeout_s,
        help="longest wait for the lag to recover before the next fault",
    )
    add("--torch-threads", type=int, default=None, help="per worker (default: cores / workers)")
    add(
        "--stuck-after-s",
        type=float,
        default=d.stuck_after_s,
        help="a lagging partition that does not move this long at the end is reported stuck",
    )
    add(
        "--drain-timeout-s",
        type=float,
        default=d.drain_timeout_s,
        help="bound on the wait for committed == log end after the stream",
    )
    add("--workdir", type=Path, default=None, help="keep broker data and worker logs here")
    add("--seed", type=int, default=d.seed)
    add(
        "--worker-env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra worker setting, e.g. token_budget=2048 (BIOMARKER_ prefix implied)",
    )
    return parser


def parse_options(argv: list[str]) -> ChaosOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset == "ci":  # preset values become the defaults; explicit flags still win
        parser.set_defaults(**CI_PRESET)
        args = parser.parse_args(argv)
    if args.notes < 100:
        parser.error("--notes must be at least 100")
    if args.workers < 1 or args.partitions < 1 or args.rate <= 0:
        parser.error("--workers, --partitions and --rate must be positive")
    return ChaosOptions(
        notes=args.notes,
        workers=args.workers,
        partitions=args.partitions,
        model_path=args.model_path,
        exactly_once=args.exactly_once,
        out=args.out,
        rate=args.rate,
        faults=args.faults,
        settle_s=args.settle_s,
        kills=args.kills,
        kill_interval_s=args.kill_interval_s,
        broker_down_s=args.broker_down_s,
        outage_s=args.outage_s,
        slow_s=args.slow_s,
        slow_delay_ms=args.slow_delay_ms,
        session_timeout_ms=args.session_timeout_ms,
        recover_timeout_s=args.recover_timeout_s,
        torch_threads=args.torch_threads,
        stuck_after_s=args.stuck_after_s,
        drain_timeout_s=args.drain_timeout_s,
        workdir=args.workdir,
        seed=args.seed,
        worker_env=dict(args.worker_env),
    )
