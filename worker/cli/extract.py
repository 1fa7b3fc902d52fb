"""``biomarker-worker extract``: the notes an input message holds, as JSON lines (no model).

One line per note found (``source_file``, note id, version, text, origin and the carried
fields), per retraction, per skipped part (``skipped``: reason and detail) and per unreadable
message (``dead_letter``: reason and message, as the worker would dead-letter it). Never a
traceback: a bug in an extractor is reported as the dead letter ``preparation_failed``, as the
worker reports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from worker.cli.messages import Message, add_format_options, read_messages
from worker.errors import InvalidEvent, UsageError
from worker.inputs import extractor_for
from worker.inputs.extracted import Extraction, Extractor, text_sha256
from worker.logs import where_raised


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "extract", help="print the notes found in HL7 v2, FHIR, C-CDA or mapped JSON messages"
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="a message file, or - (stdin)")
    add_format_options(parser, default="auto")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    name = args.input_format or "auto"
    mapping = Path(args.input_mapping) if args.input_mapping else None
    if (name == "mapping") != (mapping is not None):
        raise UsageError("--mapping FILE is given exactly when --format is mapping")
    extract = extractor_for(name, mapping)
    out = sys.stdout.buffer
    for message in read_messages(args.paths):
        _write(out, message, extract)
    out.flush()
    return 0


def _write(out: IO[bytes], message: Message, extract: Extractor) -> None:
    where: dict[str, Any] = {"source_file": message.source_file}
    if message.line is not None:
        where["line"] = message.line
    try:
        found = extract(message.value)
    except InvalidEvent as exc:
        _line(out, where | {"dead_letter": {"reason": exc.reason, "message": exc.message}})
        return
    except Exception as exc:  # a bug, reported as the worker would dead-letter it
        problem = f"{type(exc).__name__} at {where_raised(exc)}"
        _line(out, where | {"dead_letter": {"reason": "preparation_failed", "message": problem}})
        return
    for line in lines_of(found):
        _line(out, where | line)


def lines_of(found: Extraction) -> list[dict[str, Any]]:
    """The JSON lines of one message's extraction: retractions, notes, then skips."""
    lines: list[dict[str, Any]] = []
    for retraction in found.retractions:
        lines.append({"retraction": dataclasses.asdict(retraction)})
    for note in found.notes:
        fields = dataclasses.asdict(note)
        fields["text_sha256"] = text_sha256(note.text)
        lines.append(fields)
    for skip in found.skipped:
        lines.append({"skipped": {"reason": skip.reason, "detail": skip.detail}})
    return lines


def _line(out: IO[bytes], row: dict[str, Any]) -> None:
    out.write(orjson.dumps(row) + b"\n")
