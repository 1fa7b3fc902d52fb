"""Attachment and narrative content to plain text: base64, charsets, HTML/XHTML, RTF, safe XML.

Shared by the FHIR, C-CDA, HL7 v2 (ED values) and mapping formats. Libraries: ``inscriptis``
(Apache-2.0) renders HTML/XHTML as text with its block layout (paragraphs, lists and table rows
become lines, which the sentence splitter relies on); ``striprtf`` (BSD-3-Clause) reads RTF;
``defusedxml`` (PSF) parses XML without external entities, DTD retrieval or entity expansion.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException
from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from striprtf.striprtf import rtf_to_text

from worker.errors import InvalidEvent

#: Content types read as text, in order of preference when one document has several renditions.
TEXT_TYPES = ("text/plain", "text/html", "application/xhtml+xml", "text/rtf", "application/rtf")
_PREFERENCE = {name: rank for rank, name in enumerate(TEXT_TYPES)}
_INSCRIPTIS = ParserConfig(css=CSS_PROFILES["strict"], display_images=False, display_links=False)
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


@dataclass(frozen=True, slots=True)
class ContentType:
    """A parsed ``type/subtype; charset=...`` value (lower-cased, parameters other than charset
    dropped); ``media`` is empty when none was given."""

    media: str
    charset: str | None

    @classmethod
    def parse(cls, value: str | None) -> ContentType:
        if not value:
            return cls("", None)
        media, *params = (part.strip() for part in value.split(";"))
        charset = None
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "charset" and raw.strip():
                charset = raw.strip().strip("\"'")
        return cls(media.lower(), charset)

    @property
    def readable(self) -> bool:
        """True for a type this module turns into text (no type at all counts as text/plain)."""
        return self.media in _PREFERENCE or self.media == ""

    @property
    def rank(self) -> int:
        """Lower is preferred (text/plain first); unreadable types rank last."""
        return _PREFERENCE.get(self.media or "text/plain", len(_PREFERENCE))


def decode_base64(data: str, *, where: str) -> bytes:
    """Standard base64 (whitespace allowed, as in XML and FHIR); ``undecodable_text`` if not."""
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("undecodable_text", f"{where}: data is not valid base64") from None


def decode_text(data: bytes, charset: str | None, *, where: str) -> str:
    """Bytes to text in ``charset`` (UTF-8 when none; a UTF-8 BOM is dropped).

    ``undecodable_text`` when the charset is unknown or the bytes are not valid in it.
    """
    name = charset or "utf-8"
    try:
        codec = codecs.lookup(name)
    except LookupError:
        raise InvalidEvent("undecodable_text", f"{where}: unknown charset {name[:40]!r}") from None
    if codec.name == "utf-8" and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode(codec.name)
    except UnicodeDecodeError as exc:
        raise InvalidEvent(
            "undecodable_text", f"{where}: not valid {codec.name} (byte {exc.start})"
        ) from None


def to_plain_text(text: str, media: str, *, where: str) -> str:
    """Text of one document in ``media`` (HTML, XHTML and RTF rendered; plain text as is)."""
    if media in ("", "text/plain"):
        return tidy(text)
    if media in ("text/html", "application/xhtml+xml"):
        return html_to_text(text)
    if media in ("text/rtf", "application/rtf"):
        return rtf_text(text, where=where)
    raise InvalidEvent("unsupported_content_type", f"{where}: content type {media[:80]!r}")


def attachment_text(data: bytes, content_type: str | None, *, where: str) -> str:
    """The text of an attachment's decoded bytes: charset from the content type, then render."""
    parsed = ContentType.parse(content_type)
    if not parsed.readable:
        raise InvalidEvent(
            "unsupported_content_type", f"{where}: content type {parsed.media[:80]!r}"
        )
    return to_plain_text(decode_text(data, parsed.charset, where=where), parsed.media, where=where)


def html_to_text(markup: str) -> str:
    """HTML or XHTML as text: block elements become lines, scripts and styles are dropped."""
    if not markup.strip():
        return ""
    return tidy(get_text(markup, _INSCRIPTIS))


def rtf_text(document: str, *, where: str) -> str:
    """RTF as text; ``undecodable_text`` when it is not RTF."""
    if not document.lstrip().startswith("{\\rtf"):
        raise InvalidEvent("undecodable_text", f"{where}: content is not RTF")
    text: str = rtf_to_text(document, errors="replace")  # type: ignore[no-untyped-call]
    return tidy(text)


def tidy(text: str) -> str:
    """Normalise line ends to ``\\n``, strip trailing spaces per line, collapse runs of blank
    lines to one, and trim the ends. Sentence offsets index the result."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def parse_xml(data: bytes | str, *, reason: str, where: str) -> Element:
    """Parse XML safely: no DTDs with entities, no external references, no entity expansion.

    A document that is not well-formed, or that tries any of those, raises ``reason``
    (``not_fhir``, ``not_cda``...) as a dead letter.
    """
    try:
        return safe_et.fromstring(data, forbid_dtd=False, forbid_entities=True)
    except DefusedXmlException as exc:
        raise InvalidEvent(reason, f"{where}: XML refused ({type(exc).__name__})") from None
    except safe_et.ParseError as exc:
        raise InvalidEvent(reason, f"{where}: not well-formed XML ({exc.position})") from None
    except (LookupError, ValueError) as exc:  # an unknown encoding in the XML declaration
        raise InvalidEvent(reason, f"{where}: XML refused ({type(exc).__name__})") from None


def local_name(element: Element) -> str:
    """An element's tag without its ``{namespace}``."""
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""
