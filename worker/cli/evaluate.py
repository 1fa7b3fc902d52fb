"""``biomarker-worker evaluate``: precision/recall/F1 of a checkpoint on labelled JSONL."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from worker.cli.checkout import checkout_only
from worker.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate", help='score JSONL {"text","label"[,"source"]} and report P/R/F1'
    )
    parser.add_argument("--model", required=True, help="checkpoint directory")
    parser.add_argument("--data", required=True, help='JSONL {"text","label"[,"source"]}')
    parser.add_argument("--out", help="also write the metrics JSON here")
    parser.add_argument("--threshold", type=float, default=0.5, help="predict 1 when score >= it")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512, help="wordpieces per sentence")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError("--threshold must be between 0 and 1")
    if args.batch_size <= 0 or args.max_length <= 0:
        raise UsageError("--batch-size and --max-length must be positive")
    with checkout_only("train"):
        from training.evaluate import evaluate_model
        from training.jsonl import read_labelled

    rows = read_labelled(Path(args.data))
    report = evaluate_model(
        Path(args.model),
        rows,
        threshold=args.threshold,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
    )
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
    sys.stdout.write(text)
    return 0
