"""``biomarker-worker soup``: average the weights of checkpoints trained from one base."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.cli.checkout import checkout_only


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "soup",
        help="average checkpoints fine-tuned from one base (e.g. several seeds) into one",
        description=(
            "Write the element-wise mean of the weights of checkpoints fine-tuned from one base "
            "with one recipe (a 'model soup'), e.g. runs that differ only in their seed, at one "
            "model's cost. Tensors equal in all of them are copied. Its scores sit nearer the "
            "middle than its members': choose its threshold on development data."
        ),
    )
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        dest="models",
        metavar="DIR",
        help="a checkpoint directory (repeat: at least two)",
    )
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument(
        "--weight",
        action="append",
        type=float,
        dest="weights",
        metavar="W",
        help="relative weight of each --model, in order (default: equal)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    with checkout_only("train"):
        from training.soup import make_soup

    manifest = make_soup([Path(model) for model in args.models], Path(args.out), args.weights)
    json.dump(manifest, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
