"""The note-style template sentences: seeded, labelled by the policy, clear of the seed markers."""

from __future__ import annotations

import hashlib
import re

from training.synthetic_clinical import clinical_templates
from worker.lexicon import has_biomarker

#: sha256 of the default templates ("label<TAB>text" lines, in order), as 1.2.0's data had them.
_SHIPPED_TEMPLATES_SHA256 = "4584936072fc2fafe94c7ef24ec4925d1ab2ee4f6d1f4210fc9bcb37d6c3cdd9"
#: The seed sentences' markers (docs/MODEL_CARD.md): the templates must not teach them.
_SEED_MARKERS = re.compile(r"\b(?:PSA|CRP|troponin|HbA1c|A1c|glucose|HER2|neu)\b", re.IGNORECASE)


def test_templates_are_seeded_unique_and_train_only() -> None:
    rows = clinical_templates(seed=13)
    assert [row.text for row in rows] == [row.text for row in clinical_templates(seed=13)]
    assert [row.text for row in rows] != [row.text for row in clinical_templates(seed=14)]
    assert len({row.text for row in rows}) == len(rows)
    assert {row.split for row in rows} == {"train"}
    assert sum(row.label for row in rows) == 600 and sum(1 - row.label for row in rows) >= 50


def test_no_template_names_a_seed_marker() -> None:
    assert not [row.text for row in clinical_templates(seed=13) if _SEED_MARKERS.search(row.text)]


def test_every_negative_is_a_decoy_the_lexicon_also_calls_zero() -> None:
    """Imaging with dates (HCT = head CT), doses, vitals, cultures, disease names: all 0."""
    negatives = [row.text for row in clinical_templates(seed=13) if row.label == 0]
    assert any(text.startswith("HCT") for text in negatives)
    assert not [text for text in negatives if has_biomarker(text)]


def test_positives_agree_with_the_lexicon_except_bare_ambiguous_analytes() -> None:
    """The lexicon needs a value or lab context for words that are also drugs ("sodium"); the
    policy labels the named analyte 1 anyway, so those are the only disagreements allowed."""
    ambiguous = re.compile(
        r"\b(?:sodium|potassium|chloride|calcium|magnesium|phosphorus|albumin|bicarbonate|"
        r"ammonia|vitamin B12)\b",
        re.IGNORECASE,
    )
    positives = [row.text for row in clinical_templates(seed=13) if row.label == 1]
    disagree = [text for text in positives if not has_biomarker(text)]
    assert len(disagree) < len(positives) * 0.05
    assert all(ambiguous.search(text) for text in disagree), disagree


def test_note_decoys_are_added_only_when_asked_and_keep_the_policy() -> None:
    """Drugs named like proteins given as treatment and non-analyte measurements are 0 (and the
    lexicon agrees); without them the templates are 1.2.0's, so its data can still be rebuilt."""
    plain = clinical_templates(seed=13)
    rows = clinical_templates(seed=13, note_decoys=True)
    # the default rows, in order, are those model 1.2.0 was trained on
    listing = "\n".join(f"{row.label}\t{row.text}" for row in plain).encode()
    assert hashlib.sha256(listing).hexdigest() == _SHIPPED_TEMPLATES_SHA256
    plain_texts = {row.text for row in plain}
    added = [row for row in rows if row.text not in plain_texts]
    negatives = [row.text for row in added if row.label == 0]
    assert "He received G-CSF daily after his chemotherapy." in negatives
    assert "Sponge count was reported as being correct." in negatives
    assert len(negatives) > 150 and not [text for text in negatives if has_biomarker(text)]
    assert not [row.text for row in added if _SEED_MARKERS.search(row.text)]
    assert len({row.text for row in rows}) == len(rows)
