"""Score labelled rows with a saved checkpoint through the project's classifier wrapper.

The rows come from labelled JSONL (:func:`training.jsonl.read_labelled`) or from a hand-labelled
evaluation set (:func:`handlabelled_rows`); the report is :func:`training.metrics.error_report`.
With lexicon rules (the worker's default) a row a rule matches is labelled 1 as the worker
labels it: its score counts as 1.0, and the report also gives the model's own figures.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from training.jsonl import LabelledRow, row_from_json
from training.metrics import binary_metrics, error_report
from training.predict import length_sorted_batches
from worker.errors import FatalError, UsageError
from worker.lexicon import LEXICON_VERSION, first_label

__all__ = [
    "HANDLABELLED_SETS",
    "evaluate_model",
    "handlabelled_rows",
    "score_texts",
    "served_probs",
]

#: The hand-labelled evaluation sets (:mod:`training.handlabels`).
HANDLABELLED_SETS = ("clinical", "clinical_dev", "literature", "literature_dev")


def score_texts(
    model_dir: Path,
    texts: list[str],
    *,
    batch_size: int = 32,
    max_length: int = 512,
    threads: int | None = None,
) -> tuple[list[float], dict[str, float]]:
    """Probability of label 1 per text (input order) and timing: load seconds, sentences/s."""
    from worker.model.classifier import SequenceClassifier

    started = time.perf_counter()
    try:
        model = SequenceClassifier.load(
            model_dir, device="cpu", dtype="float32", max_length=max_length, threads=threads
        )
    except FatalError as exc:
        raise UsageError(str(exc)) from exc
    loaded = time.perf_counter()
    encoded = model.encode(texts)
    probs = [0.0] * len(texts)
    batches = length_sorted_batches([len(item.ids) for item in encoded], batch_size)
    for batch in tqdm(batches, desc="evaluate", unit="batch", file=sys.stderr, dynamic_ncols=True):
        scores = model.predict_ids([encoded[index].ids for index in batch])
        for index, score in zip(batch, scores, strict=True):
            probs[index] = score
    done = time.perf_counter()
    timing = {
        "load_seconds": round(loaded - started, 3),
        "sentences_per_second": round(len(texts) / max(done - loaded, 1e-9), 1),
    }
    return probs, timing


def handlabelled_rows(name: str, data_dir: Path | None = None) -> list[LabelledRow]:
    """The hand-labelled set ``name`` as rows: domain ``name`` (``name-b<batch>`` when it was
    labelled in several batches), the sentence id, family, unsure.

    The text is read back from the corpora in ``data_dir`` (default: the one
    :mod:`training.handlabels` uses); a missing label file or corpus is a :class:`UsageError`.
    """
    from training import handlabels

    if name not in HANDLABELLED_SETS:
        raise UsageError(f"no hand-labelled set {name!r} (one of {', '.join(HANDLABELLED_SETS)})")
    try:
        pairs = handlabels.load_labels(name, data_dir or handlabels.DEFAULT_DATA_DIR)
    except FileNotFoundError as exc:
        raise UsageError(f"hand-labelled set {name}: {exc.filename} not found") from exc
    except (ValueError, KeyError) as exc:
        raise UsageError(f"hand-labelled set {name}: {exc}") from exc
    batches = {record.get("batch", 1) for _, record in pairs}
    rows = []
    for sentence, record in pairs:
        where = f"hand-labelled set {name}, id {sentence.id}"
        row = row_from_json(
            {**record, "id": sentence.id, "doc": sentence.doc}, where, text=sentence.text
        )
        # A set labelled in batches reports each batch too (a later batch is an untouched check).
        domain = f"{name}-b{record.get('batch', 1)}" if len(batches) > 1 else name
        rows.append(replace(row, source=domain))
    if not rows:
        raise UsageError(f"hand-labelled set {name} has no rows")
    return rows


def served_probs(probs: list[float], rules: list[str | None]) -> list[float]:
    """Scores as the worker labels: a sentence a lexicon rule matched (``rules``, from
    :func:`worker.lexicon.first_label`) counts as 1.0 whatever the model said."""
    return [1.0 if rule is not None else prob for prob, rule in zip(probs, rules, strict=True)]


def evaluate_model(
    model_dir: Path,
    rows: list[LabelledRow],
    *,
    threshold: float,
    batch_size: int = 32,
    max_length: int = 512,
    threads: int | None = None,
    resamples: int = 1000,
    seed: int = 0,
    worst: int = 10,
    show_text: bool = False,
    lexicon_rules: bool = True,
    by_document: bool = True,
) -> dict[str, Any]:
    """Evaluation report of ``model_dir`` on ``rows`` (see :func:`error_report`), labelled as
    the worker labels them (``lexicon_rules``: as with ``BIOMARKER_LEXICON_RULES``)."""
    if not model_dir.is_dir():
        raise UsageError(f"{model_dir} is not a model directory")
    probs, timing = score_texts(
        model_dir,
        [row.text for row in rows],
        batch_size=batch_size,
        max_length=max_length,
        threads=threads,
    )
    rules = [first_label(row.text) if lexicon_rules else None for row in rows]
    served = served_probs(probs, rules)
    report = error_report(
        rows,
        served,
        threshold=threshold,
        resamples=resamples,
        seed=seed,
        worst=worst,
        show_text=show_text,
        by_document=by_document,
    )
    report["lexicon"] = None
    if lexicon_rules:
        labels = [row.label for row in rows]
        report["lexicon"] = {
            "version": LEXICON_VERSION,
            "rule_rows": sum(rule is not None for rule in rules),
            "rule_alone_rows": sum(
                rule is not None and prob < threshold
                for prob, rule in zip(probs, rules, strict=True)
            ),
            "model_alone": binary_metrics(labels, probs, threshold),
        }
        for key in ("worst_false_negatives", "worst_false_positives"):
            for item in report[key]:
                if rules[item["row"] - 1] is not None:
                    item["rule"] = rules[item["row"] - 1]
    report["model"] = str(model_dir)
    report["timing"] = {**timing, "batch_size": batch_size}
    return report
