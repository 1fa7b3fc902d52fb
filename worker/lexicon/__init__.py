"""The biomarker lexicon: curated rules that name a biomarker (:mod:`worker.lexicon.rules`),
run behind a one-pass prefilter (:mod:`worker.lexicon.prefilter`)."""

from worker.lexicon.rules import (
    LEXICON_VERSION,
    LexiconHit,
    find_hits,
    first_label,
    has_biomarker,
)

__all__ = ["LEXICON_VERSION", "LexiconHit", "find_hits", "first_label", "has_biomarker"]
