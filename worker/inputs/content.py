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
from inscriptis import RE_STRIP_XML_DECLARATION
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.html_engine import Inscriptis
from inscriptis.model.config import ParserConfig
from lxml.etree import ParserError
from lxml.html import HTMLParser, document_fromstring
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


def text_codec(name: str) -> codecs.CodecInfo:
    """The codec of a character set name; ``LookupError`` when there is none, or when it is not
    a text encoding (Python also names bytes-to-bytes codecs: hex, base64, zlib, rot13)."""
    try:
        codec = codecs.lookup(name)
    except ValueError:  # a NUL in the name
        raise LookupError(name) from None
    if not getattr(codec, "_is_text_encoding", True):
        raise LookupError(name)
    return codec


def decode_text(data: bytes, charset: str | None, *, where: str) -> str:
    """Bytes to text in ``charset`` (UTF-8 when none; a UTF-8 BOM is dropped).

    ``undecodable_text`` when the charset is unknown or the bytes are not valid in it.
    """
    name = charset or "utf-8"
    try:
        codec = text_codec(name)
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
    except UnicodeError:  # a codec that decodes nothing ("undefined"), or refuses this text
        raise InvalidEvent("undecodable_text", f"{where}: not readable as {codec.name}") from None


def to_plain_text(text: str, media: str, *, where: str) -> str:
    """Text of one document in ``media`` (HTML, XHTML and RTF rendered; plain text as is)."""
    if media in ("", "text/plain"):
        return tidy(text)
    if media in ("text/html", "application/xhtml+xml"):
        return html_to_text(text, where=where)
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


def html_to_text(markup: str, *, where: str = "HTML") -> str:
    """HTML or XHTML as text: block elements become lines, scripts and styles are dropped.

    Parsed as inscriptis parses it, but without libxml2's default depth limit of 256, where the
    rest of a document (sloppy exporters leave a ``<font>`` open per line) would be dropped
    silently; past the raised limit (2,048) the text is ``undecodable_text``, never cut short.
    """
    markup = markup.strip()
    if not markup:
        return ""
    if markup.startswith("<?xml "):
        markup = RE_STRIP_XML_DECLARATION.sub("", markup, count=1)
    parser = HTMLParser(huge_tree=True)
    try:
        tree = document_fromstring(markup, parser=parser)
    except ParserError:  # as inscriptis: text with no element at all
        tree = document_fromstring("<pre>" + markup + "</pre>", parser=parser)
    if any("Excessive depth" in error.message for error in parser.error_log):
        raise InvalidEvent("undecodable_text", f"{where}: HTML nested too deep to read whole")
    return tidy(Inscriptis(tree, _INSCRIPTIS).get_text())


#: striprtf's font-table and hyperlink patterns scan from each match to the end of its line, so
#: one long line costs about its length squared (750 KiB on one line: about a minute). RTF
#: readers ignore line breaks, so a document with a longer line is broken before every control
#: word first (a control word follows an even number of backslashes, or none).
_MAX_RTF_LINE = 8192
_BEFORE_CONTROL_WORD = re.compile(r"(?<!\\)((?:\\\\)*)(?=\\[a-zA-Z])")
#: What striprtf raises on malformed control words (``\\uc`` without a number, ``\\u`` out of
#: range, ``\\bin`` without a length).
_RTF_ERRORS = (ValueError, TypeError, OverflowError, IndexError)


def rtf_text(document: str, *, where: str) -> str:
    """RTF as text; ``undecodable_text`` when it is not RTF, or not readable RTF."""
    if not document.lstrip().startswith("{\\rtf"):
        raise InvalidEvent("undecodable_text", f"{where}: content is not RTF")
    if max(map(len, document.split("\n"))) > _MAX_RTF_LINE:  # "." stops only at "\n"
        document = _BEFORE_CONTROL_WORD.sub("\\1\n", document)
    try:
        text: str = rtf_to_text(document, errors="replace")  # type: ignore[no-untyped-call]
    except _RTF_ERRORS as exc:
        raise InvalidEvent(
            "undecodable_text", f"{where}: malformed RTF ({type(exc).__name__})"
        ) from None
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
