"""Literature-style decoys (training/synthetic_literature.py): what they hold and their labels."""

from __future__ import annotations

from training.synthetic_literature import literature_decoys
from worker.lexicon import has_biomarker


def test_the_decoys_are_mostly_negatives_with_a_few_named_gene_positives() -> None:
    rows = literature_decoys(seed=13)
    negatives = [row.text for row in rows if row.label == 0]
    positives = [row.text for row in rows if row.label == 1]
    assert len(negatives) > 120 and 5 <= len(positives) <= 20
    assert "Linkage analysis mapped the disease locus to chromosome 3p21." in negatives
    assert "Patients were randomized to recombinant human TSH or placebo." in negatives
    assert "ICAM-1 has been proposed as a predictor of relapse." in positives
    assert len({row.text for row in rows}) == len(rows)


def test_no_negative_is_a_lexicon_match_and_every_row_is_training_data() -> None:
    rows = literature_decoys(seed=13)
    assert not [row.text for row in rows if row.label == 0 and has_biomarker(row.text)]
    assert {row.split for row in rows} == {"train"}
    assert {row.source for row in rows} == {"synthetic_literature"}


def test_the_order_depends_on_the_seed_and_only_on_it() -> None:
    first, again, other = (literature_decoys(seed=s) for s in (13, 13, 14))
    assert [r.text for r in first] == [r.text for r in again]
    assert [r.text for r in first] != [r.text for r in other]
    assert sorted(r.text for r in first) == sorted(r.text for r in other)
