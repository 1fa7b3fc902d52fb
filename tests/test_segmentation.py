"""Tests for worker.segmentation: clinical policy cases, span invariants, robustness."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from worker.segmentation import split_sentences

MTSAMPLES = Path("/work/shared/data/mtsamples/mtsamples_notes.jsonl")

SYNTHETIC_NOTE = """CHIEF COMPLAINT:  Shortness of breath.

HISTORY OF PRESENT ILLNESS:  The patient is a 72-year-old woman seen by Dr. Smith for
dyspnea on exertion.  She takes furosemide 40 mg p.o. b.i.d. and metoprolol 25 mg q.d.
Her HbA1c was 7.2% in May; e.g. her glucose control is fair.

PAST MEDICAL HISTORY:
1.  Congestive heart failure.
2.  Diabetes mellitus type 2
3)  Hypertension

MEDICATIONS:
- Lasix 40 mg daily
- Aspirin 81 mg daily
\u2022 Atorvastatin 20 mg nightly

LABORATORY DATA:
Sodium 139
Potassium 4.1
Sodium 139, potassium 4.1, chloride 101, bicarbonate 24.  Hgb 12.3.  Ejection fraction 35%.

PHYSICAL EXAMINATION:  VITAL SIGNS:  BP 142/88, HR 92, RR 20.  Weight 85.7 kg.
GENERAL:  Alert, in no acute distress.\r\nHEENT:  PERRLA.

