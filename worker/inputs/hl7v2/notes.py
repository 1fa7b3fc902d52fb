"""One message's notes, retractions (MDM^T11 cancelled, T08/T10 superseded) and skips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.inputs import content
from worker.inputs.extracted import ExtractedNote, Extraction, Retraction, Skip
from worker.inputs.hl7v2.groups import Group, group_id, group_parts, groups, required
from worker.inputs.hl7v2.messages import Message
from worker.inputs.hl7v2.obx import join_parts

FORMAT = "hl7v2"


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


def _header(msg: Message) -> _Header:
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
    msg: Message, head: _Header, note_id: str, members: list[tuple[Group, str, list[str]]]
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


def message_extraction(msg: Message) -> Extraction:
    """The notes, retractions and skips of one message."""
    head = _header(msg)
    result = Extraction()
    common: dict[str, Any] = {"version": head.version, "patient_id": head.patient_id}
    if head.mdm and head.event == "T11":
        cancelled = required(head.document, msg, "MDM^T11 TXA-12 unique document number")
        result.retractions.append(
            Retraction(note_id=cancelled, reason="cancelled", origin=head.origin, **common)
        )
        return result
    document_id = (head.document or required(msg.control_id, msg, "MSH-10")) if head.mdm else ""
    members: dict[str, list[tuple[Group, str, list[str]]]] = {}
    message_groups = groups(msg, head.mdm)
    for group in message_groups:
        parts, skips = group_parts(msg, group)
        result.skipped += skips
        text = join_parts(parts)
        if text:
            note_id = document_id or group_id(msg, group)
            members.setdefault(note_id, []).append((group, text, [p.ref for p in parts]))
        elif not skips:
            where = f"{msg.label} {group.ref}" if group.obx or group.obr else msg.label
            result.skipped.append(Skip("no_note_text", f"{where}: no TX/FT/ST/ED text in OBX-5"))
    if not message_groups:
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
