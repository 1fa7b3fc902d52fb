"""Choose a checkpoint's threshold on development sets, before any test set is read.

A weight average of several runs (``biomarker-worker soup``) scores nearer the middle than its
members, so 0.5 no longer suits it; a threshold picked on the test sets would overstate their
F1. This module scores the hand-labelled *development* sets (by default ``literature_dev`` and
``clinical_dev``), labelled as the worker serves (a lexicon rule's match is 1 whatever the
score), and takes the grid threshold whose F1, summed over the sets, is highest::

    python -m training.threshold --model RUN --threads 2 [--out choice.json]

Serve the checkpoint at the threshold it prints (``BIOMARKER_THRESHOLD``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.evaluate import handlabelled_rows, score_texts
from training.metrics import binary_metrics
from worker.errors import UsageError
from worker.lexicon import first_label

#: Thresholds tried: 0.30 to 0.95 in steps of 0.05.
GRID = tuple(round(0.05 * step, 2) for step in range(6, 20))
#: The development sets: the literature's dev draw and the dev split's notes.
DEVELOPMENT_SETS = ("literature_dev", "clinical_dev")

Scored = tuple[Sequence[int], Sequence[float]]  # labels, served scores


def choose_threshold(sets: dict[str, Scored], grid: Sequence[float] = GRID) -> dict[str, Any]:
    """The grid threshold with the highest F1 summed over ``sets`` (among ties, the one nearest
    0.5, then the lower), with every set's P/R/F1 at every threshold."""
    table = {
        threshold: {
            name: binary_metrics(labels, scores, threshold)
            for name, (labels, scores) in sets.items()
        }
        for threshold in grid
    }

    def rank(threshold: float) -> tuple[float, float, float]:
        total = sum(metrics["f1"] for metrics in table[threshold].values())
        return (-round(total, 4), round(abs(threshold - 0.5), 6), threshold)

    chosen = min(grid, key=rank)
    return {
        "threshold": chosen,
        "f1_sum": round(sum(metrics["f1"] for metrics in table[chosen].values()), 4),
        "grid": {
            f"{threshold:.2f}": {
                name: {key: metrics[key] for key in ("precision", "recall", "f1")}
                for name, metrics in per_set.items()
            }
            for threshold, per_set in table.items()
        },
    }


def served_scores(
    model_dir: Path,
    name: str,
    *,
    data_dir: Path | None,
    threads: int | None,
    max_length: int,
    lexicon_rules: bool = True,
) -> Scored:
    """Labels and scores of the hand-labelled set ``name`` as the worker would serve them."""
    rows = handlabelled_rows(name, data_dir)
    texts = [row.text for row in rows]
    probs, _ = score_texts(model_dir, texts, max_length=max_length, threads=threads)
    if lexicon_rules:
        rules = [first_label(text) for text in texts]
        probs = [1.0 if rule is not None else p for rule, p in zip(rules, probs, strict=True)]
    return [row.label for row in rows], probs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.threshold", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        help=f"a hand-labelled set (repeatable; default {', '.join(DEVELOPMENT_SETS)})",
    )
    parser.add_argument("--data-dir", type=Path, help="corpora (default: ../shared/data)")
    parser.add_argument("--no-lexicon-rules", action="store_true", help="score the model alone")
    parser.add_argument("--max-length", type=int, default=512, help="wordpieces per sentence")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="also write the choice JSON here")
    args = parser.parse_args(argv)
    names = args.sets or list(DEVELOPMENT_SETS)
    try:
        if not args.model.is_dir():
            raise UsageError(f"{args.model} is not a model directory")
        sets = {
            name: served_scores(
                args.model,
                name,
                data_dir=args.data_dir,
                threads=args.threads,
                max_length=args.max_length,
                lexicon_rules=not args.no_lexicon_rules,
            )
            for name in names
        }
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    choice = {"model": str(args.model), "sets": names, **choose_threshold(sets)}
    text = json.dumps(choice, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
