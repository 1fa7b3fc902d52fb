"""The character set of each message: MSH-18 (HL7 table 0211), else UTF-8, cp1252, latin-1."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from worker.errors import InvalidEvent

_PROBE = "MSH|^~\\&\r"  # a codec that does not encode this as ASCII cannot have been read here

#: HL7 table 0211 (MSH-18) to Python codecs. "UNICODE" (deprecated) is read as UTF-8, which is
#: what senders using it send in practice. CNS 11643-1992 has no Python codec.
HL7_CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 15, 16)},
    "ISO IR100": "iso8859-1",
    "ISO IR192": "utf-8",
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "BIG-5": "big5",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
}


@dataclass(frozen=True, slots=True)
class Charset:
    codec: str
    source: str  # "MSH-18", "bom", "detected", "default" or "fallback"


def _msh_fields(msh: str) -> list[str]:
    """MSH split on its MSH-1 (index n is MSH-(n+1)), for reading MSH-18 before decoding."""
    return msh.split(msh[3]) if len(msh) > 3 else [msh]


def declared_charset(msh: str) -> str | None:
    fields = _msh_fields(msh)
    if len(fields) < 18:
        return None
    characters = fields[1]
    repetition = characters[1] if len(characters) > 1 else "~"
    component = characters[0] if characters else "^"
    name = fields[17].split(repetition)[0].split(component)[0].strip()
    return name or None


def _codec_for(declared: str | None) -> str | None:
    """The Python codec of an MSH-18 value (table 0211 names first, then codec names such as
    ``UTF-8`` or ``ISO-8859-1``); None when unknown or not readable as 8-bit text."""
    if not declared:
        return None
    name = HL7_CHARSETS.get(" ".join(declared.upper().split()), declared)
    try:
        codec = codecs.lookup(name).name
        if _PROBE.encode(codec) != _PROBE.encode("ascii"):
            return None
    except (LookupError, UnicodeError, ValueError):
        return None
    return codec


def decode(message: list[str], forced: Charset | None) -> tuple[str, Charset]:
    """One message's text in its character set (raises ``undecodable_text``)."""
    joined = "\r".join(message)
    if forced is not None and forced.codec != "utf-8":
        return joined, forced  # UTF-16: already decoded
    data = joined.encode("latin-1")
    declared = _codec_for(declared_charset(message[0]))
    strict = forced or (Charset(declared, "MSH-18") if declared and declared != "ascii" else None)
    if strict is not None:
        try:
            return data.decode(strict.codec), strict
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                "undecodable_text",
                f"bytes are not valid {strict.codec} ({strict.source}, byte {exc.start})",
            ) from None
    if declared == "ascii" and data.isascii():
        return data.decode("ascii"), Charset("ascii", "MSH-18")
    for codec in ("utf-8", "cp1252", "latin-1"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        plain = codec == "utf-8" and declared is None
        return text, Charset(codec, "default" if plain else "fallback")
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover
