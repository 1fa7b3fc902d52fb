"""The evaluation report: intervals, calibration, error families, worst errors, text hiding, CLI.

Everything but the last tests runs on hand-made scores (no model); the end-to-end tests score a
tiny random BERT.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from training import evaluate as evaluate_module
from training import handlabels
from training.jsonl import LabelledRow, read_labelled
from training.metrics import (
    best_threshold_f1,
    bootstrap_intervals,
    calibration,
    error_report,
    render_text,
)
from worker.cli import main
from worker.errors import UsageError
from worker.lexicon import LEXICON_VERSION


def _row(
    label: int,
    *,
    domain: str | None = "literature",
    family: str | None = None,
    unsure: bool = False,
    id: str | None = None,
    text: str = "a sentence",
) -> LabelledRow:
    return LabelledRow(text, label, domain, id=id, family=family, unsure=unsure)


# Eight rows at threshold 0.5: tp s1 s2, fn s3 s8, fp s4 s7, tn s5 s6.
_SCORES = [0.9, 0.6, 0.2, 0.7, 0.1, 0.4, 0.5, 0.3]
_ROWS = [
    _row(1, domain="clinical", family="lab_prose", id="s1", text="Serum PSA is 4.1 ng/mL."),
    _row(1, domain="clinical", family="lab_prose", id="s2", text="Hgb 12.3 today."),
    _row(1, domain="clinical", family="lab_prose", id="s3", text="Potassium was low."),
    _row(0, domain="clinical", family="abbrev_collision", id="s4", text="ER visit for pain."),
    _row(0, domain="literature", id="s5", text="The knee was stable."),
    _row(0, domain="literature", unsure=True, id="s6", text="Mice were housed."),
    _row(0, domain="literature", family="abbrev_collision", id="s7", text="PR interval normal."),
    _row(1, domain="literature", family="gene", unsure=True, id="s8", text="BRCA1 was seen."),
]


def _synthetic(n: int, seed: int) -> tuple[list[LabelledRow], list[float]]:
    """Scores uniform in [0, 1], labels drawn with probability equal to the score."""
    rng = random.Random(seed)
    rows, probs = [], []
    for index in range(n):
        prob = rng.random()
        rows.append(_row(int(rng.random() < prob), domain=rng.choice(["a", "b"]), id=f"r{index}"))
        probs.append(prob)
    return rows, probs


def test_report_counts_families_and_thresholds() -> None:
    report = error_report(_ROWS, _SCORES, threshold=0.65, resamples=200)
    assert report["overall"]["confusion_matrix"] == {"tp": 1, "fp": 1, "fn": 3, "tn": 3}
    assert set(report["by_source"]) == {"clinical", "literature"}
    assert report["by_source"]["clinical"]["n"] == 4
    assert list(report["at_thresholds"]) == ["0.3", "0.5", "0.65", "0.7"]
    assert report["at_thresholds"]["0.5"]["confusion_matrix"] == {
        "tp": 2,
        "fp": 2,
        "fn": 2,
        "tn": 2,
    }
    assert report["at_thresholds"]["0.5"]["f1"] == 0.5
    families = error_report(_ROWS, _SCORES, threshold=0.5, resamples=0)["by_family"]
    assert families["lab_prose"] == {
        "n": 3,
        "positives": 3,
        "missed": 1,
        "false_positives": 0,
        "confusion_matrix": {"tp": 2, "fp": 0, "fn": 1, "tn": 0},
    }
    assert families["abbrev_collision"]["false_positives"] == 2
    assert families["gene"]["missed"] == 1
    assert set(families) == {"lab_prose", "abbrev_collision", "gene"}  # untagged rows: none


def test_worst_errors_are_ordered_and_carry_ids_not_text() -> None:
    report = error_report(_ROWS, _SCORES, threshold=0.5, resamples=0, worst=1)
    [missed] = report["worst_false_negatives"]
    assert missed == {
        "row": 3,
        "id": "s3",
        "score": 0.2,
        "family": "lab_prose",
        "domain": "clinical",
        "unsure": False,
    }
    report = error_report(_ROWS, _SCORES, threshold=0.5, resamples=0, worst=10)
    assert [item["id"] for item in report["worst_false_positives"]] == ["s4", "s7"]
    assert report["text_shown"] is False
    shown = error_report(_ROWS, _SCORES, threshold=0.5, resamples=0, show_text=True)
    assert shown["worst_false_positives"][0]["text"] == "ER visit for pain."


def test_text_is_never_in_the_report_without_show_text() -> None:
    for show_text in (False, True):
        report = error_report(_ROWS, _SCORES, threshold=0.5, resamples=50, show_text=show_text)
        for output in (json.dumps(report), render_text(report)):
            found = [row.text for row in _ROWS if row.text in output]
            if show_text:
                assert found  # the errors' sentences
            else:
                assert found == []


def test_unsure_rows_are_reported_with_and_without() -> None:
    report = error_report(_ROWS, _SCORES, threshold=0.5, resamples=100)
    assert report["unsure"] == 2
    assert report["overall"]["n"] == 8
    excluding = report["excluding_unsure"]
    assert excluding["overall"]["n"] == 6
    assert excluding["overall"]["confusion_matrix"] == {"tp": 2, "fp": 2, "fn": 1, "tn": 1}
    assert excluding["by_source"]["literature"]["n"] == 2
    assert "excl. unsure" in render_text(report)


def test_bootstrap_is_seeded_and_contains_the_point_estimate() -> None:
    rows, probs = _synthetic(600, seed=3)
    first = error_report(rows, probs, threshold=0.5, resamples=1000, seed=0)
    again = error_report(rows, probs, threshold=0.5, resamples=1000, seed=0)
    other = error_report(rows, probs, threshold=0.5, resamples=1000, seed=1)
    assert first == again
    assert first["overall"]["ci95"] != other["overall"]["ci95"]
    assert first["interval"] == "bootstrap over sentences, 1000 resamples, seed 0"
    for block in [first["overall"], *first["by_source"].values()]:
        for metric in ("precision", "recall", "f1"):
            low, high = block["ci95"][metric]
            assert low <= block[metric] <= high, (metric, block)
            assert 0.0 < high - low < 0.25
    none = error_report(rows, probs, threshold=0.5, resamples=0)
    assert none["overall"]["ci95"] is None
    assert none["interval"] == "none"


def _f1_interval_by_drawing(
    groups: list[list[int]], labels: list[int], probs: list[float]
) -> list[float]:
    """The 95% F1 interval of 2,000 resamples drawing whole ``groups`` of row indices (single
    rows: a sentence bootstrap) with replacement, the slow way."""
    rng = random.Random(0)
    f1s = []
    for _ in range(2000):
        tp = fp = fn = 0
        for group in (rng.choice(groups) for _ in groups):
            for index in group:
                predicted = probs[index] >= 0.5
                tp += labels[index] == 1 and predicted
                fp += labels[index] == 0 and predicted
                fn += labels[index] == 1 and not predicted
        f1s.append(2 * tp / (2 * tp + fp + fn))
    f1s.sort()
    return [f1s[int(0.025 * len(f1s))], f1s[int(0.975 * len(f1s)) - 1]]


def test_bootstrap_matches_resampling_sentences() -> None:
    """The multinomial shortcut gives the interval that resampling sentence indices gives."""
    rows, probs = _synthetic(400, seed=5)
    labels = [row.label for row in rows]
    fast = bootstrap_intervals(labels, probs, 0.5, resamples=2000, seed=0)
    assert fast is not None
    slow = _f1_interval_by_drawing([[index] for index in range(len(rows))], labels, probs)
    assert fast["f1"] == pytest.approx(slow, abs=0.015)


def _clustered(notes: int, per_note: int, seed: int) -> tuple[list[LabelledRow], list[float]]:
    """Notes whose sentences share one outcome: a third of the notes hold every positive, and
    in a third of those the model misses them all; a few other notes are all false alarms."""
    rng = random.Random(seed)
    rows, probs = [], []
    for note in range(notes):
        kind = rng.choice(["hit", "hit", "miss", "quiet", "quiet", "quiet", "quiet", "alarm"])
        for index in range(per_note):
            label = int(kind in {"hit", "miss"})
            prob = 0.9 if kind in {"hit", "alarm"} else 0.1
            rows.append(LabelledRow("x", label, "clinical", id=f"n{note}:{index}", doc=f"n{note}"))
            probs.append(prob)
    return rows, probs


def test_bootstrap_over_documents_widens_intervals_when_errors_cluster() -> None:
    rows, probs = _clustered(notes=200, per_note=10, seed=2)
    labels = [row.label for row in rows]
    docs = [row.doc for row in rows]
    by_note = bootstrap_intervals(labels, probs, 0.5, resamples=1000, seed=0, docs=docs)
    by_sentence = bootstrap_intervals(labels, probs, 0.5, resamples=1000, seed=0)
    assert by_note is not None and by_sentence is not None
    point = error_report(rows, probs, threshold=0.5, resamples=0)["overall"]
    for metric in ("precision", "recall", "f1"):
        low, high = by_note[metric]
        assert low <= point[metric] <= high
        # Ten sentences move together: the interval is about sqrt(10) times as wide.
        assert high - low > 2 * (by_sentence[metric][1] - by_sentence[metric][0]), metric
    report = error_report(rows, probs, threshold=0.5, resamples=1000)
    assert report["overall"]["ci95"] == by_note
    assert report["interval"] == "bootstrap over documents (200 documents), 1000 resamples, seed 0"
    sentences = error_report(rows, probs, threshold=0.5, resamples=1000, by_document=False)
    assert sentences["overall"]["ci95"] == by_sentence
    assert sentences["interval"] == "bootstrap over sentences, 1000 resamples, seed 0"


def test_bootstrap_over_documents_matches_resampling_documents() -> None:
    """Drawing how often each document comes gives what drawing document indices gives."""
    rows, probs = _clustered(notes=120, per_note=4, seed=7)
    for index in range(0, len(rows), 3):  # mixed outcomes inside notes
        probs[index] = 1.0 - probs[index]
    labels = [row.label for row in rows]
    docs = [row.doc for row in rows]
    fast = bootstrap_intervals(labels, probs, 0.5, resamples=2000, seed=0, docs=docs)
    assert fast is not None
    members: dict[str | None, list[int]] = {}
    for index, doc in enumerate(docs):
        members.setdefault(doc, []).append(index)
    slow = _f1_interval_by_drawing(list(members.values()), labels, probs)
    assert fast["f1"] == pytest.approx(slow, abs=0.02)


def test_rows_without_a_document_count_alone() -> None:
    rows, probs = _synthetic(300, seed=4)
    labels = [row.label for row in rows]
    alone = bootstrap_intervals(labels, probs, 0.5, resamples=500, seed=0)
    # No document, or each row its own: the sentence bootstrap, draw for draw.
    assert (
        bootstrap_intervals(labels, probs, 0.5, resamples=500, seed=0, docs=[None] * 300) == alone
    )
    unique = [f"d{index}" for index in range(300)]
    assert bootstrap_intervals(labels, probs, 0.5, resamples=500, seed=0, docs=unique) == alone
    # Half the rows in pairs, half alone: grouped, and the report says how.
    mixed = [f"d{index // 2}" if index < 150 else None for index in range(300)]
    grouped = [replace(row, doc=doc) for row, doc in zip(rows, mixed, strict=True)]
    report = error_report(grouped, probs, threshold=0.5, resamples=500)
    assert report["overall"]["ci95"] == bootstrap_intervals(
        labels, probs, 0.5, resamples=500, seed=0, docs=mixed
    )
    assert report["overall"]["ci95"] != alone
    assert report["interval"] == (
        "bootstrap over documents (75 documents and 150 sentences without one), "
        "500 resamples, seed 0"
    )


def test_resamples_without_positives_are_left_out_of_the_interval() -> None:
    # Every positive, all found, is in one of twenty notes: most resamples miss that note.
    labels = [1] * 5 + [0] * 95
    probs = [0.9] * 5 + [0.1] * 95
    docs = [f"n{index // 5}" for index in range(100)]
    intervals = bootstrap_intervals(labels, probs, 0.5, resamples=500, seed=0, docs=docs)
    assert intervals == {"precision": [1.0, 1.0], "recall": [1.0, 1.0], "f1": [1.0, 1.0]}
    # No positive and no alarm anywhere: nothing is defined, so there is no interval.
    assert bootstrap_intervals([0] * 10, [0.1] * 10, 0.5, resamples=50) == {}


def test_bc2gm_sentences_belong_to_their_abstract_when_the_id_names_one() -> None:
    assert handlabels._bc2gm_doc("P00001606T0076") == "P00001606"
    assert handlabels._bc2gm_doc("P11287654A0150") == "P11287654"
    assert handlabels._bc2gm_doc("BC2GM033668177") == "BC2GM033668177"


def test_ece_of_calibrated_scores_is_about_zero() -> None:
    # Exactly calibrated: in each bin the positive rate equals the (single) score.
    labels, probs = [], []
    for tenth in range(10):
        score = (2 * tenth + 1) / 20
        positives = 2 * tenth + 1
        labels += [1] * positives + [0] * (20 - positives)
        probs += [score] * 20
    result = calibration(labels, probs)
    assert result["ece"] == pytest.approx(0.0, abs=1e-9)
    assert [item["count"] for item in result["reliability"]] == [20] * 10
    assert result["reliability"][3] == {
        "bin": [0.3, 0.4],
        "count": 20,
        "mean_score": 0.35,
        "positive_rate": 0.35,
    }
    # Drawn from calibrated probabilities: small, not exactly zero.
    rows, scores = _synthetic(20_000, seed=11)
    assert calibration([row.label for row in rows], scores)["ece"] < 0.02
    # Overconfident: always 0.9, right half the time.
    overconfident = calibration([1, 0] * 50, [0.9] * 100)
    assert overconfident["ece"] == pytest.approx(0.4)
    assert overconfident["reliability"][0]["mean_score"] is None
    assert calibration([], [])["ece"] is None


def test_best_threshold_f1() -> None:
    best = best_threshold_f1([1, 1, 1, 0, 0, 0, 0, 1], _SCORES)
    # Scores >= 0.2 take every positive and 3 negatives: F1 = 8 / 11, the best on these rows.
    assert best == {"threshold": 0.2, "precision": 0.5714, "recall": 1.0, "f1": 0.7273}
    assert best_threshold_f1([1, 0, 1], [0.8, 0.8, 0.1])["threshold"] == 0.1  # ties stay together
    assert best_threshold_f1([0, 0], [0.4, 0.6])["threshold"] is None


def test_jsonl_reads_the_optional_fields_and_old_files(tmp_path: Path) -> None:
    data = tmp_path / "rows.jsonl"
    lines = [
        {"text": "old row", "label": 1, "source": "bc2gm"},
        {"text": "new row", "label": 0, "domain": "clinical", "id": "n1", "family": "lab_value"},
        {"text": "unsure row", "label": 1, "id": 7, "unsure": True, "extra": [1]},
        {"text": "note row", "label": 0, "id": "n2:0-8", "doc": "n2"},
    ]
    data.write_text("".join(json.dumps(line) + "\n" for line in lines))
    rows = read_labelled(data)
    assert rows[0] == LabelledRow("old row", 1, "bc2gm")
    assert rows[1] == LabelledRow("new row", 0, "clinical", id="n1", family="lab_value")
    assert rows[2] == LabelledRow("unsure row", 1, None, id="7", unsure=True)
    assert rows[3] == LabelledRow("note row", 0, None, id="n2:0-8", doc="n2")
    data.write_text(json.dumps({"text": "x", "label": 1, "unsure": "yes"}) + "\n")
    with pytest.raises(UsageError, match="unsure"):
        read_labelled(data)
    data.write_text(json.dumps({"text": "x", "label": 1, "family": 3}) + "\n")
    with pytest.raises(UsageError, match="family"):
        read_labelled(data)


def _fake_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    sentences = [
        (handlabels.Sentence("mts-1:0-20", "Serum PSA is 4.1 ng/mL.", "mts-1"), 1, "lab_prose"),
        (handlabels.Sentence("mts-1:21-40", "The knee was stable.", "mts-1"), 0, None),
        (handlabels.Sentence("mts-2:0-15", "ER visit for pain.", "mts-2"), 0, "abbrev_collision"),
    ]

    def load_labels(name: str, data_dir: Path = handlabels.DEFAULT_DATA_DIR) -> list[Any]:
        return [
            (s, {"id": s.id, "label": label, "unsure": index == 1, "family": family})
            for index, (s, label, family) in enumerate(sentences)
        ]

    monkeypatch.setattr(handlabels, "load_labels", load_labels)


def test_handlabelled_rows_take_domain_id_family_and_unsure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(UsageError, match="not found"):
        evaluate_module.handlabelled_rows("clinical", tmp_path)  # no corpora there
    _fake_labels(monkeypatch)
    rows = evaluate_module.handlabelled_rows("clinical")
    assert rows[0] == LabelledRow(
        "Serum PSA is 4.1 ng/mL.", 1, "clinical", id="mts-1:0-20", family="lab_prose", doc="mts-1"
    )
    assert [row.doc for row in rows] == ["mts-1", "mts-1", "mts-2"]
    assert rows[1].unsure
    with pytest.raises(UsageError):
        evaluate_module.handlabelled_rows("other")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "m"], "one of the arguments --data --handlabelled is required"),
        (["--model", "m", "--data", "d.jsonl", "--handlabelled", "clinical"], "not allowed"),
        (["--model", "m", "--handlabelled", "notes"], "invalid choice"),
        (["--model", "m", "--data", "d.jsonl", "--bootstrap", "-1"], "must not be negative"),
        (["--model", "m", "--data", "d.jsonl", "--data-dir", "x"], "--data-dir goes with"),
        (["--model", "m", "--data", "d.jsonl", "--format", "csv"], "invalid choice"),
    ],
)
def test_usage_errors_are_one_line_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["evaluate", *args])
    except SystemExit as exc:  # argparse's errors
        code = int(exc.code or 0)
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert message in line


_DATA = [
    {"text": "serum psa level elevated", "label": 1, "domain": "clinical", "id": "c1"},
    {"text": "knee pain well tolerated", "label": 0, "domain": "clinical", "id": "c2"},
    {"text": "her2 positive tumor marker", "label": 1, "source": "bc2gm", "family": "gene"},
    {"text": "history of present illness", "label": 0, "source": "bc2gm", "unsure": True},
]


@pytest.mark.parametrize("threshold", ["0", "1"])  # every negative a fp; every positive a fn
def test_evaluate_command_end_to_end(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], threshold: str
) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _DATA))
    out = tmp_path / "report.json"
    base = ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--threads", "1"]
    base += ["--no-lexicon-rules"]  # the model alone: its scores decide every label
    assert main([*base, "--threshold", threshold, "--bootstrap", "100", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert json.loads(printed) == report
    assert report["lexicon"] is None
    assert report["overall"]["n"] == 4
    assert set(report["by_source"]) == {"clinical", "bc2gm"}
    assert report["unsure"] == 1
    assert report["input"] == {"data": str(data)}
    assert report["interval"] == "bootstrap over sentences, 100 resamples, seed 0"
    errors = report["worst_false_negatives"] + report["worst_false_positives"]
    assert len(errors) == 2
    assert {item["row"] for item in errors} == ({1, 3} if threshold == "1" else {2, 4})

    assert main([*base, "--threshold", threshold, "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert "overall" in text and "worst false" in text
    for output in (printed, text):
        assert not [row["text"] for row in _DATA if row["text"] in output]

    assert main([*base, "--threshold", threshold, "--format", "text", "--show-text"]) == 0
    shown = capsys.readouterr().out
    assert len([row["text"] for row in _DATA if row["text"] in shown]) == 2


def test_evaluate_labels_as_the_worker_does_with_lexicon_rules(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _DATA))
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--threads", "1"]
    # threshold 1: the model labels nothing; the PSA and HER2 rules label rows 1 and 3
    assert main([*args, "--threshold", "1", "--bootstrap", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["confusion_matrix"] == {"tp": 2, "fp": 0, "fn": 0, "tn": 2}
    lexicon = report["lexicon"]
    assert lexicon["version"] == LEXICON_VERSION
    assert (lexicon["rule_rows"], lexicon["rule_alone_rows"]) == (2, 2)
    assert lexicon["model_alone"]["confusion_matrix"]["tp"] == 0
    assert main([*args, "--threshold", "0", "--bootstrap", "0", "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert f"lexicon rules {LEXICON_VERSION}: 2 rows matched" in text


def test_evaluate_command_on_a_handlabelled_set(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fake_labels(monkeypatch)
    args = ["evaluate", "--model", str(tiny_model_dir), "--handlabelled", "clinical"]
    assert main([*args, "--threads", "1", "--threshold", "0", "--bootstrap", "10"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed)
    assert report["input"] == {"handlabelled": "clinical"}
    assert report["interval"] == "bootstrap over documents (2 documents), 10 resamples, seed 0"
    assert set(report["by_source"]) == {"clinical"}
    assert report["by_family"]["abbrev_collision"]["false_positives"] == 1
    worst = report["worst_false_positives"]
    assert {item["id"] for item in worst} == {"mts-1:21-40", "mts-2:0-15"}
    assert worst[0]["score"] >= worst[1]["score"]
    assert all(item["domain"] == "clinical" for item in worst)
    assert "PSA" not in printed and "knee" not in printed
    assert main([*args, "--threads", "1", "--bootstrap", "10", "--bootstrap-unit", "sentence"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["interval"] == "bootstrap over sentences, 10 resamples, seed 0"
