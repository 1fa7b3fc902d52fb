"""Labelled-sentence JSONL: ``{"text": str, "label": 0|1, "source"?: str, "id"?: str}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from worker.errors import UsageError

__all__ = ["LabelledRow", "read_labelled"]


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """One labelled sentence read from a JSONL file."""

    text: str
    label: int
    source: str | None


def read_labelled(path: Path) -> list[LabelledRow]:
    """Read and validate a labelled JSONL file; bad input raises :class:`UsageError`."""
    if not path.is_file():
        raise UsageError(f"{path} is not a file")
    rows: list[LabelledRow] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(data, dict):
                raise UsageError(f"{path}:{number}: expected a JSON object")
            text, label = data.get("text"), data.get("label")
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"{path}:{number}: 'text' must be a non-empty string")
            if label not in (0, 1) or isinstance(label, bool):
                raise UsageError(f"{path}:{number}: 'label' must be 0 or 1")
            source = data.get("source")
            rows.append(LabelledRow(text, int(label), source if isinstance(source, str) else None))
    if not rows:
        raise UsageError(f"{path} has no rows")
    return rows
