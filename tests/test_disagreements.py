"""The draw of literature training sentences where a model and the corpus label disagree."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.disagreements import disagreements, literature_training_examples, main
from training.handlabels import DEFAULT_DATA_DIR, order_key, training_labels
from training.sources import Example

DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


def _example(sid: str, label: int) -> Example:
    return Example(sid, f"text of {sid}", label, "bc2gm", sid, "train")


def test_only_decisions_that_differ_from_the_corpus_label_are_listed_in_order() -> None:
    examples = [_example("a", 1), _example("b", 0), _example("c", 1), _example("d", 0)]
    scores = [0.2, 0.9, 0.7, 0.1]
    assert [e.id for e in disagreements(examples, scores)] == ["a", "b"]
    assert [e.id for e in disagreements(examples, scores, threshold=0.8)] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        disagreements(examples, scores[:3])


def test_the_pool_is_unlabelled_train_sentences_in_seeded_order() -> None:
    pool = literature_training_examples(DATA_DIR)
    assert len(pool) > 10_000
    assert {example.split for example in pool} == {"train"}
    assert not {example.id for example in pool} & set(training_labels("literature_train"))
    keys = [order_key(f"train:{example.id}") for example in pool]
    assert keys == sorted(keys)
    texts = [" ".join(example.text.lower().split()) for example in pool]
    assert len(set(texts)) == len(texts)


def test_a_missing_model_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no checkpoint at")
