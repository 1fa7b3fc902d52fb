"""Choosing a threshold on development sets (training/threshold.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from training.evaluate import score_texts
from training.handlabels import DEFAULT_DATA_DIR
from training.threshold import FOLD_MANIFEST, GRID, choose_threshold, fold_threshold, main
from worker.errors import UsageError

DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


def test_the_threshold_with_the_highest_summed_f1_wins() -> None:
    # set a is best from 0.65 up to 0.7 (a negative at 0.6); set b is best at 0.7 or below
    # (a positive at 0.72 would be lost above it): together 0.65 and 0.7 tie, and the one
    # nearer 0.5 wins
    a = ([1, 1, 0, 0], [0.9, 0.7, 0.6, 0.2])
    b = ([1, 1, 0], [0.95, 0.72, 0.1])
    choice = choose_threshold({"a": a, "b": b})
    assert choice["threshold"] == 0.65
    assert choice["f1_sum"] == 2.0
    assert choice["grid"]["0.60"]["a"]["precision"] == pytest.approx(0.6667, abs=1e-4)
    assert choice["grid"]["0.75"]["b"]["recall"] == 0.5


def test_among_equal_sums_the_threshold_nearest_one_half_wins() -> None:
    separable = ([1, 0], [0.99, 0.01])
    assert choose_threshold({"only": separable})["threshold"] == 0.5
    assert choose_threshold({"only": separable}, grid=[0.3, 0.7])["threshold"] == 0.3


def test_the_grid_runs_from_0_30_to_0_95() -> None:
    assert GRID[0] == 0.3 and GRID[-1] == 0.95 and len(GRID) == 14


def test_the_command_scores_a_hand_labelled_set_and_writes_its_choice(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "choice.json"
    argv = ["--model", str(tiny_model_dir), "--set", "literature_dev", "--data-dir", str(DATA_DIR)]
    assert main([*argv, "--out", str(out), "--threads", "1"]) == 0
    choice = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == choice
    assert choice["sets"] == ["literature_dev"] and choice["threshold"] in GRID
    positives = choice["grid"]["0.50"]["literature_dev"]
    assert 0.0 <= positives["f1"] <= 1.0 and set(positives) == {"precision", "recall", "f1"}


def test_a_missing_model_or_set_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith("is not a model directory")
    assert main(["--model", str(tmp_path), "--set", "nothing"]) == 2
    assert "no hand-labelled set 'nothing'" in capsys.readouterr().err


_TEXTS = [
    "Serum PSA was 4.2 ng/mL.",
    "The patient tolerated the procedure well.",
    "Hgb 12.3, creatinine 1.1.",
    "He denies chest pain.",
    "EGFR L858R mutation was found.",
    "Plan as below.",
    "Potassium 4.1 and sodium 139.",
    "Follow up in two weeks.",
]


@pytest.mark.parametrize("positive", [1, 0])
def test_a_folded_copy_served_at_one_half_decides_as_the_original_at_its_threshold(
    tiny_model_dir: Path, tmp_path: Path, positive: int
) -> None:
    if positive == 0:  # a checkpoint whose labels name index 0 the biomarker
        swapped = tmp_path / "positive-0"
        shutil.copytree(tiny_model_dir, swapped)
        config = json.loads((swapped / "config.json").read_text())
        config["id2label"] = {"0": "biomarker", "1": "no_biomarker"}
        config["label2id"] = {"biomarker": 0, "no_biomarker": 1}
        (swapped / "config.json").write_text(json.dumps(config))
        tiny_model_dir = swapped
    scores, _ = score_texts(tiny_model_dir, _TEXTS, threads=1)
    ranked = sorted(scores)
    middle = len(ranked) // 2
    threshold = (ranked[middle - 1] + ranked[middle]) / 2  # half the sentences on each side
    folded = tmp_path / "folded"
    manifest = fold_threshold(tiny_model_dir, folded, threshold)
    folded_scores, _ = score_texts(folded, _TEXTS, threads=1)
    assert [s >= threshold for s in scores] == [s >= 0.5 for s in folded_scores]
    assert 0 < sum(s >= 0.5 for s in folded_scores) < len(_TEXTS)
    assert json.loads((folded / FOLD_MANIFEST).read_text()) == manifest
    assert manifest["threshold"] == threshold
    assert (folded / "config.json").read_text() == (tiny_model_dir / "config.json").read_text()


@pytest.mark.parametrize(
    ("case", "message"),
    [("zero", "strictly between 0 and 1"), ("exists", "already exists"), ("empty", "no model")],
)
def test_bad_folds_are_usage_errors(
    tiny_model_dir: Path, tmp_path: Path, case: str, message: str
) -> None:
    model, out, threshold = tiny_model_dir, tmp_path / "folded", 0.7
    if case == "zero":
        threshold = 0.0
    elif case == "exists":
        out.mkdir()
    elif case == "empty":
        model = tmp_path
    with pytest.raises(UsageError, match=message):
        fold_threshold(model, out, threshold)
