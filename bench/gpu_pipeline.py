"""The worker's pipeline minus the broker, on CUDA (or CPU for a smoke run).

    python bench/gpu_pipeline.py                      # CUDA: BERT-base-size and default model
    python bench/gpu_pipeline.py --device cpu --quick # correctness on a machine without a GPU

For each model it measures, on real MTSamples notes:

1. ``model_only``: pre-tokenised batches over the whole corpus at each token budget (the
   device ceiling): length-sorted, or in corpus order when the model packs several sentences
   per row (``--no-packing``: one padded row per sentence, to compare);
2. ``host_only``: the in-process pipeline with a scorer that answers instantly (the ceiling of
   everything around the model: JSON parse, segmentation, tokenisation, batching, rendering);
3. ``pipeline``: source -> Preparer -> InferenceLoop -> sink with the real model at the best
   budget: sentences/s, batch composition (sentences and padded tokens per batch, padding
   ratio), model-busy share, device utilisation (sampled) and memory.

Writes ``bench/results/gpu_pipeline_<device>[-<tag>].json``; bench/README.md explains it and
docs/PERFORMANCE.md (GPU) holds the H100 numbers (target: >= 20,000 sentences/s for the
BERT-base-size model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # Rust tokenizer on every core
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
import torch

from bench.corpus import MAX_SENTENCE_TOKENS, load_corpus
from bench.device import DeviceMonitor
from bench.host_scaling import run_host
from bench.inprocess import BatchLog, NullScorer, run_inprocess
from bench.modelonly import BatchOrder, run_batches, sweep
from bench.models import resolve_model
from worker.batching import BatchingSettings
from worker.events import SourceRef
from worker.model.classifier import SequenceClassifier
from worker.notes import Record
from worker.prepare import Preparer


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 where supported), float16...")
    parser.add_argument("--models", default="bert-base,default", help="comma-separated")
    parser.add_argument("--notes", type=int, help="notes per pass (default 2000, quick 12)")
    parser.add_argument("--budgets", help="token budgets to sweep (default 4096..65536)")
    parser.add_argument("--max-batch-sentences", type=int, default=4096)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--chunk-notes", type=int, default=64, help="notes per prepare() call")
    parser.add_argument(
        "--no-packing", action="store_true", help="one padded row per sentence (compare)"
    )
    parser.add_argument(
        "--lanes",
        type=int,
        help="batches launched at once from their own threads (default: the model's own, 1 on "
        "CUDA); 2 lets one batch's host work overlap the other's kernels",
    )
    parser.add_argument("--tag", default="", help="added to the results file name")
    parser.add_argument(
        "--check-notes",
        type=int,
        default=200,
        help="notes whose pipeline scores are compared with scoring each note alone",
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        help="the interpreter's thread switch interval (sys.setswitchinterval; default 5 ms)",
    )
    parser.add_argument(
        "--host-processes",
        default="2,4",
        help="host-process counts for the host_processes passes (comma-separated; '' for none)",
    )
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    return parser.parse_args()


def _events(notes: int) -> tuple[str, list[bytes]]:
    """``notes`` MTSamples events, cycling through the corpus when more are asked for."""
    from worker.demo.notes import demo_notes

    source, records = demo_notes(None)
    events = [
        orjson.dumps({**records[i % len(records)], "note_id": f"g-{i}"}) for i in range(notes)
    ]
    return source, events


def measure_model(
    spec: str, args: argparse.Namespace, events: list[bytes], budgets: tuple[int, ...]
) -> dict[str, Any]:
    name, checkpoint = resolve_model(spec)
    model = SequenceClassifier.load(
        checkpoint, device=args.device, dtype=args.dtype, packing=not args.no_packing
    )
    if args.lanes:
        model.concurrency = args.lanes
    corpus = load_corpus(model, notes=min(len(events), 6 if args.quick else 400), tag=spec)
    rows = corpus.rows
    # A process's first passes pay for kernel selection and allocator growth: one unmeasured.
    order: BatchOrder = "corpus" if model.packs else "sorted"
    run_batches(
        model.predict_ids,
        rows,
        max(budgets),
        concurrency=model.concurrency,
        max_batch_sentences=args.max_batch_sentences,
        order=order,
    )
    points, best = sweep(
        model.predict_ids,
        rows,
        budgets,
        pad_multiple=model.pad_multiple,
        concurrency=model.concurrency,
        max_batch_sentences=args.max_batch_sentences,
        order=order,
    )
    settings = BatchingSettings(
        token_budget=best,
        max_batch_sentences=args.max_batch_sentences,
        max_wait_s=args.max_wait_ms / 1000,
        pad_multiple=model.pad_multiple,
        wait_when_idle=model.batch_limits.wait_when_idle,  # as the worker sets it per device
    )
    host = run_inprocess(model, NullScorer(model), events, settings, chunk_notes=args.chunk_notes)
    run_inprocess(model, model, events[: min(len(events), 16)], settings)  # warm-up
    monitor = DeviceMonitor(model.info.device)
    with monitor:
        pipeline = run_inprocess(
            model, model, events, settings, chunk_notes=args.chunk_notes, keep_scores=True
        )
    check = compare_with_notes_alone(model, events[: args.check_notes], pipeline.pop("note_scores"))
    model_best = max(point["sentences_per_s"] for point in points)
    hosts = [
        measure_host_processes(
            model,
            events,
            int(count),
            settings=settings,
            model_best=model_best,
            check_notes=args.check_notes,
        )
        for count in args.host_processes.split(",")
        if count.strip()
    ]
    return {
        "model": name,
        "checkpoint": str(checkpoint),
        "info": {"device": model.info.device, "dtype": model.info.dtype},
        "parameters_m": _parameters(model),
        "corpus_for_model_only": corpus.describe(),
        "model_only": {"sweep": points, "best_budget": best},
        "host_only": host,
        "pipeline": {**pipeline, "device": monitor.summary()},
        "pipeline_vs_notes_alone": check,
        "host_processes": hosts,
        "settings": {
            "token_budget": best,
            "max_batch_sentences": args.max_batch_sentences,
            "max_wait_ms": args.max_wait_ms,
            "pad_multiple": model.pad_multiple,
            "chunk_notes": args.chunk_notes,
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
            "torch_threads": torch.get_num_threads(),
            "concurrent_batches": model.concurrency,
            "packs": model.packs,
            "switch_interval_s": sys.getswitchinterval(),
        },
    }


def measure_host_processes(
    model: SequenceClassifier,
    events: list[bytes],
    processes: int,
    *,
    settings: BatchingSettings,
    model_best: float,
    check_notes: int,
) -> dict[str, Any]:
    """The worker's host-process path (:mod:`worker.host_pool`) with ``processes`` host
    processes: host-only (instant scorer) and with the model, its share of the model-only best,
    device busy share, and its scores against scoring each note alone."""
    overrides = {
        "token_budget": settings.token_budget,
        "max_batch_sentences": settings.max_batch_sentences,
        "max_wait_ms": settings.max_wait_s * 1000,
    }
    host = run_host(NullScorer(model), events, processes=processes, overrides=overrides)
    log = BatchLog()
    monitor = DeviceMonitor(model.info.device)
    with monitor:
        pipeline = run_host(
            model, events, processes=processes, overrides=overrides, observer=log, keep_outputs=True
        )
    scores = [_output_scores(outs) for outs in pipeline.pop("outputs")[:check_notes]]
    rate = pipeline["sentences_per_s"]
    return {
        "host_processes": processes,
        "host_only": host,
        "pipeline": {**pipeline, "batches": log.describe(pipeline["seconds"])},
        "device": monitor.summary(),
        "pipeline_over_model_only": round(rate / model_best, 3) if model_best else None,
        "pipeline_vs_notes_alone": compare_with_notes_alone(model, events[:check_notes], scores),
    }


def _output_scores(outs: list[tuple[str, str | None, bytes | None]]) -> list[float] | None:
    """The sentence scores of a record's one output (rounded to 6 decimals, as written)."""
    if len(outs) != 1 or outs[0][0] != "output" or outs[0][2] is None:
        return None
    return [entry["score"] for entry in orjson.loads(outs[0][2])["biomarker"]["sentences"]]


