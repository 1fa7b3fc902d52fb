"""Curated biomarker lexicon: regular expressions for analytes, tumour markers and receptor status.

The worker labels a sentence 1 when a rule matches it, whatever the model's score (the output
names the rule); training weak-labels clinical-note sentences with it and adds the lab analytes
(glucose, creatinine, ...) that gene-mention corpora do not mark, following ``LABEL_POLICY.md``.
Three tiers:

* ``_NAMES`` - terms that name a biomarker wherever they appear (``troponin``, ``HbA1c``, ``PSA``).
* ``_AMBIGUOUS`` - words that are also drugs, diets or biology (``potassium``, ``albumin``,
  ``calcium``): a hit needs lab context, i.e. a value after the word ("potassium 4.1", not
  "potassium 20 mEq") or a lab word before it ("serum calcium", "low magnesium"), and no drug or
  diet word after it ("potassium chloride", "calcium channel", "iron supplement").
* ``_NOTE_ABBREVIATIONS`` - case-sensitive note-style abbreviations that count only with a value
  ("K 4.1", "Na 139", "Cr 1.2", "Plt 250").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from worker.lexicon.prefilter import Prefilter

__all__ = ["LEXICON_VERSION", "LexiconHit", "find_hits", "first_label", "has_biomarker"]

_I = re.IGNORECASE

# A value right after a term: "of 8.7", "was 139", ": 4.1", "= 0.9", "is < 0.01", "250,000".
# Each optional part carries the spaces before it, so no two ``\s*`` are adjacent: a long run of
# spaces after an analyte costs linear time, not a power of its length.
_VALUE_PREFIX = (
    r"(?:\s*(?:level|levels|count|value))?"
    r"(?:\s+(?:had|has|have|came|back|out|up|down|now|today|initially|slightly|mildly|"
    r"risen|rose|fell|dropped|increased|decreased|improved|borderline|low|high|elevated))*"
    r"(?:\s*(?:of|was|were|is|are|at|to|:|=|-))?\s*(?:[<>]\s*)?"
)
_VALUE = _VALUE_PREFIX + r"\d"
# A dose unit after the value means a drug ("potassium 20 mEq", "K 10 mg"); "mEq/L" is a lab.
_DOSE = r"\d[\d.,]*\s*(?:mg|mcg|mEq|mmol|g|gm|grams|units?|tabs?|tablets?|mL|cc)\b(?!\s*/)"
_NOT_DOSE = f"(?!{_VALUE_PREFIX}{_DOSE})"
_LAB_BEFORE = (
    r"(?:serum|plasma|blood|urine|urinary|ionized|corrected|fasting|random|total|free|low|high|"
    r"elevated|raised|increased|decreased|depressed|normal|abnormal|repeat|check|checked|follow)"
    r"\s+"
)
_DRUG_AFTER = (
    r"\s*(?:chloride|citrate|gluconate|bicarbonate|phosphate|sulfate|oxide|hydroxide|carbonate|"
    r"acetate|channel|supplements?|replacement|replete|repletion|tablets?|tabs?|diet|rich|"
    r"infusion|drip|bolus|sliding|pump|therapy|deficiency|intake|restriction|dependent|"
    r"binding|signaling|signalling|influx|efflux|transport|transporter|homeostasis|metabolism|"
    r"cardiopleg\w*)\b"
)

_NAMES: tuple[tuple[str, str], ...] = (
    # haematology and coagulation
    ("hemoglobin", r"\b(?:ha?emoglobins?|hgb|hb)\b(?!\s*(?:s|sc)\s+disease)"),
    (
        "hba1c",
        r"\b(?:hb\s*a1c|hemoglobin\s+a1c|a1c|glyc(?:at|osyl)ated\s+ha?emoglobin|"
        r"glycohemoglobin)\b",
    ),
    # "HCT" in capitals is also head CT or a drug: :func:`find_hits` keeps it only with a value.
    ("hematocrit", r"\b(?:ha?ematocrits?|hct|h\s*(?:&|and)\s*h)\b"),
    ("white count", r"\b(?:wbcs?|white\s+(?:blood\s+)?(?:cell\s+)?count|white\s+blood\s+cells?)\b"),
    ("platelet count", r"\bplatelet\s+counts?\b|\bplt\s+counts?\b"),
    (
        "cell count",
        r"\b(?:absolute\s+)?(?:neutrophil|lymphocyte|eosinophil|reticulocyte|cd4)\s+counts?\b",
    ),
    ("anc", r"\b(?-i:ANC)\b|\babsolute\s+neutrophil"),
    ("cd marker", r"\bCD(?:4|8|20|30|34|38|117)\b(?!\s*-?\s*T\s*cells?\b)"),
    ("red cell indices", r"\b(?:MCV|MCH|MCHC|RDW)\b"),
    (
        "coagulation",
        r"\b(?:INR|a?PTT|prothrombin\s+time|D-?dimer|fibrinogen|"
        r"coagulation\s+(?:panel|profile|studies))\b",
    ),
    ("pt", r"\b(?-i:PT)\s*(?:/|and|,)\s*(?:INR|a?PTT)\b|\b(?-i:PT)\b(?=" + _VALUE + ")"),
    # activated clotting time: "ACT" is also a verb and an acronym, so only with seconds
    (
        "coagulation",
        r"\bactivated\s+clotting\s+times?\b|\b(?-i:ACT)\b(?=[^.;]{0,25}\b(?:seconds|secs?)\b)",
    ),
    ("esr", r"\b(?:ESR|sed(?:imentation)?\s+rate)\b"),
    ("crp", r"\b(?:hs-?)?CRP\b|\bc-?\s*reactive\s+protein\b"),
    # chemistry
    (
        "glucose",
        r"\bglucoses?(?:\b|(?=\d))|\bblood\s+sugars?\b|\baccu-?che(?:c)?ks?\b"
        r"|\bfinger\s*sticks?\s+(?:glucose|blood\s+sugar|sugar|BS)\b",
    ),
    ("creatinine", r"\bcreatinine\b|\bcreatinine\s+clearance\b"),
    ("bun", r"\bBUN\b|\bblood\s+urea\s+nitrogen\b|\bserum\s+urea\b"),
    ("egfr rate", r"\be?GFR\b"),
    (
        "cardiac",
        r"\btroponins?\b|\b(?-i:CK)(?:-?MB)?\b|\bCPK\b|\bcreatine\s+(?:phospho)?kinase\b"
        r"|\bcardiac\s+enzymes?\b|\bmyoglobin\b|\b(?-i:MB)\s+fraction\b",
    ),
    ("natriuretic", r"\b(?:NT-?)?(?:pro-?)?BNP\b|\bnatriuretic\s+peptide\b"),
    (
        "liver",
        r"\b(?:(?-i:ALT|AST)|SGOT|SGPT|S?GGTP?|gamma-?\s*GT|alk(?:aline)?\.?\s+phos(?:phatase)?|"
        r"bilirubin|lipase|amylase|transaminases?)\b",
    ),
    (
        "liver panel",
        # "liver function" alone is a condition ("abnormal liver function"); the tests are not
        r"\bLFTs?\b|\b(?:liver|hepatic)\s+(?:functions|function\s+(?:panel|tests?|studies|"
        r"profile|labs?)|enzymes?|panel)\b",
    ),
    ("lipids", r"\b(?:cholesterol|triglycerides?|HDL|LDL|VLDL)\b|\blipid\s+(?:panel|profile)\b"),
    (
        "panel",
        r"\b(?:CBCs?|BMPs?|CMPs?|chem(?:istry)?[-\s]?(?:7|10|12|20|panels?)|SMA-?\d+)\b",
    ),
    ("panel", r"\b(?:complete\s+blood\s+count|(?:basic|comprehensive)\s+metabolic\s+panel)\b"),
    (
        "thyroid",
        r"\b(?:TSH|free\s+T[34]|thyroxine|thyroid\s+(?:function|stimulating|panel|studies|"
        r"tests?|levels?|hormone\s+levels?))\b",
    ),
    ("iron", r"\b(?:ferritin|TIBC|transferrin|iron\s+(?:studies|panel|saturation))\b"),
    # vitamin B12 alone is also a drug (medication lists): in _AMBIGUOUS
    ("vitamin", r"\b(?:B-?12\s+levels?|25-hydroxy|folate\s+levels?)\b"),
    (
        "blood gas",
        r"\b(?:ABGs?|(?:arterial|cord)\s+(?:blood\s+)?gas(?:es)?|pa?CO2|pa?O2|anion\s+gap)\b",
    ),
    (
        "other analytes",
        r"\b(?:lactic\s+acid|uric\s+acid|homocyste?ine|procalcitonin|haptoglobin)\b",
    ),
    (
        "other analytes",
        r"\b(?:osmolality|C-?peptide|cortisol|prolactin|PTH|parathyroid\s+hormone)\b",
    ),
    # estradiol and testosterone are also drugs: in _AMBIGUOUS (a value or lab context needed)
    ("hormones", r"\b(?:FSH|LH\s+(?:and|/)\s+FSH|beta-?\s*hCG|β-?hCG|hCG|beta\s+quant)\b"),
    (
        "other proteins",
        r"\b(?:beta-?\s*2[-\s]?microglobulin|thyroglobulin|protein\s+[CS]|antithrombin|"
        r"alpha-?\s*1[-\s]?antitrypsin\s+level|hepatitis\s+B\s+(?:surface\s+)?antigen)\b",
    ),
    (
        "counts",
        r"\b(?:leukocytosis|leukopenia|thrombocytopenia)\s+(?:of|to|at)\s+\d"
        r"|\bblood\s+counts?\b",
    ),
    ("ph", r"\b(?-i:pH)\s*(?:is|was|of|:|=)?\s*[5-8]\.\d"),
    (
        "drug level",
        r"\b(?:trough|peak)\s+levels?\b|\b(?:vancomycin|digoxin|dilantin|phenytoin|"
        r"lithium|valproic\s+acid|depakote|tegretol|carbamazepine|tacrolimus|cyclosporine|sirolimus|"
        r"everolimus|gentamicin|alcohol|"
        r"ethanol)\s+(?:levels?|troughs?)\b|\bblood\s+alcohol\b"
        r"|\b(?:digoxin|dilantin|phenytoin|lithium|vancomycin|tacrolimus)\s+(?:was|is|of)\s+\d"
        # immunosuppressant levels are written bare in a lab line ("Laboratory data from 12/30/07
        # tacrolimus 3.1"); in a medication list the same shape is a dose
        r"|\blab(?:oratory|s)?\b[^.;]{0,60}?\b(?:tacrolimus|cyclosporine|sirolimus|everolimus)"
        r"\s+(?:was\s+|of\s+|:\s*)?\d",
    ),
    (
        "urine",
        r"\b(?:microalbumin(?:uria)?|urine\s+(?:protein|albumin|creatinine|sodium|osmolality)|"
        r"leukocyte\s+esterase|urine\s+nitrites?)\b"
        r"|\bnitrites?\s+(?:(?:was|were|is|are)\s+)?(?:negative|positive|trace)\b",
    ),
    # named tests whose analytes are implied (label policy conventions, training/handlabels/)
    (
        "named test",
        r"\b(?:urinalysis|urinalyses|urine\s+analysis|(?:urine\s+)?drug\s+screens?|"
        r"tox(?:icology)?\s+screens?|u-?tox|(?:urine\s+|serum\s+)?pregnancy\s+tests?|guaiac|"
        r"hemoccult|(?:fecal\s+)?occult\s+blood|(?:fecal|stool)\s+leukocytes?|"
        r"blood\s+typ(?:e|es|ing)|typed\s+and\s+cross\w*|type\s*(?:and|&)\s*(?:screen|cross\w*)|"
        r"ABO\s*(?:/|and)\s*Rh)\b"
        # Rh typing: "Rh: positive", "Rh-negative", "Ordered Rh." (case-sensitive: "RH" is
        # right-handed)
        r"|\b(?-i:Rh)\b(?=\s*(?:[-+]|(?:-\s*)?(?:positive|negative)\b|:|status|factor|\.\s*$))"
        r"|\b(?-i:UA)\b(?=\s*(?:showed|shows|was|is|revealed|:|positive|negative|with))",
    ),
    ("metals", r"\b(?:blood\s+lead|lead\s+(?:levels?|screen\w*))\b"),
    ("ace", r"\b(?-i:ACE)\s+levels?\b|\bangiotensin[-\s]converting\s+enzyme\s+levels?\b"),
    (
        "serology",
        r"\b(?:(?-i:ANA|p-?ANCA|c-?ANCA|ANCA|ASCA)|anti-?CCP|HBsAg|rheumatoid\s+factor|"
        r"antinuclear\s+antibod\w*|anti-?cardiolipin|cardiolipin\s+antibod\w*|"
        r"anti-?intrinsic\s+factor|intrinsic\s+factor\s+antibod\w*|"
        r"hepatitis\s+[ABC]\s+(?:surface\s+|core\s+)?(?:antibod\w+|antigen|ab|ag))\b",
    ),
    (
        "serology",
        r"\b(?:HTLV|HIV|EBV|CMV|rubella|varicella|measles|mumps|Lyme|hepatitis)"
        r"(?:[-\s]?(?:[12]|I{1,2}|[ABC]))?\s+(?:antibody\s+)?titers?\b",
    ),
    (
        "serology",
        r"\b(?-i:Ig[AGEM]|RPR)\b|\bviral\s+load\b|\bSPEP\b|\b(?:protein|serum)\s+electrophoresis\b"
        r"|\bM-?spike\b",
    ),
    (
        "serology",
        r"\b(?:anti-?(?:ds-?DNA|double[-\s]stranded\s+DNA|Smith|Sm|RNP|Ro|La|SSA|SSB)|"
        r"(?:ds-?DNA|double[-\s]stranded\s+DNA)\s+(?:antibod\w+|titers?|(?:was|is|were)\s+"
        r"(?:negative|positive|normal|elevated))|(?-i:SSA|SSB|RNP)\b(?=[^.]{0,40}"
        r"\b(?:negative|positive|normal))|endomysial\s+antibod\w*|"
        r"(?:tissue\s+)?transglutaminase\s+antibod\w*|tTG|gliadin\s+antibod\w*|"
        r"beta[-\s]?2[-\s]?glycoprotein|complement\s+levels?|immunofixation|"
        r"hepatitis\s+panel|methylmalonic\s+acid)\b",
    ),
    # tumour markers
    ("psa", r"\bPSA\b|\bprostate[-\s]specific\s+antigen\b"),
    ("cea", r"\bCEA\b|\bcarcinoembryonic\s+antigen\b"),
    ("ca markers", r"\bCA[-\s]?(?:125|19-9|15-3|27[.-]29)\b"),
    ("afp", r"\bAFP\b|\balpha[-\s]?feto\s*protein\b"),
    ("ldh", r"\bLDH\b|\blactate\s+dehydrogenase\b"),
    # receptors, genes and molecular status
    ("her2", r"\bHER-?2(?:\s*/\s*neu)?\b|\bc-?erb\s*B-?2\b|\bneu\s+(?:oncogene|protein)\b"),
    ("hormone receptor", r"\b(?:estrogen|oestrogen|progesterone|androgen)\s+receptors?\b"),
    ("ki-67", r"\bKi-?67\b|\bMIB-?1\b"),
    ("pd-l1", r"\bPD-?L1\b|\bPD-?1\b"),
    (
        "genes",
        r"\b(?:BRCA[12]?|EGFR|KRAS|NRAS|BRAF|ALK|ROS1|JAK2|BCR-?ABL1?|FLT3|NPM1|IDH[12]|TP53|"
        r"p53|MLH1|MSH[26]|PMS2|MTHFR|HLA-?B27|MGMT|PIK3CA|CDKN2A|PTEN|RB1|VHL|C-?KIT|MYCN|"
        r"N-?MYC)\b(?!\s+downstream)",
    ),
    (
        "molecular status",
        r"\bMSI(?:-H|-high)?\b|\bmicrosatellite\s+instab\w*|\bmismatch\s+repair\b",
    ),
    ("molecular status", r"\bfactor\s+V\s+Leiden\b|\bPhiladelphia\s+chromosome\b"),
)

_ER_STATUS = (
    # A sign after a space counts only before punctuation, a number, "ve", the end or another
    # receptor: "ER +, PR -", "ER + 95%", "ER + (Allred 8/8)" are a status, "seen in the ER -
    # given fluids" is the emergency room.
    r"\b(?:ER|PR|PgR)(?:[+-](?![A-Za-z])"
    r"|\s+[+-](?=\s*(?:[/,.;:()&]|\d|ve\b|$|(?:and\s+)?(?:ER|PR|PgR|HER-?2)\b))"
    r"|\s*\(\s*[+-]\s*\)|\s+(?:and|/)\s+PR\b|\s*/\s*PR\b"
    r"|\s*(?:-\s*)?(?:positive|negative|pos|neg)\b)"
)

_AMBIGUOUS = (
    "sodium|potassium|chloride|calcium|magnesium|phosphorus|phosphate|albumin|iron|platelets?|"
    "insulin|lactate|bicarbonate|bicarb|protein|folate|ammonia|vitamin\\s+D|globulin|urea|"
    "ketones?|neutrophils|lymphocytes|monocytes|eosinophils|basophils|bands|segs|estradiol|"
    "testosterone|vitamin\\s+B-?12"
)

_NOTE_ABBREVIATIONS = r"\b(?:Na|K|Cl|CO2|Ca|Mg|Phos|Cr|Cre|Glu|Plt|Plts|PLT|WBC|Hb|HCO3)(?:\+|\b)"

_COMPILED_NAMES = tuple((label, re.compile(pattern, _I)) for label, pattern in _NAMES)
# Case-sensitive: "ER" is also the emergency room; "PR" also a rectal route.
_ER_RE = re.compile(_ER_STATUS)
_AMBIGUOUS_VALUE_RE = re.compile(
    rf"\b(?:{_AMBIGUOUS})\b(?!{_DRUG_AFTER})(?={_VALUE}){_NOT_DOSE}", _I
)
_AMBIGUOUS_CONTEXT_RE = re.compile(rf"\b{_LAB_BEFORE}(?:{_AMBIGUOUS})\b(?!{_DRUG_AFTER})", _I)
_AMBIGUOUS_LEVEL_RE = re.compile(rf"\b(?:{_AMBIGUOUS})\s+(?:levels?|concentrations?)\b", _I)
_ABBREVIATION_RE = re.compile(rf"{_NOTE_ABBREVIATIONS}(?={_VALUE}){_NOT_DOSE}")
# Terms that look like a hit but are not biomarkers in context.
_EXCLUDE_RE = re.compile(
    r"\b(?:lactated\s+ringer'?s?|ringer'?s\s+lactate|ALT\s+key|ANA\s+\w+ova|"
    r"alk(?:aline)?\s+phos(?:phatase)?\s+(?:gel|stain)|"
    r"cholesterol\s+(?:granulomas?|emboli|embolism|embolization|crystals?|clefts?|polyps?)|"
    r"insulin\s+\d+\s*/\s*\d+|oxygen[-\s]glucose\s+deprivation|"
    r"cholesterol\s+(?:metabolism|biosynthesis|synthesis|efflux|homeostasis)|"
    # "high cholesterol" names the condition (history lists); a value or "level" is the analyte
    r"(?:(?:high|elevated)\s+(?:blood\s+)?cholesterol|high\s+triglycerides)"
    r"(?!\s*(?:levels?|values?|readings?|of|was|is|were|are|at|:|=|\(|,\s*\d|\d))|"
    # cells seen on a Gram stain are the culture specimen's microscopy, not a blood count
    r"gram\s+stains?\b[^.;]{0,60}?\b(?:white\s+blood\s+cells?|WBCs?)|"
    # conditions named after an analyte ("IgA nephropathy", "protein C deficiency", "cortisol
    # resistance"), and TSH given as a drug ("recombinant human TSH", rhTSH)
    r"(?-i:Ig[AGM])[-\s]+(?:nephropathy|nephritis|vasculitis|deficiency|deficient|gammopathy)|"
    r"protein\s+[CS]\s+(?:deficiency|deficient)|cortisol\s+resistance|"
    r"recombinant\s+(?:human\s+)?TSH|(?-i:rhTSH))\b",
    _I,
)


@dataclass(frozen=True, slots=True)
class LexiconHit:
    """One lexicon match: the category name and its character span."""

    label: str
    start: int
    end: int


# "HCT" in capitals is the hematocrit only with a value ("HCT 37.9"); without one it is head CT
# ("HCT revealed an old infarct", "HCT without contrast") or hydrochlorothiazide ("Micardis
# HCT"), and a dose ("Diovan HCT 80/12.5 mg", "Micardis HCT 40/12.5": the thiazide's 6.25, 12.5
# or 25 mg after the slash) or a date ("HCT on 7/3/95") is never a value.
_HCT_VALUE_RE = re.compile(rf"HCT(?={_VALUE})")
_HCT_DOSE_RE = re.compile(
    r"HCT\s*\d[\d.]*\s*(?:mg\s*)?(?:/\s*\d[\d.]*\s*)?mg\b|HCT\s*\d{1,3}\s*/\s*(?:6\.25|12\.5|25)\b",
    _I,
)
_DATE_AFTER_RE = re.compile(r"HCT,?(?:\s*(?:on|of|from|dated))?\s*\d{1,2}/\d{1,2}/\d{2,4}")
_DATE_BEFORE_RE = re.compile(r"\d{1,2}/\d{1,2}/\d{2,4}\s*[,:]?\s*$")


def _head_ct_or_drug(text: str, start: int, end: int) -> bool:
    if text[start:end] != "HCT":
        return False
    if _DATE_AFTER_RE.match(text, start) or _DATE_BEFORE_RE.search(text[:start]):
        return True  # an imaging study is dated, a value is not
    if _HCT_DOSE_RE.match(text, start):
        return True
    return not _HCT_VALUE_RE.match(text, start)


#: Every rule in reporting order: its category name and regex.
_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    *_COMPILED_NAMES,
    ("receptor status", _ER_RE),
    ("analyte with value", _AMBIGUOUS_VALUE_RE),
    ("analyte in lab context", _AMBIGUOUS_CONTEXT_RE),
    ("analyte level", _AMBIGUOUS_LEVEL_RE),
    ("note abbreviation", _ABBREVIATION_RE),
)
#: The rules, then the exclusions (masked out only where they can match).
_PREFILTER = Prefilter([*(regex for _label, regex in _RULES), _EXCLUDE_RE])
_EXCLUSIONS = len(_RULES)

#: Bump when the matching logic below (the masking, the hematocrit checks) changes what the same
#: patterns match; the patterns, flags and category names are hashed by themselves.
_LOGIC_REVISION = "1"


def version_of(named: Iterable[tuple[str, re.Pattern[str]]], revision: str) -> str:
    """``lexicon-`` and 12 hex digits of a hash of every (category name, regex) pair, each
    regex's flags and pattern, and the logic ``revision``."""
    parts = [revision, *(f"{label}\x1e{regex.flags}\x1e{regex.pattern}" for label, regex in named)]
    return "lexicon-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:12]


