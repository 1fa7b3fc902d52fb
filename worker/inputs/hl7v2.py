"""HL7 v2 (ER7, pipe-delimited) messages to notes: MDM^T01-T11 and ORU^R01 (any message with OBX).

Libraries: ``hl7`` (python-hl7, BSD) splits one message into segments and fields with the
separators its MSH-1/MSH-2 declare. :mod:`worker.inputs.content` turns ED attachments (base64,
hex or plain) into text (RTF via striprtf, HTML via inscriptis).

Added here, because python-hl7 does not do it (or not safely):

* the transport: MLLP framing bytes (0x0B, 0x1C) and whitespace at the ends, CR, LF, CRLF or
  mixed segment terminators, a line that is not a segment start continuing the field before it
  (a raw line break inside OBX-5), FHS/BHS/BTS/FTS batch envelopes and several messages one
  after another;
* MSH-2 checks (python-hl7 takes any characters), with one tolerance: a doubled escape
  character (``^~\\\\&``, a backslash escaped twice by the sender) reads as ``^~\\&``;
* the character set: MSH-18 (HL7 table 0211 names) per message, a UTF-8 or UTF-16 byte order
  mark, else UTF-8 with a cp1252 then latin-1 fallback (``origin["charset_source"]`` says
  which);
* :func:`unescape`: python-hl7's ``unescape`` logs the field text (PHI) on odd sequences,
  decodes ``\\Xhh\\`` byte by byte as latin-1, turns ``\\H\\``/``\\N\\`` into ``_`` and
  repeats ``\\.sp<n>\\`` without a bound, so escape sequences are decoded here;
* which OBX carry note text, how notes get their ids, and the MDM retractions.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from typing import Any

import hl7

from worker.errors import InvalidEvent
from worker.inputs import content
from worker.inputs.extracted import ExtractedNote, Extraction, Retraction, Skip

FORMAT = "hl7v2"

#: OBX-2 value types whose OBX-5 is note text (ED is read as an attachment).
TEXT_VALUE_TYPES = frozenset({"TX", "FT", "ST"})
_HEADERS = ("MSH", "FHS", "BHS")
_ENVELOPE = frozenset({"FHS", "FTS", "BHS", "BTS"})
_END_JUNK = " \t\r\n\x0b\x1c\x00\x1a\x0c"  # whitespace, MLLP framing, NUL, Ctrl-Z
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
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
class Delimiters:
    """One message's separators (MSH-1 and MSH-2); ``truncation`` is the v2.7 fifth character."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"
    truncation: str = ""  # v2.7+ MSH-2 fifth character; empty when not declared

    @classmethod
    def read(cls, separator: str, characters: str) -> Delimiters | None:
        """The delimiters MSH-1/MSH-2 declare, or None when they are not usable.

        Four or five distinct printable, non-alphanumeric characters, none equal to MSH-1; a
        doubled escape character (``^~\\\\&``) is read as one.
        """
        if len(characters) == 5 and characters[2] == characters[3]:
            characters = characters[:3] + characters[4]
        chars = separator + characters
        usable = all(c.isprintable() and not c.isalnum() and not c.isspace() for c in chars)
        if len(characters) not in (4, 5) or not usable or len(set(chars)) != len(chars):
            return None
        truncation = characters[4] if len(characters) == 5 else ""
        return cls(
            separator, characters[0], characters[1], characters[2], characters[3], truncation
        )

    @property
    def characters(self) -> str:
        """MSH-2 as written back for python-hl7."""
        return self.component + self.repetition + self.escape + self.subcomponent + self.truncation


# ---------------------------------------------------------------------------------------------
# Escape sequences (HL7 v2 chapter 2.7)

_DROPPED = re.compile(r"[HN]|Z.*|C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?")
_FORMATTING = re.compile(r"\.(br|sp|ce|sk|fi|nf|in|ti)([+-]?\d{0,4})", re.IGNORECASE)
_HEX = re.compile(r"X((?:[0-9A-Fa-f]{2})*)")


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


def unescape(value: str, delimiters: Delimiters = Delimiters(), charset: str = "utf-8") -> str:
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
            out.append(pending.decode(_hex_codec(charset), errors="replace"))
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


def _hex_codec(charset: str) -> str:
    """``\\Xhh\\`` bytes in an ASCII message are most likely UTF-8."""
    return "utf-8" if codecs.lookup(charset).name == "ascii" else charset


# ---------------------------------------------------------------------------------------------
# Transport: framing, character sets, segments, messages


@dataclass(frozen=True, slots=True)
class _Charset:
    codec: str
    source: str  # "MSH-18", "bom", "detected", "default" or "fallback"