def compare_with_notes_alone(
    model: SequenceClassifier, events: list[bytes], scores: list[list[float] | None]
) -> dict[str, Any]:
    """The pipeline's probabilities (concurrent lanes, packed batches of many notes) against
    scoring each note alone in one call: largest difference and label agreement at 0.5."""
    preparer = Preparer(
        encoder=model, max_note_chars=1_000_000, max_sentence_tokens=MAX_SENTENCE_TOKENS
    )
    largest, agree, total = 0.0, 0, 0
    for value, got in zip(events, scores, strict=False):
        notes = preparer.prepare(
            [Record(source=SourceRef(None, None, None, None), key=None, value=value)]
        )
        jobs = [job for note in notes for job in note.jobs]
        if got is None or not jobs:
            continue
        alone = model.predict_ids([job.ids for job in jobs])
        for a, b in zip(alone, got, strict=True):
            largest = max(largest, abs(a - b))
            agree += (a >= 0.5) == (b >= 0.5)
            total += 1
    return {
        "notes": len(events),
        "sentences": total,
        "max_abs_diff": round(largest, 6),
        "label_agreement": round(agree / total, 6) if total else None,
    }


def _parameters(model: SequenceClassifier) -> float | None:
    inner = getattr(model, "model", None)
    if inner is None:
        return None
    count: int = sum(p.numel() for p in inner.parameters())
    return round(count / 1e6, 1)


def main() -> int:
    args = _arguments()
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available; use --device cpu --quick for a smoke run", file=sys.stderr)
        return 2
    notes = args.notes or (12 if args.quick else 2000)
    default_budgets = (1024,) if args.quick else (4096, 8192, 16384, 32768, 65536)
    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else default_budgets
    source, events = _events(notes)
    started = time.time()
    results: dict[str, Any] = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "load_at_start": os.getloadavg(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "notes_source": source,
        "notes": notes,
        "argv": sys.argv[1:],
        "models": [measure_model(spec, args, events, budgets) for spec in args.models.split(",")],
    }
    results["load_at_end"] = os.getloadavg()
    results["wall_s"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    suffix = f"-{args.tag}" if args.tag else ""
    path = out / f"gpu_pipeline_{kind}{suffix}.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    for entry in results["models"]:
        line = entry["pipeline"]
        print(
            f"{entry['model']}: pipeline {line['sentences_per_s']} sentences/s, "
            f"host-only {entry['host_only']['sentences_per_s']}, model-only best "
            f"{max(p['sentences_per_s'] for p in entry['model_only']['sweep'])} "
            f"@ {entry['settings']['token_budget']} tokens; padding "
            f"{line['batches'].get('padding_ratio')}; device {line['device']}; vs notes "
            f"alone {entry['pipeline_vs_notes_alone']}"
        )
        for hosts in entry["host_processes"]:
            print(
                f"  {hosts['host_processes']} host processes: pipeline "
                f"{hosts['pipeline']['sentences_per_s']} sentences/s "
                f"({hosts['pipeline_over_model_only']} of model-only), host-only "
                f"{hosts['host_only']['sentences_per_s']}; device {hosts['device']}; vs notes "
                f"alone {hosts['pipeline_vs_notes_alone']}"
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
