"""Strings made valid Unicode: what UTF-8 outputs, keys, headers and hashes can carry."""

from __future__ import annotations

import re
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def well_formed(text: str) -> str:
    """``text`` as valid Unicode: a surrogate pair (how RTF's ``\\u`` and some JSON escapes
    write a character past U+FFFF) joined into that character, a lone surrogate replaced by
    U+FFFD. Outputs, keys and hashes are UTF-8, which cannot carry surrogates."""
    if _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def well_formed_value(value: Any) -> Any:
    """``value`` with its strings well formed; the same object when none changes."""
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        pairs = [(well_formed_value(k), well_formed_value(v)) for k, v in value.items()]
        changed = any(
            a is not k or b is not v for (a, b), (k, v) in zip(pairs, value.items(), strict=True)
        )
        return dict(pairs) if changed else value
    if isinstance(value, list | tuple):
        items = [well_formed_value(item) for item in value]
        changed = any(a is not b for a, b in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    return value
