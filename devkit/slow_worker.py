"""A worker whose model is slow on purpose, for fault runs: ``python -m devkit.slow_worker``.

It wraps the classifier's batch scoring with a fixed delay per batch, then runs
``biomarker-worker run`` unchanged (same settings, same ``BIOMARKER_*`` variables). Nothing in the
service changes; the patch lives only in this process.

    python -m devkit.slow_worker --delay-ms 500
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any


def slow_down(delay_s: float) -> None:
    """Make every ``SequenceClassifier.predict_ids`` call (one model batch) ``delay_s`` slower."""
    from worker.model.classifier import SequenceClassifier

    original: Callable[[Any, Sequence[Sequence[int]]], list[float]] = SequenceClassifier.predict_ids

    @functools.wraps(original)
    def delayed(self: Any, batch: Sequence[Sequence[int]]) -> list[float]:
        time.sleep(delay_s)
        return original(self, batch)

    SequenceClassifier.predict_ids = delayed  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.slow_worker")
    parser.add_argument("--delay-ms", type=int, default=500, help="added to every model batch")
    args, rest = parser.parse_known_args(argv)
    slow_down(args.delay_ms / 1000)
    from worker.cli import main as worker_main

    return worker_main(["run", *rest])


if __name__ == "__main__":
    raise SystemExit(main())
