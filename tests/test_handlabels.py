"""The hand-labelled evaluation sets: held out, resolvable to text, consistent with their README."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.handlabels import DEFAULT_DATA_DIR, LABELS_DIR, SPLIT_SEED, load_labels
from training.splits import doc_split

DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


@pytest.mark.parametrize("name", ["clinical", "literature"])
def test_every_labelled_sentence_resolves_to_its_text_from_the_corpora(name: str) -> None:
    labelled = load_labels(name, DATA_DIR)
    assert len({sentence.id for sentence, _ in labelled}) == len(labelled)
    for sentence, row in labelled:
        assert sentence.text.strip()
        assert row["label"] in (0, 1) and isinstance(row["unsure"], bool)
        assert row["label"] == row["pass_a"] == row["pass_b"] or row["adjudicated"]


def test_clinical_sentences_come_from_held_out_notes_only() -> None:
    for sentence, _ in load_labels("clinical", DATA_DIR):
        split = doc_split(f"mtsamples:{sentence.doc}", seed=SPLIT_SEED, dev=0.1, test=0.2)
        assert split == "test", sentence.id


def test_the_label_files_hold_no_text() -> None:
    for path in LABELS_DIR.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            assert set(json.loads(line)) == {
                "id",
                "label",
                "unsure",
                "family",
                "pass_a",
                "pass_b",
                "adjudicated",
            }
