"""The chaos run: ``biomarker-worker chaos`` (development only; see docs/RELIABILITY.md).

A 3-node local Kafka cluster, worker processes, a paced stream of real notes with poison, a
sequence of faults (worker SIGKILLs, a rolling restart, the group coordinator's broker killed, an
output outage, a slow model, an oversized output), then an audit of every input offset.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from devkit.chaos.options import FAULTS, ChaosOptions, parse_options

__all__ = ["FAULTS", "ChaosOptions", "main", "run"]


def run(options: ChaosOptions, *, quiet: bool = False) -> tuple[int, dict[str, object]]:
    """Run, print the report, write the JSON; (exit code, result)."""
    from devkit.chaos.report import render, write_json
    from devkit.chaos.run import run_chaos

    result = run_chaos(options, say=(lambda _m: None) if quiet else print)
    print(render(result), flush=True)
    write_json(result, options.out)
    print(f"\nresults: {options.out}")
    return (0 if result["verdict"] == "pass" else 1), result


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    options = parse_options(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up brokers and workers as on Ctrl-C
    try:
        code, _ = run(options)
    except KeyboardInterrupt:
        print("chaos run interrupted; brokers and workers stopped", file=sys.stderr)
        return 130
    return code
