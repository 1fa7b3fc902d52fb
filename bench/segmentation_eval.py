"""Evaluate ``worker.segmentation.split_sentences`` against gold spans and baselines.

Usage::

    python bench/segmentation_eval.py [--gold PATH] [--notes PATH]
                                      [--out bench/results/segmentation.json]

Reports boundary precision/recall/F1 (a boundary is a sentence end offset after stripping
whitespace; the end of the text is not counted) and the exact-span match rate on the gold
abstracts, plus single-thread throughput (best of 3 passes) on the MTSamples note texts, for
the segmenter and for simple baselines (a naive ``[.?!]\\s+`` split and, when installed,
BlingFire).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker.segmentation import split_sentences  # noqa: E402

DATA = Path("/work/shared/data")
DEFAULT_GOLD = DATA / "sentence_segmentation" / "jnlpba_test_abstracts_gold_sentences.jsonl"
DEFAULT_NOTES = DATA / "mtsamples" / "mtsamples_notes.jsonl"
DEFAULT_OUT = ROOT / "bench" / "results" / "segmentation.json"

Splitter = Callable[[str], list[tuple[int, int]]]
_NAIVE = re.compile(r"(?<=[.?!])\s+")


def naive_split(text: str) -> list[tuple[int, int]]:
    """Baseline: split after every ``.``, ``?`` or ``!`` followed by whitespace."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _NAIVE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return strip_spans(text, spans)


def strip_spans(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Trim whitespace from both ends of each span and drop empty spans."""
    out = []
    for start, end in spans:
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            out.append((s, e))
    return out


def blingfire_splitter() -> Splitter | None:
    """BlingFire's sentence splitter with offsets, or None when it is not installed."""
    try:
        import blingfire
    except ImportError:
        return None

    def split(text: str) -> list[tuple[int, int]]:
        if not text.strip():
            return []
        _, offsets = blingfire.text_to_sentences_and_offsets(text)  # character offsets
        return strip_spans(text, [(int(s), int(e)) for s, e in offsets])

    return split


def policy_gold(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Gold spans re-cut where the policy differs from GENIA: a heading alone on its line
    ("RESULTS:" followed by a line break) is its own segment."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        s = start
        for m in _HEADING_LINE.finditer(text, start, end):
            if m.end() < end and text[s : m.end()].strip():
                out.append((s, m.end()))
                s = m.end()
        out.append((s, end))
    return strip_spans(text, out)


_HEADING_LINE = re.compile(r"[^\n]*:(?=[ \t]*\n)")


def clinical_cases() -> list[tuple[str, list[str]]]:
    """The hand-written clinical policy cases of tests/test_segmentation.py (text, sentences)."""
    path = ROOT / "tests" / "test_segmentation.py"
    spec = importlib.util.spec_from_file_location("_segmentation_cases", path)
    if spec is None or spec.loader is None:
        return []
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)


def case_scores(cases: list[tuple[str, list[str]]], split: Splitter) -> dict[str, float | int]:
    """Share of clinical cases segmented exactly as expected, and boundary P/R/F1 over them."""
    docs = []
    for text, expected in cases:
        spans, pos = [], 0
        for sentence in expected:
            start = text.index(sentence, pos)
            pos = start + len(sentence)
            spans.append([start, pos])
        docs.append({"text": text, "sentence_spans": spans})
    scores = boundary_scores(docs, split)
    exact = sum(
        [text[s:e] for s, e in strip_spans(text, split(text))] == expected
        for text, expected in cases
    )
    return {
        "cases": len(cases),
        "cases_exact": round(exact / len(cases), 4) if cases else 0.0,
        "precision": scores["precision"],
        "recall": scores["recall"],
        "f1": scores["f1"],
    }


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def boundary_scores(
    docs: list[dict[str, Any]], split: Splitter, *, policy: bool = False
) -> dict[str, float | int]:
    """Boundary precision/recall/F1 and exact-span match rate over gold documents
    (with ``policy``, against the gold re-cut by :func:`policy_gold`)."""
    tp = fp = fn = exact = gold_total = 0
    for doc in docs:
        text = doc["text"]
        gold = strip_spans(text, [(int(s), int(e)) for s, e in doc["sentence_spans"]])
        if policy:
            gold = policy_gold(text, gold)
        pred = strip_spans(text, split(text))
        last = len(text.rstrip())
        g_ends = {e for _, e in gold} - {last}
        p_ends = {e for _, e in pred} - {last}
        tp += len(g_ends & p_ends)
        fp += len(p_ends - g_ends)
        fn += len(g_ends - p_ends)
        exact += len(set(gold) & set(pred))
        gold_total += len(gold)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "exact_span_match": round(exact / gold_total, 4) if gold_total else 0.0,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": fn,
        "gold_sentences": gold_total,
    }


def throughput(texts: list[str], split: Splitter, passes: int = 3) -> dict[str, float | int]:
    """Characters per second over ``texts``, best of ``passes`` single-thread passes."""
    chars = sum(len(t) for t in texts)
    best = float("inf")
    segments = 0
    for _ in range(passes):
        t0 = time.perf_counter()
        segments = sum(len(split(t)) for t in texts)
        best = min(best, time.perf_counter() - t0)
    return {
        "chars": chars,
        "docs": len(texts),
        "segments": segments,
        "best_seconds": round(best, 4),
        "chars_per_second": round(chars / best),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    parser.add_argument("--notes", type=Path, default=DEFAULT_NOTES)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    gold = load_jsonl(args.gold)
    cases = clinical_cases()
    notes = [n["text"] for n in load_jsonl(args.notes)] if args.notes.exists() else []
    splitters: dict[str, Splitter] = {"worker.segmentation": split_sentences}
    splitters["naive_regex"] = naive_split
    bling = blingfire_splitter()
    if bling is not None:
        splitters["blingfire"] = bling

    results: dict[str, Any] = {
        "gold": {"file": args.gold.name, "documents": len(gold)},
        "notes": {"file": args.notes.name, "documents": len(notes)},
        "python": platform.python_version(),
        "machine": platform.machine(),
        "systems": {},
    }
    for name, split in splitters.items():
        entry: dict[str, Any] = {
            "gold": boundary_scores(gold, split),
            "gold_policy": boundary_scores(gold, split, policy=True),
        }
        if cases:
            entry["clinical_cases"] = case_scores(cases, split)
        if notes:
            entry["throughput"] = throughput(notes, split)
        results["systems"][name] = entry

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    header = f"{'system':<22}{'gold':<8}{'P':>8}{'R':>8}{'F1':>8}{'exact':>8}{'chars/s':>14}"
    print(header)
    print("-" * len(header))
    for name, entry in results["systems"].items():
        cps = entry.get("throughput", {}).get("chars_per_second", 0)
        for label, key in (("genia", "gold"), ("policy", "gold_policy")):
            g = entry[key]
            rate = f"{cps:>14,}" if key == "gold" else ""
            print(
                f"{name if key == 'gold' else '':<22}{label:<8}{g['precision']:>8.4f}"
                f"{g['recall']:>8.4f}{g['f1']:>8.4f}{g['exact_span_match']:>8.4f}{rate}"
            )
    if cases:
        print(f"\nclinical policy cases (tests/test_segmentation.py, {len(cases)} notes)")
        print(f"{'system':<22}{'exact':>8}{'P':>8}{'R':>8}{'F1':>8}")
        for name, entry in results["systems"].items():
            c = entry["clinical_cases"]
            print(
                f"{name:<22}{c['cases_exact']:>8.4f}{c['precision']:>8.4f}"
                f"{c['recall']:>8.4f}{c['f1']:>8.4f}"
            )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
