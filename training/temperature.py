"""Calibrate a checkpoint's scores on development sets with one temperature, folded in.

A weight average of several runs (``biomarker-worker soup``) scores nearer the middle than its
members: its scores understate how sure it is (model 1.8.0: expected calibration error 0.045 on
the test split's notes, 0.097 on the literature). Dividing the classifier's logits by a
temperature ``T`` sharpens (``T < 1``) or softens (``T > 1``) every score without moving any
decision at 0.5: the label-1 probability is ``sigmoid((z1 - z0) / T)``, whose side of 0.5 is the
sign of ``z1 - z0``. This module takes the grid temperature whose negative log-likelihood,
summed over the hand-labelled *development* sets scored as served (by default ``literature_dev``
and ``clinical_dev``; a lexicon rule's match is 1 whatever the temperature), is lowest::

    python -m training.temperature --model RUN --threads 2 [--out choice.json] [--fold-into DIR]

``--fold-into DIR`` writes a copy whose classifier weight and bias are divided by ``T``, so the
worker serves calibrated scores with no setting. Fold the threshold first
(:mod:`training.threshold`): the temperature keeps the decision boundary where it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.metrics import calibration
from training.threshold import (
    Scored,
    checkpoint_tensors,
    run_choice,
    scoring_parser,
    write_folded_copy,
)
from worker.errors import UsageError

#: Temperatures tried: 0.25 to 2.00 in steps of 0.05.
GRID = tuple(round(0.05 * step, 2) for step in range(5, 41))
#: Written into a folded copy: the source checkpoint and the temperature.
FOLD_MANIFEST = "temperature.json"
_CLASSIFIER = ("classifier.weight", "classifier.bias")
#: Scores are clipped this far from 0 and 1 before taking logits and logs.
_EPSILON = 1e-7


def tempered(score: float, temperature: float) -> float:
    """``score`` with its logit divided by ``temperature`` (1.0 and 0.0 stay as they are)."""
    if score >= 1.0 or score <= 0.0:
        return score
    clipped = min(max(score, _EPSILON), 1.0 - _EPSILON)
    logit = math.log(clipped / (1.0 - clipped)) / temperature
    return 1.0 / (1.0 + math.exp(-logit))


def mean_nll(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Mean negative log-likelihood of ``labels`` under ``scores`` (clipped away from 0 and 1)."""
    total = 0.0
    for label, score in zip(labels, scores, strict=True):
        clipped = min(max(score, _EPSILON), 1.0 - _EPSILON)
        total -= math.log(clipped if label else 1.0 - clipped)
    return total / len(labels) if labels else 0.0


def choose_temperature(sets: dict[str, Scored], grid: Sequence[float] = GRID) -> dict[str, Any]:
    """The grid temperature with the lowest mean NLL summed over ``sets`` (each set counts once,
    whatever its size; among ties the one nearest 1), with every set's NLL and expected
    calibration error at 1 and at the chosen temperature."""

    def per_set(temperature: float) -> dict[str, dict[str, float]]:
        figures = {}
        for name, (labels, scores) in sets.items():
            moved = [tempered(score, temperature) for score in scores]
            figures[name] = {
                "nll": round(mean_nll(labels, moved), 5),
                "ece": round(float(calibration(labels, moved)["ece"]), 4),
            }
        return figures

    def rank(temperature: float) -> tuple[float, float]:
        total = sum(
            mean_nll(labels, [tempered(score, temperature) for score in scores])
            for labels, scores in sets.values()
        )
        return (round(total, 6), round(abs(temperature - 1.0), 6))

    chosen = min(grid, key=rank)
    return {"temperature": chosen, "at_1": per_set(1.0), "chosen": per_set(chosen)}


def fold_temperature(model_dir: Path, out_dir: Path, temperature: float) -> dict[str, Any]:
    """Copy ``model_dir`` to ``out_dir`` with its classifier's weight and bias divided by
    ``temperature``: every score is tempered, no decision at 0.5 moves."""
    if not temperature > 0.0:
        raise UsageError(f"a temperature must be above 0, not {temperature}")
    tensors = checkpoint_tensors(model_dir)
    if any(name not in tensors for name in _CLASSIFIER):
        raise UsageError(f"{model_dir}: no classifier weight and bias to fold a temperature into")
    if not tensors[_CLASSIFIER[1]].is_floating_point():
        raise UsageError(f"{model_dir}: the classifier is not floating point")
    for name in _CLASSIFIER:
        tensors[name] = (tensors[name] / temperature).contiguous()
    manifest = {"model": str(model_dir), "temperature": temperature}
    write_folded_copy(model_dir, out_dir, tensors, FOLD_MANIFEST, manifest)
    return manifest


def main(argv: list[str] | None = None) -> int:
    args = scoring_parser("python -m training.temperature", __doc__).parse_args(argv)
    return run_choice(
        args,
        choose_temperature,
        lambda model, out, choice: fold_temperature(model, out, choice["temperature"]),
    )


if __name__ == "__main__":
    raise SystemExit(main())
