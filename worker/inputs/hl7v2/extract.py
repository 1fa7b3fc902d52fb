"""The entry point: one record (a message, several, or a batch) to notes, retractions and skips."""

from __future__ import annotations

from worker.errors import InvalidEvent
from worker.inputs.extracted import Extraction, Skip
from worker.inputs.hl7v2.messages import parse
from worker.inputs.hl7v2.notes import message_extraction
from worker.inputs.hl7v2.transport import split_messages, split_segments, transport_text

_UNREADABLE = ("unsupported_content_type", "undecodable_text")


def extract_hl7v2(value: bytes) -> Extraction:
    """Notes, retractions and skips of one record: an HL7 v2 message, several one after
    another, or an FHS/BHS batch.

    Raises ``not_hl7`` when the record (or any message in it) cannot be read as HL7 v2, and
    ``unsupported_content_type``/``undecodable_text`` when nothing in it yields a note or a
    retraction and some part could not be read.
    """
    text, forced = transport_text(value)
    result = Extraction()
    messages = split_messages(split_segments(text))
    for index, message in enumerate(messages, 1):
        try:
            msg = parse(message, index, forced)
        except InvalidEvent as exc:
            if exc.reason != "undecodable_text":
                raise
            result.skipped.append(Skip(exc.reason, f"message {index}: {exc.message}"))
            continue
        result.extend(message_extraction(msg))
    if not messages:
        result.skipped.append(Skip("no_note_text", "batch without messages"))
    if not result.notes and not result.retractions:
        unreadable = next((s for s in result.skipped if s.reason in _UNREADABLE), None)
        if unreadable is not None:
            raise InvalidEvent(unreadable.reason, unreadable.detail)
    return result
