"""Note text from attachments: data inline or in a contained or in-Bundle ``Binary``, content
types sniffed when none is given, renditions (best type wins) versus parts (joined)."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

from worker.errors import InvalidEvent
from worker.inputs.content import ContentType, decode_base64, decode_text, tidy, to_plain_text
from worker.inputs.extracted import Skip
from worker.inputs.fhir.accessors import dicts, parse_reference, string
from worker.inputs.fhir.documents import WHITESPACE
from worker.inputs.fhir.scope import Json, Scope

_HTML_HINT = re.compile(
    rb"<(?:!doctype\s+html|html|head|body|p|div|br|table|span|pre|ul|ol|li|h[1-6]|b|i|font)\b",
    re.IGNORECASE,
)
#: Leading bytes of binary formats sniffed when an attachment has no contentType.
_MAGIC = (
    (b"%PDF", "application/pdf"),
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"\xd0\xcf\x11\xe0", "application/msword"),
)


@dataclass(slots=True)
class Text:
    """The note text chosen from a resource and what it came from."""

    text: str = ""
    element: str | None = None  # "content", "presentedForm", "text.div", "conclusion"
    attachments: list[int] = field(default_factory=list)
    content_type: str | None = None
    skipped: list[Skip] = field(default_factory=list)


def from_attachments(
    attachments: list[Json], element: str, resource: Json, scope: Scope, where: str
) -> Text:
    """One text from the readable attachments: the best-ranked content type wins (renditions),
    all attachments of that type are joined in order (parts), identical texts kept once."""
    found = Text()
    rendered: dict[str, list[tuple[int, str]]] = {}
    for index, attachment in enumerate(attachments):
        label = f"{where} {element}[{index}]"
        try:
            media, text = _attachment(attachment, resource, scope, label)
        except InvalidEvent as exc:
            found.skipped.append(Skip(exc.reason, exc.message))
            continue
        rendered.setdefault(media, []).append((index, text))
    for media in sorted(rendered, key=lambda name: ContentType(name, None).rank):
        texts: list[str] = []
        for index, text in rendered[media]:
            if text and text not in texts:
                texts.append(text)
                found.attachments.append(index)
        if texts:
            found.text = tidy("\n\n".join(texts))
            found.element, found.content_type = element, media
            break
    return found


def _attachment(attachment: Json, resource: Json, scope: Scope, label: str) -> tuple[str, str]:
    """``(media type, text)`` of one attachment; raises a Skip-worthy ``InvalidEvent``."""
    data = string(attachment.get("data"))
    content_type = string(attachment.get("contentType"))
    if data is None:
        url = string(attachment.get("url"))
        if url is None:
            raise InvalidEvent("no_note_text", f"{label}: attachment has neither data nor url")
        binary = _binary(url, resource, scope)
        data = string(binary.get("data")) if binary else None
        if binary is None or data is None:
            raise InvalidEvent("attachment_url_only", f"{label}: text only behind attachment.url")
        content_type = string(binary.get("contentType")) or content_type
        label = f"{label} (Binary)"
    parsed = ContentType.parse(content_type)
    if not parsed.readable:
        raise InvalidEvent(
            "unsupported_content_type", f"{label}: content type {parsed.media[:80]!r}"
        )
    raw = decode_base64(data, where=label)
    media = parsed.media or _sniff(raw)
    if not ContentType(media, None).readable:
        raise InvalidEvent("unsupported_content_type", f"{label}: content sniffed as {media}")
    text = to_plain_text(decode_text(raw, parsed.charset, where=label), media, where=label)
    return ("text/rtf" if media == "application/rtf" else media), text


def _binary(url: str, resource: Json, scope: Scope) -> Json | None:
    """The Binary an attachment url points at, when it is in hand: ``#id`` of a contained
    Binary, or a Binary entry of the same Bundle by fullUrl or ``Binary/id``."""
    if url.startswith("#"):
        for contained in dicts(resource.get("contained")):
            if contained.get("resourceType") == "Binary" and contained.get("id") == url[1:]:
                return contained
        return None
    if url in scope.binaries:
        return scope.binaries[url]
    target = parse_reference(url)
    if target and target[0] == "Binary":
        return scope.binaries.get(f"Binary/{target[1]}")
    return None


def _sniff(raw: bytes) -> str:
    """A media type for attachment bytes without a contentType."""
    head = raw.removeprefix(codecs.BOM_UTF8).lstrip(WHITESPACE)[:2048]
    if head.startswith(b"{\\rtf"):
        return "text/rtf"
    for magic, media in _MAGIC:
        if head.startswith(magic):
            return media
    if head.startswith(b"<") and _HTML_HINT.search(head):
        return "text/html"
    return "text/plain"
