"""Where the demo and benchmarks get notes: the public MTSamples corpus when present, else a
small synthetic sample bundled with the package."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import orjson

MTSAMPLES = Path("mtsamples") / "mtsamples_notes.jsonl"


def data_dir() -> Path | None:
    """``$BIOMARKER_DATA_DIR``, else a ``shared/data`` folder next to the checkout, if present."""
    candidates = [os.environ.get("BIOMARKER_DATA_DIR")]
    here = Path(__file__).resolve()
    candidates += [str(parent / "shared" / "data") for parent in here.parents[1:4]]
    candidates.append(str(Path.cwd().parent / "shared" / "data"))
    for candidate in candidates:
        if candidate and (Path(candidate) / MTSAMPLES).is_file():
            return Path(candidate)
    return None


def bundled_notes() -> list[dict[str, Any]]:
    raw = importlib.resources.files("worker.demo").joinpath("sample_notes.jsonl").read_bytes()
    return [orjson.loads(line) for line in raw.splitlines() if line.strip()]


def mtsamples_notes(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """MTSamples records mapped onto the input contract (note text plus pass-through metadata)."""
    notes: list[dict[str, Any]] = []
    with path.open("rb") as handle:
        for line in handle:
            record = orjson.loads(line)
            notes.append(
                {
                    "note_id": record["note_id"],
                    "text": record["text"],
                    "note_type": (record.get("medical_specialties") or [None])[0],
                    "metadata": {"source": "mtsamples", "sample_name": record.get("sample_name")},
                }
            )
            if limit is not None and len(notes) >= limit:
                break
    return notes


def demo_notes(limit: int | None = None) -> tuple[str, list[dict[str, Any]]]:
    """(source description, notes) for the demo and benchmarks."""
    root = data_dir()
    if root is not None:
        return f"MTSamples ({root / MTSAMPLES})", mtsamples_notes(root / MTSAMPLES, limit)
    notes = bundled_notes()
    return "bundled synthetic sample", notes[:limit] if limit else notes
