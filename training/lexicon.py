"""Hard negatives for the training sample: sentences with biomarker-like words but no lexicon
hit (the lexicon itself is the worker's: :mod:`worker.lexicon`)."""

from __future__ import annotations

import re

from worker.lexicon import has_biomarker

__all__ = ["is_decoy"]

_I = re.IGNORECASE

# Note sentences that look like biomarker sentences but are 0 by the policy when no lexicon term
# is present: drugs and drug classes, procedures, vital signs, vertebral levels, generic lab
# words, doses and percentages. Used to keep such hard negatives in the training sample.
_DECOY_RE = re.compile(
    r"\b(?:fusion|inhibitors?|insulin|receptors?|antigens?|antibod\w*|statins?|fio2|apgars?|"
    r"ejection\s+fraction|EF|labs?|laboratory|blood\s+(?:work|pressure|cultures?)|pulse|"
    r"saturation|temperature|unremarkable|within\s+normal\s+limits|negative|positive|"
    r"elevated|levels?|markers?|[CTLS]\d{1,2}(?:-[CTLS]?\d{1,2})?|"
    r"\d+(?:\.\d+)?\s*(?:mg|mcg|units|mL|cc|%))(?!\w)",
    _I,
)


def is_decoy(text: str) -> bool:
    """True for a sentence with biomarker-like words (drugs, vitals, doses) but no lexicon hit."""
    return bool(_DECOY_RE.search(text)) and not has_biomarker(text)
