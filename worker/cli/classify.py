"""``biomarker-worker classify``: notes in (files or stdin), enriched JSONL out, no Kafka.

Note mode (default): each line is a note event; each output line is the enriched event, exactly
as the Kafka worker would publish it (source topic ``null``, offset = line number). Lines that
cannot be processed are reported on stderr as ``line N: <reason>: <message>`` and skipped.

With ``--format`` hl7v2, fhir, cda, mapping or auto, each PATH is one message (``-``: one per
stdin line) and each note it holds becomes one output line, as the worker would publish it;
dead letters and skipped parts are reported on stderr.

Sentence mode (``--sentences``): each line is ``{"id", "text"}`` and is one sentence (no
splitting); each output line is ``{"id", "label", "score"}`` - the stable interface for
evaluation tools.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import IO, TYPE_CHECKING, TypeVar

import orjson

from worker.batching import BatchingSettings, batching_for
from worker.cli.messages import add_format_options, read_messages
from worker.cli.options import add_settings_options, settings_from_args
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.events import NoteEvent, Provenance, SourceRef, written_score
from worker.inputs.decoding import decoders_for
from worker.lexicon import first_label
from worker.logs import configure_logging
from worker.notes import Note, Record, SentenceJob
from worker.prepare import Preparer
from worker.render import outgoing
from worker.scoring import score_jobs, score_notes

if TYPE_CHECKING:
    from worker.model.classifier import SequenceClassifier

_CHUNK = 256
T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("classify", help="classify JSONL notes or sentences offline")
    parser.add_argument(
        "inputs",
        nargs="*",
        default=["-"],
        metavar="PATH",
        help="JSONL file (note format) or message file (other formats), or - for stdin",
    )
    parser.add_argument(
        "--sentences",
        action="store_true",
        help='each line {"id","text"} is one sentence; write {"id","label","score"} and "rule" '
        "when a lexicon rule labelled it",
    )
    parser.add_argument(
        "--include-text", action="store_true", help="add each sentence's text to note output"
    )
    add_format_options(parser, default="note")
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
    return _batched(numbered, _CHUNK)


def _batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(
        args,
        log_level=args.log_level or "warning",
        input_format=args.input_format,
        input_mapping=args.input_mapping,
    )
    first = settings.input_topics[0]
    decoder = decoders_for(settings)[first.topic]  # a bad mapping file: a usage error
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
    preparer = Preparer(
        encoder=model,
        max_note_chars=settings.max_note_chars,
        max_sentence_tokens=settings.max_sentence_tokens,
        decoders={"": decoder},
        lexicon_rules=settings.lexicon_rules,
    )
    run = _NoteRun(
        preparer=preparer,
        model=model,
        batching=batching,
        provenance=provenance_for(model, settings),
        include_text=args.include_text or settings.include_sentence_text,
        out=out,
    )
    if first.format != "note":
        for chunk in _batched(enumerate(read_messages(args.inputs)), _CHUNK):
            run.records(
                [
                    (f"{m.source_file}" + (f": line {m.line}" if m.line else ""), i, m.value)
                    for i, m in chunk
                ]
            )
        out.flush()
        return 0
    for path in args.inputs:
        with _open(path) as stream:
            if args.sentences:
                _classify_sentences(stream, out, model, batching, settings)
                continue
            name = "stdin" if path == "-" else path
            for lines in _chunks(stream):
                run.records(
                    [(f"{name}: line {line}", line - 1, value) for line, value in lines],
                    source=name,
                )
    out.flush()
    return 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _NoteRun:
    """Prepare, score and render records read from files; problems go to stderr."""

    preparer: Preparer
    model: SequenceClassifier
    batching: BatchingSettings
    provenance: Provenance
    include_text: bool
    out: IO[bytes]

    def records(self, items: list[tuple[str, int, bytes]], *, source: str | None = None) -> None:
        """Each item: where it was read (for messages), its offset, its value. ``source`` (a
        file's name) stands in for the topic, so notes of different files get different ids."""
        records = [
            Record(source=SourceRef(source, None, offset, None), key=None, value=value)
            for _, offset, value in items
        ]
        notes = self.preparer.prepare(records)
        score_notes(
            self.model, notes, self.batching, on_complete=lambda note: note.record.note_scored(note)
        )
        for (where, _, _), record in zip(items, records, strict=True):
            failure = record.failure
            if failure is not None:
                sys.stderr.write(f"{where}: {failure.reason}: {failure.message}\n")
                continue
            for skip in record.skipped:
                sys.stderr.write(f"{where}: skipped: {skip.reason}: {skip.detail}\n")
            for output in outgoing(
                record, provenance=self.provenance, include_text=self.include_text
            ):
                self.out.write((output.value or b"") + b"\n")


def _classify_sentences(
    stream: IO[bytes],
    out: IO[bytes],
    model: SequenceClassifier,
    batching: BatchingSettings,
    settings: WorkerSettings,
) -> None:
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
        for row_id, note, text in zip(ids, notes, texts, strict=True):
            if note.error is not None:
                raise FatalError(f"sentence {row_id!r}: {note.error}")
            out.write(orjson.dumps(_sentence_row(row_id, note.scores[0], text, settings)))
            out.write(b"\n")
    out.flush()


def _sentence_row(
    row_id: object, score: float, text: str, settings: WorkerSettings
) -> dict[str, object]:
    """One sentence's answer, labelled as the worker labels a sentence of a note: its written
    score reaches the threshold, or a lexicon rule (when they are on) names a biomarker."""
    rule = first_label(text) if settings.lexicon_rules else None
    written = written_score(score)
    row: dict[str, object] = {
        "id": row_id,
        "label": 1 if written >= settings.threshold or rule is not None else 0,
        "score": written,
    }
    if rule is not None:
        row["rule"] = rule
    return row


def _sentence_note() -> Note:
    """A one-sentence note outside any record stream (sentence mode)."""
    note = Note(
        record=Record(source=SourceRef(None, None, None, None), key=None, value=None),
        event=NoteEvent({}),
    )
    note.expect(1)
    return note
