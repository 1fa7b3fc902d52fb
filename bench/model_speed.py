"""Two checkpoints' CPU speed, A/B in one run: ``python -m bench.model_speed OLD NEW``.

The measure the model card's speed table uses: the first sentences of the benchmark's MTSamples
notes, tokenised as the worker does, scored through :class:`SequenceClassifier` in length-sorted
batches of 32, float32, at 1 and at 2 intra-op torch threads. The two models take turns, round
after round, so machine drift touches both; the ratio is taken per round and its median reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import load_corpus
from training.predict import length_sorted_batches
from worker.model.classifier import SequenceClassifier


def _rate(model: SequenceClassifier, rows: list[list[int]], batch_size: int) -> float:
    batches = length_sorted_batches([len(row) for row in rows], batch_size)
    started = time.perf_counter()
    for batch in batches:
        model.predict_ids([rows[index] for index in batch])
    return len(rows) / (time.perf_counter() - started)


def measure(
    old: Path, new: Path, *, sentences: int, rounds: int, batch_size: int = 32
) -> dict[str, Any]:
    """Sentences/s of both models per thread count, per round; the median new/old ratio."""
    report: dict[str, Any] = {"old": str(old), "new": str(new), "batch_size": batch_size}
    for threads in (1, 2):
        models = {
            # batch_parallel=False: ``threads`` intra-op threads share each batch (the default
            # gives each core a lane of its own batches, which one sequential caller never fills)
            name: SequenceClassifier.load(
                path, device="cpu", dtype="float32", threads=threads, batch_parallel=False
            )
            for name, path in (("old", old), ("new", new))
        }
        corpus = load_corpus(models["old"], notes=200, tag="speed")
        rows = corpus.rows[:sentences]
        for model in models.values():
            _rate(model, rows[:256], batch_size)  # warm-up
        per_round: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(rounds):
            for name, model in models.items():
                per_round[name].append(round(_rate(model, rows, batch_size), 1))
        ratios = [n / o for n, o in zip(per_round["new"], per_round["old"], strict=True)]
        report[f"threads_{threads}"] = {
            "sentences": len(rows),
            "mean_wordpieces": round(sum(map(len, rows)) / len(rows), 1),
            "old_sentences_per_s": per_round["old"],
            "new_sentences_per_s": per_round["new"],
            "median_ratio_new_over_old": round(statistics.median(ratios), 3),
        }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model_speed", description=__doc__)
    parser.add_argument("old", type=Path, help="checkpoint directory of the model before")
    parser.add_argument("new", type=Path, help="checkpoint directory of the model after")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_speed.json"))
    args = parser.parse_args(argv)
    report = measure(args.old, args.new, sentences=args.sentences, rounds=args.rounds)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    for threads in (1, 2):
        block = report[f"threads_{threads}"]
        print(
            f"{threads} thread(s): old {statistics.median(block['old_sentences_per_s'])} "
            f"new {statistics.median(block['new_sentences_per_s'])} sentences/s, "
            f"median ratio {block['median_ratio_new_over_old']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
