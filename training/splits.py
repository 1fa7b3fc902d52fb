"""Deterministic document-level splits and note sentences (the worker's own segmenter)."""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

from worker.segmentation import split_sentences

__all__ = ["doc_split", "note_sentences", "splitter_digest", "splitter_name"]


def splitter_name() -> str:
    """Which sentence splitter :func:`note_sentences` uses (recorded in the dataset manifest)."""
    return str(split_sentences.__module__)


def splitter_digest() -> str:
    """sha256 of the splitter's source file (the dataset is reproducible for this digest)."""
    source = inspect.getsourcefile(split_sentences)
    if source is None:
        return "unknown"
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def note_sentences(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, sentence)`` for each sentence of a note, in order."""
    return [(start, end, text[start:end]) for start, end in split_sentences(text)]


def doc_split(doc_id: str, *, seed: int, dev: float, test: float) -> str:
    """``"train"``, ``"dev"`` or ``"test"`` for a document, from a seeded hash of its id."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    if fraction < test:
        return "test"
    if fraction < test + dev:
        return "dev"
    return "train"
