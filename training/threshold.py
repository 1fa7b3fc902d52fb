"""Choose a checkpoint's threshold on development sets, before any test set is read.

A weight average of several runs (``biomarker-worker soup``) scores nearer the middle than its
members, so 0.5 no longer suits it; a threshold picked on the test sets would overstate their
F1. This module scores the hand-labelled *development* sets (by default ``literature_dev`` and
``clinical_dev``), labelled as the worker serves (a lexicon rule's match is 1 whatever the
score), and takes the grid threshold whose F1, summed over the sets, is highest::

    python -m training.threshold --model RUN --threads 2 [--out choice.json]

Serve the checkpoint at the threshold it prints (``BIOMARKER_THRESHOLD``), or write a copy
with the threshold folded into its classifier (``--fold-into DIR``): the label-1 logit's bias is
lowered by ``logit(threshold)``, so the copy served at the worker's default 0.5 labels every
sentence as the original does at the threshold. Its scores move (monotonically); its decisions
do not.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.evaluate import handlabelled_rows, score_texts, served_probs
from training.metrics import binary_metrics
from worker.errors import UsageError
from worker.lexicon import first_label
from worker.model.classifier import positive_index

#: Thresholds tried: 0.30 to 0.95 in steps of 0.05.
GRID = tuple(round(0.05 * step, 2) for step in range(6, 20))
#: The development sets: the literature's dev draw and the dev split's notes.
DEVELOPMENT_SETS = ("literature_dev", "clinical_dev")

Scored = tuple[Sequence[int], Sequence[float]]  # labels, served scores
#: Written into a folded copy: the source checkpoint, the threshold and the bias change.
FOLD_MANIFEST = "threshold.json"
#: Labels of a checkpoint whose config names none (transformers' defaults).
_PLAIN = {0: "LABEL_0", 1: "LABEL_1"}
_WEIGHTS = "model.safetensors"
_BIAS = "classifier.bias"


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
        probs = served_probs(probs, [first_label(text) for text in texts])
    return [row.label for row in rows], probs


def fold_threshold(model_dir: Path, out_dir: Path, threshold: float) -> dict[str, Any]:
    """Copy ``model_dir`` to ``out_dir`` with ``threshold`` folded into its two-label classifier.

    The positive label's probability is ``sigmoid(z_pos - z_other)``; lowering the positive
    label's bias by ``logit(threshold)`` makes ``p' >= 0.5`` exactly when ``p >= threshold``.
    The positive label is the one the worker scores (``id2label``: usually index 1).
    """
    if not 0.0 < threshold < 1.0:
        raise UsageError(f"a folded threshold must lie strictly between 0 and 1, not {threshold}")
    tensors = checkpoint_tensors(model_dir)
    bias = tensors.get(_BIAS)
    if bias is None or tuple(bias.shape) != (2,):
        raise UsageError(f"{model_dir}: no two-label {_BIAS} to fold a threshold into")
    config = json.loads((model_dir / "config.json").read_text())
    positive = positive_index({int(k): v for k, v in config.get("id2label", {}).items()} or _PLAIN)
    shift = math.log(threshold / (1.0 - threshold))
    folded = bias.clone()
    folded[positive] -= shift
    tensors[_BIAS] = folded.contiguous()
    manifest = {
        "model": str(model_dir),
        "threshold": threshold,
        "positive_index": positive,
        "positive_bias_shift": -shift,
    }
    write_folded_copy(model_dir, out_dir, tensors, FOLD_MANIFEST, manifest)
    return manifest


def checkpoint_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    """The tensors of the checkpoint ``model_dir`` (a usage error when it has none)."""
    weights_path = model_dir / _WEIGHTS
    if not weights_path.is_file():
        raise UsageError(f"{model_dir}: no {_WEIGHTS}")
    return load_file(str(weights_path))


def write_folded_copy(
    model_dir: Path,
    out_dir: Path,
    tensors: dict[str, torch.Tensor],
    manifest_name: str,
    manifest: dict[str, Any],
) -> None:
    """Copy ``model_dir`` to the new directory ``out_dir`` with ``tensors`` as its weights and
    ``manifest`` (what was folded in) written as ``manifest_name``."""
    if out_dir.exists():
        raise UsageError(f"{out_dir} already exists")
    try:
        shutil.copytree(model_dir, out_dir)
        save_file(tensors, str(out_dir / _WEIGHTS), metadata={"format": "pt"})
    except OSError as exc:
        raise UsageError(f"cannot write {out_dir}: {exc.strerror or exc}") from exc
    (out_dir / manifest_name).write_text(json.dumps(manifest, indent=2) + "\n")


def scoring_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The options a development-set choice shares: the model, the sets, how to score them,
    where to write the choice and the folded copy."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--model", type=Path, required=True, help="checkpoint directory")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        help=f"a hand-labelled set (repeatable; default {', '.join(DEVELOPMENT_SETS)})",
    )
    parser.add_argument("--data-dir", type=Path, help="corpora (default: ../shared/data)")
    parser.add_argument("--max-length", type=int, default=512, help="wordpieces per sentence")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--out", type=Path, help="also write the choice JSON here")
    parser.add_argument(
        "--fold-into", type=Path, help="write a copy of the model with the choice folded in"
    )
    return parser


def run_choice(
    args: argparse.Namespace,
    choose: Callable[[dict[str, Scored]], dict[str, Any]],
    fold: Callable[[Path, Path, dict[str, Any]], object],
    *,
    lexicon_rules: bool = True,
) -> int:
    """Score ``args.sets`` as served, ``choose`` on them, ``fold`` the choice into a copy when
    asked, and print (and write) the choice: the body of a choice command's ``main``."""
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
                lexicon_rules=lexicon_rules,
            )
            for name in names
        }
        choice = {"model": str(args.model), "sets": names, **choose(sets)}
        if args.fold_into is not None:
            choice["folded_into"] = str(args.fold_into)
            fold(args.model, args.fold_into, choice)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    text = json.dumps(choice, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = scoring_parser("python -m training.threshold", __doc__)
    parser.add_argument("--no-lexicon-rules", action="store_true", help="score the model alone")
    args = parser.parse_args(argv)
    return run_choice(
        args,
        choose_threshold,
        lambda model, out, choice: fold_threshold(model, out, choice["threshold"]),
        lexicon_rules=not args.no_lexicon_rules,
    )


if __name__ == "__main__":
    raise SystemExit(main())
