"""Deterministic document-level splits and the note sentence splitter."""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["doc_split", "note_sentences", "splitter_digest", "splitter_name"]

Splitter = Callable[[str], list[tuple[int, int]]]

_FALLBACK_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(])|\n\s*\n|\n(?=\s*(?:\d+\.|[-*])\s)")


def _fallback_split(text: str) -> list[tuple[int, int]]:
    """Blank lines, list items and ``[.!?]`` before an upper-case word end a sentence."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in [*_FALLBACK_BOUNDARY.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        stripped = piece.strip()
        if stripped:
            lead = start + piece.index(stripped[0])
            spans.append((lead, lead + len(stripped)))
        start = match.end() if match else len(text)
    return spans


def _project_splitter() -> tuple[str, Splitter]:
    try:
        from worker.segmentation import split_sentences
    except ImportError:
        return "fallback-regex", _fallback_split
    return "worker.segmentation", split_sentences


def splitter_name() -> str:
    """Which sentence splitter :func:`note_sentences` uses (recorded in the dataset manifest)."""
    return _project_splitter()[0]


def splitter_digest() -> str:
    """sha256 of the splitter's source file (the dataset is reproducible for this digest)."""
    name, split = _project_splitter()
    source = inspect.getsourcefile(split) if name != "fallback-regex" else __file__
    return hashlib.sha256(Path(source or __file__).read_bytes()).hexdigest()


def note_sentences(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, sentence)`` for each sentence of a note, in order."""
    split = _project_splitter()[1]
    return [(start, end, text[start:end]) for start, end in split(text)]


def doc_split(doc_id: str, *, seed: int, dev: float, test: float) -> str:
    """``"train"``, ``"dev"`` or ``"test"`` for a document, from a seeded hash of its id."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction < test:
        return "test"
    if fraction < test + dev:
        return "dev"
    return "train"
