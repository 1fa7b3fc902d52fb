"""Note-style template sentences for the clinical error families the corpora under-supply.

MTSamples holds few lab lines per analyte, so rare analytes written as notes write them
("Microalbumin 100.", "Blood lead 12 mcg/dL.", "TSH was borderline high.", "ANA and rheumatoid
factor were negative.", "Hepatic panel ordered.") are learned poorly, and the decoys that share
their shape ("HCT on 03/12/09 showed no bleed.", "Potassium chloride 20 mEq daily.", "EF 55%.",
vital signs, cultures, disease names built on an analyte) are not learned as 0 either. Labels
follow the label policy; the fillers avoid the seed sentences' markers (PSA, CRP, troponin,
HbA1c, glucose, HER2) so that the seed check still measures generalisation. Train split only.
"""

from __future__ import annotations

import random

from training.sources import Example

__all__ = ["clinical_templates"]

#: (name as written in notes, a typical value with its unit)
_ANALYTES = (
    ("microalbumin", "100"),
    ("urine microalbumin", "30 mg/L"),
    ("sodium", "131 mEq/L"),
    ("potassium", "5.9 mEq/L"),
    ("chloride", "101"),
    ("bicarbonate", "19"),
    ("BUN", "38 mg/dL"),
    ("creatinine", "1.4 mg/dL"),
    ("calcium", "11.2 mg/dL"),
    ("magnesium", "1.4"),
    ("phosphorus", "2.1"),
    ("albumin", "2.9 g/dL"),
    ("hemoglobin", "10.4 g/dL"),
    ("Hgb", "9.8"),
    ("Hb", "12 g/dl"),
    ("hematocrit", "31.2%"),
    ("platelet count", "98,000"),
    ("WBC", "14.2"),
    ("white count", "3.1"),
    ("INR", "2.3"),
    ("PTT", "48"),
    ("ferritin", "12 ng/mL"),
    ("TSH", "5.8"),
    ("free T4", "0.7 ng/dL"),
    ("vitamin B12", "216 pg/mL"),
    ("vitamin D level", "18 ng/mL"),
    ("folate level", "3.2"),
    ("ALT", "88 U/L"),
    ("AST", "64"),
    ("GGT", "120"),
    ("alkaline phosphatase", "210"),
    ("total bilirubin", "2.3 mg/dL"),
    ("lipase", "540"),
    ("amylase", "300"),
    ("LDH", "410"),
    ("CPK", "922"),
    ("BNP", "1,250 pg/mL"),
    ("lactic acid", "4.1 mmol/L"),
    ("ammonia", "88"),
    ("methylmalonic acid", "385"),
    ("homocysteine", "15.7"),
    ("TIBC", "345"),
    ("sed rate", "30"),
    ("uric acid", "9.2"),
    ("triglycerides", "310"),
    ("LDL", "162"),
    ("HDL", "34"),
    ("total cholesterol", "240"),
    ("cortisol", "2.1"),
    ("prolactin", "48"),
    ("testosterone level", "180 ng/dL"),
    ("FSH", "62"),
    ("blood lead level", "12 mcg/dL"),
    ("lithium level", "1.4"),
    ("digoxin level", "2.1"),
    ("vancomycin trough", "22"),
    ("Depakote level", "48"),
    ("serum osmolality", "268"),
    ("urine sodium", "12"),
    ("urine protein", "300 mg/dL"),
    ("ESR", "88 mm/hr"),
    ("CEA", "6.2"),
    ("CA 19-9", "88"),
    ("AFP", "12"),
    ("beta hCG", "1,200"),
    ("CD4 count", "180"),
    ("absolute neutrophil count", "800"),
    ("reticulocyte count", "3.1%"),
    ("anion gap", "18"),
    ("pCO2", "58"),
    ("ionized calcium", "1.02"),
    ("procalcitonin", "2.4"),
    ("D-dimer", "1.8"),
    ("fibrinogen", "120"),
    ("MCV", "102"),
    ("TIBC", "450"),
)
_RESULT_WORDS = (
    "elevated",
    "low",
    "normal",
    "borderline high",
    "mildly decreased",
    "within normal limits",
    "pending",
    "unremarkable",
)
_SEROLOGY = (
    "ANA",
    "rheumatoid factor",
    "anti-CCP",
    "hepatitis C antibody",
    "hepatitis B surface antigen",
    "ANCA",
    "anticardiolipin antibodies",
    "HBsAg",
    "anti-dsDNA",
    "anti-Smith antibody",
    "anti-RNP antibodies",
    "anti-SSA and anti-SSB antibodies",
    "endomysial antibodies",
    "tissue transglutaminase antibodies",
    "gliadin antibodies",
    "beta-2 glycoprotein I antibodies",
)
_PANELS = (
    "CBC",
    "BMP",
    "CMP",
    "hepatic panel",
    "lipid panel",
    "thyroid panel",
    "liver function tests",
    "Chem-7",
    "iron panel",
    "coagulation panel",
    "urinalysis",
    "urine drug screen",
    "urine pregnancy test",
    "stool guaiac",
    "urine immunofixation",
    "serum immunofixation",
    "hepatitis panel",
    "iron studies",
)
_VALUE_TEMPLATES = (
    "{A} {v}.",
    "{A}: {v}.",
    "{A} was {v}.",
    "Her {a} is {v} today.",
    "His {a} came back at {v}.",
    "The {a} had risen to {v}.",
    "{A} was borderline at {v}.",
    "LABORATORY DATA:  {A} {v}.",
    "TEST RESULTS:  {A}:  {v}.",
    "Recent {a} was {v}, up from last visit.",
    "On admission, {a} was {v}.",
)
_PROSE_TEMPLATES = (
    "{A} was {r}.",
    "Her {a} was {r} on the last check.",
    "We will check the {a} today.",
    "Ordered {a}.",
    "A repeat {a} will be drawn in the morning.",
    "{A} and {b} were {r}.",
    "She was called to come in about a high {a} value.",
)
_SEROLOGY_TEMPLATES = (
    "{S} and {T} were negative.",
    "{S} was positive.",
    "{S} is pending.",
    "Workup included {s} and {t}.",
)
_PANEL_TEMPLATES = (
    "{P} and {Q} were ordered.",
    "{P} was within normal limits.",
    "We will obtain a {p} today.",
    "PLAN:  {P}, {q}.",
    "{P} was negative.",
    "I will also recheck a {p}.",
    "His {p} did show a few abnormalities.",
)
_DATES = ("03/12/09", "7/3/95", "01/22/2008", "11/4/06")
_NEGATIVES = (
    # imaging, including the HCT = head CT collision and studies next to dates
    "HCT on {d} showed no acute bleed.",
    "HCT, on {d} revealed mild attenuated signal.",
    "CT of the head on {d} was negative.",
    "MRI of the lumbar spine on {d} showed a disc bulge at L4-5.",
    "CTA chest {d}: no pulmonary embolism.",
    "MR angiogram dated {d} was unremarkable.",
    "Chest x-ray was ordered.",
    "Ejection fraction was estimated at 35%.",
    "Echo showed an EF of 55% with mild mitral regurgitation.",
    # vital signs and other measurements that are not analytes
    "Blood pressure 142/88, pulse 96, respirations 18, temperature 99.1.",
    "Oxygen saturation 91% on room air.",
    "Weight 82 kg, BMI 31.",
    "Intraocular pressure was 18 mmHg in both eyes.",
    "Pulmonary function tests showed an FEV1 of 65% predicted.",
    "Glasgow Coma Scale was 15.",
    "Pain is 6/10.",
    # drugs and doses, including analytes given as treatment
    "Potassium chloride 20 mEq p.o. daily.",
    "Calcium carbonate 500 mg twice a day.",
    "Magnesium oxide 400 mg daily.",
    "Estradiol 1 mg daily.",
    "Humulin 70/30, 30 units at breakfast.",
    "Ferrous sulfate 325 mg t.i.d.",
    "Levothyroxine 50 mcg daily.",
    "Vitamin D 1000 units daily.",
    "Micardis HCT once a day.",
    "He will be placed on a low dose ACE inhibitor.",
    "Albumin 25 g IV was given.",
    # cultures, organisms, diseases named after an analyte, generic labs
    "Blood cultures were drawn.",
    "Urine culture grew Klebsiella.",
    "Stool cultures are pending.",
    "History of hyperkalemia.",
    "Hypercholesterolemia, on a statin.",
    "Iron deficiency anemia.",
    "The lesion appears to be a cholesterol granuloma.",
    "Cholesterol granuloma of the petrous apex was resected.",
    "Biopsy showed cholesterol emboli in the kidney.",
    "He takes a creatine protein drink daily.",
    "16.  Vitamin B12.",
    "Vitamin B12 1000 mcg IM monthly.",
    "PAST MEDICAL HISTORY:  High cholesterol and hypertension.",
    "She drinks a protein shake after workouts.",
    "{d}, HCT showed a large right MCA stroke with mass shift.",
    "Follow-up HCT {d}: stable subdural hematoma.",
    "Labs were drawn and are pending.",
    "Laboratory data were reviewed with the family.",
    "The patient denies high blood pressure or diabetes.",
    # medication and supplement list items, conditions as list items, drugs named like
    # proteins, psychometric and functional scores
    "Folic acid.",
    "3.  Folic acid 1 mg daily.",
    "Zinc sulfate 220 mg daily.",
    "Fish oil capsules.",
    "Multivitamin with iron.",
    "High cholesterol.",
    "2.  Hyperlipidemia.",
    "He received growth factor support with filgrastim.",
    "Neupogen (G-CSF) 300 mcg subcutaneously daily.",
    "Erythropoietin injections weekly.",
    "GAF of 65.",
    "MMSE was 27/30.",
    "PHQ-9 score of 12.",
    "Ad lib feeding on demand.",
    # deficiencies named as conditions, tuberculosis skin tests, supplements
    "Vitamin D deficiency.",
    "History of B12 deficiency.",
    "Her iron deficiency will be worked up by her primary care physician.",
    "We will place a PPD.",
    "PPD was negative last year.",
    "Vitamin D and calcium over the counter.",
)


