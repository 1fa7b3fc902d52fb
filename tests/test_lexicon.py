"""The lexicon's prefilter (worker.lexicon.prefilter): what each pattern needs, and that the rules
it leaves out could not have matched, so the lexicon finds what running every rule finds."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.handlabels import DEFAULT_DATA_DIR, load_labels
from worker.lexicon import LEXICON_VERSION, find_hits, first_label, rules
from worker.lexicon.prefilter import DECIMAL_DIGITS, Prefilter, required_literals

_I = re.IGNORECASE


def _needs(pattern: str, flags: int = _I) -> list[set[str]]:
    return [set(need) for need in required_literals(re.compile(pattern, flags))]


def test_literals_are_case_folded_unless_the_pattern_is_case_sensitive() -> None:
    assert _needs(r"\btroponins?\b") == [{"troponin", "troponins"}]
    assert _needs(r"\b(?-i:ANC)\b") == [{"ANC"}]
    assert _needs(r"\bER\b", 0) == [{"ER"}]
    # a string of both kinds is folded whole: "CK-MB" is "ck-mb" in the folded text
    assert _needs(r"\b(?-i:CK)-MB\b") == [{"ck-mb"}]


def test_alternatives_multiply_out_and_look_aheads_count() -> None:
    # the parser factors out the common "h"; the exact strings put it back
    assert _needs(r"\b(?:hgb|hb|hemoglobin)\b") == [{"hgb", "hb", "hemoglobin"}]
    assert _needs(r"\bCA[-\s]?(?:125|19-9)\b") == [{"ca"}, {"125", "19-9"}]
    # "K 4.1": the abbreviation, and a digit in the look-ahead
    assert _needs(r"\b(?:Na|K)\b(?=\s*\d)", 0) == [{"Na", "K"}, set(DECIMAL_DIGITS)]


def test_what_may_be_absent_is_not_needed() -> None:
    assert _needs(r"\b(?:absolute\s+)?neutrophil") == [{"neutrophil"}]
    assert _needs(r"\bfoo(?!bar)") == [{"foo"}]
    assert _needs(r"\w+\s+level") == [{"level"}]
    assert _needs(r"x*|\d+") == []  # one alternative needs nothing: the whole needs nothing


def test_unicode_digits_and_the_turkish_i_match_as_the_regex_engine_matches_them() -> None:
    # \d matches every Unicode decimal digit; IGNORECASE equates "i" with U+0131 and U+0130
    digit, dotless = re.compile(r"\bK\b(?=\s*\d)"), re.compile(r"\binsulin\b", _I)
    prefilter = Prefilter([digit, dotless])
    for text in ("K \u0664", "K \uff14", "\u0131nsulin level", "\u0130NSULIN level"):
        expected = [index for index, regex in enumerate((digit, dotless)) if regex.search(text)]
        assert expected and prefilter.candidates(text) == expected, text


def test_single_non_ascii_needs_are_looked_up_apart_from_the_automaton() -> None:
    degree = re.compile("\u00b0")  # its one need is a single non-ASCII character
    prefilter = Prefilter([degree, re.compile(r"\btroponin\b", _I)])
    for text, expected in (
        ("38 \u00b0C", [0]),
        ("38 C", []),
        ("na\u00efve", []),
        ("troponin", [1]),
    ):
        assert prefilter.candidates(text) == expected, text


def test_a_pattern_that_needs_nothing_is_always_a_candidate() -> None:
    prefilter = Prefilter([re.compile(r"\btroponin\b", _I), re.compile(r"\w+")])
    assert prefilter.candidates("no match here") == [1]
    assert prefilter.candidates("Troponin I normal.") == [0, 1]


_FRAGMENTS = sorted(
    {
        string
        for _label, regex in rules._RULES
        for need in required_literals(regex)
        for string in need
    }
    | {" ", "  ", ".", ",", ":", "-", "/", "(", ")", "+", "=", "4.1", "12", "of", "was", "is"}
    | {"level", "levels", "serum", "low", "negative", "positive", "mg", "mEq/L", "CT", "head"}
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(_FRAGMENTS),
            st.sampled_from(_FRAGMENTS).map(str.upper),
            st.text(alphabet="aAeE0 .-/+(", max_size=3),
        ),
        max_size=12,
    ).map("".join)
)
def test_no_rule_left_out_could_have_matched(text: str) -> None:
    candidates = set(rules._PREFILTER.candidates(text))
    for index, (_label, regex) in enumerate(rules._RULES):
        if regex.search(text):
            assert index in candidates, (text, _label)


def _every_rule(text: str) -> list[tuple[str, int, int]]:
    """The lexicon without its prefilter: every rule on every text."""
    return [(hit.label, hit.start, hit.end) for hit in find_hits(text, prefilter=False)]


def test_the_digits_are_every_decimal_digit_unicode_has() -> None:
    every = frozenset(chr(code) for code in range(0x110000) if chr(code).isdecimal())
    assert every == DECIMAL_DIGITS
    assert all(re.fullmatch(r"\d", digit) for digit in DECIMAL_DIGITS)


_CASES = [
    "HbA1c was 7.2% and CK-MB 4.1.",
    "Micardis HCT 40/12.5 daily; HCT 37.9.",
    "Diovan HCT 80/12.5 mg daily; ACT 165 seconds; HTLV-1 titers negative.",
    "Gram stain: many WBCs, no organisms; HCT without contrast was normal.",
    "Head CT (HCT) on 3/4/2019 was normal.",
    "ER/PR positive, HER2 negative; after the ER visit.",
    "Lactated Ringer's at 100 mL/h; serum lactate 2.1.",
    "K 4.1, Na 139, potassium chloride 20 mEq, Plt 250.",
    "anti-dsDNA and SSA were negative; tTG antibody elevated.",
    "Warm blood potassium cardioplegia; tacrolimus 3.1; Rh: positive; high triglycerides.",
    "He was seen and is doing well.",
]


@pytest.mark.parametrize("text", _CASES)
def test_the_prefiltered_lexicon_finds_what_every_rule_finds(text: str) -> None:
    assert [(h.label, h.start, h.end) for h in find_hits(text)] == _every_rule(text)


#: The corpora beside the checkout, else where this machine keeps them (as tests/test_handlabels).
DATA_DIR = DEFAULT_DATA_DIR if DEFAULT_DATA_DIR.is_dir() else Path("/work/shared/data")


def test_the_same_on_the_hand_labelled_sentences() -> None:
    texts = [
        sentence.text
        for name in ("clinical", "literature")
        for sentence, _ in load_labels(name, DATA_DIR)
    ]
    assert len(texts) > 5000
    differ = [
        text
        for text in texts
        if [(h.label, h.start, h.end) for h in find_hits(text)] != _every_rule(text)
    ]
    assert not differ, f"{len(differ)} sentences differ"


def test_first_label_names_the_earliest_match_and_the_version_is_a_content_hash() -> None:
    assert first_label("Seen today; troponin I and HbA1c were drawn.") == "cardiac"
    assert first_label("No fever or cough.") is None
    assert re.fullmatch(r"lexicon-[0-9a-f]{12}", LEXICON_VERSION)


def test_the_version_covers_every_pattern_its_flags_its_category_and_the_logic_revision() -> None:
    named = list(rules._NAMED_PATTERNS)
    assert rules.version_of(named, rules._LOGIC_REVISION) == LEXICON_VERSION
    label, regex = named[0]
    changed = [
        [(label + " panel", regex), *named[1:]],  # a category name (outputs show it as "rule")
        [(label, re.compile(regex.pattern)), *named[1:]],  # the same pattern, other flags
        [(label, re.compile(regex.pattern + "x", regex.flags)), *named[1:]],
        named[:-1],  # a pattern taken out
    ]
    versions = {rules.version_of(items, rules._LOGIC_REVISION) for items in changed}
    versions.add(rules.version_of(named, rules._LOGIC_REVISION + "+1"))
    assert len(versions) == 5 and LEXICON_VERSION not in versions


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Liver function tests were normal.", "liver panel"),
        ("It would be helpful to have a full liver function profile.", "liver panel"),
        ("Liver functions were monitored throughout her stay.", "liver panel"),
        ("Abnormal liver function due to congestive heart failure.", None),
    ],
)
def test_liver_function_names_the_tests_not_the_condition(text: str, label: str | None) -> None:
    assert first_label(text) == label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Patients with TGBM nephropathy often have concomitant IgA nephropathy.", None),
        ("Selective IgA deficiency runs in the family.", None),
        ("In congenital protein C deficiency, warfarin is started cautiously.", None),
        ("The family was prone to cortisol resistance and hypertension.", None),
        ("Uptake was measured after the administration of recombinant human TSH.", None),
        ("Thyroglobulin was measured after rhTSH stimulation.", "other proteins"),
        ("IgA was low at 12 mg/dL.", "serology"),
        ("Selective IgA deficiency with an IgA of 5 mg/dL.", "serology"),
        ("Protein C and protein S were checked.", "other proteins"),
        ("AM cortisol was 3.2.", "other analytes"),
        ("TSH 4.5.", "thyroid"),
    ],
)
def test_conditions_named_after_an_analyte_and_tsh_given_as_a_drug_are_not_matches(
    text: str, label: str | None
) -> None:
    assert first_label(text) == label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("He was seen in the ER - given fluids and discharged.", None),
        ("Presented to the ER -- no acute distress.", None),
        ("He went to the ER + was admitted.", None),
        ("Tumor was ER +, PR -, HER2 negative.", "receptor status"),
        ("ER + PR + tumor.", "receptor status"),
        ("ER - PR -", "receptor status"),
        ("ER+/PR+ ductal carcinoma.", "receptor status"),
        ("The tumor was ER -.", "receptor status"),
        ("Receptors: ER (+).", "receptor status"),
        ("ER + 95%, PR - 0%.", "receptor status"),
        ("ER + (Allred 8/8).", "receptor status"),
        ("ER + ve tumour.", "receptor status"),
        ("ER + & PR + carcinoma.", "receptor status"),
    ],
)
def test_a_sign_after_a_spaced_er_is_a_status_only_before_punctuation_or_a_receptor(
    text: str, label: str | None
) -> None:
    assert first_label(text) == label


#: Every rule on terms followed by a long run of spaces. Adjacent ``\s*`` in a pattern made this
#: cost a power of the run's length (400 spaces after "potassium": 20 s): one note could hold a
#: partition up. Linear now, so 20,000 spaces take milliseconds; a regression runs for hours.
_LONG_SPACES = """
from worker.lexicon import find_hits
for term in ("potassium", "K", "PT", "HCT", "ER", "PR", "Rh", "high cholesterol", "labs"):
    for sep in (" ", " \\n"):
        for tail in ("x 1", "1", ".", "3/4/05"):
            text = term + sep * 10000 + tail
            find_hits(text)
            find_hits(text, prefilter=False)  # every rule and exclusion
"""


def test_a_long_run_of_spaces_after_a_term_costs_linear_time() -> None:
    subprocess.run([sys.executable, "-c", _LONG_SPACES], check=True, timeout=60)
