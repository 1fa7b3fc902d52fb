"""Weight averaging of checkpoints (``biomarker-worker soup``), on tiny random BERTs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification

from training.soup import SOUP_MANIFEST, make_soup
from worker.cli import main
from worker.errors import UsageError


def _checkpoint(path: Path, seed: int, hidden: int = 16, shared: Path | None = None) -> Path:
    """A random two-label BERT; with ``shared``, its word embeddings are that checkpoint's."""
    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        vocab_size=30, max_position_embeddings=16,
    )  # fmt: skip
    model = BertForSequenceClassification(config)  # type: ignore[no-untyped-call]
    if shared is not None:
        frozen = load_file(str(shared / "model.safetensors"))
        key = "bert.embeddings.word_embeddings.weight"
        model.bert.embeddings.word_embeddings.weight.data.copy_(frozen[key])
    model.save_pretrained(path)
    return path


@pytest.fixture
def seeds(tmp_path: Path) -> list[Path]:
    first = _checkpoint(tmp_path / "seed1", seed=1)
    return [
        first,
        _checkpoint(tmp_path / "seed2", seed=2, shared=first),
        _checkpoint(tmp_path / "seed3", seed=3, shared=first),
    ]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


def test_the_soup_is_the_mean_and_keeps_shared_tensors_bit_identical(
    seeds: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "soup"
    manifest = make_soup(seeds, out)

    states = [_weights(seed) for seed in seeds]
    soup = _weights(out)
    assert soup.keys() == states[0].keys()
    key = "classifier.weight"
    assert not torch.equal(states[0][key], states[1][key])
    expected = (states[0][key] + states[1][key] + states[2][key]) / 3
    torch.testing.assert_close(soup[key], expected)
    assert soup[key].dtype == states[0][key].dtype
    shared = "bert.embeddings.word_embeddings.weight"
    assert torch.equal(soup[shared], states[0][shared])  # copied, not re-rounded

    assert manifest["tensors"] == len(soup)
    assert 0 < manifest["tensors_averaged"] < len(soup)
    assert [item["weight"] for item in manifest["ingredients"]] == pytest.approx([1 / 3] * 3)
    assert json.loads((out / SOUP_MANIFEST).read_text()) == manifest
    model = BertForSequenceClassification.from_pretrained(out)
    logits = model(input_ids=torch.tensor([[2, 5, 7, 3]])).logits
    assert logits.shape == (1, 2)


def test_weights_are_relative_and_the_command_prints_the_manifest(
    seeds: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "soup"
    argv = ["soup", "--model", str(seeds[0]), "--model", str(seeds[1]), "--out", str(out)]
    assert main([*argv, "--weight", "3", "--weight", "1"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert [item["weight"] for item in printed["ingredients"]] == [0.75, 0.25]
    first, second, soup = _weights(seeds[0]), _weights(seeds[1]), _weights(out)
    key = "classifier.weight"
    torch.testing.assert_close(soup[key], 0.75 * first[key] + 0.25 * second[key])


def test_checkpoints_of_another_architecture_are_refused_in_one_line(
    seeds: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wider = _checkpoint(tmp_path / "wider", seed=4, hidden=32)
    capsys.readouterr()  # saving prints progress bars
    argv = ["soup", "--model", str(seeds[0]), "--model", str(wider), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("biomarker-worker soup: error: ")
    assert "different config.json" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("one", "at least two checkpoints"),
        ("missing", "no model.safetensors"),
        ("into-input", "is one of its checkpoints"),
        ("weights", "2 weights for 3 checkpoints"),
        ("negative", "must be positive"),
        ("nan", "must be positive"),
        ("unwritable", "cannot write the soup"),
        ("integer", "integer tensor bert.steps differs"),
        ("folded", "is a folded copy \\(threshold.json\\)"),
    ],
)
def test_bad_soups_are_usage_errors(
    seeds: list[Path], tmp_path: Path, case: str, message: str
) -> None:
    out = tmp_path / "soup"
    weights: list[float] | None = None
    models = list(seeds)
    if case == "one":
        models = seeds[:1]
    elif case == "missing":
        (seeds[2] / "model.safetensors").unlink()
    elif case == "into-input":
        out = seeds[1]
    elif case == "weights":
        weights = [1.0, 2.0]
    elif case == "negative":
        weights = [1.0, -1.0, 1.0]
    elif case == "nan":
        weights = [1.0, float("nan"), 1.0]
    elif case == "unwritable":
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "soup"
    elif case == "integer":  # a counter buffer cannot be averaged: it must agree
        for index, seed in enumerate(seeds):
            tensors = {**_weights(seed), "bert.steps": torch.tensor([index], dtype=torch.int64)}
            save_file(tensors, str(seed / "model.safetensors"), metadata={"format": "pt"})
    elif case == "folded":  # a threshold fold shifts the bias: averaging it mixes two models
        (seeds[1] / "threshold.json").write_text("{}")
    with pytest.raises(UsageError, match=message):
        make_soup(models, out, weights)
