"""HL7 v2 escape sequences (chapter 2.7) decoded in one value."""

from __future__ import annotations

import codecs
import re

from worker.inputs.hl7v2.delimiters import Delimiters

_DROPPED = re.compile(r"[HN]|Z.*|C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?")
_FORMATTING = re.compile(r"\.(br|sp|ce|sk|fi|nf|in|ti)([+-]?\d{0,4})", re.IGNORECASE)
_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2})*)")
_STANDARD = Delimiters()  # |^~\&


def _sequence(code: str, delimiters: Delimiters) -> str | None:
    """The text of one escape sequence other than ``\\Xhh\\`` (None: not a known sequence)."""
    named = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": delimiters.escape,
        "P": delimiters.truncation or "#",
    }
    if code in named:
        return named[code]
    if _DROPPED.fullmatch(code):
        return ""  # highlighting, locally defined (Z) and character-set switches (C, M)
    command = _FORMATTING.fullmatch(code)
    if command is None:
        return None
    name, count = command.group(1).lower(), command.group(2)
    if name in ("br", "ce"):
        return "\n"
    if name == "sp":  # end the line and skip <count> lines; tidy keeps at most one blank line
        return "\n" * (2 if count.lstrip("+").isdigit() and int(count) > 1 else 1)
    return " " if name == "sk" else ""  # .fi .nf .in .ti: layout only


def unescape(value: str, delimiters: Delimiters = _STANDARD, charset: str = "utf-8") -> str:
    """Decode HL7 escape sequences in one value.

    ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\P\\`` become the separators, ``\\.br\\``, ``\\.sp\\`` and
    ``\\.ce\\`` line breaks, ``\\Xhh..\\`` bytes (runs of them joined) decoded in ``charset``;
    highlighting, other formatting commands, ``\\Z..\\`` and character-set switches are dropped.
    An escape character that opens no known sequence (a Windows path, a lone backslash) is kept
    as text, so nothing readable is lost.
    """
    esc = delimiters.escape
    if esc not in value:
        return value
    out: list[str] = []
    pending = bytearray()

    def flush() -> None:
        if pending:
            try:
                out.append(pending.decode(hex_codec(charset), errors="replace"))
            except UnicodeError:  # a codec that ignores errors="replace" (idna)
                out.append("\ufffd" * len(pending))
            pending.clear()

    pos = 0
    while (start := value.find(esc, pos)) >= 0:
        end = value.find(esc, start + 1)
        if end < 0:
            break
        if start > pos:
            flush()
            out.append(value[pos:start])
        code = value[start + 1 : end]
        hex_bytes = _HEX.fullmatch(code)
        if hex_bytes is not None:
            pending += bytes.fromhex(hex_bytes.group(1))
            pos = end + 1
            continue
        text = _sequence(code, delimiters)
        flush()
        if text is None:
            out.append(esc)  # not a sequence: keep the character, read on after it
            pos = start + 1
        else:
            out.append(text)
            pos = end + 1
    flush()
    out.append(value[pos:])
    return "".join(out)


def hex_codec(charset: str) -> str:
    """``\\Xhh\\`` bytes in an ASCII message are most likely UTF-8."""
    return "utf-8" if codecs.lookup(charset).name == "ascii" else charset