def _transport_text(value: bytes) -> tuple[str, _Charset | None]:
    """The record as text: UTF-16 (BOM or detected) decoded, else bytes read as latin-1 (one
    character per byte, decoded per message later); a UTF-8 BOM fixes UTF-8 for all messages."""
    head = value.lstrip(b"\x0b \t\r\n")
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return _utf16(head[len(bom) :], codec, "bom"), _Charset(codec, "bom")
    for name in _HEADERS:
        for codec in ("utf-16-le", "utf-16-be"):
            if head.startswith(name.encode(codec)):
                return _utf16(head, codec, "detected"), _Charset(codec, "detected")
    if head.startswith(codecs.BOM_UTF8):
        return head[len(codecs.BOM_UTF8) :].decode("latin-1"), _Charset("utf-8", "bom")
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


def _msh_fields(msh: str) -> list[str]:
    """MSH split on its MSH-1 (index n is MSH-(n+1)), for reading MSH-18 before decoding."""
    return msh.split(msh[3]) if len(msh) > 3 else [msh]


def _declared_charset(msh: str) -> str | None:
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


def _decode(message: list[str], forced: _Charset | None) -> tuple[str, _Charset]:
    """One message's text in its character set (raises ``undecodable_text``)."""
    joined = "\r".join(message)
    if forced is not None and forced.codec != "utf-8":
        return joined, forced  # UTF-16: already decoded
    data = joined.encode("latin-1")
    declared = _codec_for(_declared_charset(message[0]))
    strict = forced or (_Charset(declared, "MSH-18") if declared and declared != "ascii" else None)
    if strict is not None:
        try:
            return data.decode(strict.codec), strict
        except UnicodeDecodeError as exc:
            raise InvalidEvent(
                "undecodable_text",
                f"bytes are not valid {strict.codec} ({strict.source}, byte {exc.start})",
            ) from None
    if declared == "ascii" and data.isascii():
        return data.decode("ascii"), _Charset("ascii", "MSH-18")
    for codec in ("utf-8", "cp1252", "latin-1"):
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        plain = codec == "utf-8" and declared is None
        return text, _Charset(codec, "default" if plain else "fallback")
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


# ---------------------------------------------------------------------------------------------
# One parsed message


@dataclass(slots=True)
class _Message:
    """A parsed message and the helpers that read its fields."""

    index: int
    segments: list[Any]  # hl7.Segment
    delimiters: Delimiters
    charset: _Charset
    charset_declared: str | None

    def first(self, name: str) -> Any | None:
        return next((s for s in self.segments if _name(s) == name), None)

    def raw(self, segment: Any | None, number: int) -> str:
        """A field as written (escaped); MSH numbering as in the standard."""
        if segment is None or number >= len(segment):
            return ""
        return str(segment[number])

    def text(self, raw: str) -> str:
        return unescape(raw, self.delimiters, self.charset.codec)

    def value(self, segment: Any | None, number: int, component: int = 1) -> str | None:
        """First repetition, one component, first subcomponent, unescaped; None when empty."""
        d = self.delimiters
        components = self.raw(segment, number).split(d.repetition)[0].split(d.component)
        if component > len(components):
            return None
        return _present(self.text(components[component - 1].split(d.subcomponent)[0]))

    def printed(self, segment: Any | None, number: int) -> str | None:
        """First repetition with its components as printed (``DOC1^HOSP``), unescaped, with
        ``^``/``&`` whatever the message's separators, trailing empty parts dropped."""
        d = self.delimiters
        components = []
        for component in self.raw(segment, number).split(d.repetition)[0].split(d.component):
            subs = [self.text(sub).strip() for sub in component.split(d.subcomponent)]
            components.append("&".join(_trim(subs)))
        return _present("^".join(_trim(components)))

    @property
    def control_id(self) -> str | None:
        return self.value(self.segments[0], 10)

    @property
    def label(self) -> str:
        control = self.control_id
        return f"message {self.index}" + (f" (MSH-10 {control[:64]!r})" if control else "")


def _name(segment: Any) -> str:
    return str(segment[0]) if len(segment) else ""


