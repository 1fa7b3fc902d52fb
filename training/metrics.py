"""Binary classification metrics: confusion matrix, precision/recall/F1, per-source breakdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["binary_metrics", "evaluation_report"]


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def binary_metrics(
    labels: Sequence[int], probs: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Metrics of predicting 1 when ``prob >= threshold``; label 1 is the positive class."""
    if len(labels) != len(probs):
        raise ValueError("labels and probs differ in length")
    tp = fp = fn = tn = 0
    for label, prob in zip(labels, probs, strict=True):
        predicted = prob >= threshold
        if label == 1:
            tp, fn = (tp + 1, fn) if predicted else (tp, fn + 1)
        else:
            fp, tn = (fp + 1, tn) if predicted else (fp, tn + 1)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    return {
        "n": len(labels),
        "positives": tp + fn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "accuracy": round(_ratio(tp + tn, len(labels)), 4),
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def evaluation_report(
    labels: Sequence[int],
    probs: Sequence[float],
    sources: Sequence[str | None],
    threshold: float,
) -> dict[str, Any]:
    """Overall metrics plus one block per ``source`` value (rows without one are "unknown")."""
    groups: dict[str, tuple[list[int], list[float]]] = {}
    for label, prob, source in zip(labels, probs, sources, strict=True):
        group = groups.setdefault(source or "unknown", ([], []))
        group[0].append(label)
        group[1].append(prob)
    return {
        "threshold": threshold,
        "overall": binary_metrics(labels, probs, threshold),
        "by_source": {
            name: binary_metrics(group[0], group[1], threshold)
            for name, group in sorted(groups.items())
        },
    }
