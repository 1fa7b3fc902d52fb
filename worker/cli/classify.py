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
from itertools import islice
from typing import IO, TYPE_CHECKING

import orjson

from worker.batching import BatchingSettings, batching_for
from worker.cli.options import add_settings_options, settings_from_args
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.events import NoteEvent, SourceRef
from worker.logs import configure_logging
from worker.notes import Note, Record, SentenceJob
from worker.prepare import Preparer
from worker.render import outgoing
from worker.scoring import score_jobs, score_notes

if TYPE_CHECKING:
    from worker.model.classifier import SequenceClassifier

_CHUNK = 256


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
    from worker.loading import load_classifier, provenance_for

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
            records = [
                Record(source=SourceRef(None, None, line - 1, None), key=None, value=value)
                for line, value in chunk
            ]
            notes = preparer.prepare(records)
            score_notes(
                model, notes, batching, on_complete=lambda note: note.record.note_scored(note)
            )
            for record in records:
                failure = record.failure
                if failure is not None:
                    line = (record.source.offset or 0) + 1
                    sys.stderr.write(f"{name}: line {line}: {failure.reason}: {failure.message}\n")
                    continue
                for output in outgoing(record, provenance=provenance, include_text=include_text):
                    out.write((output.value or b"") + b"\n")
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
        notes = [_sentence_note() for _ in texts]
        jobs = [
            SentenceJob(note, 0, item.ids)
            for note, item in zip(notes, model.encode(texts), strict=True)
        ]
        score_jobs(model, jobs, batching)
        for row_id, note in zip(ids, notes, strict=True):
            if note.error is not None:
                raise FatalError(f"sentence {row_id!r}: {note.error}")
            score = note.scores[0]
            label = int(score >= settings.threshold)
            out.write(orjson.dumps({"id": row_id, "label": label, "score": round(score, 6)}))
            out.write(b"\n")
    out.flush()
    return 0


def _sentence_note() -> Note:
    """A one-sentence note outside any record stream (sentence mode)."""
    note = Note(
        record=Record(source=SourceRef(None, None, None, None), key=None, value=None),
        event=NoteEvent({}),
    )
    note.expect(1)
    return note
