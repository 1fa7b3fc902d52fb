"""Template sentences for two policy rules that the corpora barely cover.

* Generic words without a named biomarker ("several biomarkers", "labs were unremarkable",
  "tumor markers were sent") and vital signs are 0.
* Literature-style statements about a named lab analyte ("elevated serum ferritin predicted ...")
  are 1: BC2GM and BioRED rarely phrase analytes this way.

The fillers avoid the seed sentences' markers (HER2/neu, PSA, hs-CRP, troponin T, glycated
hemoglobin, blood glucose) so that the seed check measures generalisation.
"""

from __future__ import annotations

import itertools
import random

from training.sources import Example

__all__ = ["synthetic_examples"]

_GENERIC = (
    "biomarkers",
    "markers",
    "laboratory parameters",
    "blood tests",
    "tumor markers",
    "serum markers",
    "molecular markers",
    "circulating markers",
    "diagnostic tests",
    "prognostic factors",
    "imaging findings",
    "clinical scores",
)
_ROLE = (
    "crucial indicators of disease progression",
    "predictors of treatment response",
    "tools for early detection",
    "measures of disease activity",
    "signs of relapse",
    "guides for therapy selection",
)
_FIELD = (
    "oncology",
    "cardiology",
    "nephrology",
    "hepatology",
    "rheumatology",
    "critical care",
    "transplant medicine",
    "infectious disease",
    "neurology",
    "endocrinology",
)
_NEGATIVE_TEMPLATES = (
    "In {field}, several {generic} have emerged as {role}.",
    "A number of {generic} have been proposed as {role} in {field}.",
    "Research in {field} continues to identify new {generic} that may serve as {role}.",
    "The search for reliable {generic} remains an active area of {field} research.",
    "No single one of the {generic} studied so far is accepted as one of the {role}.",
)
_CLINICAL_NEGATIVES = (
    "Labs were unremarkable.",
    "Laboratory studies were within normal limits.",
    "Blood work was drawn and is pending.",
    "Tumor markers were sent.",
    "Routine labs were reviewed with the patient.",
    "All laboratory values were normal.",
    "Her blood pressure was 128/76 and pulse 72.",
    "Temperature 98.6, respirations 16.",
    "Oxygen saturation was 97% on room air.",
    "Weight is 82 kg and BMI is 27.",
    "We will follow up on the labs at the next visit.",
    "The biomarker panel will be discussed.",
    "Blood cultures grew Escherichia coli.",
    "T cells infiltrated the tumor stroma.",
    "Gleason score was 3 + 4 = 7.",
    "The tumor was staged T2N0M0.",
)
_ANALYTE = (
    "serum ferritin",
    "plasma D-dimer",
    "procalcitonin",
    "NT-proBNP",
    "serum creatinine",
    "CA-125",
    "carcinoembryonic antigen",
    "lactate dehydrogenase",
    "serum albumin",
    "fasting insulin",
    "total cholesterol",
    "LDL cholesterol",
    "serum bilirubin",
    "serum lipase",
    "alpha-fetoprotein",
    "the erythrocyte sedimentation rate",
    "hemoglobin A1c",
    "serum potassium",
    "urine albumin",
    "the white blood cell count",
    "the platelet count",
    "EGFR mutation status",
    "KRAS mutation",
    "PD-L1 expression",
    "the Ki-67 index",
    "BRCA1 status",
    "serum uric acid",
    "vitamin B12",
)
_EFFECT = (
    "Elevated {analyte} was associated with worse outcomes in {field}.",
    "In {field}, {analyte} is routinely measured to monitor patients.",
    "Changes in {analyte} were tracked to assess the response to therapy.",
    "Low {analyte} has been linked to higher mortality in {field}.",
    "Clinicians in {field} often rely on {analyte} when deciding on further work-up.",
)


def synthetic_examples(*, seed: int) -> list[Example]:
    """All template sentences (about 500), shuffled deterministically; train split only."""
    texts: list[tuple[str, int]] = []
    for template, generic, role, field in itertools.product(
        _NEGATIVE_TEMPLATES, _GENERIC, _ROLE, _FIELD
    ):
        texts.append((template.format(generic=generic, role=role, field=field), 0))
    for template, analyte, field in itertools.product(_EFFECT, _ANALYTE, _FIELD):
        texts.append((template.format(analyte=analyte, field=field), 1))
    rng = random.Random(seed)
    rng.shuffle(texts)
    negatives = [item for item in texts if item[1] == 0][:240]
    positives = [item for item in texts if item[1] == 1][:240]
    chosen = negatives + positives + [(text, 0) for text in _CLINICAL_NEGATIVES]
    return [
        Example(
            f"synthetic:{index}",
            text[0].upper() + text[1:],
            label,
            "synthetic",
            f"synthetic:{index}",
            "train",
        )
        for index, (text, label) in enumerate(chosen)
    ]
