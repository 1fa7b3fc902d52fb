"""``biomarker-worker train``: fine-tune a BERT-family checkpoint on labelled sentence JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.cli.checkout import checkout_only
from worker.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "train", help='fine-tune a classifier on JSONL {"text","label"} (seeded, resumable)'
    )
    parser.add_argument("--base", required=True, help="base checkpoint directory or hub id")
    parser.add_argument("--train", required=True, help='training JSONL {"text","label"}')
    parser.add_argument("--out", required=True, help="output checkpoint directory")
    parser.add_argument("--eval", help="JSONL evaluated after each epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=8e-5, help="peak AdamW learning rate")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=96, help="wordpieces per sentence")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="steps")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument(
        "--train-word-embeddings", action="store_true",
        help="also update the word-embedding matrix (frozen by default: smaller deltas)",
    )  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    parser.set_defaults(handler=handle)


def _positive(name: str, value: float | None) -> None:
    if value is not None and value <= 0:
        raise UsageError(f"--{name} must be positive")


def handle(args: argparse.Namespace) -> int:
    for name in ("epochs", "lr", "batch_size", "max_length", "max_steps", "checkpoint_every"):
        _positive(name.replace("_", "-"), getattr(args, name))
    with checkout_only("train"):
        from training.train import TrainConfig, train

    config = TrainConfig(
        base=args.base,
        train_path=Path(args.train),
        out_dir=Path(args.out),
        eval_path=Path(args.eval) if args.eval else None,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        max_steps=args.max_steps,
        checkpoint_every=args.checkpoint_every,
        freeze_word_embeddings=not args.train_word_embeddings,
        threads=args.threads,
        resume=args.resume,
    )
    report = train(config)
    if report:
        json.dump(report["overall"], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
