"""``biomarker-worker evaluate``: scores and errors of a checkpoint on labelled sentences.

The rows come from labelled JSONL (``--data``) or from a hand-labelled evaluation set
(``--handlabelled clinical|clinical_dev|literature``). The report (JSON, or ``--format text``)
lists errors by sentence id; sentence text appears only with ``--show-text``, since clinical text
is sensitive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from worker.cli.checkout import checkout_only
from worker.errors import UsageError

#: Mirrors training.evaluate.HANDLABELLED_SETS (the parser must not import training/).
HANDLABELLED_CHOICES = ("clinical", "clinical_dev", "literature", "literature_dev")
DATA_DIR_ENV = "BIOMARKER_DATA_DIR"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score labelled sentences: P/R/F1 with intervals, calibration, errors",
        description=(
            "Score labelled sentences with a checkpoint and report P/R/F1 (overall and per "
            "domain, with bootstrap intervals), calibration, P/R/F1 at other thresholds, "
            "confusion per error family and the worst errors (by id; text only with "
            "--show-text)."
        ),
    )
    parser.add_argument("--model", required=True, help="checkpoint directory")
    rows = parser.add_mutually_exclusive_group(required=True)
    rows.add_argument(
        "--data",
        help='JSONL {"text","label"[,"source"|"domain","id","family","unsure","doc"]}',
    )
    rows.add_argument(
        "--handlabelled",
        choices=HANDLABELLED_CHOICES,
        help="a hand-labelled evaluation set (training/handlabels/), text read from the corpora",
    )
    parser.add_argument(
        "--data-dir",
        help=f"corpora for --handlabelled (default ${DATA_DIR_ENV}, else ../shared/data)",
    )
    parser.add_argument("--out", help="also write the report JSON here")
    parser.add_argument(
        "--format", choices=("json", "text"), default="json", help="what stdout shows"
    )
    parser.add_argument("--threshold", type=float, default=0.5, help="predict 1 when score >= it")
    parser.add_argument(
        "--no-lexicon-rules",
        dest="lexicon_rules",
        action="store_false",
        help="score the model alone (default: label as the worker does, a lexicon rule's match "
        "is 1 whatever the score)",
    )
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the 95%% intervals (0: none)",
    )
    parser.add_argument(
        "--bootstrap-unit",
        choices=("document", "sentence"),
        default="document",
        help='what the bootstrap resamples: whole documents (a row\'s "doc": its note or '
        "abstract; rows without one count alone; the default), or single sentences",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    parser.add_argument(
        "--worst", type=int, default=10, metavar="K", help="worst false negatives/positives listed"
    )
    parser.add_argument(
        "--show-text",
        action="store_true",
        help="include sentence text in the error lists (clinical text is sensitive)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=512, help="wordpieces per sentence")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError("--threshold must be between 0 and 1")
    if args.batch_size <= 0 or args.max_length <= 0:
        raise UsageError("--batch-size and --max-length must be positive")
    if args.bootstrap < 0 or args.worst < 0:
        raise UsageError("--bootstrap and --worst must not be negative")
    if args.data_dir and not args.handlabelled:
        raise UsageError("--data-dir goes with --handlabelled")
    with checkout_only("train"):
        from training.evaluate import evaluate_model, handlabelled_rows
        from training.jsonl import read_labelled
        from training.metrics import render_text

    if args.handlabelled:
        data_dir = args.data_dir or os.environ.get(DATA_DIR_ENV)
        rows = handlabelled_rows(args.handlabelled, Path(data_dir) if data_dir else None)
        source = {"handlabelled": args.handlabelled}
    else:
        rows = read_labelled(Path(args.data))
        source = {"data": args.data}
    report = evaluate_model(
        Path(args.model),
        rows,
        threshold=args.threshold,
        batch_size=args.batch_size,
        max_length=args.max_length,
        threads=args.threads,
        resamples=args.bootstrap,
        seed=args.seed,
        worst=args.worst,
        show_text=args.show_text,
        lexicon_rules=args.lexicon_rules,
        by_document=args.bootstrap_unit == "document",
    )
    report["input"] = source
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        out = Path(args.out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror}") from exc
    sys.stdout.write(render_text(report) if args.format == "text" else text)
    return 0
