"""``biomarker-worker classify``: JSONL in (file or stdin), enriched JSONL out, no Kafka.

Note mode (default): each line is a note event; each output line is the enriched event, exactly
as the Kafka worker would publish it (source topic ``null``, offset = line number). Lines that
cannot be processed are reported on stderr as ``line N: <reason>: <message>`` and skipped.

Sentence mode (``--sentences``): each line is ``{"id", "text"}`` and is one sentence (no
splitting); each output line is ``{"id", "label", "score"}`` - the stable interface for
evaluation tools.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import IO, TYPE_CHECKING

import orjson

from worker.batching import BatchingSettings, batching_for
from worker.cli.options import add_settings_options, settings_from_args
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.events import SourceRef
from worker.inference import NoteWork, SentenceJob, score_jobs
from worker.logs import configure_logging
from worker.processing import NoteSlot, Preparer, render

if TYPE_CHECKING:
    from worker.model.classifier import SequenceClassifier

_CHUNK = 256


@dataclass(slots=True, eq=False, kw_only=True)
class _LineNote(NoteSlot):
    line: int


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("classify", help="classify JSONL notes or sentences offline")
    parser.add_argument("input", nargs="?", default="-", help="JSONL file, or - for stdin")
    parser.add_argument(
        "--sentences",
        action="store_true",
        help='each line {"id","text"} is one sentence; write {"id","label","score"}',
    )
    parser.add_argument(
        "--include-text", action="store_true", help="add each sentence's text to note output"
    )
    add_settings_options(parser)
    parser.set_defaults(handler=handle)


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _chunks(stream: IO[bytes]) -> Iterator[list[tuple[int, bytes]]]:
    numbered = ((i + 1, line) for i, line in enumerate(stream) if line.strip())
    while chunk := list(islice(numbered, _CHUNK)):
        yield chunk


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, log_level=args.log_level or "warning")
    configure_logging(settings.log_level)
    from worker.model.loader import load_classifier, provenance_for

    try:
        model = load_classifier(settings)
    except FatalError as exc:
        raise UsageError(str(exc)) from exc
    batching = batching_for(
        model,
        token_budget=settings.token_budget,
        max_batch_sentences=settings.max_batch_sentences,
    )
    out = sys.stdout.buffer
    with _open(args.input) as stream:
        if args.sentences:
            return _classify_sentences(stream, out, model, batching, settings)
        preparer = Preparer(
            encoder=model,
            max_note_chars=settings.max_note_chars,
            max_sentence_tokens=settings.max_sentence_tokens,
        )
        provenance = provenance_for(model, settings)
        include_text = args.include_text or settings.include_sentence_text
        name = "stdin" if args.input == "-" else args.input
        for chunk in _chunks(stream):
            slots = [_LineNote(value=value, line=line) for line, value in chunk]
            score_jobs(model, preparer.prepare(slots), batching, on_complete=lambda _w: None)
            for slot in slots:
                failure = slot.failure
                if failure is not None:
                    sys.stderr.write(
                        f"{name}: line {slot.line}: {failure.reason}: {failure.message}\n"
                    )
                    continue
                source = SourceRef(None, None, slot.line - 1, None)
                out.write(
                    render(slot, source=source, provenance=provenance, include_text=include_text)
                    + b"\n"
                )
    out.flush()
    return 0


def _classify_sentences(
    stream: IO[bytes],
    out: IO[bytes],
    model: SequenceClassifier,
    batching: BatchingSettings,
    settings: WorkerSettings,
) -> int:
    for chunk in _chunks(stream):
        ids: list[object] = []
        texts: list[str] = []
        for line, raw in chunk:
            try:
                row = orjson.loads(raw)
                text = row["text"]
                if not isinstance(text, str):
                    raise TypeError
            except (orjson.JSONDecodeError, KeyError, TypeError):
                message = f"line {line}: expected a JSON object with a string 'text'"
                raise UsageError(message) from None
            ids.append(row.get("id", line))
            texts.append(text)
        works = [NoteWork.for_sentences(1) for _ in texts]
        jobs = [
            SentenceJob(work=work, index=0, ids=item.ids)
            for work, item in zip(works, model.encode(texts), strict=True)
        ]
        score_jobs(model, jobs, batching, on_complete=lambda _w: None)
        for row_id, work in zip(ids, works, strict=True):
            if work.error is not None:
                raise FatalError(f"sentence {row_id!r}: {work.error}")
            score = work.scores[0]
            label = int(score >= settings.threshold)
            out.write(orjson.dumps({"id": row_id, "label": label, "score": round(score, 6)}))
            out.write(b"\n")
    out.flush()
    return 0
