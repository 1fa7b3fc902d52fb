"""``biomarker-worker dataset``: build train/dev/test JSONL from the public corpora."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from worker.cli.checkout import checkout_only
from worker.errors import UsageError

#: Hand-labelled training sets the command line can weight or cut: flag prefix -> set name.
HAND_SETS = {
    "clinical": "clinical_train",
    "clinical-notes": "clinical_train_notes",
    "literature": "literature_train",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dataset", help="build labelled train/dev/test JSONL from the public corpora"
    )
    parser.add_argument("--data-dir", help="corpora directory (default: $BIOMARKER_DATA_DIR)")
    parser.add_argument("--out", required=True, help="output directory for the JSONL files")
    parser.add_argument(
        "--seed",
        type=int,
        default=13,
        help="split and sampling seed (not of the MTSamples notes: their split stays seed 13's, "
        "which the hand-labelled evaluation notes are drawn from)",
    )
    for prefix, name in HAND_SETS.items():
        parser.add_argument(
            f"--{prefix}-hand-weight",
            type=int,
            metavar="N",
            help=f"times each sentence of {name}.jsonl is trained on per epoch "
            "(default: the shipped model's, DatasetConfig.hand_weight)",
        )
        parser.add_argument(
            f"--{prefix}-hand-batches",
            metavar="N|A,B,...",
            help=f"use the first N labelling batches of {name}.jsonl (0 for none), or the "
            "batches numbered A,B,... ('3,' for batch 3 alone; default: the shipped model's)",
        )
    parser.add_argument(
        "--note-decoys",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="note-style decoys: drugs named like proteins given as treatment, measurements "
        "that are not analytes (default: on, as the shipped model; --no-note-decoys for 1.2.0's)",
    )
    parser.add_argument(
        "--literature-decoys",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="literature-style decoys: unnamed loci, transcripts, protein classes, cell lines, "
        "proteins given as drugs (default: off, as the shipped model)",
    )
    parser.add_argument(
        "--hand-hard-negatives",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="when the whole train notes are capped, keep the hard negatives their hand labels "
        "name (vital signs, drugs given as treatment, ...) ahead of ordinary sentences, with "
        "the lexicon's decoys (default: on, as the shipped model's data; off for 1.5.0's)",
    )
    parser.add_argument(
        "--hard-negative-weight",
        type=int,
        metavar="N",
        help="train on each hard negative the train notes' hand labels name (drugs given as "
        "treatment, conditions named after an analyte, ...) at least N times per epoch "
        "(default 1, the shipped model's)",
    )
    parser.add_argument(
        "--mtsamples-quota",
        type=int,
        metavar="N",
        help="at most N lexicon-labelled MTSamples train sentences: all positives, then hard "
        "negatives, then a seeded sample of the others (default 20000, 1.4.0's; 10000 for "
        "1.3.0's; since 1.5.0 the train notes are labelled by hand, so it caps only what "
        "--clinical-notes-hand-batches leaves to the lexicon)",
    )
    parser.add_argument(
        "--clinical-notes-quota",
        type=int,
        metavar="N",
        help="at most N sentences of the hand-labelled whole train notes, by the same tiers "
        "(default 24000, the shipped model's; 20000 for 1.5.0's)",
    )
    parser.set_defaults(handler=handle)


def hand_overrides(
    args: argparse.Namespace,
) -> tuple[dict[str, int], dict[str, int | tuple[int, ...]]]:
    """The hand-label weights and batch choices given on the command line, by set name."""
    weights: dict[str, int] = {}
    batches: dict[str, int | tuple[int, ...]] = {}
    for prefix, name in HAND_SETS.items():
        attribute = prefix.replace("-", "_")
        weight = getattr(args, f"{attribute}_hand_weight")
        count = getattr(args, f"{attribute}_hand_batches")
        if weight is not None:
            if weight < 1:
                raise UsageError(f"--{prefix}-hand-weight must be at least 1")
            weights[name] = weight
        if count is not None:
            batches[name] = _batches(count, f"--{prefix}-hand-batches")
    return weights, batches


def _batches(value: str, flag: str) -> int | tuple[int, ...]:
    """``N``: the first N batches; ``A,B,...`` (or ``A,`` for one): those batches, from 1."""
    try:
        numbers = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"{flag} takes a count or batch numbers such as 1,2,4") from None
    if not numbers:
        raise UsageError(f"{flag} takes a count or batch numbers such as 1,2,4")
    if "," not in value:
        if numbers[0] < 0:
            raise UsageError(f"{flag} must not be negative")
        return numbers[0]
    if min(numbers) < 1 or len(set(numbers)) != len(numbers):
        raise UsageError(f"{flag}: batch numbers start at 1, each once")
    return tuple(sorted(numbers))


def handle(args: argparse.Namespace) -> int:
    weights, batches = hand_overrides(args)
    for flag in ("mtsamples_quota", "clinical_notes_quota", "hard_negative_weight"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1")
    with checkout_only("train"):
        from training.dataset import (
            HAND_NOTES_SOURCE,
            HAND_SET_SOURCES,
            DatasetConfig,
            build_dataset,
            data_dir_from,
        )
        from training.handlabels import batch_numbers

    for prefix, name in HAND_SETS.items():
        chosen = batches.get(name)
        missing = sorted(set(chosen) - batch_numbers(name)) if isinstance(chosen, tuple) else []
        if missing:
            raise UsageError(f"--{prefix}-hand-batches: {name}.jsonl has no batch {missing[0]}")
    data_dir = data_dir_from(args.data_dir)
    config = DatasetConfig(
        seed=args.seed, note_decoys=args.note_decoys, literature_decoys=args.literature_decoys
    )
    if args.hand_hard_negatives is not None:
        config = replace(config, hand_hard_negatives=args.hand_hard_negatives)
    if args.hard_negative_weight is not None:
        config = replace(config, hard_negative_weight=args.hard_negative_weight)
    config.hand_weight.update({HAND_SET_SOURCES[name]: n for name, n in weights.items()})
    config.hand_batches.update(batches)
    if args.mtsamples_quota is not None:
        config.train_quota["mtsamples"] = args.mtsamples_quota
    if args.clinical_notes_quota is not None:
        config.train_quota[HAND_NOTES_SOURCE] = args.clinical_notes_quota
    manifest = build_dataset(data_dir, Path(args.out), config)
    json.dump(manifest["counts"], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
