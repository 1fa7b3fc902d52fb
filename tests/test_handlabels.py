"""The hand-labelled evaluation sets: held out, resolvable to text, consistent with their README."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from training.dataset import HAND_SOURCE, with_hand_labels
from training.handlabels import (
    DEFAULT_DATA_DIR,
    LABELS_DIR,
    SPLIT_SEED,
    Sentence,
    clinical_dev_sentences,
    clinical_train_notes_sentences,
    literature_dev_sentences,
    load_labels,
    main,
    training_hard_negatives,
    training_labels,
)
from training.sources import Example, read_jsonl
from training.splits import doc_split

DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


@pytest.mark.parametrize(
    "name",
    [
        "clinical",
        "clinical_dev",
        "literature",
        "literature_dev",
        "clinical_train",
        "clinical_train_notes",
        "literature_train",
    ],
)
def test_every_labelled_sentence_resolves_to_its_text_from_the_corpora(name: str) -> None:
    labelled = load_labels(name, DATA_DIR)
    assert len({sentence.id for sentence, _ in labelled}) == len(labelled)
    for sentence, row in labelled:
        assert sentence.text.strip()
        assert row["label"] in (0, 1) and isinstance(row["unsure"], bool)
        assert row["label"] == row["pass_a"] == row["pass_b"] or row["adjudicated"]


@pytest.mark.parametrize(
    ("name", "split"),
    [("clinical", "test"), ("clinical_dev", "dev"), ("clinical_train_notes", "train")],
)
def test_clinical_sentences_come_from_the_notes_of_their_split_only(name: str, split: str) -> None:
    for sentence, _ in load_labels(name, DATA_DIR):
        held = doc_split(f"mtsamples:{sentence.doc}", seed=SPLIT_SEED, dev=0.1, test=0.2)
        assert held == split, sentence.id


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("clinical_dev", clinical_dev_sentences),
        ("clinical_train_notes", clinical_train_notes_sentences),
    ],
)
def test_the_whole_note_draws_label_whole_notes_in_draw_order(
    name: str, draw: Callable[[Path, int], list[Sentence]]
) -> None:
    """Whole notes, as drawn: the labelled ids are a prefix of the draw (a larger target only
    adds notes after them)."""
    labelled = [sentence.id for sentence, _ in load_labels(name, DATA_DIR)]
    drawn = [sentence.id for sentence in draw(DATA_DIR, 10**6)]
    assert drawn[: len(labelled)] == labelled


def test_the_label_files_hold_no_text() -> None:
    for path in LABELS_DIR.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            assert set(json.loads(line)) == {
                "id",
                "batch",
                "label",
                "unsure",
                "family",
                "pass_a",
                "pass_b",
                "adjudicated",
            }


def test_training_labels_come_from_train_notes_only() -> None:
    labelled = load_labels("clinical_train", DATA_DIR)
    assert len(labelled) >= 300
    for sentence, _ in labelled:
        split = doc_split(f"mtsamples:{sentence.doc}", seed=SPLIT_SEED, dev=0.1, test=0.2)
        assert split == "train", sentence.id
    assert training_labels() == {sentence.id: row["label"] for sentence, row in labelled}


def test_the_dataset_takes_hand_labels_for_train_rows_and_refuses_others() -> None:
    rows = [
        Example("n1:0-9", "HCT 37.9.", 1, "mtsamples", "n1", "train"),
        Example("n1:10-20", "Ordered blood lead.", 0, "mtsamples", "n1", "train"),
        Example("n2:0-9", "Seen today.", 0, "mtsamples", "n2", "train"),
    ]
    relabelled = list(with_hand_labels(rows, {"n1:0-9": 0, "n1:10-20": 1}))
    assert [(row.label, row.source) for row in relabelled] == [
        (0, HAND_SOURCE),
        (1, HAND_SOURCE),
        (0, "mtsamples"),
    ]
    held_out = Example("n3:0-9", "Hgb 12.", 1, "mtsamples", "n3", "test")
    with pytest.raises(ValueError, match="test split"):
        list(with_hand_labels([held_out], {"n3:0-9": 1}))


def test_literature_training_labels_come_from_the_corpora_train_splits_only() -> None:
    labelled = load_labels("literature_train", DATA_DIR)
    assert len(labelled) >= 300
    train_ids = {
        f"bc2gm:{row['id']}"
        for row in read_jsonl(DATA_DIR / "bc2gm" / "bc2gm_sentences.jsonl")
        if row["split"] == "train"
    }
    train_ids |= {
        f"biored:{row['pmid']}:{row['sent_idx']}"
        for row in read_jsonl(DATA_DIR / "biored" / "biored_sentences.jsonl")
        if row["split"] == "train"
    }
    assert {sentence.id for sentence, _ in labelled} <= train_ids
    held_out = {sentence.id for sentence, _ in load_labels("literature", DATA_DIR)}
    assert not held_out & train_ids
    assert training_labels("literature_train") == {
        sentence.id: row["label"] for sentence, row in labelled
    }


def _literature_ids(split: str) -> set[str]:
    """Ids of the BC2GM (whose dev split is "devel") and BioRED sentences of one split."""
    bc2gm = {"train": "train", "dev": "devel", "test": "test"}[split]
    ids = {
        f"bc2gm:{row['id']}"
        for row in read_jsonl(DATA_DIR / "bc2gm" / "bc2gm_sentences.jsonl")
        if row["split"] == bc2gm
    }
    return ids | {
        f"biored:{row['pmid']}:{row['sent_idx']}"
        for row in read_jsonl(DATA_DIR / "biored" / "biored_sentences.jsonl")
        if row["split"] == split
    }


@pytest.mark.parametrize(("name", "split"), [("literature", "test"), ("literature_dev", "dev")])
def test_literature_evaluation_sentences_come_from_their_split_half_from_each_corpus(
    name: str, split: str
) -> None:
    ids = [sentence.id for sentence, _ in load_labels(name, DATA_DIR)]
    assert set(ids) <= _literature_ids(split)
    assert not set(ids) & _literature_ids("train")
    corpora = [sentence_id.split(":", 1)[0] for sentence_id in ids]
    assert corpora.count("bc2gm") == corpora.count("biored") == len(ids) // 2


def test_the_literature_dev_labels_are_the_whole_draw() -> None:
    labelled = {sentence.id for sentence, _ in load_labels("literature_dev", DATA_DIR)}
    assert labelled == {sentence.id for sentence in literature_dev_sentences(DATA_DIR)}


def test_the_literature_training_labels_cover_the_whole_draw(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # batches 1-3 are the draw at its target, so a sheet of what is still new is empty
    assert main(["sheet", "literature_train", "--new", "--data-dir", str(DATA_DIR)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["sheet", "literature_train", "--target", "10", "--data-dir", str(DATA_DIR)]) == 0
    first = [json.loads(line)["id"] for line in capsys.readouterr().out.splitlines()]
    assert len(first) == 10 and set(first) <= set(training_labels("literature_train"))


@pytest.mark.parametrize("name", ["clinical", "clinical_dev", "clinical_train_notes"])
def test_the_readme_table_counts_what_the_clinical_files_hold(name: str) -> None:
    rows = list(read_jsonl(LABELS_DIR / f"{name}.jsonl"))
    table = (LABELS_DIR / "README.md").read_text()
    if name != "clinical":  # each its own table, after the test split's
        table = table[table.index(f"| `{name}.jsonl`") :]

    def cells(rows_: list[dict[str, Any]]) -> str:
        count, positives = f"{len(rows_):,}", f"{sum(row['label'] for row in rows_):,}"
        return f"| {count} | {positives} |"

    assert f"| `{name}.jsonl` {cells(rows)}" in table
    for batch in sorted({row["batch"] for row in rows}):
        in_batch = [row for row in rows if row["batch"] == batch]
        unsure = sum(row["unsure"] for row in in_batch)
        line = next(line for line in table.splitlines() if line.startswith(f"| - batch {batch} |"))
        assert line.startswith(f"| - batch {batch} {cells(in_batch)}"), line
        assert line.endswith(f"| {unsure} |"), line


def test_training_labels_keep_the_first_batches_asked_for() -> None:
    """The shipped model's data uses batch 1 of each training set; ``None`` reads them all."""
    rows = list(read_jsonl(LABELS_DIR / "clinical_train.jsonl"))
    first = {row["id"] for row in rows if row["batch"] == 1}
    assert set(training_labels("clinical_train", 1)) == first
    assert len(training_labels("clinical_train")) == len(rows) > len(first)
    assert training_labels("clinical_train", 0) == {}


def test_training_hard_negatives_are_the_hand_labelled_negatives_with_a_family() -> None:
    """The hard negatives of the whole train notes: label 0 with a family, by batch."""
    rows = list(read_jsonl(LABELS_DIR / "clinical_train_notes.jsonl"))
    hard = training_hard_negatives("clinical_train_notes")
    expected = {row["id"] for row in rows if row["label"] == 0 and row["family"]}
    assert hard == expected
    assert 5000 < len(hard) < len(rows) // 2
    first = training_hard_negatives("clinical_train_notes", 1)
    assert first == {row["id"] for row in rows if row["id"] in hard and row["batch"] == 1}
    assert first < hard