#: Everything the rules match with, named: the version covers each.
_NAMED_PATTERNS = (
    *_RULES,
    ("exclusion", _EXCLUDE_RE),
    ("hematocrit value", _HCT_VALUE_RE),
    ("hematocrit dose", _HCT_DOSE_RE),
    ("date after", _DATE_AFTER_RE),
    ("date before", _DATE_BEFORE_RE),
)
#: Changes whenever a rule does; the worker's outputs name it, and their ids depend on it.
LEXICON_VERSION = version_of(_NAMED_PATTERNS, _LOGIC_REVISION)


def find_hits(text: str, *, prefilter: bool = True) -> list[LexiconHit]:
    """All lexicon matches in ``text``, in order of position.

    Only the rules the prefilter names run (:mod:`worker.lexicon.prefilter`); the others cannot
    match, so the result is the same as running every rule, which ``prefilter=False`` does (the
    reference the prefilter is tested and timed against).
    """
    candidates = _PREFILTER.candidates(text) if prefilter else [*range(len(_RULES)), _EXCLUSIONS]
    if not candidates or candidates == [_EXCLUSIONS]:
        return []
    masked = text
    if candidates[-1] == _EXCLUSIONS:
        candidates.pop()
        masked = _EXCLUDE_RE.sub(lambda m: " " * len(m.group(0)), text)
    hits: list[LexiconHit] = []
    for index in candidates:
        label, regex = _RULES[index]
        hits.extend(
            LexiconHit(label, m.start(), m.end())
            for m in regex.finditer(masked)
            if not (label == "hematocrit" and _head_ct_or_drug(text, m.start(), m.end()))
        )
    return sorted(hits, key=lambda hit: (hit.start, hit.end))


def has_biomarker(text: str) -> bool:
    """True when the lexicon finds at least one biomarker mention in ``text``."""
    return bool(find_hits(text))


def first_label(text: str) -> str | None:
    """The category of the first lexicon match in ``text`` (``None``: no match)."""
    hits = find_hits(text)
    return hits[0].label if hits else None
