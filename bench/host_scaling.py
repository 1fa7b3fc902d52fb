"""Host work in 1 and in N processes, without the broker: ``python -m bench.host_scaling``.

The worker's own preparation and rendering (:func:`~worker.completions.worker_threads`, the
renderers of :mod:`worker.host_pool`) and its inference loop, driven as the polling loop drives
them: records go in in chunks, prepared records and scored notes come back through one queue,
records are rendered in the order they were read and counted as "produced". The model is a
:class:`~bench.inprocess.NullScorer` (the host-only pass: the ceiling of everything around the
model) unless one is given.

Each round runs three passes: ``host_processes`` = 1 (the worker's threads: the default on CPU),
one spawned host process (the pool's own baseline) and N host processes. Two ratios are taken
per round and their medians reported: N host processes against the worker's threads
(``ratio``: what a deployment gains over the default) and against one host process
(``pool_ratio``: how the pool scales with processes), beside the machine's own ceiling for two
processes measured in the same round (two CPU-bound Python loops at once against one alone:
shared or throttled cores read below 2). Each pass also reports the CPU seconds of the worker
process and of the host processes over its timed part. Pool start-up
(spawning, imports, tokenizer) is outside the timed part, as it is outside a worker's steady
state. The tokenizer runs on one thread per process (``TOKENIZERS_PARALLELISM=false``, as in
the other CPU benchmarks; the worker's host processes always do), so the comparison is of
processes, not of the tokenizer's own thread pool. Writes ``bench/results/host_scaling.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import queue
import re
import statistics
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import MAX_SENTENCE_TOKENS
from bench.inprocess import NullScorer
from bench.machine import machine_info
from worker.completions import take_completed, worker_threads
from worker.config import WorkerSettings
from worker.events import Provenance, SourceRef
from worker.heap import startup_objects_frozen
from worker.host_pool import HostRenderer, InlineRenderer, Renderer, host_pool_for
from worker.metrics import Metrics
from worker.model.classifier import SequenceClassifier
from worker.notes import Note, Record
from worker.pipeline import Model
from worker.render import Outgoing
from worker.scoring import BatchObserver
from worker.segmentation import SEGMENTER_VERSION

_PROCESSED_AT = re.compile(rb',?"processed_at":\d+')
PROVENANCE = Provenance("bench", "0", "0" * 64, 0.5, SEGMENTER_VERSION)


def run_host(
    model: Model,
    events: Sequence[bytes],
    *,
    processes: int,
    pooled: bool | None = None,
    chunk: int = 64,
    max_inflight: int = 2_000,
    keep_outputs: bool = False,
    max_note_chars: int = 1_000_000,
    max_note_sentences: int | None = None,
    overrides: dict[str, Any] | None = None,
    observer: BatchObserver | None = None,
) -> dict[str, Any]:
    """Push ``events`` through preparation, scoring and rendering in ``processes`` host
    processes (``pooled``: by default for more than one) or in the worker's own threads (by
    default for one). With ``keep_outputs`` the result holds, per record in order, its outputs'
    destination, dead-letter reason and value (``processed_at`` taken out). ``overrides``:
    other worker settings (batching); ``observer`` sees every batch. CPU seconds of the timed
    part are reported for the worker process and the host processes."""
    settings = WorkerSettings(
        host_processes=processes,
        max_sentence_tokens=MAX_SENTENCE_TOKENS,
        max_note_chars=max_note_chars,
        **{
            "score_cache_size": 0,
            **(overrides or {}),
        },  # every sentence's host work, no repeats skipped
    )
    if pooled is None:
        pooled = processes > 1
    pool = host_pool_for(
        settings,
        device=model.device_type,
        encoder=model.encoder_spec(),
        smallest_pool=1 if pooled else processes + 1,
    )
    completed: queue.SimpleQueue[Record | Note] = queue.SimpleQueue()
    metrics = Metrics()
    preparation, inference = worker_threads(
        settings, model, metrics, completed.put, pool=pool, observer=observer
    )
    preparation.limit_sentences(max_note_sentences)
    renderer: Renderer = (
        HostRenderer(pool=pool, provenance=PROVENANCE, include_text=False)
        if pool is not None
        else InlineRenderer(provenance=PROVENANCE, include_text=False)
    )
    records = [
        Record(source=SourceRef("bench", 0, offset, None), key=None, value=value)
        for offset, value in enumerate(events)
    ]
    produced: list[list[Outgoing]] = []
    inference.start()
    preparation.start()
    try:
        if pool is not None and not pool.wait_ready():
            raise RuntimeError(f"host processes did not start: {pool.failure!r}")
        with startup_objects_frozen():
            started = time.perf_counter()
            cpu_started = time.process_time(), _children_cpu()
            waiting: deque[Record] = deque()
            fed = 0
            while len(produced) < len(records):
                if not (preparation.alive() and inference.alive()):
                    raise RuntimeError(f"host work failed: {preparation.failure!r}")
                moved = False
                if fed < len(records) and len(waiting) < max_inflight:
                    batch = records[fed : fed + chunk]
                    fed += len(batch)
                    waiting.extend(batch)
                    preparation.submit(batch)
                    moved = True
                take_completed(completed, metrics, threshold=PROVENANCE.threshold)
                ready = []
                while waiting and waiting[0].ready:  # as the tracker: in offset order
                    ready.append(waiting.popleft())
                renderer.submit(ready)
                taken = [outs for _, outs in renderer.take()]
                produced += taken
                if not (moved or taken):
                    time.sleep(0.001)  # as the worker's busy poll, which blocks 5 ms
            elapsed = time.perf_counter() - started
            cpu = (time.process_time() - cpu_started[0], _children_cpu() - cpu_started[1])
    finally:
        preparation.stop()
        inference.stop()
    return (
        _report(
            processes, pool is not None, produced, int(metrics.sentences_in._value.get()), elapsed
        )
        | {"worker_cpu_s": round(cpu[0], 2), "host_processes_cpu_s": round(cpu[1], 2)}
        | (
            {"outputs": [[_described(out) for out in outs] for outs in produced]}
            if keep_outputs
            else {}
        )
    )


def _report(
    processes: int, pooled: bool, produced: list[list[Outgoing]], sentences: int, elapsed: float
) -> dict[str, Any]:
    return {
        "host_processes": processes,
        "pooled": pooled,
        "notes": len(produced),
        "sentences": sentences,
        "seconds": round(elapsed, 3),
        "notes_per_s": round(len(produced) / elapsed, 1),
        "sentences_per_s": round(sentences / elapsed, 1),
        "output_bytes": sum(len(out.value or b"") for outs in produced for out in outs),
    }


def _children_cpu() -> float:
    """CPU seconds so far of this process's live child processes (the host processes)."""
    import multiprocessing

    total = 0.0
    for child in multiprocessing.active_children():
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # not Linux, or just ended
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _described(out: Outgoing) -> tuple[str, str | None, bytes | None]:
    """Destination, dead-letter reason and value (without its processing time)."""
    value = out.value
    if out.destination == "output" and value is not None:
        value = _PROCESSED_AT.sub(b"", value)
    return out.destination, out.failure.reason if out.failure else None, value