#: Drugs named like proteins, hormones or analytes, given as treatment (0 under the policy): the
#: model's most frequent false positive on notes ("He received G-CSF daily after his
#: chemotherapy."). Each is written into every treatment template.
_TREATMENT_DRUGS = (
    "G-CSF",
    "filgrastim",
    "Neupogen",
    "pegfilgrastim",
    "erythropoietin",
    "epoetin alfa",
    "Aranesp",
    "topical thrombin",
    "heparin",
    "insulin glargine",
    "glucagon",
    "IVIG",
    "RhoGAM",
    "octreotide",
    "growth hormone",
    "testosterone cypionate",
    "levothyroxine",
    "magnesium sulfate",
    "calcium gluconate",
    "sodium bicarbonate",
    "vitamin K",
    "iron sucrose",
    "alteplase",
    "interferon",
    "rituximab",
    "botulinum toxin",
)
_TREATMENT_TEMPLATES = (
    "He received {d} daily after his chemotherapy.",
    "We will resume {d} after the next cycle.",
    "{D} was given in the operating room.",
    "She was started on {d} and tolerated it well.",
    "{D} was discontinued at this time.",
    "He has been on {d} for the past two years.",
)
#: Measurements that are not analytes, written as notes write them: fetal biometry ratios, ECG
#: intervals, catheterisation saturations, surgical counts.
_MEASURE_DECOYS = (
    "FL/HC: 20.5    (19.9-21.5)",
    "HC/AC: 1.07    (0.96-1.11).",
    "FL/AC: 22.1    (20-24).",
    "BPD: 8.9 cm.",
    "Estimated fetal weight 2,410 g.",
    "Amniotic fluid index 12.4 cm.",
    "R wave 10.3.",
    "QTc 452 ms.",
    "PR interval 0.16 seconds, QRS duration 98 ms.",
    "Sokolow-Lyon voltage 38 mm.",
    "Mixed venous saturation was 68%.",
    "Aortic saturation 96% on room air.",
    "Sponge count was reported as being correct.",
    "Needle and sponge counts were correct x2.",
    "Instrument and sponge counts were correct at the end of the case.",
    "Cold blood potassium cardioplegia was given antegrade.",
)
#: Note-style positives the model misses: drug levels written bare, gene amplification.
_NOTE_POSITIVES = (
    "LABORATORY DATA:  Tacrolimus 3.1 and negative EBV.",
    "Tacrolimus level 8.2 this morning.",
    "Cyclosporine trough was 180.",
    "Vancomycin trough was 18.",
    "Digoxin was done and was less than 0.9.",
    "Sirolimus level came back at 6.",
    "The tumor was MYCN amplified.",
    "It was not N-Myc amplified.",
    "Her initial chem panel was within normal limits.",
    "Chemistry panel was unremarkable.",
)


