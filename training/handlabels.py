"""Hand-labelled sentences: which sentences, their labels, and their text.

The evaluation sets never enter training: every sentence comes from a held-out (``test``)
split, the same document-level splits :mod:`training.sources` uses, so no document of them is
trained on.

- **clinical**: whole MTSamples notes of the test split, one note per specialty in turn (seeded
  order), sentence by sentence (the worker's own segmenter, as in training) until at least
  ``CLINICAL_TARGET`` sentences, so the class balance is that of real notes, not of picked
  sentences.
- **literature**: BC2GM and BioRED sentences of their official test splits, half from each, in a
  seeded order.
- **clinical_train** (training, not evaluation): MTSamples sentences of *train* notes whose hand
  labels replace the lexicon's in :mod:`training.dataset`.

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

from training.lexicon import has_biomarker
from training.sources import HAS_LETTERS, read_jsonl
from training.splits import doc_split, note_sentences

CLINICAL_TARGET = 3000
LITERATURE_TARGET = 300
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


def _order(key: str) -> str:
    return hashlib.sha256(f"{SAMPLE_SEED}:{key}".encode()).hexdigest()


def clinical_sentences(data_dir: Path, target: int = CLINICAL_TARGET) -> list[Sentence]:
    """Whole held-out MTSamples notes until ``target`` sentences, one note per specialty in turn.

    Specialties (a note's first) and the notes within each come in seeded order; taking one note
    of each in turn keeps one large specialty (surgery is half the corpus, and its operative notes
    rarely name an analyte) from filling the set.
    """
    by_specialty: dict[str, list[dict[str, Any]]] = {}
    for row in read_jsonl(data_dir / "mtsamples" / "mtsamples_notes.jsonl"):
        if doc_split(f"mtsamples:{row['note_id']}", seed=SPLIT_SEED, dev=0.1, test=0.2) == "test":
            specialty = (row["medical_specialties"] or ["unknown"])[0].strip()
            by_specialty.setdefault(specialty, []).append(row)
    queues = [
        sorted(notes, key=lambda row: _order(row["note_id"]))
        for _, notes in sorted(by_specialty.items(), key=lambda item: _order(item[0]))
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


def _literature(data_dir: Path) -> Iterator[Sentence]:
    for row in read_jsonl(data_dir / "bc2gm" / "bc2gm_sentences.jsonl"):
        if row["split"] == "test":
            yield Sentence(f"bc2gm:{row['id']}", row["text"], f"bc2gm:{row['id'][:9]}")
    for row in read_jsonl(data_dir / "biored" / "biored_sentences.jsonl"):
        if row["split"] == "test":
            sid = f"biored:{row['pmid']}:{row['sent_idx']}"
            yield Sentence(sid, row["text"], f"biored:{row['pmid']}")


def literature_sentences(data_dir: Path, target: int = LITERATURE_TARGET) -> list[Sentence]:
    """Half BC2GM, half BioRED test sentences, in seeded order."""
    by_corpus: dict[str, list[Sentence]] = {"bc2gm": [], "biored": []}
    for sentence in _literature(data_dir):
        if HAS_LETTERS.search(sentence.text):
            by_corpus[sentence.id.split(":", 1)[0]].append(sentence)
    chosen: list[Sentence] = []
    for _corpus, sentences in sorted(by_corpus.items()):
        sentences.sort(key=lambda s: _order(s.id))
        chosen += sentences[: target // 2]
    return chosen


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
            key = " ".join(text.lower().split())
            if key in seen or not HAS_LETTERS.search(text) or len(text) > 400:
                continue
            seen.add(key)  # boilerplate repeats across notes: one label each
            hit = has_biomarker(text)
            if hit or CANDIDATE.search(text):
                sid = f"{row['note_id']}:{start}-{end}"
                halves[hit].append(Sentence(sid, text, row["note_id"]))
    chosen: list[Sentence] = []
    for hit in (True, False):
        pool = sorted(halves[hit], key=lambda sentence: _order(f"train:{sentence.id}"))
        chosen += pool[: target // 2]
    return sorted(chosen, key=lambda sentence: _order(f"train:{sentence.id}"))


SETS = {
    "clinical": clinical_sentences,
    "literature": literature_sentences,
    "clinical_train": clinical_training_sentences,
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


_RESOLVERS = {**SETS, "clinical_train": _train_note_sentences}


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


def training_labels(path: Path = LABELS_DIR / "clinical_train.jsonl") -> dict[str, int]:
    """Sentence id -> hand label of the clinical *training* sentences (ids only; no text)."""
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {row["id"]: int(row["label"]) for row in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.handlabels", description=__doc__)
    parser.add_argument("command", choices=["sheet"])
    parser.add_argument("set", choices=sorted(SETS))
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args(argv)
    for sentence in SETS[args.set](args.data_dir):
        sys.stdout.write(json.dumps({"id": sentence.id, "text": sentence.text}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
