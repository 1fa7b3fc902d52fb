"""Calibrating scores with one temperature chosen on development sets (training/temperature.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from training.evaluate import score_texts
from training.handlabels import DEFAULT_DATA_DIR
from training.temperature import (
    FOLD_MANIFEST,
    GRID,
    choose_temperature,
    fold_temperature,
    main,
    mean_nll,
    tempered,
)
from worker.errors import UsageError

DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


def test_a_temperature_divides_the_logit_and_leaves_certain_scores_alone() -> None:
    assert tempered(0.5, 0.3) == 0.5
    assert tempered(0.8, 0.5) == pytest.approx(16 / 17)  # odds 4 become 16
    assert tempered(0.8, 2.0) == pytest.approx(2 / 3)  # odds 4 become 2
    assert tempered(1.0, 0.5) == 1.0 and tempered(0.0, 2.0) == 0.0  # a lexicon rule's 1.0


def test_mean_nll_is_the_mean_log_loss() -> None:
    assert mean_nll([1, 0], [0.8, 0.2]) == pytest.approx(-math.log(0.8))
    assert mean_nll([], []) == 0.0


def test_under_confident_scores_get_a_temperature_below_one() -> None:
    # nine in ten right at 0.6 and 0.4: the best temperature turns odds 1.5 into odds 9
    # (log 1.5 / log 9 = 0.18), sharper than the grid goes, so its sharpest end wins
    labels = [1] * 9 + [0] + [0] * 9 + [1]
    scores = [0.6] * 10 + [0.4] * 10
    choice = choose_temperature({"timid": (labels, scores)})
    assert choice["temperature"] == GRID[0]
    assert choice["chosen"]["timid"]["nll"] < choice["at_1"]["timid"]["nll"]
    assert choice["chosen"]["timid"]["ece"] < choice["at_1"]["timid"]["ece"]


def test_over_confident_scores_get_a_temperature_above_one() -> None:
    # four in five right at 0.9 and 0.1: the best temperature turns odds 9 into odds 4
    labels = [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]
    scores = [0.9] * 5 + [0.1] * 5
    best = math.log(9) / math.log(4)
    choice = choose_temperature({"bold": (labels, scores)})
    assert choice["temperature"] == pytest.approx(best, abs=0.05)


def test_each_set_counts_once_whatever_its_size() -> None:
    timid = ([1] * 9 + [0], [0.6] * 10)
    bold = ([1, 1, 1, 1, 0], [0.9] * 5)
    alone = choose_temperature({"timid": timid})["temperature"]
    big_bold = choose_temperature({"timid": timid, "bold": (bold[0] * 50, bold[1] * 50)})
    small_bold = choose_temperature({"timid": timid, "bold": bold})
    assert big_bold["temperature"] == small_bold["temperature"] != alone


def test_the_grid_runs_from_0_25_to_2() -> None:
    assert GRID[0] == 0.25 and GRID[-1] == 2.0 and 1.0 in GRID


_TEXTS = [
    "Serum PSA was 4.2 ng/mL.",
    "The patient tolerated the procedure well.",
    "Hgb 12.3, creatinine 1.1.",
    "He denies chest pain.",
    "EGFR L858R mutation was found.",
    "Plan as below.",
]


def test_a_folded_copy_tempers_every_score_and_keeps_every_decision(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    scores, _ = score_texts(tiny_model_dir, _TEXTS, threads=1)
    folded = tmp_path / "tempered"
    manifest = fold_temperature(tiny_model_dir, folded, 0.5)
    folded_scores, _ = score_texts(folded, _TEXTS, threads=1)
    for score, folded_score in zip(scores, folded_scores, strict=True):
        assert folded_score == pytest.approx(tempered(score, 0.5), abs=1e-4)
        assert (score >= 0.5) == (folded_score >= 0.5)
    assert json.loads((folded / FOLD_MANIFEST).read_text()) == manifest
    assert manifest["temperature"] == 0.5


@pytest.mark.parametrize(
    ("case", "message"),
    [("zero", "above 0"), ("exists", "already exists"), ("empty", "no model")],
)
def test_bad_folds_are_usage_errors(
    tiny_model_dir: Path, tmp_path: Path, case: str, message: str
) -> None:
    model, out, temperature = tiny_model_dir, tmp_path / "tempered", 0.5
    if case == "zero":
        temperature = 0.0
    elif case == "exists":
        out.mkdir()
    elif case == "empty":
        model = tmp_path
    with pytest.raises(UsageError, match=message):
        fold_temperature(model, out, temperature)


def test_the_command_scores_a_development_set_and_writes_its_choice(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, folded = tmp_path / "choice.json", tmp_path / "tempered"
    argv = ["--model", str(tiny_model_dir), "--set", "literature_dev", "--data-dir", str(DATA_DIR)]
    assert main([*argv, "--out", str(out), "--threads", "1", "--fold-into", str(folded)]) == 0
    choice = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == choice
    assert choice["sets"] == ["literature_dev"] and choice["temperature"] in GRID
    assert set(choice["chosen"]["literature_dev"]) == {"nll", "ece"}
    assert json.loads((folded / FOLD_MANIFEST).read_text())["temperature"] == choice["temperature"]


def test_a_missing_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().endswith("is not a model directory")
