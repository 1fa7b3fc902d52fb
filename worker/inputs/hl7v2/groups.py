"""Which OBX make one note, and its id: one OBR group each (ORU and others), or the whole
message (MDM)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.errors import InvalidEvent
from worker.inputs.extracted import Skip
from worker.inputs.hl7v2.messages import Message, segment_name
from worker.inputs.hl7v2.obx import Part, obx_part


@dataclass(slots=True)
class Group:
    """The OBX of one note: one OBR group (ORU and others) or the whole message (MDM)."""

    ref: str
    obr: Any | None = None
    obr_position: int = 0
    obx: list[Any] = field(default_factory=list)


def groups(msg: Message, mdm: bool) -> list[Group]:
    """OBR groups (OBX before any OBR form a group of their own); MDM: one for the message."""
    if mdm:
        return [Group("document", obx=[s for s in msg.segments if segment_name(s) == "OBX"])]
    found: list[Group] = []
    obr_count = 0
    for segment in msg.segments[1:]:
        name = segment_name(segment)
        if name == "OBR":
            obr_count += 1
            set_id = msg.value(segment, 1) or str(obr_count)
            found.append(Group(f"OBR/{set_id}", segment, obr_count))
        elif name == "OBX":
            if not found:
                found.append(Group("OBX before OBR"))
            found[-1].obx.append(segment)
    return found


def group_parts(msg: Message, group: Group) -> tuple[list[Part], list[Skip]]:
    parts: list[Part] = []
    skips: list[Skip] = []
    for position, obx in enumerate(group.obx, 1):
        part = obx_part(msg, obx, position)
        if isinstance(part, Skip):
            skips.append(part)
        elif part is not None:
            parts.append(part)
    return parts, skips


def required(value: str | None, msg: Message, what: str) -> str:
    if value is None:
        raise InvalidEvent("not_hl7", f"{msg.label}: {what} is empty")
    return value


def group_id(msg: Message, group: Group) -> str:
    """OBR-3 filler order number, else OBR-2 placer, else MSH-10/OBR-1 (or MSH-10 alone)."""
    control = msg.control_id
    if group.obr is None:
        return required(control, msg, "MSH-10 message control id")
    number = msg.printed(group.obr, 3) or msg.printed(group.obr, 2)
    if number:
        return number
    set_id = msg.value(group.obr, 1) or str(group.obr_position)
    return f"{required(control, msg, 'MSH-10 message control id')}/{set_id}"
