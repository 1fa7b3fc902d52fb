"""One message decoded and parsed (python-hl7), and the reading of its fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import hl7

from worker.errors import InvalidEvent
from worker.inputs.hl7v2.charsets import Charset, declared_charset, decode
from worker.inputs.hl7v2.delimiters import Delimiters
from worker.inputs.hl7v2.escapes import unescape


@dataclass(slots=True)
class Message:
    """A parsed message and the helpers that read its fields."""

    index: int
    segments: list[Any]  # hl7.Segment
    delimiters: Delimiters
    charset: Charset
    charset_declared: str | None

    def first(self, name: str) -> Any | None:
        return next((s for s in self.segments if segment_name(s) == name), None)

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


def segment_name(segment: Any) -> str:
    return str(segment[0]) if len(segment) else ""


def _present(value: str) -> str | None:
    value = value.strip()
    return None if value in ("", '""') else value


def _trim(parts: list[str]) -> list[str]:
    while parts and not parts[-1]:
        parts.pop()
    return parts


def parse(message: list[str], index: int, forced: Charset | None) -> Message:
    """Decode and parse one message; ``not_hl7`` for a header python-hl7 cannot use."""
    text, charset = decode(message, forced)
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
    return Message(index, list(parsed), delimiters, charset, declared_charset(message[0]))