def _spin(loops: int) -> None:
    total = 0
    for value in range(loops):
        total += value


def machine_ceiling(loops: int = 10_000_000) -> float:
    """How much faster two CPU-bound Python processes finish than one does twice: this
    machine's own ceiling for any 1 -> 2 process scaling (2.0 on two idle, dedicated cores)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")

    def timed(processes: int) -> float:
        workers = [context.Process(target=_spin, args=(loops,)) for _ in range(processes)]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return time.perf_counter() - started

    timed(1)  # warm-up: the first spawn imports more
    return round(2 * timed(1) / timed(2), 3)


def _events(notes: int) -> tuple[str, list[bytes]]:
    from worker.demo.notes import demo_notes

    source, found = demo_notes(None)
    return source, [
        orjson.dumps({**found[i % len(found)], "note_id": f"h-{i}"}) for i in range(notes)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--notes", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=2, help="host processes to compare")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--no-lexicon-rules",
        dest="lexicon_rules",
        action="store_false",
        help="leave the lexicon rules out of the host work (writes host_scaling_no_lexicon.json)",
    )
    args = parser.parse_args()
    overrides = {"lexicon_rules": args.lexicon_rules}
    from worker.model.default import default_model_dir

    model = SequenceClassifier.load(default_model_dir(), device="cpu")
    host = NullScorer(model)
    source, events = _events(args.notes)
    run_host(host, events[:60], processes=1, overrides=overrides)  # warm-up: imports, allocator
    rounds = []
    ceilings = []
    for _ in range(args.rounds):
        ceilings.append(machine_ceiling())
        one = run_host(host, events, processes=1, overrides=overrides)
        pooled_one = run_host(host, events, processes=1, pooled=True, overrides=overrides)
        many = run_host(host, events, processes=args.processes, overrides=overrides)
        rounds.append(
            {
                "one": one["sentences_per_s"],
                "one_host_process": pooled_one["sentences_per_s"],
                "many": many["sentences_per_s"],
                "ratio": round(many["sentences_per_s"] / one["sentences_per_s"], 3),
                "pool_ratio": round(many["sentences_per_s"] / pooled_one["sentences_per_s"], 3),
                "sentences": one["sentences"],
                "machine_ceiling": ceilings[-1],
                "cpu_s": {
                    name: {"worker": run["worker_cpu_s"], "hosts": run["host_processes_cpu_s"]}
                    for name, run in (
                        ("one", one),
                        ("one_host_process", pooled_one),
                        ("many", many),
                    )
                },
            }
        )
        print(orjson.dumps(rounds[-1]).decode(), flush=True)
    report = {
        "machine": machine_info(),
        "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM"),
        "corpus": source,
        "notes": args.notes,
        "host_processes": args.processes,
        "lexicon_rules": args.lexicon_rules,
        "rounds": rounds,
        "median_ratio": statistics.median(entry["ratio"] for entry in rounds),
        "median_pool_ratio": statistics.median(entry["pool_ratio"] for entry in rounds),
        "median_machine_ceiling": statistics.median(ceilings),
    }
    name = "host_scaling.json" if args.lexicon_rules else "host_scaling_no_lexicon.json"
    out = Path(args.out) / name
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(
        f"host-only, {args.processes} host processes against the worker's threads: median "
        f"{report['median_ratio']}; against one host process: {report['median_pool_ratio']} "
        f"(this machine's own 1 -> 2 process ceiling: {report['median_machine_ceiling']}) -> {out}"
    )


if __name__ == "__main__":
    main()
