"""Literature-style decoys: sentences that read like gene or analyte sentences but name none.

Written from the families of the false positives the literature development set
(``literature_dev``) showed for model 1.8.0, under the label policy and the hand-labelling
conventions (``training/handlabels/README.md``): unnamed loci and chromosome bands, transcripts
and start sites with no gene named, enzyme and protein classes, cell lines and cell types,
proteins and hormones given as drugs, small molecules in mechanistic sentences, and imaging
tracer binding are all 0. A few positives keep named genes in the same kinds of sentence at 1,
so that the lesson is "no named biomarker", not "mechanistic sentences are 0". No sentence of
any hand-labelled set is copied; the fillers are not the development set's.
"""

from __future__ import annotations

import random

from training.sources import Example

__all__ = ["literature_decoys"]

_SOURCE = "synthetic_literature"

#: Chromosome bands and unnamed loci: a place in the genome is not a gene product.
_BANDS = ("3p21", "11q23", "7q31", "2p16", "17q12-21", "Xp21", "6p22", "1q32")
_LOCUS_TEMPLATES = (
    "Linkage analysis mapped the disease locus to chromosome {b}.",
    "A second susceptibility locus was found on {b} in the larger families.",
    "Recombinants placed the locus in a 4-cM interval at {b}.",
    "The critical region at {b} was narrowed by haplotype analysis.",
)
#: Transcripts, start sites and promoters with no gene named.
_TRANSCRIPT_SENTENCES = (
    "Primer extension placed the major transcription start site 42 bp upstream of the "
    "initiation codon.",
    "Both transcripts initiate within the same promoter region.",
    "S1 nuclease mapping identified two transcription start sites.",
    "The 3' untranslated region contains two polyadenylation signals.",
    "Neither promoter contains a TATA box.",
    "The leader sequence is joined to each subgenomic mRNA during transcription.",
    "A minor start site was mapped 180 bp upstream of the major one by RT-PCR.",
    "These stop codons probably result in truncated proteins lacking the C-terminal domain.",
    "The insertion lies near the 5' end of the transcripts.",
    "The gene consists of nine exons spanning 14 kb.",
)
#: Enzyme and protein classes: a class without a name is 0.
_CLASSES = (
    "RNA polymerases",
    "DNA polymerases",
    "protein kinases",
    "serine proteases",
    "heat shock proteins",
    "tyrosine phosphatases",
    "matrix metalloproteinases",
    "ribosomal proteins",
    "viral envelope proteins",
    "homeobox transcription factors",
)
_CLASS_TEMPLATES = (
    "{C} can use a noncomplementary dinucleotide as a primer in vitro.",
    "Several {c} were purified from the crude extract.",
    "The activity of {c} was assayed in the presence of magnesium.",
)
#: Cell lines and cell types, the system an experiment ran in.
_CELLS = (
    "HeLa cells",
    "COS-7 cells",
    "CHO cells",
    "Jurkat T cells",
    "renal epithelial LLC-PK1 cells",
    "primary rat hepatocytes",
    "bone marrow-derived dendritic cells",
    "regulatory T cells",
)
_CELL_TEMPLATES = (
    "The experiments were repeated in {c}.",
    "{C} were transfected with the reporter construct.",
    "Virus replication was measured in {c} over five days.",
)
#: Proteins and hormones given as drugs: the drug is 0, its level in a patient would be 1.
_PROTEIN_DRUGS = (
    "tissue plasminogen activator",
    "streptokinase",
    "recombinant human TSH",
    "recombinant erythropoietin",
    "interferon alfa",
    "interleukin-2",
    "anti-thymocyte globulin",
    "growth hormone",
    "transfer factor",
    "aprotinin",
)
_DRUG_TEMPLATES = (
    "Patients were randomized to {d} or placebo.",
    "{D} was infused over 90 minutes after the angiogram.",
    "Treatment with {d} lowered the risk of graft loss.",
)
#: Small molecules in mechanistic or animal-model sentences, and imaging tracer binding.
_MECHANISM_SENTENCES = (
    "Fluorometric methods describe porphyrin binding sites and their transport.",
    "Pancreatitis was induced by intraductal infusion of glycodeoxycholic acid.",
    "ATP hydrolysis drives each transport cycle of the pump.",
    "Nitric oxide donors relaxed the precontracted aortic rings.",
    "Cyclic AMP shifted the voltage dependence of channel gating.",
    "Regional decreases in flumazenil binding were seen next to the lesion.",
    "FDG uptake was reduced in the left temporal lobe.",
    "Raclopride binding potential fell after the amphetamine challenge.",
    "The compound attenuated cognitive deficits in both rat models.",
    "Reactive oxygen species production was prevented in vitro.",
)
#: Named gene products in the same kinds of sentence: 1.
_POSITIVES = (
    "ICAM-1 has been proposed as a predictor of relapse.",
    "Stimulation of CaSR attenuated the abnormal energy metabolism.",
    "GR haploinsufficiency reduced glucocorticoid sensitivity in the family.",
    "UV damage at these sites may displace TFIIIA from the promoter.",
    "The MTHFR 677C>T substitution was associated with infertility.",
    "A phosphorylation site unique to nuclear dUTPase was identified.",
    "BRCA2 transcripts initiate at two start sites.",
    "The paramyxovirus fusion (F) protein mediates membrane fusion.",
    "Loss of PTEN was seen in HeLa cells after treatment.",
    "Serum VEGF fell after treatment with interferon alfa.",
)


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _decoys() -> list[tuple[str, int]]:
    negatives = [
        *(t.format(b=band) for t in _LOCUS_TEMPLATES for band in _BANDS),
        *_TRANSCRIPT_SENTENCES,
        *(t.format(c=c, C=_cap(c)) for t in _CLASS_TEMPLATES for c in _CLASSES),
        *(t.format(c=c, C=_cap(c)) for t in _CELL_TEMPLATES for c in _CELLS),
        *(t.format(d=d, D=_cap(d)) for t in _DRUG_TEMPLATES for d in _PROTEIN_DRUGS),
        *_MECHANISM_SENTENCES,
    ]
    return [*((text, 0) for text in negatives), *((text, 1) for text in _POSITIVES)]


def literature_decoys(*, seed: int) -> list[Example]:
    """Every literature decoy and positive (about 140), shuffled deterministically; train only."""
    rows = _decoys()
    random.Random(f"{seed}:synthetic_literature").shuffle(rows)
    return [
        Example(f"{_SOURCE}:{i}", text, label, _SOURCE, f"sl:{i}", "train")
        for i, (text, label) in enumerate(rows)
    ]
