"""What the lexicon rules cost the host side: ``python -m bench.lexicon_cost``.

The preparation of the benchmark's MTSamples notes (decode, segment, tokenise with the default
model's tokenizer, one thread as in a host process) with and without lexicon rules, in CPU time,
taking turns chunk by chunk; the
difference per sentence is the rules' share of the host work (reported: the median of the
per-round ratios). Also timed alone: the rules as served (behind the prefilter) and every rule
on every sentence (what the prefilter saves).
Writes ``bench/results/lexicon_cost.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import MAX_SENTENCE_CHARS
from worker.config import WorkerSettings
from worker.demo.notes import demo_notes
from worker.events import SourceRef
from worker.heap import startup_objects_frozen
from worker.lexicon import LEXICON_VERSION, find_hits
from worker.loading import load_classifier
from worker.notes import Record
from worker.prepare import Preparer, matched_rules
from worker.segmentation import split_sentences

RESULTS = Path(__file__).parent / "results" / "lexicon_cost.json"


def _records(events: list[bytes]) -> list[Record]:
    source = SourceRef("notes", 0, None, None)
    return [Record(source=source, key=None, value=value) for value in events]


def _prepare_seconds(
    preparers: dict[bool, Preparer], events: list[bytes], chunk: int = 32
) -> dict[bool, float]:
    """CPU seconds (the tokenizer's threads included) of each preparer over ``events``, the
    two taking turns chunk by chunk, so machine drift touches both alike."""
    records = {flag: _records(events) for flag in preparers}
    spent = dict.fromkeys(preparers, 0.0)
    for number, start in enumerate(range(0, len(events), chunk)):
        order = list(preparers) if number % 2 == 0 else list(reversed(preparers))
        for flag in order:
            started = time.process_time()
            preparers[flag].prepare(records[flag][start : start + chunk])
            spent[flag] += time.process_time() - started
    return spent


def measure(notes: int, rounds: int) -> dict[str, Any]:
    source, records = demo_notes(notes)
    events = [orjson.dumps(record) for record in records]
    sentences = [
        record["text"][start:end]
        for record in records
        for start, end in split_sentences(record["text"], max_chars=MAX_SENTENCE_CHARS)
    ]
    model = load_classifier(WorkerSettings(device="cpu"))
    preparers = {
        flag: Preparer(
            encoder=model,
            max_note_chars=1_000_000,
            max_sentence_tokens=256,
            lexicon_rules=flag,
        )
        for flag in (False, True)
    }
    per_round: dict[bool, list[float]] = {False: [], True: []}
    with startup_objects_frozen():  # as the worker runs: full collections skip the model
        _prepare_seconds(preparers, events[:64])  # warm-up
        for _ in range(rounds):
            for flag, seconds in _prepare_seconds(preparers, events).items():
                per_round[flag].append(seconds / len(sentences) * 1e6)
        started = time.process_time()
        matched = matched_rules(sentences)
        served = (time.process_time() - started) / len(sentences) * 1e6
        started = time.process_time()
        for sentence in sentences:
            find_hits(sentence, prefilter=False)
        unfiltered = (time.process_time() - started) / len(sentences) * 1e6
    without = statistics.median(per_round[False])
    with_rules = statistics.median(per_round[True])
    return {
        "source": source,
        "notes": len(records),
        "sentences": len(sentences),
        "sentences_with_a_rule": len(matched),
        "lexicon_version": LEXICON_VERSION,
        "rounds": rounds,
        "prepare_us_per_sentence_without_rules": [round(x, 2) for x in per_round[False]],
        "prepare_us_per_sentence_with_rules": [round(x, 2) for x in per_round[True]],
        "median_prepare_without_rules_us": round(without, 2),
        "median_prepare_with_rules_us": round(with_rules, 2),
        "median_ratio_with_over_without": round(
            statistics.median(
                w / o for w, o in zip(per_round[True], per_round[False], strict=True)
            ),
            3,
        ),
        "rules_alone_us_per_sentence": round(served, 2),
        "every_rule_without_prefilter_us_per_sentence": round(unfiltered, 2),
    }


def main() -> None:
    # One thread of host work, as in a host process (worker/host_pool.py): the tokenizer's own
    # thread pool would count its idle spinning into the CPU time of whatever runs next.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    report = measure(args.notes, args.rounds)
    args.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
