"""Note text of one OBX: TX/FT/ST lines, ED attachments (base64, hex or plain), RP references."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from worker.errors import InvalidEvent
from worker.inputs import content
from worker.inputs.extracted import Skip
from worker.inputs.hl7v2.escapes import hex_codec
from worker.inputs.hl7v2.messages import Message

#: OBX-2 value types whose OBX-5 is note text (ED is read as an attachment).
TEXT_VALUE_TYPES = frozenset({"TX", "FT", "ST"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class Part:
    text: str
    document: bool  # an ED attachment: kept apart from its neighbours by a blank line
    ref: str


def obx_part(msg: Message, obx: Any, position: int) -> Part | Skip | None:
    """The note text of one OBX, a Skip for an unreadable one, None when it is not text."""
    value_type = (msg.value(obx, 2) or "").upper()
    ref = f"OBX/{msg.value(obx, 1) or position}"
    if value_type in TEXT_VALUE_TYPES:
        lines = [msg.text(rep) for rep in msg.raw(obx, 5).split(msg.delimiters.repetition)]
        return Part("\n".join("" if line == '""' else line for line in lines), False, ref)
    if value_type == "ED":
        return _ed_part(msg, obx, ref)
    if value_type == "RP" and msg.value(obx, 5):
        return Skip("reference_only", f"{msg.label} {ref} RP: reference pointer, no inline text")
    return None


def _ed_media(kind: str, subtype: str) -> str:
    """A MIME type for ED type-of-data (table 0191) and subtype (table 0291, or MIME names)."""
    kind, subtype = kind.strip().lower(), subtype.strip().lower()
    if "/" in kind:
        return kind
    by_subtype = {
        "plain": "text/plain",
        "txt": "text/plain",
        "rtf": "text/rtf",
        "html": "text/html",
        "htm": "text/html",
        "xhtml": "application/xhtml+xml",
        "xhtml+xml": "application/xhtml+xml",
        "pdf": "application/pdf",
    }
    if subtype in by_subtype:
        return by_subtype[subtype]
    top = {"tx": "text", "ft": "text", "ap": "application", "im": "image", "ns": "image"}
    top |= {"si": "image", "sd": "image", "au": "audio"}
    main = top.get(kind, kind or "application")
    if main == "text" and not subtype:
        return "text/plain"
    return f"{main}/{subtype or 'octet-stream'}"


def _ed_part(msg: Message, obx: Any, ref: str) -> Part | Skip:
    """An ED value: source^type^subtype^encoding^data, read as an attachment."""
    d = msg.delimiters
    components = msg.raw(obx, 5).split(d.repetition)[0].split(d.component) + [""] * 5
    kind, subtype, encoding = (msg.text(c) for c in components[1:4])
    where = f"{msg.label} {ref} ED"
    data = d.component.join(components[4:]).rstrip(d.component)
    if not data.strip():
        return Skip("no_note_text", f"{where}: no data")
    media = _ed_media(kind, subtype)
    charset = hex_codec(msg.charset.codec)
    try:
        encoding = encoding.strip().lower()
        if encoding == "base64":
            decoded = content.decode_base64(data, where=where)
            text = content.attachment_text(decoded, f"{media}; charset={charset}", where=where)
        elif encoding == "hex":
            try:
                decoded = bytes.fromhex(data)
            except ValueError:
                raise InvalidEvent("undecodable_text", f"{where}: data is not valid hex") from None
            text = content.attachment_text(decoded, f"{media}; charset={charset}", where=where)
        elif encoding in ("", "a", "none"):
            if not content.ContentType.parse(media).readable:
                raise InvalidEvent("unsupported_content_type", f"{where}: content type {media!r}")
            text = content.to_plain_text(msg.text(data), media, where=where)
        else:
            raise InvalidEvent("undecodable_text", f"{where}: encoding {encoding[:20]!r} unknown")
    except InvalidEvent as exc:
        return Skip(exc.reason, exc.message)
    return Part(text, True, ref)


def join_parts(parts: list[Part]) -> str:
    """Lines joined with ``\\n``; an ED document set apart by a blank line; then tidied."""
    pieces: list[str] = []
    for n, part in enumerate(parts):
        if n:
            pieces.append("\n\n" if part.document or parts[n - 1].document else "\n")
        pieces.append(part.text)
    text = _CONTROL.sub("", "".join(pieces).replace("\x0c", "\n"))
    return content.tidy(text)
