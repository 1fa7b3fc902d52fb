"""Readers that map each public corpus in the data directory to the label policy.

Every reader yields :class:`Example` rows with a document id and a split. Splits are by document
(abstract, evidence citation, note), never by sentence. The mapping rules, one per source:

* BC2GM: 1 if the sentence has a gold gene/protein mention OR a lexicon hit (lab analytes that
  BC2GM does not mark); official train/devel/test splits.
* BioRED: 1 if a GeneOrGeneProduct or SequenceVariant mention OR a lexicon hit (ChemicalEntity
  analytes such as glucose or cholesterol); official train/dev/test splits (by PMID).
* CIViCmine: every sentence names a gene, so all are 1; split by PMID hash.
* CIViC evidence: 1 if the item's gene symbol or variant name is in the sentence, a CIViC gene
  symbol or a variant pattern (V600E, exon 19, c.35G>A) is, or a lexicon hit; 0 if none of these
  and no other gene-like upper-case token; sentences with unknown upper-case tokens are left out
  as ambiguous. Split by citation hash (one publication, one split).
* MTSamples: notes are split into sentences; 1 if the lexicon hits, else 0; split by note hash.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from training.splits import doc_split, note_sentences
from worker.lexicon import has_biomarker

__all__ = [
    "HAS_LETTERS",
    "Example",
    "read_bc2gm",
    "read_biored",
    "read_civic",
    "read_civicmine",
    "read_jsonl",
    "read_mtsamples",
]


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled sentence."""

    id: str
    text: str
    label: int
    source: str
    doc: str
    split: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


_BC2GM_SPLITS = {"train": "train", "devel": "dev", "test": "test"}
_BC2GM_DOC = re.compile(r"^(P\d+)")


def read_bc2gm(data_dir: Path) -> Iterator[Example]:
    """BC2GM sentences: gene mention or lexicon hit -> 1."""
    for row in read_jsonl(data_dir / "bc2gm" / "bc2gm_sentences.jsonl"):
        text = row["text"]
        label = int(bool(row["gene_mentions"]) or has_biomarker(text))
        match = _BC2GM_DOC.match(row["id"])
        doc = match.group(1) if match else row["id"]
        yield Example(f"bc2gm:{row['id']}", text, label, "bc2gm", doc, _BC2GM_SPLITS[row["split"]])


_BIORED_POSITIVE_TYPES = frozenset({"GeneOrGeneProduct", "SequenceVariant"})


def read_biored(data_dir: Path) -> Iterator[Example]:
    """BioRED sentences: gene/variant entity or lexicon hit (e.g. a ChemicalEntity analyte) -> 1."""
    for row in read_jsonl(data_dir / "biored" / "biored_sentences.jsonl"):
        text = row["text"]
        genes = any(entity["type"] in _BIORED_POSITIVE_TYPES for entity in row["entities"])
        label = int(genes or has_biomarker(text))
        yield Example(
            f"biored:{row['pmid']}:{row['sent_idx']}",
            text,
            label,
            "biored",
            str(row["pmid"]),
            row["split"],
        )


def read_civicmine(data_dir: Path, *, seed: int) -> Iterator[Example]:
    """CIViCmine annotated sentences: all name a gene -> 1."""
    for row in read_jsonl(data_dir / "civicmine" / "civicmine_train_sentences.jsonl"):
        doc = str(row["pmid"])
        split = doc_split(f"civicmine:{doc}", seed=seed, dev=0.1, test=0.1)
        yield Example(f"civicmine:{row['id']}", row["text"], 1, "civicmine", doc, split)


