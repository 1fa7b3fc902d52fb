"""Hand-labelled sentences: which sentences, their labels, and their text.

The evaluation sets never enter training: every sentence comes from a held-out (``test`` or
``dev``) split, the same document-level splits :mod:`training.sources` uses, so no document of
them is trained on.

- **clinical**: whole MTSamples notes of the test split, one note per specialty in turn (seeded
  order), sentence by sentence (the worker's own segmenter, as in training) until at least
  ``CLINICAL_TARGET`` sentences, so the class balance is that of real notes, not of picked
  sentences.
- **clinical_dev**: the same draw from the MTSamples notes of the *dev* split, a second clinical
  yardstick once the test split's notes were all labelled. Dev notes are never trained on; their
  lexicon labels choose the threshold and were read to choose data mixes, their hand labels
  were not.
- **literature**: BC2GM and BioRED sentences of their official test splits, half from each, in a
  seeded order.
- **literature_dev**: the same draw from their official *dev* splits (never trained on), the
  literature's development set: thresholds, checkpoint averages and recipes are chosen on it and
  ``clinical_dev``'s lexicon labels, and its errors may be read, so the test sets stay untouched.
- **clinical_train**, **clinical_train_notes** and **literature_train** (training, not
  evaluation): MTSamples sentences of *train* notes (picked where the lexicon is weakest, and
  whole notes drawn as the clinical sets are), and BC2GM and BioRED sentences of their *train*
  splits (picked where the corpus labels look weakest; batch 4 where a trained model disagrees
  with them, :mod:`training.disagreements`), whose hand labels replace the lexicon's or the
  corpus's in :mod:`training.dataset`.

The repository keeps ids, labels and the annotation passes only (``training/handlabels/*.jsonl``);
the text is read back from the corpora in ``../shared/data`` (their SOURCE.md files give licence
and origin), so no corpus text is copied into the repository. ``python -m training.handlabels
sheet clinical`` prints the sentences to label.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.sources import HAS_LETTERS, read_jsonl
from training.splits import doc_split, note_sentences
from worker.lexicon import has_biomarker

#: More than the test split holds (18,641 sentences): the clinical set is the whole split.
CLINICAL_TARGET = 19000
#: More than the dev split holds (10,252 sentences): the clinical_dev set is the whole split.
CLINICAL_DEV_TARGET = 11000
#: More than the train split holds (65,865 sentences): ``clinical_train_notes`` is the whole split.
CLINICAL_TRAIN_NOTES_TARGET = 70000
#: Three batches of 150 BC2GM and 150 BioRED test sentences (the draw is prefix-stable).
LITERATURE_TARGET = 900
#: Two batches of 150 BC2GM and 150 BioRED dev sentences (the draw is prefix-stable).
LITERATURE_DEV_TARGET = 600
#: The dataset's seed (training/dataset.py): the same seed gives the same test split.
SPLIT_SEED = 13
#: Orders the held-out documents; changing it picks other sentences.
SAMPLE_SEED = "handlabels-v1"
LABELS_DIR = Path(__file__).resolve().parent / "handlabels"
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass(frozen=True)
class Sentence:
    id: str  # mtsamples: "<note_id>:<start>-<end>"; literature: the corpus's sentence id
    text: str
    doc: str  # the note or publication it comes from


def order_key(key: str) -> str:
    return hashlib.sha256(f"{SAMPLE_SEED}:{key}".encode()).hexdigest()


#: Training draws leave out longer sentences.
MAX_TRAINING_CHARS = 400


def first_labellable(text: str, seen: set[str]) -> bool:
    """True the first time a labellable text (letters, at most :data:`MAX_TRAINING_CHARS`) is
    met, case and spacing folded; records it in ``seen``. Training draws label each text once
    (boilerplate repeats across notes and abstracts)."""
    key = " ".join(text.lower().split())
    if key in seen or not HAS_LETTERS.search(text) or len(text) > MAX_TRAINING_CHARS:
        return False
    seen.add(key)
    return True


def clinical_sentences(
    data_dir: Path, target: int = CLINICAL_TARGET, split: str = "test"
) -> list[Sentence]:
    """Whole held-out MTSamples notes until ``target`` sentences, one note per specialty in turn.

    Specialties (a note's first) and the notes within each come in seeded order; taking one note
    of each in turn keeps one large specialty (surgery is half the corpus, and its operative notes
    rarely name an analyte) from filling the set.
    """
    by_specialty: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(data_dir / "mtsamples" / "mtsamples_notes.jsonl"):
        if doc_split(f"mtsamples:{row['note_id']}", seed=SPLIT_SEED, dev=0.1, test=0.2) == split:
            specialty = (row["medical_specialties"] or ["unknown"])[0].strip()
            by_specialty.setdefault(specialty, []).append(row)
    queues = [
        sorted(notes, key=lambda row: order_key(row["note_id"]))
        for _, notes in sorted(by_specialty.items(), key=lambda item: order_key(item[0]))
    ]
    chosen: list[Sentence] = []
    for turn in range(max(map(len, queues), default=0)):
        for notes in queues:
            if len(chosen) >= target:
                return chosen
            if turn < len(notes):
                row = notes[turn]
                for start, end, text in note_sentences(row["text"]):
                    if HAS_LETTERS.search(text):
                        sid = f"{row['note_id']}:{start}-{end}"
                        chosen.append(Sentence(sid, text, row["note_id"]))
    return chosen


def clinical_dev_sentences(data_dir: Path, target: int = CLINICAL_DEV_TARGET) -> list[Sentence]:
    """:func:`clinical_sentences` drawn from the notes of the dev split."""
    return clinical_sentences(data_dir, target, split="dev")


def clinical_train_notes_sentences(
    data_dir: Path, target: int = CLINICAL_TRAIN_NOTES_TARGET
) -> list[Sentence]:
    """:func:`clinical_sentences` drawn from the notes of the *train* split, for training.

    Whole notes, as the evaluation sets are drawn, so the hand labels teach the policy on
    ordinary note text too, not only where the lexicon is weakest (``clinical_train``).
    """
    return clinical_sentences(data_dir, target, split="train")


#: BC2GM calls its dev split "devel".
_BC2GM_SPLIT = {"train": "train", "dev": "devel", "test": "test"}


def _bc2gm_doc(sentence_id: str) -> str:
    """A BC2GM sentence's abstract: ``P<PMID>`` of ``P<PMID>T0076`` (train and devel ids); a
    test sentence's id (``BC2GM...``) names no abstract, so the sentence stands alone."""
    match = re.match(r"P\d+", sentence_id)
    return match.group(0) if match else sentence_id


def _literature_rows(data_dir: Path, split: str) -> Iterator[tuple[Sentence, dict[str, Any]]]:
    """BC2GM and BioRED sentences of one official split (train, dev or test), each with its
    corpus row."""
    for row in read_jsonl(data_dir / "bc2gm" / "bc2gm_sentences.jsonl"):
        if row["split"] == _BC2GM_SPLIT[split]:
            yield Sentence(f"bc2gm:{row['id']}", row["text"], f"bc2gm:{_bc2gm_doc(row['id'])}"), row
    for row in read_jsonl(data_dir / "biored" / "biored_sentences.jsonl"):
        if row["split"] == split:
            sid = f"biored:{row['pmid']}:{row['sent_idx']}"
            yield Sentence(sid, row["text"], f"biored:{row['pmid']}"), row


def literature_sentences(
    data_dir: Path, target: int = LITERATURE_TARGET, split: str = "test"
) -> list[Sentence]:
    """Half BC2GM, half BioRED sentences of one official split, in seeded order."""
    by_corpus: dict[str, list[Sentence]] = {"bc2gm": [], "biored": []}
    for sentence, _ in _literature_rows(data_dir, split):
        if HAS_LETTERS.search(sentence.text):
            by_corpus[sentence.id.split(":", 1)[0]].append(sentence)
    chosen: list[Sentence] = []
    for _corpus, sentences in sorted(by_corpus.items()):
        sentences.sort(key=lambda s: order_key(s.id))
        chosen += sentences[: target // 2]
    return chosen


def literature_dev_sentences(data_dir: Path, target: int = LITERATURE_DEV_TARGET) -> list[Sentence]:
    """:func:`literature_sentences` drawn from the corpora's dev splits."""
    return literature_sentences(data_dir, target, split="dev")


#: Clinical *training* sentences worth a human label, in two halves: sentences the training
#: lexicon labels 1 (where its false hits hide: HCT = head CT, doses, diseases named after an
#: analyte) and sentences it labels 0 that have a lab or result word or a value with a lab unit
#: (where its misses hide: lab values in prose, serology, panels). Wider than the lexicon on
#: purpose.
CANDIDATE = re.compile(
    r"\b(?:levels?|counts?|panels?|titers?|titres?|serum|plasma|urine|urinalysis|blood|"
    r"negative|positive|elevated|borderline|abnormal|labs?|laboratory|results?|tests?|testing|"
    r"studies|screen\w*|antibod\w+|antigens?|markers?|cultures?|HCT|EF|ejection|saturation|"
    r"ratio)\b|\d\s*(?:mg/d[lL]|g/d[lL]|mmol|mEq/[lL]|[uU]/[lL]|IU|ng/m[lL]|pg/m[lL]|%|K\b)",
    re.IGNORECASE,
)
TRAINING_TARGET = 400


def clinical_training_sentences(data_dir: Path, target: int = TRAINING_TARGET) -> list[Sentence]:
    """Half lexicon hits, half lexicon-silent candidates of MTSamples *train* notes, seeded.

    Hand labels for them replace the lexicon's weak labels in training (training/dataset.py);
    no dev or test note is read, so the evaluation sets stay unseen.
    """
    halves: dict[bool, list[Sentence]] = {True: [], False: []}
    seen: set[str] = set()
    for row in read_jsonl(data_dir / "mtsamples" / "mtsamples_notes.jsonl"):
        if doc_split(f"mtsamples:{row['note_id']}", seed=SPLIT_SEED, dev=0.1, test=0.2) != "train":
            continue
        for start, end, text in note_sentences(row["text"]):
            if not first_labellable(text, seen):
                continue
            hit = has_biomarker(text)
            if hit or CANDIDATE.search(text):
                sid = f"{row['note_id']}:{start}-{end}"
                halves[hit].append(Sentence(sid, text, row["note_id"]))
    chosen: list[Sentence] = []
    for hit in (True, False):
        pool = sorted(halves[hit], key=lambda sentence: order_key(f"train:{sentence.id}"))
        chosen += pool[: target // 2]
    return sorted(chosen, key=lambda sentence: order_key(f"train:{sentence.id}"))


#: A gene mention that may name a class, not one gene ("lymphokine genes", "replication
#: protein", "alkaline phosphatases"): lower case only, ending in a class word. The corpora label
#: these 1; the label policy says 0 for a class (many turn out to name one gene after all).
GENERIC_MENTION = re.compile(
    r"^[a-z][a-z0-9 ,/()'-]*\b(?:genes?|proteins?|factors?|receptors?|enzymes?|kinases?|"
    r"famil(?:y|ies)|domains?|regions?|promoters?|elements?|sequences?|antibod(?:y|ies)|"
    r"hormones?|peptides?|loci|locus|channels?|transporters?|subunits?|isoforms?|"
    r"[a-z]+ases)$"
)
#: A measured substance the corpora may leave unlabelled ("plasma superoxide", "CSF glutamate").
MEASURED = re.compile(
    r"\b(?:plasma|serum|urinary|urine|CSF|blood|levels?|concentrations?|excretion|"
    r"secretion|clearance)\b",
    re.IGNORECASE,
)
#: The whole of both halves (273 class-looking sentences, 757 measured-substance ones): batch 1
#: took the draw at 400, batch 2 the rest of the draw at 800 (673: the class-looking half runs
#: out), batch 3 the rest (357, all measured-substance). The draw is prefix-stable, so the
#: labelled ids resolve against it.
LITERATURE_TRAINING_TARGET = 1600


def _gene_mentions(row: dict[str, Any]) -> list[str]:
    if "gene_mentions" in row:  # BC2GM
        return [mention["text"] for mention in row["gene_mentions"]]
    return [e["text"] for e in row["entities"] if e["type"] == "GeneOrGeneProduct"]


def literature_training_sentences(
    data_dir: Path, target: int = LITERATURE_TRAINING_TARGET
) -> list[Sentence]:
    """BC2GM and BioRED *train* sentences where the corpus labels and the policy may disagree.

    Half are sentences whose gene mentions (the corpus's label 1) all look like a class
    (:data:`GENERIC_MENTION`: some are, some name one gene after all); half have no gene mention
    but name a measured substance (:data:`MEASURED`), where an analyte may hide. Seeded order,
    one sentence per distinct text.
    """
    halves: dict[bool, list[Sentence]] = {True: [], False: []}
    seen: set[str] = set()
    for sentence, row in _literature_rows(data_dir, "train"):
        if not first_labellable(sentence.text, seen):
            continue
        mentions = _gene_mentions(row)
        if mentions:
            if all(GENERIC_MENTION.match(mention.strip()) for mention in mentions):
                halves[True].append(sentence)
        elif MEASURED.search(sentence.text):
            halves[False].append(sentence)
    chosen: list[Sentence] = []
    for gene_bearing in (True, False):
        pool = sorted(halves[gene_bearing], key=lambda s: order_key(f"train:{s.id}"))
        chosen += pool[: target // 2]
    return sorted(chosen, key=lambda sentence: order_key(f"train:{sentence.id}"))


SETS = {
    "clinical": clinical_sentences,
    "clinical_dev": clinical_dev_sentences,
    "literature": literature_sentences,
    "literature_dev": literature_dev_sentences,
    "clinical_train": clinical_training_sentences,
    "clinical_train_notes": clinical_train_notes_sentences,
    "literature_train": literature_training_sentences,
}


def _train_note_sentences(data_dir: Path) -> list[Sentence]:
    """Every sentence of the MTSamples train notes (resolves the training labels' ids: their
    sample was drawn with the lexicon of its day, and a later lexicon would draw others)."""
    return [
        Sentence(f"{row['note_id']}:{start}-{end}", text, row["note_id"])
        for row in read_jsonl(data_dir / "mtsamples" / "mtsamples_notes.jsonl")
        if doc_split(f"mtsamples:{row['note_id']}", seed=SPLIT_SEED, dev=0.1, test=0.2) == "train"
        for start, end, text in note_sentences(row["text"])
    ]


def _literature_train_sentences(data_dir: Path) -> list[Sentence]:
    """Every BC2GM and BioRED *train* sentence (resolves ``literature_train``: batches 1-3 are
    one draw, batch 4 another, :mod:`training.disagreements`)."""
    return [sentence for sentence, _ in _literature_rows(data_dir, "train")]


_RESOLVERS = {
    **SETS,
    "clinical_train": _train_note_sentences,
    "literature_train": _literature_train_sentences,
}


def load_labels(
    name: str, data_dir: Path = DEFAULT_DATA_DIR
) -> list[tuple[Sentence, dict[str, Any]]]:
    """The labelled set ``name``: each sentence (text from the corpora) with its label record."""
    texts = {sentence.id: sentence for sentence in _RESOLVERS[name](data_dir)}
    lines = (LABELS_DIR / f"{name}.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    missing = [row["id"] for row in rows if row["id"] not in texts]
    if missing:
        raise ValueError(f"{name}: {len(missing)} labelled ids not in the corpora ({missing[0]})")
    return [(texts[row["id"]], row) for row in rows]


#: The hand-labelled *training* sets (ids and labels only; :mod:`training.dataset` reads them).
TRAINING_SETS = ("clinical_train", "clinical_train_notes", "literature_train")


#: Which labelling batches of a training set to use: the first N, these numbers, or all (None).
Batches = int | tuple[int, ...] | None


def in_batches(batch: int, batches: Batches) -> bool:
    """Whether labelling batch ``batch`` is one of ``batches``."""
    if batches is None:
        return True
    if isinstance(batches, int):
        return batch <= batches
    return batch in batches


def batch_numbers(name: str) -> set[int]:
    """The labelling batches a hand-labelled *training* set holds."""
    return {int(row["batch"]) for row in read_jsonl(LABELS_DIR / f"{name}.jsonl")}


def _training_rows(name: str, batches: Batches) -> Iterator[dict[str, Any]]:
    """The rows of a hand-labelled *training* set in ``batches``."""
    for row in read_jsonl(LABELS_DIR / f"{name}.jsonl"):
        if in_batches(int(row["batch"]), batches):
            yield row


def training_labels(name: str = "clinical_train", batches: Batches = None) -> dict[str, int]:
    """Sentence id -> hand label of a hand-labelled *training* set (ids only; no text).

    ``batches``: the first that many labelling batches, those numbers (a tuple), or all (None).
    """
    return {row["id"]: int(row["label"]) for row in _training_rows(name, batches)}


def training_hard_negatives(name: str, batches: Batches = None) -> frozenset[str]:
    """Ids of a hand-labelled *training* set's hard negatives: label 0 with a family (a vital
    sign, a drug given as treatment, a condition named after an analyte, ...)."""
    return frozenset(
        row["id"]
        for row in _training_rows(name, batches)
        if int(row["label"]) == 0 and row.get("family")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.handlabels", description=__doc__)
    parser.add_argument("command", choices=["sheet"])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--target", type=int, help="draw this many (default: the set's own)")
    parser.add_argument(
        "--new", action="store_true", help="leave out sentences the set's label file already holds"
    )
    args = parser.parse_args(argv)
    draw = SETS[args.set]
    sentences = draw(args.data_dir) if args.target is None else draw(args.data_dir, args.target)
    labelled = set(training_labels(args.set)) if args.new else set()
    for sentence in sentences:
        if sentence.id in labelled:
            continue
        sys.stdout.write(json.dumps({"id": sentence.id, "text": sentence.text}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
