"""The faust-streaming peer: an agent over ``stream.take(max, within)`` with the same
segmentation, batching and model code, run as its own process by the benchmark.

``python -m bench.faust_peer --bootstrap HOST:PORT --input T --output T --group G
--model DIR --notes N`` consumes until ``N`` notes were produced, then stops itself (SIGTERM to
its own process, which faust handles as a clean shutdown). Each taken batch is prepared and
scored in a thread (``run_in_executor``) so that aiokafka keeps fetching meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from signal import SIGTERM
from typing import Any

import orjson

from bench.corpus import MAX_SENTENCE_TOKENS
from worker.batching import BatchingSettings
from worker.events import Provenance, SourceRef
from worker.notes import Record
from worker.prepare import Preparer
from worker.render import render_note
from worker.scoring import score_notes
from worker.segmentation import SEGMENTER_VERSION


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faust_peer")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--notes", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--take", type=int, default=64, help="stream.take max notes")
    parser.add_argument("--within", type=float, default=0.05, help="stream.take within (s)")
    parser.add_argument("--token-budget", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--report", help="write {started_ms} here: when partitions arrived")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    import faust

    from worker.model.classifier import SequenceClassifier

    model = SequenceClassifier.load(
        args.model, device="cpu", dtype=args.dtype, threads=args.threads, backend=args.backend
    )
    preparer = Preparer(
        encoder=model, max_note_chars=1_000_000, max_sentence_tokens=MAX_SENTENCE_TOKENS
    )
    batching = BatchingSettings(token_budget=args.token_budget, max_wait_s=0)
    provenance = Provenance(
        model_name=model.info.name,
        model_version=model.info.version,
        model_sha256=model.info.sha256,
        threshold=0.5,
        segmenter_version=SEGMENTER_VERSION,
    )
    source = SourceRef(args.input, None, None, None)

    def score(values: list[bytes]) -> list[tuple[bytes, bytes]]:
        records = [Record(source=source, key=None, value=value) for value in values]
        notes = preparer.prepare(records)
        score_notes(model, notes, batching)
        return [
            (
                str(note.event.fields["note_id"]).encode(),
                render_note(note, provenance=provenance, include_text=False),
            )
            for note in notes
            if note.error is None
        ]

    datadir = tempfile.mkdtemp(prefix="faust-peer-")  # not the working directory
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        topic_partitions=args.partitions,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
    )
    notes_in = app.topic(args.input, value_serializer="raw", key_serializer="raw")
    notes_out = app.topic(args.output, value_serializer="raw", key_serializer="raw")
    done = 0
    started: list[int] = []

    @app.on_rebalance_complete.connect
    async def rebalanced(_sender: Any, /, *_args: Any, signal: Any, **_kw: Any) -> None:
        if not started:
            started.append(int(time.time() * 1000))

    @app.agent(notes_in)
    async def classify(stream: Any) -> AsyncIterator[None]:
        nonlocal done
        loop = asyncio.get_running_loop()
        async for values in stream.take(args.take, within=args.within):
            for key, value in await loop.run_in_executor(None, score, list(values)):
                await notes_out.send(key=key, value=value)
            done += len(values)
            if done >= args.notes:
                await app.producer.flush()
                if args.report:
                    Path(args.report).write_bytes(orjson.dumps({"started_ms": started[0]}))
                os.kill(os.getpid(), SIGTERM)
            yield None

    logging.getLogger("faust").setLevel(logging.WARNING)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
