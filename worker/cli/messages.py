"""Reading input messages from files for the offline commands (``extract``, ``classify``).

Each PATH is one message (an HL7 v2 message or batch, a FHIR resource or bundle, a C-CDA
document, one JSON event); ``-`` reads one message per line from stdin (JSON formats, e.g. FHIR
NDJSON).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from worker.errors import UsageError
from worker.inputs import FORMATS


@dataclass(frozen=True, slots=True)
class Message:
    """One message and where it was read: a file, or ``stdin`` with its line number."""

    source_file: str
    line: int | None
    value: bytes


def add_format_options(parser: argparse.ArgumentParser, *, default: str) -> None:
    parser.add_argument(
        "--format",
        dest="input_format",
        choices=FORMATS,
        default=None,
        help=f"input format (default: {default}); auto tells HL7 v2, FHIR, C-CDA and note apart",
    )
    parser.add_argument(
        "--mapping", dest="input_mapping", metavar="FILE", help="mapping file of --format mapping"
    )


def read_messages(paths: Sequence[str]) -> Iterator[Message]:
    """Every message of ``paths`` in order; an unreadable file is a one-line usage error."""
    for path in paths:
        if path == "-":
            for number, line in enumerate(sys.stdin.buffer, start=1):
                if line.strip():
                    yield Message("-", number, line)
            continue
        try:
            yield Message(path, None, Path(path).read_bytes())
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None