ASSESSMENT AND PLAN
Acute on chronic systolic heart failure vs. COPD exacerbation.  Will diurese; recheck BMP in
a.m.  Follow up with Dr. X. in 2 weeks.  Questions?  None!\u2028End of note
\u00e9\u00e8 \u4e2d\u6587.
"""


def sentences(text: str, **kwargs: int) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text, **kwargs)]


def assert_invariants(
    text: str, spans: list[tuple[int, int]], max_chars: int | None = None
) -> None:
    """Spans are ordered, disjoint, stripped, and cover every non-whitespace character once."""
    pos = 0
    for start, end in spans:
        assert isinstance(start, int) and isinstance(end, int)
        assert pos <= start < end <= len(text), (pos, start, end)
        assert not text[pos:start].strip(), repr(text[pos:start])
        piece = text[start:end]
        assert piece == piece.strip(), repr(piece)
        if max_chars is not None:
            assert end - start <= max_chars
        pos = end
    assert not text[pos:].strip(), repr(text[pos:])


# --- policy cases: (text, expected sentences) -----------------------------------------------

CASES: list[tuple[str, list[str]]] = [
    # titles and abbreviations
    (
        "Patient seen by Dr. Smith today. Mr. Jones and Mrs. Lee were present. Ms. Brown agreed.",
        [
            "Patient seen by Dr. Smith today.",
            "Mr. Jones and Mrs. Lee were present.",
            "Ms. Brown agreed.",
        ],
    ),
    (
        "Metoprolol 25 mg p.o. b.i.d. and aspirin 81 mg q.d. were continued. "
        "Tylenol 650 mg p.o. q.6h. p.r.n. pain.",
        [
            "Metoprolol 25 mg p.o. b.i.d. and aspirin 81 mg q.d. were continued.",
            "Tylenol 650 mg p.o. q.6h. p.r.n. pain.",
        ],
    ),
    (
        "Lisinopril 10 mg. daily was started. Metformin t.i.d. and insulin q.i.d. as before.",
        ["Lisinopril 10 mg. daily was started.", "Metformin t.i.d. and insulin q.i.d. as before."],
    ),
    (
        "Viral infection, e.g. influenza, is likely, i.e. no bacterial source. "
        "CHF vs. COPD exacerbation.",
        [
            "Viral infection, e.g. influenza, is likely, i.e. no bacterial source.",
            "CHF vs. COPD exacerbation.",
        ],
    ),
    (
        "He lives near St. Mary's Hospital. Approx. 2 cm mass seen.",
        ["He lives near St. Mary's Hospital.", "Approx. 2 cm mass seen."],
    ),
    (
        "Furosemide 40 mg p.o. b.i.d. The edema improved.",
        ["Furosemide 40 mg p.o. b.i.d.", "The edema improved."],
    ),
    (
        "Weight 85.7 kg.  NECK:  Supple.  Given 20 mg. He tolerated it.",
        ["Weight 85.7 kg.", "NECK:  Supple.", "Given 20 mg.", "He tolerated it."],
    ),
    (
        "No. 2 catheter was used. Her answer was no. She left.",
        ["No. 2 catheter was used.", "Her answer was no.", "She left."],
    ),
    (
        "Findings were discussed (see Fig. 2 and Table 1). Biopsy is pending.",
        ["Findings were discussed (see Fig. 2 and Table 1).", "Biopsy is pending."],
    ),
    (
        "Severe MR. Mitral inflow was normal. HV interval 46 ms. Sinus rhythm.",
        ["Severe MR.", "Mitral inflow was normal.", "HV interval 46 ms.", "Sinus rhythm."],
    ),
    # decimals and numbers
    (
        "HbA1c was 7.2% in March. The lesion measures 1.5 cm. Hgb 12.3. Hct 36.9.",
        ["HbA1c was 7.2% in March.", "The lesion measures 1.5 cm.", "Hgb 12.3.", "Hct 36.9."],
    ),
    (
        "BP 120/80. HR 72. RR 16. Temp. 98.6 F.",
        ["BP 120/80.", "HR 72.", "RR 16.", "Temp. 98.6 F."],
    ),
    (
        "Cholesterol:  251.  LDL:  166.  HDL:  68.",
        ["Cholesterol:  251.", "LDL:  166.", "HDL:  68."],
    ),
    (
        "Awake, alert, and oriented x 3. No focal deficits.",
        ["Awake, alert, and oriented x 3.", "No focal deficits."],
    ),
    # initials
    (
        "The case was reviewed by John A. Smith, M.D. on 01/02/2003. "
        "Follow up with Dr. X.  She agreed.",
        [
            "The case was reviewed by John A. Smith, M.D. on 01/02/2003.",
            "Follow up with Dr. X.",
            "She agreed.",
        ],
    ),
    (
        "Hepatitis C. Hypertension. Vitamin D. deficiency was noted.",
        ["Hepatitis C.", "Hypertension.", "Vitamin D. deficiency was noted."],
    ),
    (
        "Consult placed with Dr. F. The family agreed. Dr. A. Smith saw her with Mary K. Jones.",
        [
            "Consult placed with Dr. F.",
            "The family agreed.",
            "Dr. A. Smith saw her with Mary K. Jones.",
        ],
    ),
    # list numbers and bullets
    (
        "DIAGNOSES:\n1.  Hypertension.\n2.  Diabetes mellitus type 2\n3.  Hyperlipidemia",
        ["DIAGNOSES:", "1.  Hypertension.", "2.  Diabetes mellitus type 2", "3.  Hyperlipidemia"],
    ),
    (
        "PLAN:  1. Continue aspirin. 2. Start statin. 3. Recheck lipids in 6 weeks.",
        ["PLAN:  1. Continue aspirin.", "2. Start statin.", "3. Recheck lipids in 6 weeks."],
    ),
    (
        "PLAN:  1. Rest 2. Fluids 3. Recheck CBC tomorrow",
        ["PLAN:  1. Rest", "2. Fluids", "3. Recheck CBC tomorrow"],
    ),
    (
        "He received 2 units. 3. Follow-up in clinic.",
        ["He received 2 units.", "3. Follow-up in clinic."],
    ),
    (
        "MEDICATIONS:\n1)  Lasix 40 mg daily\n2)  Potassium chloride 20 mEq daily",
        ["MEDICATIONS:", "1)  Lasix 40 mg daily", "2)  Potassium chloride 20 mEq daily"],
    ),
    (
        "ROS:\n- No fever\n- No chills\n* Denies chest pain\n\u2022 Normal appetite",
        ["ROS:", "- No fever", "- No chills", "* Denies chest pain", "\u2022 Normal appetite"],
    ),
    (
        "A.  Left main: Normal.\nB.  LAD: 50% stenosis.",
        ["A.  Left main: Normal.", "B.  LAD: 50% stenosis."],
    ),
    (
        "I. Left coronary artery: normal.\nII. Right coronary artery: dominant.",
        ["I. Left coronary artery: normal.", "II. Right coronary artery: dominant."],
    ),
    # section headings
    (
        "HISTORY OF PRESENT ILLNESS:  The patient is a 67-year-old male with chest pain. "
        "He denies dyspnea.",
        [
            "HISTORY OF PRESENT ILLNESS:  The patient is a 67-year-old male with chest pain.",
            "He denies dyspnea.",
        ],
    ),
    (
        "PHYSICAL EXAMINATION:\nGENERAL:  Alert and oriented.\nHEENT:  PERRLA.",
        ["PHYSICAL EXAMINATION:", "GENERAL:  Alert and oriented.", "HEENT:  PERRLA."],
    ),
    (
        "ASSESSMENT AND PLAN\nPneumonia, improving.",
        ["ASSESSMENT AND PLAN", "Pneumonia, improving."],
    ),
    (
        "CHIEF COMPLAINT:  Chest pain.\n\nHISTORY:  Onset 2 days ago.",
        ["CHIEF COMPLAINT:  Chest pain.", "HISTORY:  Onset 2 days ago."],
    ),
    # line breaks: self-contained lines vs wrapped sentences
    (
        "LABS:\nSodium 139\nPotassium 4.1\nCreatinine 1.2 mg/dL",
        ["LABS:", "Sodium 139", "Potassium 4.1", "Creatinine 1.2 mg/dL"],
    ),
    (
        "Allergies: NKDA\nMedications: none",
        ["Allergies: NKDA", "Medications: none"],
    ),
    (
        "The patient was started on antibiotics and was\ntransferred to the floor in stable "
        "condition. She\ntolerated the procedure well.",
        [
            "The patient was started on antibiotics and was\ntransferred to the floor in stable "
            "condition.",
            "She\ntolerated the procedure well.",
        ],
    ),
    (
        "Seen with her husband and the staff of\nGood Samaritan Hospital today.\n"
        "Aspirin 81 mg daily",
        [
            "Seen with her husband and the staff of\nGood Samaritan Hospital today.",
            "Aspirin 81 mg daily",
        ],
    ),
    (
        "Head:  Atraumatic, normocephalic,\nEyes:  Conjunctiva clear.",
        ["Head:  Atraumatic, normocephalic,", "Eyes:  Conjunctiva clear."],
    ),
    # semicolons and lab runs
    (
        "Pulse ox was 98% on room air; lungs were clear; no wheezes were heard.",
        ["Pulse ox was 98% on room air; lungs were clear; no wheezes were heard."],
    ),
    (
        "Sodium 139, potassium 4.1, chloride 101, bicarbonate 24, BUN 18, creatinine 1.1. "
        "Glucose was 110.",
        [
            "Sodium 139, potassium 4.1, chloride 101, bicarbonate 24, BUN 18, creatinine 1.1.",
            "Glucose was 110.",
        ],
    ),
    (
        "Albumin 3.8, cholesterol 180, LDL 98, HDL\n45, PTH 98.",
        ["Albumin 3.8, cholesterol 180, LDL 98, HDL\n45, PTH 98."],
    ),
    # question and exclamation marks, missing space, quotes
    (
        "Was the pain better? Yes! She is much improved.",
        ["Was the pain better?", "Yes!", "She is much improved."],
    ),
    (
        "The wound was seen by the team.The dressing was changed.",
        ["The wound was seen by the team.", "The dressing was changed."],
    ),
    (
        'She said, "I feel fine." Then she left.',
        ['She said, "I feel fine."', "Then she left."],
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_policy_cases(text: str, expected: list[str]) -> None:
    spans = split_sentences(text)
    assert_invariants(text, spans)
    assert [text[s:e] for s, e in spans] == expected


def test_exact_offsets() -> None:
    text = "  HPI:  Cough.  Fever 38.5 C.\n\nPLAN:\n1. Rest\n"
    assert split_sentences(text) == [(2, 14), (16, 29), (31, 36), (37, 44)]


@pytest.mark.parametrize("text", ["", " ", "\n\n\t ", "\u2028\u00a0\u3000"])
def test_empty_and_whitespace(text: str) -> None:
    assert split_sentences(text) == []


def test_crlf_and_unicode_breaks() -> None:
    text = "LABS:\r\nSodium 139\r\n\r\nPotassium 4.1\u2028Glucose 98"
    assert sentences(text) == ["LABS:", "Sodium 139", "Potassium 4.1", "Glucose 98"]


def test_synthetic_note_invariants() -> None:
    spans = split_sentences(SYNTHETIC_NOTE)
    assert_invariants(SYNTHETIC_NOTE, spans)
    got = [SYNTHETIC_NOTE[s:e] for s, e in spans]
    assert "1.  Congestive heart failure." in got
    assert "Sodium 139, potassium 4.1, chloride 101, bicarbonate 24." in got
    assert "Follow up with Dr. X. in 2 weeks." in got


def test_note_corpus_invariants() -> None:
    """Every MTSamples note (when the shared data is present) or the bundled synthetic note."""
    if MTSAMPLES.exists():
        with MTSAMPLES.open(encoding="utf-8") as fh:
            texts = [json.loads(line)["text"] for line in fh if line.strip()]
    else:
        texts = [SYNTHETIC_NOTE]
    assert texts
    for text in texts:
        assert_invariants(text, split_sentences(text))
        assert_invariants(text, split_sentences(text, max_chars=128), max_chars=128)


def test_never_raises_on_random_strings() -> None:
    rng = random.Random(20240501)
    alphabet = [
        *"aZ .?!:;,()[]{}\"'\n\r\t-*+#/1234567890\u2022\u2028\u2029\x0b\x0c\x1c\x1f\x85\u00a0",
        *"\u00e9\u00df\u4e2d\U0001f600\ud800\u200b\u0301",
        *["Dr.", "e.g.", "1.", " b.i.d. ", "\n\n", "HISTORY:", "mg.", " A. ", "(", "...", "?!"],
    ]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        assert_invariants(text, split_sentences(text))
        limit = rng.randint(1, 12)
        assert_invariants(text, split_sentences(text, max_chars=limit), max_chars=limit)


@pytest.mark.parametrize(
    "text",
    [
        "word " * 100_000,  # no punctuation at all
        "x" * 300_000,  # one huge token
        "." * 100_000,
        "word. " * 50_000,  # a period on every word, never a boundary
        "Dr. " * 50_000,
        "A. " * 50_000,
        "(a. B " * 10_000,
        "line\n" * 50_000,
    ],
    ids=["words", "token", "dots", "lower", "titles", "initials", "brackets", "lines"],
)
def test_pathological_inputs_are_fast(text: str) -> None:
    start = time.perf_counter()
    spans = split_sentences(text)
    elapsed = time.perf_counter() - start
    assert_invariants(text, spans)
    assert elapsed < 5.0


def test_max_chars_splits_at_last_whitespace() -> None:
    text = "alpha beta gamma delta epsilon."
    assert sentences(text, max_chars=12) == ["alpha beta", "gamma delta", "epsilon."]
    assert sentences(text, max_chars=11) == ["alpha beta", "gamma delta", "epsilon."]
    assert sentences(text, max_chars=100) == [text]


def test_max_chars_cuts_inside_a_long_word() -> None:
    text = "abcdefghij klm. Next one."
    assert sentences(text, max_chars=4) == ["abcd", "efgh", "ij", "klm.", "Next", "one."]


def test_max_chars_keeps_invariants_on_long_sentence() -> None:
    text = "The patient " + "reports intermittent pain " * 200 + "today."
    spans = split_sentences(text, max_chars=256)
    assert len(spans) > 10
    assert_invariants(text, spans, max_chars=256)
    assert split_sentences(text) == [(0, len(text))]


@pytest.mark.parametrize("bad", [0, -5])
def test_max_chars_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        split_sentences("Some text.", max_chars=bad)