def _note_decoys() -> list[tuple[str, int]]:
    treatments = [
        template.format(d=drug, D=_cap(drug))
        for drug in _TREATMENT_DRUGS
        for template in _TREATMENT_TEMPLATES
    ]
    return [
        *((text, 0) for text in (*treatments, *_MEASURE_DECOYS)),
        *((text, 1) for text in _NOTE_POSITIVES),
    ]


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def clinical_templates(
    *, seed: int, positives: int = 600, note_decoys: bool = False
) -> list[Example]:
    """``positives`` seeded positive lines plus every negative pattern (each date), shuffled.

    ``note_decoys`` adds drugs named like proteins given as treatment, measurements that are not
    analytes and a few note-style positives (:data:`_TREATMENT_DRUGS`, ...); the default leaves
    them out, as model 1.2.0's data did.
    """
    rng = random.Random(f"{seed}:synthetic_clinical")
    made: set[str] = set()
    chosen: list[tuple[str, int]] = []
    kinds = ("value", "prose", "serology", "panel")
    while len(chosen) < positives:
        kind = kinds[len(chosen) % len(kinds)] if len(chosen) % 3 else "value"
        if kind == "value":
            (name, value) = rng.choice(_ANALYTES)
            text = rng.choice(_VALUE_TEMPLATES).format(A=_cap(name), a=name, v=value)
        elif kind == "prose":
            (name, _), (other, _) = rng.sample(_ANALYTES, 2)
            text = rng.choice(_PROSE_TEMPLATES).format(
                A=_cap(name), a=name, b=other, r=rng.choice(_RESULT_WORDS)
            )
        elif kind == "serology":
            first, second = rng.sample(_SEROLOGY, 2)
            text = rng.choice(_SEROLOGY_TEMPLATES).format(
                S=_cap(first), s=first, T=second, t=second
            )
        else:
            first, second = rng.sample(_PANELS, 2)
            text = rng.choice(_PANEL_TEMPLATES).format(P=_cap(first), p=first, Q=second, q=second)
        if text not in made:
            made.add(text)
            chosen.append((text, 1))
    negatives = sorted({template.format(d=date) for template in _NEGATIVES for date in _DATES})
    chosen += [(text, 0) for text in negatives]
    if note_decoys:
        chosen += [row for row in _note_decoys() if row[0] not in made]
    rng.shuffle(chosen)
    return [
        Example(f"synthetic_clinical:{i}", text, label, "synthetic_clinical", f"sc:{i}", "train")
        for i, (text, label) in enumerate(chosen)
    ]
