"""``biomarker-worker dataset``: build train/dev/test JSONL from the public corpora."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.cli.checkout import checkout_only


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dataset", help="build labelled train/dev/test JSONL from the public corpora"
    )
    parser.add_argument("--data-dir", help="corpora directory (default: $BIOMARKER_DATA_DIR)")
    parser.add_argument("--out", required=True, help="output directory for the JSONL files")
    parser.add_argument("--seed", type=int, default=13, help="split and sampling seed")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    with checkout_only("train"):
        from training.dataset import DatasetConfig, build_dataset, data_dir_from

    data_dir = data_dir_from(args.data_dir)
    manifest = build_dataset(data_dir, Path(args.out), DatasetConfig(seed=args.seed))
    json.dump(manifest["counts"], sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
