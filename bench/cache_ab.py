"""What the score cache gains end to end: ``python -m bench.cache_ab``.

Backlog passes of the real pipeline through a local broker (as the benchmark's ``saturation``
pass), the score cache on (the default size) and off, in ABBA order (on off, off on, ...), so a
pass's position and a steady drift of the machine touch both alike; the reported figure is the
median over the pairs of on / off. Writes ``bench/results/cache_ab.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import uuid
from pathlib import Path
from typing import Any

import orjson

from bench import e2e
from bench.corpus import MAX_SENTENCE_TOKENS, load_corpus
from bench.machine import machine_info
from devkit.localkafka import LocalKafka
from worker.config import WorkerSettings
from worker.model.classifier import SequenceClassifier
from worker.model.default import default_model_dir

RESULTS = Path(__file__).parent / "results" / "cache_ab.json"


def measure(
    model: SequenceClassifier,
    bootstrap: str,
    *,
    notes: int,
    pairs: int,
    token_budget: int,
    warmup_notes: int = 200,
) -> dict[str, Any]:
    """``pairs`` ABBA pairs of backlog passes over ``notes`` notes, cache on and off."""
    corpus = load_corpus(model, notes=notes, tag=f"cache-ab-{uuid.uuid4().hex[:6]}")
    base = {
        "device": model.device_type,
        "token_budget": token_budget,
        "max_sentence_tokens": MAX_SENTENCE_TOKENS,
    }
    sizes = {"on": WorkerSettings().score_cache_size, "off": 0}
    runs = {
        name: e2e.PipelineRun(bootstrap, 6, {**base, "score_cache_size": size})
        for name, size in sizes.items()
    }
    e2e.saturation(runs["off"], model, corpus.head(warmup_notes))  # warms a fresh broker
    passes: list[dict[str, Any]] = []
    for pair in range(pairs):
        for name in ("on", "off") if pair % 2 == 0 else ("off", "on"):
            result = e2e.saturation(runs[name], model, corpus)
            batches = result["batches"]
            passes.append(
                {
                    "pair": pair,
                    "cache": name,
                    "sentences_per_s": result["sentences_per_s"],
                    "model_busy_s": batches.get("model_busy_s"),
                    "cache_answered_sentences": batches.get("cache_answered_sentences", 0),
                    "cache_answered_tokens": batches.get("cache_answered_tokens", 0),
                }
            )
    rate = {(p["pair"], p["cache"]): float(p["sentences_per_s"]) for p in passes}
    per_pair = [round(rate[(pair, "on")] / rate[(pair, "off")], 3) for pair in range(pairs)]
    answered = max(int(p["cache_answered_tokens"]) for p in passes)
    return {
        "corpus": corpus.describe(),
        "settings": {**base, "score_cache_size_on": sizes["on"]},
        "passes": passes,
        "on_over_off_per_pair": per_pair,
        "median_on_over_off": statistics.median(per_pair),
        "cache_answered_token_share": round(answered / max(1, corpus.tokens), 4),
    }


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=600)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--token-budget", type=int, default=2048)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    model = SequenceClassifier.load(default_model_dir(), device="cpu", dtype="auto")
    load_at_start = os.getloadavg()
    with LocalKafka.start() as cluster:
        report = measure(
            model,
            cluster.bootstrap_servers,
            notes=args.notes,
            pairs=args.pairs,
            token_budget=args.token_budget,
        )
    report = {
        "machine": machine_info(),
        "load_at_start": load_at_start,
        "load_at_end": os.getloadavg(),
        **report,
    }
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    for key in ("on_over_off_per_pair", "median_on_over_off", "cache_answered_token_share"):
        print(f"{key}: {report[key]}")


if __name__ == "__main__":
    main()
