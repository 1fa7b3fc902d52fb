"""``biomarker-worker bench``: model-only limit, end-to-end through Kafka, peers, in one run.

Writes ``<out>/<name>.json`` and two PNG charts; bench/README.md explains how to read them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worker.cli.checkout import checkout_only
from worker.errors import FatalError, UsageError

#: What a full run needs: charts and baselines, the ONNX engines, the faust peer.
BENCH_EXTRAS = "bench,onnx"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark: model alone, end to end through a local broker, and peers"
    )
    parser.add_argument("--quick", action="store_true", help="smoke test, about a minute")
    parser.add_argument("--name", help="results file name (default: cpu-<backend>[-quick])")
    parser.add_argument(
        "--model", default="default", help="default, bert-base or a checkpoint directory"
    )
    parser.add_argument("--backend", default="torch", help="the backend setting (torch)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on AMX CPUs), float32...")
    parser.add_argument("--threads", type=int, help="torch/ONNX threads (default: all cores)")
    parser.add_argument("--notes", type=int, help="notes in the corpus (default 600, quick 24)")
    parser.add_argument("--budgets", help="comma-separated token budgets to sweep")
    parser.add_argument("--partitions", type=int, help="input topic partitions (default 6)")
    parser.add_argument("--max-wait-ms", type=float, help="batching deadline (default 20)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a local one")
    parser.add_argument("--out", default="bench/results", help="results directory")
    parser.add_argument("--no-faust", action="store_true", help="skip the faust-streaming peer")
    parser.add_argument("--no-scaling", action="store_true", help="skip multi-process runs")
    parser.add_argument("--no-backends", action="store_true", help="skip backend comparison")
    parser.add_argument("--no-charts", action="store_true", help="write JSON only")
    parser.set_defaults(handler=handle)


def plan_from_args(args: argparse.Namespace) -> Any:
    with checkout_only(BENCH_EXTRAS):
        from bench.plan import BenchPlan

    name = args.name or f"cpu-{args.dtype}{'-quick' if args.quick else ''}"
    overrides: dict[str, Any] = {
        "name": name,
        "model": args.model,
        "backend": args.backend,
        "dtype": args.dtype,
        "threads": args.threads,
        "out_dir": Path(args.out),
        "bootstrap": args.bootstrap,
        "charts": not args.no_charts,
    }
    if args.notes:
        overrides |= dict.fromkeys(
            ("notes", "faust_notes", "scaling_notes", "paced_notes"), args.notes
        )
    if args.budgets:
        try:
            overrides["budgets"] = tuple(int(b) for b in args.budgets.split(","))
        except ValueError as exc:
            raise UsageError(f"--budgets expects integers, got {args.budgets!r}") from exc
    if args.partitions:
        overrides["partitions"] = args.partitions
    if args.max_wait_ms is not None:
        overrides["max_wait_ms"] = args.max_wait_ms
    if args.no_faust:
        overrides["faust_notes"] = 0
    if args.no_scaling:
        overrides["scaling"] = ()
    if args.no_backends:
        overrides["backends"] = ()
    return BenchPlan.quick(**overrides) if args.quick else BenchPlan(**overrides)


def handle(args: argparse.Namespace) -> int:
    from worker.logs import configure_logging

    with checkout_only(BENCH_EXTRAS):
        from bench import charts, report, runner

    configure_logging("warning")
    plan = plan_from_args(args)

    def step(name: str) -> None:
        sys.stderr.write(f"bench: {name}...\n")

    try:
        results = runner.run(plan, step)
    except FatalError as exc:
        sys.stderr.write(f"bench: error: {exc}\n")
        return 1
    results["ratios"] = report.ratios(results)
    path = report.write(results, plan.out_dir)
    drawn = charts.draw(results, plan.out_dir) if plan.charts else []
    print("\n".join(report.summary_lines(results)))
    print(f"\nwrote {path}" + "".join(f", {p}" for p in drawn))
    return 0
