"""Label agreement of each CPU backend with eager PyTorch on labelled sentences.

    python bench/backend_accuracy.py --data test.jsonl [--model default] [--limit 6000]

``--data`` is JSONL with ``text`` and ``label`` (0/1), e.g. the held-out split written by
``biomarker-worker dataset``. Prints, per backend: label agreement with eager fp32, flips,
the largest probability change, and precision/recall/F1 against the gold labels. A backend is
kept only with agreement >= 99.5% and a speed gain (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.engines import MIN_AGREEMENT, with_engine
from bench.int8 import onnx_int8_engine, torch_int8_engine
from bench.modelonly import run_batches
from bench.models import resolve_model
from bench.onnx_engine import onnx_engine
from worker.model.backends import Engine
from worker.model.classifier import SequenceClassifier


def _prf(scores: list[float], gold: list[int]) -> tuple[float, float, float]:
    tp = sum(1 for s, g in zip(scores, gold, strict=True) if s >= 0.5 and g == 1)
    fp = sum(1 for s, g in zip(scores, gold, strict=True) if s >= 0.5 and g == 0)
    fn = sum(1 for s, g in zip(scores, gold, strict=True) if s < 0.5 and g == 1)
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    return precision, recall, 2 * precision * recall / max(1e-9, precision + recall)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="default")
    parser.add_argument("--limit", type=int, default=6000)
    args = parser.parse_args()
    name, checkpoint = resolve_model(args.model)
    eager = SequenceClassifier.load(checkpoint, device="cpu", dtype="float32")
    with Path(args.data).open("rb") as handle:
        records = [orjson.loads(line) for line in handle if line.strip()][: args.limit]
    rows = [item.ids for item in eager.encode([r["text"] for r in records])]
    gold = [int(r["label"]) for r in records]
    reference: list[float] = run_batches(
        eager.predict_ids, rows, 2048, concurrency=eager.concurrency
    )["_scores"]
    print(f"{name}: {len(rows)} sentences, {sum(gold)} positive")
    print("eager fp32: P/R/F1 {:.4f} / {:.4f} / {:.4f}".format(*_prf(reference, gold)))
    threads = 1 if eager.concurrency > 1 else None
    engines: dict[str, Engine] = {
        "onnx": onnx_engine(checkpoint, eager.info.sha256, threads=threads),
        "torch-int8": torch_int8_engine(checkpoint),
        "onnx-int8": onnx_int8_engine(checkpoint, eager.info.sha256, threads=threads),
    }
    variants = {"torch-bf16": SequenceClassifier.load(checkpoint, device="cpu", dtype="bfloat16")}
    variants |= {label: with_engine(eager, engine) for label, engine in engines.items()}
    for label, model in variants.items():
        scores: list[float] = run_batches(
            model.predict_ids, rows, 2048, concurrency=eager.concurrency
        )["_scores"]
        flips = sum((a >= 0.5) != (b >= 0.5) for a, b in zip(reference, scores, strict=True))
        agreement = 1 - flips / len(scores)
        drift = max(abs(a - b) for a, b in zip(reference, scores, strict=True))
        verdict = "accurate enough" if agreement >= MIN_AGREEMENT else "too inaccurate"
        print(
            f"{label:11} agreement {agreement:.4%} ({flips} flips), max |dp| {drift:.3f}, "
            "P/R/F1 {:.4f} / {:.4f} / {:.4f}".format(*_prf(scores, gold))
            + f" -> {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