def _present(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", '""') else value


def _trim(parts: list[str]) -> list[str]:
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _parse(message: list[str], index: int, forced: _Charset | None) -> _Message:
    """Decode and parse one message; ``not_hl7`` for a header python-hl7 cannot use."""
    text, charset = _decode(message, forced)
    head, _, body = text.partition("\r")
    fields = head[4:].split(head[3], 1) if len(head) > 3 else [""]
    delimiters = Delimiters.read(head[3], fields[0]) if len(head) > 3 else None
    if delimiters is None:
        raise InvalidEvent("not_hl7", f"message {index}: MSH-1/MSH-2 encoding characters invalid")
    rest = fields[1] if len(fields) > 1 else ""
    header = f"MSH{delimiters.field}{delimiters.characters}{delimiters.field}{rest}"
    try:
        parsed = hl7.parse("\r".join(filter(None, (header, body))))
    except Exception as exc:  # third-party parser on hostile input: any failure is a bad message
        raise InvalidEvent(
            "not_hl7", f"message {index}: unparsable ({type(exc).__name__})"
        ) from None
    return _Message(index, list(parsed), delimiters, charset, _declared_charset(message[0]))


# ---------------------------------------------------------------------------------------------
# Note text from OBX


@dataclass(frozen=True, slots=True)
class _Part:
    text: str
    document: bool  # an ED attachment: kept apart from its neighbours by a blank line
    ref: str


@dataclass(slots=True)
class _Group:
    """The OBX of one note: one OBR group (ORU and others) or the whole message (MDM)."""

    ref: str
    obr: Any | None = None
    obr_position: int = 0
    obx: list[Any] = field(default_factory=list)


def _obx_part(msg: _Message, obx: Any, position: int) -> _Part | Skip | None:
    """The note text of one OBX, a Skip for an unreadable one, None when it is not text."""
    value_type = (msg.value(obx, 2) or "").upper()
    ref = f"OBX/{msg.value(obx, 1) or position}"
    if value_type in TEXT_VALUE_TYPES:
        lines = [msg.text(rep) for rep in msg.raw(obx, 5).split(msg.delimiters.repetition)]
        return _Part("\n".join("" if line == '""' else line for line in lines), False, ref)
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


def _ed_part(msg: _Message, obx: Any, ref: str) -> _Part | Skip:
    """An ED value: source^type^subtype^encoding^data, read as an attachment."""
    d = msg.delimiters
    components = msg.raw(obx, 5).split(d.repetition)[0].split(d.component) + [""] * 5
    kind, subtype, encoding = (msg.text(c) for c in components[1:4])
    where = f"{msg.label} {ref} ED"
    data = d.component.join(components[4:]).rstrip(d.component)
    if not data.strip():
        return Skip("no_note_text", f"{where}: no data")
    media = _ed_media(kind, subtype)
    charset = _hex_codec(msg.charset.codec)
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
    return _Part(text, True, ref)


def _join(parts: list[_Part]) -> str:
    """Lines joined with ``\\n``; an ED document set apart by a blank line; then tidied."""
    pieces: list[str] = []
    for n, part in enumerate(parts):
        if n:
            pieces.append("\n\n" if part.document or parts[n - 1].document else "\n")
        pieces.append(part.text)
    text = _CONTROL.sub("", "".join(pieces).replace("\x0c", "\n"))
    return content.tidy(text)


# ---------------------------------------------------------------------------------------------
# Notes and retractions of one message


def _groups(msg: _Message, mdm: bool) -> list[_Group]:
    """OBR groups (OBX before any OBR form a group of their own); MDM: one for the message."""
    if mdm:
        return [_Group("document", obx=[s for s in msg.segments if _name(s) == "OBX"])]
    groups: list[_Group] = []
    obr_count = 0
    for segment in msg.segments[1:]:
        name = _name(segment)
        if name == "OBR":
            obr_count += 1
            set_id = msg.value(segment, 1) or str(obr_count)
            groups.append(_Group(f"OBR/{set_id}", segment, obr_count))
        elif name == "OBX":
            if not groups:
                groups.append(_Group("OBX before OBR"))
            groups[-1].obx.append(segment)
    return groups


def _group_parts(msg: _Message, group: _Group) -> tuple[list[_Part], list[Skip]]:
    parts: list[_Part] = []
    skips: list[Skip] = []
    for position, obx in enumerate(group.obx, 1):
        part = _obx_part(msg, obx, position)
        if isinstance(part, Skip):
            skips.append(part)
        elif part is not None:
            parts.append(part)
    return parts, skips


def _required(value: str | None, msg: _Message, what: str) -> str:
    if value is None:
        raise InvalidEvent("not_hl7", f"{msg.label}: {what} is empty")
    return value


def _group_id(msg: _Message, group: _Group) -> str:
    """OBR-3 filler order number, else OBR-2 placer, else MSH-10/OBR-1 (or MSH-10 alone)."""
    control = msg.control_id
    if group.obr is None:
        return _required(control, msg, "MSH-10 message control id")
    number = msg.printed(group.obr, 3) or msg.printed(group.obr, 2)
    if number:
        return number
    set_id = msg.value(group.obr, 1) or str(group.obr_position)
    return f"{_required(control, msg, 'MSH-10 message control id')}/{set_id}"


@dataclass(frozen=True, slots=True)
class _Header:
    """What every note and retraction of one message carries."""

    mdm: bool
    event: str
    txa: Any | None
    document: str | None
    parent: str | None
    origin: dict[str, Any]
    version: str | None
    patient_id: str | None


def _header(msg: _Message) -> _Header:
    msh = msg.segments[0]
    code = msg.value(msh, 9) or ""
    event = msg.value(msh, 9, 2) or msg.value(msg.first("EVN"), 1) or ""
    mdm = code.upper() == "MDM"
    txa = msg.first("TXA") if mdm else None
    document, parent = msg.printed(txa, 12), msg.printed(txa, 13)
    origin: dict[str, Any] = {
        "format": FORMAT,
        "message_control_id": msg.control_id,
        "message_type": "^".join(filter(None, (code, event))) or None,
        "message_index": msg.index,
        "document_number": document,
        "parent_document_number": parent,
        "filler_order_number": msg.printed(txa, 15) if mdm else None,
        "charset": msg.charset.codec,
        "charset_source": msg.charset.source,
        "charset_declared": msg.charset_declared,
    }
    version = msg.value(msh, 7)
    patient = msg.value(msg.first("PID"), 3)
    return _Header(mdm, event.upper(), txa, document, parent, origin, version, patient)


def _note(
    msg: _Message, head: _Header, note_id: str, members: list[tuple[_Group, str, list[str]]]
) -> ExtractedNote:
    """One note from the groups (one for MDM) that share its id."""
    group = members[0][0]
    origin = dict(head.origin, segments=[ref for _, _, refs in members for ref in refs])
    if not head.mdm:
        origin["filler_order_number"] = msg.printed(group.obr, 3)
    source, time_field, status_field = (head.txa, 4, 17) if head.mdm else (group.obr, 7, 25)
    return ExtractedNote(
        note_id=note_id,
        version=head.version,
        text=content.tidy("\n\n".join(text for _, text, _ in members)),
        origin=origin,
        patient_id=head.patient_id,
        encounter_id=msg.value(msg.first("PV1"), 19),
        note_type=msg.printed(source, 2 if head.mdm else 4),
        note_time=msg.value(source, time_field),
        status=msg.value(source, status_field),
    )


def _message_extraction(msg: _Message) -> Extraction:
    """The notes, retractions and skips of one message."""
    head = _header(msg)
    result = Extraction()
    common: dict[str, Any] = {"version": head.version, "patient_id": head.patient_id}
    if head.mdm and head.event == "T11":
        cancelled = _required(head.document, msg, "MDM^T11 TXA-12 unique document number")
        result.retractions.append(
            Retraction(note_id=cancelled, reason="cancelled", origin=head.origin, **common)
        )
        return result
    document_id = (head.document or _required(msg.control_id, msg, "MSH-10")) if head.mdm else ""
    members: dict[str, list[tuple[_Group, str, list[str]]]] = {}
    groups = _groups(msg, head.mdm)
    for group in groups:
        parts, skips = _group_parts(msg, group)
        result.skipped += skips
        text = _join(parts)
        if text:
            note_id = document_id or _group_id(msg, group)
            members.setdefault(note_id, []).append((group, text, [p.ref for p in parts]))
        elif not skips:
            where = f"{msg.label} {group.ref}" if group.obx or group.obr else msg.label
            result.skipped.append(Skip("no_note_text", f"{where}: no TX/FT/ST/ED text in OBX-5"))
    if not groups:
        result.skipped.append(Skip("no_note_text", f"{msg.label}: no OBX segment"))
    result.notes += [_note(msg, head, note_id, found) for note_id, found in members.items()]
    parent = head.parent
    if head.mdm and head.event in ("T08", "T10") and parent and parent != document_id:
        result.retractions.append(
            Retraction(
                note_id=parent,
                reason="superseded",
                origin=head.origin,
                replaced_by=document_id,
                **common,
            )
        )
    return result


# ---------------------------------------------------------------------------------------------
# Entry point

_UNREADABLE = ("unsupported_content_type", "undecodable_text")


def extract_hl7v2(value: bytes) -> Extraction:
    """Notes, retractions and skips of one record: an HL7 v2 message, several one after
    another, or an FHS/BHS batch.

    Raises ``not_hl7`` when the record (or any message in it) cannot be read as HL7 v2, and
    ``unsupported_content_type``/``undecodable_text`` when nothing in it yields a note or a
    retraction and some part could not be read.
    """
    text, forced = _transport_text(value)
    result = Extraction()
    messages = split_messages(split_segments(text))
    for index, message in enumerate(messages, 1):
        try:
            msg = _parse(message, index, forced)
        except InvalidEvent as exc:
            if exc.reason != "undecodable_text":
                raise
            result.skipped.append(Skip(exc.reason, f"message {index}: {exc.message}"))
            continue
        result.extend(_message_extraction(msg))
    if not messages:
        result.skipped.append(Skip("no_note_text", "batch without messages"))
    if not result.notes and not result.retractions:
        unreadable = next((s for s in result.skipped if s.reason in _UNREADABLE), None)
        if unreadable is not None:
            raise InvalidEvent(unreadable.reason, unreadable.detail)
    return result
