"""The record's transport: byte order marks and UTF-16, MLLP framing, segment terminators,
line breaks inside fields, batch envelopes and several messages one after another."""

from __future__ import annotations

import codecs
import re

from worker.errors import InvalidEvent
from worker.inputs.hl7v2.charsets import Charset
from worker.inputs.hl7v2.delimiters import Delimiters

_HEADERS = ("MSH", "FHS", "BHS")
_ENVELOPE = frozenset({"FHS", "FTS", "BHS", "BTS"})
_END_JUNK = " \t\r\n\x0b\x1c\x00\x1a\x0c"  # whitespace, MLLP framing, NUL, Ctrl-Z
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")


def transport_text(value: bytes) -> tuple[str, Charset | None]:
    """The record as text: UTF-16 (BOM or detected) decoded, else bytes read as latin-1 (one
    character per byte, decoded per message later); a UTF-8 BOM fixes UTF-8 for all messages."""
    head = value.lstrip(b"\x0b \t\r\n")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return _utf16(head[len(bom) :], codec, "bom"), Charset(codec, "bom")
    for name in _HEADERS:
        for codec in ("utf-16-le", "utf-16-be"):
            if head.startswith(name.encode(codec)):
                return _utf16(head, codec, "detected"), Charset(codec, "detected")
    if head.startswith(codecs.BOM_UTF8):
        return head[len(codecs.BOM_UTF8) :].decode("latin-1"), Charset("utf-8", "bom")
    return value.decode("latin-1"), None


def _utf16(data: bytes, codec: str, how: str) -> str:
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            "undecodable_text", f"record: {how} {codec} but not valid (byte {exc.start})"
        ) from None


def _segment_start(line: str, separator: str | None) -> bool:
    """Whether a line opens a segment (else it continues the field before it)."""
    name = line[:3]
    if not _SEGMENT_ID.fullmatch(name):
        return False
    if len(line) == 3:
        return name in _ENVELOPE
    if name in _HEADERS:
        return Delimiters.read(line[3], "^~\\&") is not None  # a usable MSH-1
    return line[3] == separator


def split_segments(text: str) -> list[str]:
    """Segments of the record, framing stripped; a line that opens no segment is joined to the
    one before with ``\\n`` (a line break inside a field)."""
    segments: list[list[str]] = []
    separator: str | None = None
    for raw_line in _LINE_BREAK.split(text.strip(_END_JUNK)):
        line = raw_line.strip("\x0b\x1c")
        candidate = line.lstrip(" \t")
        if _segment_start(candidate, separator):
            if candidate[:3] in _HEADERS and len(candidate) > 3:  # a bare "FHS" declares none
                separator = candidate[3]
            segments.append([candidate])
        elif segments:
            segments[-1].append(line)
        else:
            raise InvalidEvent("not_hl7", "record does not start with an MSH, FHS or BHS segment")
    if not segments or segments[0][0][:3] not in _HEADERS:
        raise InvalidEvent("not_hl7", "record does not start with an MSH, FHS or BHS segment")
    return ["\n".join(parts).rstrip("\n") for parts in segments]


def split_messages(segments: list[str]) -> list[list[str]]:
    """Messages (lists of segments, MSH first); batch envelope segments are dropped."""
    messages: list[list[str]] = []
    for segment in segments:
        name = segment[:3]
        if name == "MSH":
            messages.append([segment])
        elif name in _ENVELOPE:
            continue
        elif messages:
            messages[-1].append(segment)
        else:
            raise InvalidEvent("not_hl7", f"segment {name} before the first MSH")
    return messages
