"""Binary classification metrics and the evaluation report.

:func:`binary_metrics` and :func:`evaluation_report` give the confusion matrix and
precision/recall/F1, overall and per source (training uses them on the dev set).
:func:`error_report` adds what an evaluation needs to look at the errors: bootstrap confidence
intervals, calibration, other thresholds, confusion per error family, the worst errors, and
the metrics without the rows marked unsure. :func:`render_text` prints it as a compact table.

Sentence text appears in the error report only when asked for (``show_text``): clinical text is
sensitive, and the sentence ids identify the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from training.jsonl import LabelledRow

__all__ = [
    "REPORT_THRESHOLDS",
    "best_threshold_f1",
    "binary_metrics",
    "bootstrap_intervals",
    "calibration",
    "error_report",
    "evaluation_report",
    "family_confusion",
    "render_text",
    "worst_errors",
]

#: Thresholds reported besides the one evaluated at.
REPORT_THRESHOLDS = (0.3, 0.5, 0.7)
CALIBRATION_BINS = 10
CONFIDENCE = 0.95


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _document_outcomes(
    labels: Sequence[int],
    probs: Sequence[float],
    threshold: float,
    docs: Sequence[str | None] | None,
) -> Any:
    """Per document, its rows' (tp, fp, fn) counts as a float array (documents x 3); ``None``
    when there is nothing to group (no ``docs``, or every row a document of its own)."""
    if docs is None:
        return None
    if len(docs) != len(labels):
        raise ValueError("docs and labels differ in length")
    keys: dict[object, int] = {}
    # A row without a document is keyed by its index, a tuple no document name can equal.
    group_of = [
        keys.setdefault(doc if doc is not None else (row,), len(keys))
        for row, doc in enumerate(docs)
    ]
    if len(keys) == len(labels):
        return None
    groups = np.zeros((len(keys), 3), dtype=np.float64)
    for group, label, prob in zip(group_of, labels, probs, strict=True):
        predicted = prob >= threshold
        if predicted or label:
            column = 0 if predicted and label else 1 if predicted else 2
            groups[group, column] += 1
    return groups


def _confusion(
    labels: Sequence[int], probs: Sequence[float], threshold: float
) -> tuple[int, int, int, int]:
    """``(tp, fp, fn, tn)`` of predicting 1 when ``prob >= threshold``."""
    tp = fp = fn = tn = 0
    for label, prob in zip(labels, probs, strict=True):
        predicted = prob >= threshold
        if label == 1:
            tp, fn = (tp + 1, fn) if predicted else (tp, fn + 1)
        else:
            fp, tn = (fp + 1, tn) if predicted else (fp, tn + 1)
    return tp, fp, fn, tn


def binary_metrics(
    labels: Sequence[int], probs: Sequence[float], threshold: float
) -> dict[str, Any]:
    """Metrics of predicting 1 when ``prob >= threshold``; label 1 is the positive class."""
    if len(labels) != len(probs):
        raise ValueError("labels and probs differ in length")
    tp, fp, fn, tn = _confusion(labels, probs, threshold)
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


#: At most this many (resample x document) cells are drawn at once by a document bootstrap.
_BOOTSTRAP_CELLS = 4_000_000


def bootstrap_intervals(
    labels: Sequence[int],
    probs: Sequence[float],
    threshold: float,
    *,
    resamples: int = 1000,
    seed: int = 0,
    docs: Sequence[str | None] | None = None,
) -> dict[str, list[float]] | None:
    """95% percentile-bootstrap intervals of precision, recall and F1 (``None`` without rows).

    With ``docs`` (each row's document, e.g. its note; ``None``: a document of its own) whole
    documents are resampled: the sentences of one note are not independent (its positives and
    errors come together), and resampling them one by one gives intervals that are too
    narrow. Without ``docs``, or when no document holds two rows, sentences are resampled;
    that only changes how many of each outcome (tp, fp, fn, tn) a sample holds, so a resample
    is drawn directly as multinomial counts over the four outcomes: the same distribution as
    drawing sentence indices, in constant time per resample.

    A resample in which a metric is undefined (no predicted positive for precision, no actual
    one for recall) is left out of that metric's interval rather than counted as 0; a metric no
    resample defines gets no interval.
    """
    if not labels or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    groups = _document_outcomes(labels, probs, threshold, docs)
    if groups is None:
        counts = np.array(_confusion(labels, probs, threshold), dtype=np.float64)
        draws = rng.multinomial(len(labels), counts / counts.sum(), size=resamples)
        tp, fp, fn = (draws[:, column].astype(np.float64) for column in range(3))
    else:
        # How often each document is drawn, times its outcome counts, in chunks of resamples.
        size = len(groups)
        chunk = max(1, _BOOTSTRAP_CELLS // size)
        totals = []
        for start in range(0, resamples, chunk):
            batch = min(chunk, resamples - start)
            times = rng.multinomial(size, np.full(size, 1.0 / size), size=batch)
            totals.append(times.astype(np.float64) @ groups)
        summed = np.concatenate(totals)
        tp, fp, fn = (summed[:, column] for column in range(3))

    def ratio(numerator: Any, denominator: Any) -> Any:
        """Undefined (a resample with no predicted or no actual positive) is NaN, left out."""
        out = np.full_like(numerator, np.nan)
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out

    tail = (1 - CONFIDENCE) / 2 * 100
    intervals: dict[str, list[float]] = {}
    for name, values in (
        ("precision", ratio(tp, tp + fp)),
        ("recall", ratio(tp, tp + fn)),
        ("f1", ratio(2 * tp, 2 * tp + fp + fn)),
    ):
        defined = values[~np.isnan(values)]
        if defined.size:  # else no resample defines it (e.g. no positives at all): no interval
            low, high = np.percentile(defined, [tail, 100 - tail])
            intervals[name] = [round(float(low), 4), round(float(high), 4)]
    return intervals


def calibration(
    labels: Sequence[int], probs: Sequence[float], bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """Expected calibration error over ``bins`` equal-width score bins, and the reliability table.

    ECE is the mean, weighted by the bins' row counts, of ``|mean score - positive rate|``.
    """
    counts = [0] * bins
    score_sums = [0.0] * bins
    positives = [0] * bins
    for label, prob in zip(labels, probs, strict=True):
        index = min(max(int(prob * bins), 0), bins - 1)
        counts[index] += 1
        score_sums[index] += prob
        positives[index] += label
    total = sum(counts)
    ece = 0.0
    table: list[dict[str, Any]] = []
    for index in range(bins):
        count = counts[index]
        mean_score = score_sums[index] / count if count else None
        rate = positives[index] / count if count else None
        if mean_score is not None and rate is not None:
            ece += count / total * abs(mean_score - rate)
        table.append(
            {
                "bin": [round(index / bins, 4), round((index + 1) / bins, 4)],
                "count": count,
                "mean_score": None if mean_score is None else round(mean_score, 4),
                "positive_rate": None if rate is None else round(rate, 4),
            }
        )
    return {"bins": bins, "ece": round(ece, 4) if total else None, "reliability": table}


def best_threshold_f1(labels: Sequence[int], probs: Sequence[float]) -> dict[str, Any]:
    """The score threshold with the highest F1 on these rows (the highest one among ties).

    Report-only: a threshold picked on the rows it is measured on overstates F1.
    """
    positives = sum(labels)
    best: dict[str, Any] = {"threshold": None, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    if not positives:
        return best
    order = sorted(zip(probs, labels, strict=True), key=lambda pair: -pair[0])
    tp = fp = 0
    best_f1 = -1.0
    for index, (prob, label) in enumerate(order):
        tp, fp = (tp + 1, fp) if label == 1 else (tp, fp + 1)
        if index + 1 < len(order) and order[index + 1][0] == prob:
            continue  # a threshold takes every row with the same score
        f1 = _ratio(2 * tp, tp + fp + positives)
        if f1 > best_f1:
            best_f1 = f1
            best = {
                "threshold": prob,
                "precision": round(_ratio(tp, tp + fp), 4),
                "recall": round(_ratio(tp, positives), 4),
                "f1": round(f1, 4),
            }
    return best


def _domain(row: LabelledRow) -> str:
    return row.source or "unknown"


def family_confusion(
    rows: Sequence[LabelledRow], probs: Sequence[float], threshold: float
) -> dict[str, dict[str, Any]]:
    """Per error family (rows with a ``family``): counts of gold positives, misses, tp/fp/fn/tn."""
    groups: dict[str, tuple[list[int], list[float]]] = {}
    for row, prob in zip(rows, probs, strict=True):
        if row.family:
            group = groups.setdefault(row.family, ([], []))
            group[0].append(row.label)
            group[1].append(prob)
    out: dict[str, dict[str, Any]] = {}
    for family, (labels, scores) in sorted(groups.items()):
        tp, fp, fn, tn = _confusion(labels, scores, threshold)
        out[family] = {
            "n": len(labels),
            "positives": tp + fn,
            "missed": fn,
            "false_positives": fp,
            "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        }
    return out


def worst_errors(
    rows: Sequence[LabelledRow],
    probs: Sequence[float],
    threshold: float,
    *,
    limit: int = 10,
    show_text: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """The ``limit`` false negatives with the lowest scores and false positives with the highest.

    Each entry names the row (1-based position in the input, and its id when it has one), its
    score, family, domain and unsure flag; the sentence text only with ``show_text``.
    """

    def entry(index: int) -> dict[str, Any]:
        row = rows[index]
        item: dict[str, Any] = {
            "row": index + 1,
            "id": row.id,
            "score": round(probs[index], 4),
            "family": row.family,
            "domain": _domain(row),
            "unsure": row.unsure,
        }
        if show_text:
            item["text"] = row.text
        return item

    misses = [i for i, row in enumerate(rows) if row.label == 1 and probs[i] < threshold]
    alarms = [i for i, row in enumerate(rows) if row.label == 0 and probs[i] >= threshold]
    misses.sort(key=lambda i: (probs[i], i))
    alarms.sort(key=lambda i: (-probs[i], i))
    return {
        "worst_false_negatives": [entry(i) for i in misses[: max(limit, 0)]],
        "worst_false_positives": [entry(i) for i in alarms[: max(limit, 0)]],
    }


@dataclass(frozen=True, slots=True)
class _Resampling:
    """How a report's intervals are drawn (see :func:`bootstrap_intervals`)."""

    resamples: int
    seed: int
    by_document: bool

    def intervals(
        self,
        rows: Sequence[LabelledRow],
        labels: Sequence[int],
        probs: Sequence[float],
        threshold: float,
    ) -> dict[str, list[float]] | None:
        docs = [row.doc for row in rows] if self.by_document else None
        return bootstrap_intervals(
            labels, probs, threshold, resamples=self.resamples, seed=self.seed, docs=docs
        )

    def describe(self, rows: Sequence[LabelledRow]) -> str:
        if self.resamples <= 0:
            return "none"
        drawn = f"{self.resamples} resamples, seed {self.seed}"
        documents = {row.doc for row in rows if row.doc is not None}
        if not self.by_document or not documents:
            return f"bootstrap over sentences, {drawn}"
        alone = sum(row.doc is None for row in rows)
        unit = f"{len(documents)} documents" + (
            f" and {alone} sentences without one" if alone else ""
        )
        return f"bootstrap over documents ({unit}), {drawn}"


def _block(
    rows: Sequence[LabelledRow], probs: Sequence[float], threshold: float, resampling: _Resampling
) -> dict[str, Any]:
    labels = [row.label for row in rows]
    block = binary_metrics(labels, probs, threshold)
    block["ci95"] = resampling.intervals(rows, labels, probs, threshold)
    block["ece"] = calibration(labels, probs)["ece"]
    return block


def _by_domain(
    rows: Sequence[LabelledRow], probs: Sequence[float], threshold: float, resampling: _Resampling
) -> dict[str, Any]:
    groups: dict[str, tuple[list[LabelledRow], list[float]]] = {}
    for row, prob in zip(rows, probs, strict=True):
        group = groups.setdefault(_domain(row), ([], []))
        group[0].append(row)
        group[1].append(prob)
    return {
        "overall": _block(rows, probs, threshold, resampling),
        "by_source": {
            name: _block(members, scores, threshold, resampling)
            for name, (members, scores) in sorted(groups.items())
        },
    }


def error_report(
    rows: Sequence[LabelledRow],
    probs: Sequence[float],
    *,
    threshold: float,
    resamples: int = 1000,
    seed: int = 0,
    worst: int = 10,
    show_text: bool = False,
    by_document: bool = True,
) -> dict[str, Any]:
    """Scores and errors of ``probs`` on ``rows``: the evaluation report (see the module doc).

    ``overall`` and each ``by_source`` (domain) block carry P/R/F1 with ``ci95`` intervals
    (``resamples`` seeded bootstrap resamples; 0 leaves them out) and ``ece``. The bootstrap
    resamples whole documents (a row's ``doc``: its note or abstract; a row without one counts
    alone) unless ``by_document`` is false, then single sentences.
    """
    if len(rows) != len(probs):
        raise ValueError("rows and probs differ in length")
    labels = [row.label for row in rows]
    sure = [i for i, row in enumerate(rows) if not row.unsure]
    resampling = _Resampling(resamples, seed, by_document)
    excluding = _by_domain([rows[i] for i in sure], [probs[i] for i in sure], threshold, resampling)
    at_thresholds = {}
    for value in sorted({*REPORT_THRESHOLDS, threshold}):
        metrics = binary_metrics(labels, probs, value)
        at_thresholds[f"{value:g}"] = {
            key: metrics[key] for key in ("precision", "recall", "f1", "confusion_matrix")
        }
    return {
        "threshold": threshold,
        "interval": resampling.describe(rows),
        **_by_domain(rows, probs, threshold, resampling),
        "at_thresholds": at_thresholds,
        "best_threshold_f1": best_threshold_f1(labels, probs),
        "calibration": calibration(labels, probs),
        "by_family": family_confusion(rows, probs, threshold),
        "unsure": len(rows) - len(sure),
        "excluding_unsure": excluding,
        **worst_errors(rows, probs, threshold, limit=worst, show_text=show_text),
        "text_shown": show_text,
    }


def _prf(block: dict[str, Any]) -> str:
    ci = block.get("ci95") or {}
    parts = []
    for key in ("precision", "recall", "f1"):
        low_high = ci.get(key)
        interval = f" [{low_high[0]:.3f}-{low_high[1]:.3f}]" if low_high else ""
        parts.append(f"{block[key]:.3f}{interval}".ljust(20))
    return " ".join(parts)


def _metrics_table(title: str, section: dict[str, Any]) -> list[str]:
    lines = [f"{title:<14} {'n':>6} {'pos':>6}  {'precision':<20} {'recall':<20} {'f1':<20} ece"]
    blocks = [("overall", section["overall"]), *section["by_source"].items()]
    for name, block in blocks:
        ece = "-" if block.get("ece") is None else f"{block['ece']:.3f}"
        lines.append(
            f"{name:<14} {block['n']:>6} {block['positives']:>6}  {_prf(block)} {ece}".rstrip()
        )
    return lines


def _worst_lines(title: str, entries: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return [f"{title}: none"]
    lines = [f"{title}:"]
    for item in entries:
        name = item["id"] if item["id"] is not None else f"row {item['row']}"
        flags = (" unsure" if item["unsure"] else "") + (
            f"  rule: {item['rule']}" if "rule" in item else ""
        )
        line = f"  {item['score']:.4f}  {name}  {item['family'] or '-'}  {item['domain']}{flags}"
        lines.append(line)
        if "text" in item:
            lines.append(f"      {item['text']}")
    return lines


def render_text(report: dict[str, Any]) -> str:
    """A compact human-readable summary of an :func:`error_report` (text only if it holds any)."""
    lines: list[str] = []
    if "model" in report:
        lines.append(f"model: {report['model']}")
    lines.append(
        f"threshold {report['threshold']:g}; 95% intervals: {report['interval']}; "
        f"unsure rows: {report['unsure']}"
    )
    lexicon = report.get("lexicon")
    if lexicon:
        alone = lexicon["model_alone"]
        lines.append(
            f"lexicon rules {lexicon['version']}: {lexicon['rule_rows']} rows matched, "
            f"{lexicon['rule_alone_rows']} labelled 1 by a rule alone; model alone P/R/F1 "
            f"{alone['precision']:.3f}/{alone['recall']:.3f}/{alone['f1']:.3f}"
        )
    lines += _metrics_table("domain", report)
    if report["unsure"]:
        lines += _metrics_table("excl. unsure", report["excluding_unsure"])
    thresholds = "  ".join(
        f"{key}: {m['precision']:.3f}/{m['recall']:.3f}/{m['f1']:.3f}"
        for key, m in report["at_thresholds"].items()
    )
    lines.append(f"P/R/F1 at thresholds  {thresholds}")
    best = report["best_threshold_f1"]
    if best["threshold"] is not None:
        lines.append(
            f"best F1 on these rows (report-only): {best['f1']:.3f} at {best['threshold']:.4f}"
        )
    ece = report["calibration"]["ece"]
    lines.append(f"ECE ({report['calibration']['bins']} bins): {'-' if ece is None else ece}")
    if report["by_family"]:
        width = max(len("family"), *map(len, report["by_family"]))
        lines.append(
            f"{'family':<{width}} {'n':>5} {'pos':>5} {'missed':>6} {'fp':>5} {'tp':>5} {'tn':>5}"
        )
        for family, item in report["by_family"].items():
            matrix = item["confusion_matrix"]
            lines.append(
                f"{family:<{width}} {item['n']:>5} {item['positives']:>5} {item['missed']:>6} "
                f"{item['false_positives']:>5} {matrix['tp']:>5} {matrix['tn']:>5}"
            )
    lines += _worst_lines("worst false negatives", report["worst_false_negatives"])
    lines += _worst_lines("worst false positives", report["worst_false_positives"])
    return "\n".join(lines) + "\n"
