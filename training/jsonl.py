"""Labelled-sentence JSONL.

Each line is ``{"text": str, "label": 0|1}`` with optional fields: ``"source"`` or ``"domain"``
(the corpus or domain; ``source`` wins when both are given), ``"id"`` (the sentence id),
``"family"`` (the error family, the reason tag of the gold label, e.g. ``lab_value``) and
``"unsure"`` (the annotator was not sure of the label). Other fields are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.errors import UsageError

__all__ = ["LabelledRow", "read_labelled", "row_from_json"]


@dataclass(frozen=True, slots=True)
class LabelledRow:
    """One labelled sentence."""

    text: str
    label: int
    source: str | None
    id: str | None = None
    family: str | None = None
    unsure: bool = False
    doc: str | None = None  # the note or publication it comes from (bootstrap resampling unit)


def _optional_str(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str):
        raise UsageError(f"{where}: {key!r} must be a string")
    return value or None


def row_from_json(data: Any, where: str, *, text: str | None = None) -> LabelledRow:
    """Validate one decoded row (``text`` overrides the row's own); ``where`` prefixes errors."""
    if not isinstance(data, dict):
        raise UsageError(f"{where}: expected a JSON object")
    if text is None:
        text = data.get("text")
    label = data.get("label")
    if not isinstance(text, str) or not text.strip():
        raise UsageError(f"{where}: 'text' must be a non-empty string")
    if label not in (0, 1) or isinstance(label, bool):
        raise UsageError(f"{where}: 'label' must be 0 or 1")
    unsure = data.get("unsure", False)
    if unsure is None:
        unsure = False
    if not isinstance(unsure, bool):
        raise UsageError(f"{where}: 'unsure' must be true or false")
    source = data.get("source")
    return LabelledRow(
        text,
        int(label),
        source if isinstance(source, str) and source else _optional_str(data, "domain", where),
        id=_optional_str(data, "id", where),
        family=_optional_str(data, "family", where),
        unsure=unsure,
        doc=_optional_str(data, "doc", where),
    )


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
            rows.append(row_from_json(data, f"{path}:{number}"))
    if not rows:
        raise UsageError(f"{path} has no rows")
    return rows
