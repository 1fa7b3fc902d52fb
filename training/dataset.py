"""Build train/dev/test JSONL from the public corpora (see :mod:`training.sources`).

Steps, all deterministic for a given seed:

1. Read every source; each row already carries its document-level split.
2. Drop exact duplicate texts (case- and space-insensitive) inside a split, and drop from train
   and dev every text that also occurs in test (and from train what occurs in dev), so no
   evaluated sentence was trained on verbatim.
3. Cap train per source (quotas below), sampling with one seeded RNG per source; MTSamples
   train keeps all positives, then hard negatives (:func:`~training.lexicon.is_decoy`:
   drugs, doses, vitals, vertebral levels, generic lab words), then fills with other
   negatives. Dev is a plain random sample per source (MTSamples dev is kept whole, in its
   natural ~2% positive rate, so that the false positive rate on notes is visible). Test is
   never capped.
4. Write ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (``{"id","text","label","source","doc"}``)
   and ``manifest.json`` (counts, quotas, seed, the note splitter and a hash of its source:
   MTSamples sentences, and so the exact rows, depend on it).
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from training.handlabels import (
    SPLIT_SEED,
    TRAINING_SETS,
    Batches,
    training_hard_negatives,
    training_labels,
)
from training.lexicon import is_decoy
from training.sources import (
    Example,
    read_bc2gm,
    read_biored,
    read_civic,
    read_civicmine,
    read_mtsamples,
)
from training.splits import splitter_digest, splitter_name
from training.synthetic import synthetic_examples
from training.synthetic_clinical import clinical_templates
from training.synthetic_literature import literature_decoys as literature_decoys_of
from worker.errors import UsageError

__all__ = ["DatasetConfig", "build_dataset", "data_dir_from", "normalise", "write_jsonl"]

DATA_DIR_ENV = "BIOMARKER_DATA_DIR"
#: Source names of training sentences labelled by hand (training/handlabels/): MTSamples
#: sentences picked where the lexicon is weakest, MTSamples whole notes, and BC2GM/BioRED
#: (literature).
HAND_SOURCE = "mtsamples_hand"
HAND_NOTES_SOURCE = "mtsamples_hand_notes"
LITERATURE_HAND_SOURCE = "literature_hand"
#: The source each hand-labelled training set's rows take.
HAND_SET_SOURCES = {
    "clinical_train": HAND_SOURCE,
    "clinical_train_notes": HAND_NOTES_SOURCE,
    "literature_train": LITERATURE_HAND_SOURCE,
}
HAND_SOURCES = frozenset(HAND_SET_SOURCES.values())
#: The hand-labelled set of whole train notes, the one capped by note tiers.
NOTES_SET = "clinical_train_notes"
_REQUIRED = (
    "bc2gm/bc2gm_sentences.jsonl",
    "biored/biored_sentences.jsonl",
    "civic/civic_evidence_sentences.jsonl",
    "civicmine/civicmine_train_sentences.jsonl",
    "mtsamples/mtsamples_notes.jsonl",
)


@dataclass(frozen=True, slots=True)
class DatasetConfig:
    """Per-source caps; ``None`` keeps everything."""

    seed: int = 13
    train_quota: dict[str, int | None] = field(
        default_factory=lambda: {
            "bc2gm": None,
            "biored": None,
            "civic": 3000,
            "civicmine": None,
            # Lexicon-labelled note sentences: 10,000 until 1.3.0, 20,000 for 1.4.0; since 1.5.0
            # every train note is labelled by hand, so none are left for the lexicon to label.
            "mtsamples": 20000,
            HAND_SOURCE: None,
            # Hand-labelled whole notes, by the same tiers (1.5.0: 20,000, as many note
            # sentences as 1.4.0 read; 1.6.0: 24,000, the hand-named hard negatives added to
            # the second tier and as many ordinary sentences as before).
            HAND_NOTES_SOURCE: 24000,
            LITERATURE_HAND_SOURCE: None,
            "synthetic": None,
            "synthetic_clinical": None,
            "synthetic_literature": None,
        }
    )
    #: Replace the lexicon's and the corpora's labels of the hand-labelled training sentences.
    hand_labels: bool = True
    #: How many times each hand-labelled training sentence is seen per epoch, per hand source: a
    #: few hundred careful labels against tens of thousands of corpus labels that teach other
    #: conventions (the whole notes, thousands of mostly ordinary sentences, once).
    hand_weight: dict[str, int] = field(
        default_factory=lambda: {HAND_SOURCE: 2, HAND_NOTES_SOURCE: 1, LITERATURE_HAND_SOURCE: 2}
    )
    #: Per hand-labelled training set (``training/handlabels/<name>.jsonl``), which of its
    #: labelling batches to use: the first N, a tuple of batch numbers, or all (``None``).
    #: The literature's second batch joined with 1.7.0; 1.6.0's data read its first only.
    hand_batches: dict[str, Batches] = field(
        default_factory=lambda: {
            "clinical_train": 1,
            "clinical_train_notes": None,
            "literature_train": 2,
        }
    )
    #: Add the note-style decoys of :mod:`training.synthetic_clinical` (drugs named like
    #: proteins given as treatment, measurements that are not analytes), as model 1.3.0's data
    #: did; 1.2.0's had none.
    note_decoys: bool = True
    #: Add the literature-style decoys of :mod:`training.synthetic_literature` (unnamed loci,
    #: transcripts, protein classes, cell lines, proteins given as drugs); no shipped model's
    #: data has them yet (round 17).
    literature_decoys: bool = False
    #: Put the hard negatives the hand labels name (label 0 with a family: vital signs, drugs
    #: given as treatment, conditions named after an analyte, ...) in the note tier of the
    #: lexicon's decoys, ahead of ordinary sentences, when the whole notes are capped (since
    #: 1.6.0; 1.5.0's data: off).
    hand_hard_negatives: bool = True
    #: How many times each of those hand-named hard negatives of the train notes is trained on
    #: per epoch (at least; 1 as every shipped model's data), so the lessons of the families the
    #: model confuses (drugs given as treatment, conditions named after an analyte) weigh more.
    hard_negative_weight: int = 1
    dev_quota: dict[str, int | None] = field(
        default_factory=lambda: {"bc2gm": 1000, "biored": 1000, "civic": 1000, "mtsamples": None}
    )


def data_dir_from(value: str | None) -> Path:
    """The data directory from a flag, else ``$BIOMARKER_DATA_DIR``; checked for the corpora."""
    raw = value or os.environ.get(DATA_DIR_ENV)
    if not raw:
        raise UsageError(f"no data directory: pass --data-dir or set {DATA_DIR_ENV}")
    path = Path(raw)
    missing = [name for name in _REQUIRED if not (path / name).is_file()]
    if missing:
        raise UsageError(f"data directory {path} lacks {', '.join(missing)}")
    return path


def normalise(text: str) -> str:
    """Key for duplicate detection: lower case, single spaces."""
    return " ".join(text.lower().split())


def _all_examples(
    data_dir: Path,
    seed: int,
    hand_labels: dict[str, dict[str, int]],
    *,
    note_decoys: bool,
    literature_decoys: bool = False,
) -> Iterator[Example]:
    literature = (*read_bc2gm(data_dir), *read_biored(data_dir))
    yield from with_hand_labels(
        literature, hand_labels.get("literature_train", {}), LITERATURE_HAND_SOURCE
    )
    yield from read_civicmine(data_dir, seed=seed)
    yield from read_civic(data_dir, seed=seed)
    notes = with_hand_labels(
        # the notes' split is fixed whatever the sampling seed: the hand-labelled evaluation
        # notes (clinical, clinical_dev) are drawn from its test and dev splits
        read_mtsamples(data_dir, seed=SPLIT_SEED),
        hand_labels.get("clinical_train_notes", {}),
        HAND_NOTES_SOURCE,
    )
    # A sentence in both clinical sets takes the picked set's label and weight.
    yield from with_hand_labels(notes, hand_labels.get("clinical_train", {}))
    yield from synthetic_examples(seed=seed)
    yield from clinical_templates(seed=seed, note_decoys=note_decoys)
    if literature_decoys:
        yield from literature_decoys_of(seed=seed)


def with_hand_labels(
    rows: Iterable[Example], hand_labels: dict[str, int], source: str = HAND_SOURCE
) -> Iterator[Example]:
    """Rows with a hand label take it, under the source ``source``; train split only."""
    for row in rows:
        label = hand_labels.get(row.id)
        if label is None:
            yield row
        elif row.split != "train":
            raise ValueError(f"hand-labelled sentence {row.id} is in the {row.split} split")
        else:
            yield replace(row, label=label, source=source)


def _weakly_labelled(row: Example) -> bool:
    return row.source not in HAND_SOURCES


def _weighted(
    rows: list[Example],
    hand_weight: dict[str, int],
    hard_negatives: frozenset[str] = frozenset(),
    hard_negative_weight: int = 1,
) -> list[Example]:
    """Each hand-labelled row its source's weight times (ids suffixed ``#2``, ...), others once;
    a train-note row among ``hard_negatives`` at least ``hard_negative_weight`` times."""
    out: list[Example] = []
    for row in rows:
        out.append(row)
        repeats = hand_weight.get(row.source, 1)
        if row.source == HAND_NOTES_SOURCE and row.id in hard_negatives:
            repeats = max(repeats, hard_negative_weight)
        out += [replace(row, id=f"{row.id}#{n}") for n in range(2, repeats + 1)]
    return out


def _dedupe(rows: Iterable[Example], banned: set[str]) -> list[Example]:
    out: list[Example] = []
    seen = set(banned)
    for row in rows:
        key = normalise(row.text)
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


def _rng(seed: int, source: str, purpose: str) -> random.Random:
    """One RNG per source and purpose, so a change in one source leaves the others alone."""
    return random.Random(f"{seed}:{source}:{purpose}")


#: Sources of MTSamples note sentences, capped by tier (:func:`_note_tier`).
_NOTE_SOURCES = frozenset({"mtsamples", HAND_NOTES_SOURCE})


def _note_tier(hard_negatives: frozenset[str]) -> Callable[[Example], int]:
    """MTSamples train priority: positives, then hard negatives (the lexicon's decoys and
    ``hard_negatives``, ids the hand labels name), then the rest."""

    def tier(row: Example) -> int:
        if row.label == 1:
            return 0
        return 1 if row.id in hard_negatives or is_decoy(row.text) else 2

    return tier


def _cap(
    rows: list[Example],
    quota: int | None,
    rng: random.Random,
    tier: Callable[[Example], int] | None = None,
) -> list[Example]:
    """At most ``quota`` rows: whole tiers in order, a seeded sample of the tier that overflows."""
    if quota is None or len(rows) <= quota:
        return rows
    tiers: dict[int, list[Example]] = {}
    for row in rows:
        tiers.setdefault(tier(row) if tier else 0, []).append(row)
    chosen: list[Example] = []
    for _, group in sorted(tiers.items()):
        room = quota - len(chosen)
        chosen.extend(group if len(group) <= room else rng.sample(group, room))
    return chosen


def _by_source(rows: list[Example]) -> dict[str, list[Example]]:
    groups: dict[str, list[Example]] = {}
    for row in rows:
        groups.setdefault(row.source, []).append(row)
    return groups


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """One JSON object per line, UTF-8."""
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _public(row: Example) -> dict[str, Any]:
    data = row.to_json()
    del data["split"]
    return data


def _counts(rows: list[Example]) -> dict[str, dict[str, int]]:
    counter = Counter((row.source, row.label) for row in rows)
    sources = sorted({source for source, _ in counter})
    return {s: {"0": counter[(s, 0)], "1": counter[(s, 1)]} for s in sources}


def build_dataset(data_dir: Path, out_dir: Path, config: DatasetConfig) -> dict[str, Any]:
    """Write the three splits and the manifest into ``out_dir``; return the manifest."""
    hand_labels = (
        {name: training_labels(name, config.hand_batches.get(name)) for name in TRAINING_SETS}
        if config.hand_labels
        else {}
    )
    rows = list(
        _all_examples(
            data_dir,
            config.seed,
            hand_labels,
            note_decoys=config.note_decoys,
            literature_decoys=config.literature_decoys,
        )
    )
    weigh_hard_negatives = config.hard_negative_weight > 1
    hard_negatives = (
        training_hard_negatives(NOTES_SET, config.hand_batches.get(NOTES_SET))
        if config.hand_labels and (config.hand_hard_negatives or weigh_hard_negatives)
        else frozenset()
    )
    note_tier = _note_tier(hard_negatives if config.hand_hard_negatives else frozenset())
    test = _dedupe((row for row in rows if row.split == "test"), set())
    test_keys = {normalise(row.text) for row in test}
    dev = _dedupe((row for row in rows if row.split == "dev"), test_keys)
    dev_keys = {normalise(row.text) for row in dev}
    # Hand-labelled rows first, so a repeat of their text elsewhere does not replace them.
    train_rows = sorted((row for row in rows if row.split == "train"), key=_weakly_labelled)
    train = _dedupe(train_rows, test_keys | dev_keys)
    train = [
        row
        for source, group in sorted(_by_source(train).items())
        for row in _cap(
            group,
            config.train_quota.get(source),
            _rng(config.seed, source, "train"),
            note_tier if source in _NOTE_SOURCES else None,
        )
    ]
    dev = [
        row
        for source, group in sorted(_by_source(dev).items())
        for row in _cap(group, config.dev_quota.get(source), _rng(config.seed, source, "dev"))
    ]
    train = _weighted(train, config.hand_weight, hard_negatives, config.hard_negative_weight)
    _rng(config.seed, "all", "shuffle").shuffle(train)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = {"train": train, "dev": dev, "test": test}
    for name, split_rows in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", (_public(row) for row in split_rows))
    manifest: dict[str, Any] = {
        "seed": config.seed,
        "splitter": splitter_name(),
        "splitter_sha256": splitter_digest(),
        "train_quota": config.train_quota,
        "dev_quota": config.dev_quota,
        "hand_labels": {name: len(labels) for name, labels in hand_labels.items()},
        "hand_weight": config.hand_weight,
        "hand_batches": config.hand_batches,
        "note_decoys": config.note_decoys,
        "literature_decoys": config.literature_decoys,
        "hand_hard_negatives": config.hand_hard_negatives,
        "hard_negative_weight": config.hard_negative_weight,
        "counts": {name: _counts(split_rows) for name, split_rows in splits.items()},
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
