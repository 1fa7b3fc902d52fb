"""One message's separators: MSH-1 and MSH-2 read, checked and written back."""

from __future__ import annotations

from dataclasses import dataclass


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