_VARIANT = re.compile(
    r"\b[ACDEFGHIKLMNPQRSTVWY]\d{2,4}(?:[ACDEFGHIKLMNPQRSTVWY*]|fs|del|ins|dup)\b"
    r"|\bexons?\s+\d+|\b[pc]\.\s?[A-Z*\d]"
)
_UPPER_TOKEN = re.compile(r"\b[A-Z][A-Z0-9-]{2,}[A-Z0-9]?\b")
# Upper-case tokens in CIViC statements that are not genes (trials, statistics, diseases).
_NOT_GENES = frozenset(
    {
        "ACMG",
        "AML",
        "ALL",
        "CLL",
        "CML",
        "MDS",
        "NSCLC",
        "SCLC",
        "GIST",
        "RCC",
        "CRC",
        "HCC",
        "HNSCC",
        "DLBCL",
        "TKI",
        "TKIS",
        "PFS",
        "OS",
        "DFS",
        "EFS",
        "RFS",
        "ORR",
        "DCR",
        "CR",
        "PR",
        "SD",
        "PD",
        "HR",
        "CI",
        "OR",
        "RR",
        "NA",
        "FDA",
        "NCCN",
        "ASCO",
        "ESMO",
        "WHO",
        "USA",
        "PCR",
        "RT-PCR",
        "FISH",
        "IHC",
        "NGS",
        "WES",
        "WGS",
        "SNP",
        "SNV",
        "CNV",
        "LOH",
        "VUS",
        "DNA",
        "RNA",
        "CDNA",
        "MRNA",
        "MIRNA",
        "TCGA",
        "COSMIC",
        "ECOG",
        "II",
        "III",
        "IV",
        "VI",
        "PM1",
        "PM2",
        "PM4",
        "PM5",
        "PP1",
        "PP2",
        "PP3",
        "PP5",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PVS1",
        "BA1",
        "BS1",
        "BS2",
        "BS3",
        "BP1",
        "BP4",
        "BP7",
        "ITD",
        "AJCC",
        "CNS",
        "GI",
        "IC50",
        "EC50",
        "LOF",
        "GOF",
        "ATP",
        "UV",
        "MTD",
        "DLT",
        "AE",
        "AES",
        "SAE",
    }
)


def _civic_genes(data_dir: Path) -> frozenset[str]:
    path = data_dir / "civic" / "01-Aug-2021-GeneSummaries.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        return frozenset(row["name"] for row in csv.DictReader(handle, delimiter="\t"))


def civic_label(text: str, *, flagged: bool, genes: frozenset[str]) -> int | None:
    """1 (names a gene/variant/analyte), 0 (names nothing gene-like) or None (ambiguous)."""
    tokens = set(_UPPER_TOKEN.findall(text))
    if flagged or tokens & genes or _VARIANT.search(text) or has_biomarker(text):
        return 1
    if tokens - _NOT_GENES:
        return None
    return 0


def read_civic(data_dir: Path, *, seed: int) -> Iterator[Example]:
    """CIViC evidence-statement sentences, weak-labelled by string match (see module doc)."""
    genes = _civic_genes(data_dir)
    for row in read_jsonl(data_dir / "civic" / "civic_evidence_sentences.jsonl"):
        flagged = bool(row["mentions_gene_symbol"] or row["mentions_variant_name"])
        label = civic_label(row["text"], flagged=flagged, genes=genes)
        if label is None:
            continue
        doc = str(row["citation_id"])
        split = doc_split(f"civic:{doc}", seed=seed, dev=0.1, test=0.1)
        sid = f"civic:{row['evidence_id']}:{row['sent_idx']}"
        yield Example(sid, row["text"], label, "civic", doc, split)


#: A sentence worth labelling has at least two letters (not a bare number or heading rule).
HAS_LETTERS = re.compile(r"[A-Za-z].*[A-Za-z]", re.DOTALL)


def read_mtsamples(data_dir: Path, *, seed: int) -> Iterator[Example]:
    """MTSamples note sentences, weak-labelled by the lexicon; 70/10/20 split by note."""
    for row in read_jsonl(data_dir / "mtsamples" / "mtsamples_notes.jsonl"):
        note_id = row["note_id"]
        split = doc_split(f"mtsamples:{note_id}", seed=seed, dev=0.1, test=0.2)
        for start, end, sentence in note_sentences(row["text"]):
            if not HAS_LETTERS.search(sentence):
                continue
            label = int(has_biomarker(sentence))
            yield Example(f"{note_id}:{start}-{end}", sentence, label, "mtsamples", note_id, split)
