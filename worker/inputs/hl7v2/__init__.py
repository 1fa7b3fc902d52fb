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

Modules, one job each: :mod:`.transport` (framing, terminators, batches, messages),
:mod:`.charsets` (MSH-18 and fallbacks), :mod:`.delimiters` (MSH-1/MSH-2), :mod:`.escapes`
(escape sequences), :mod:`.messages` (one parsed message and its fields), :mod:`.obx` (note text
of one OBX), :mod:`.groups` (which OBX make a note, its id), :mod:`.notes` (notes and
retractions of a message) and :mod:`.extract` (the entry point).
"""

from __future__ import annotations

from worker.inputs.hl7v2.charsets import HL7_CHARSETS
from worker.inputs.hl7v2.delimiters import Delimiters
from worker.inputs.hl7v2.escapes import unescape
from worker.inputs.hl7v2.extract import extract_hl7v2
from worker.inputs.hl7v2.notes import FORMAT
from worker.inputs.hl7v2.obx import TEXT_VALUE_TYPES
from worker.inputs.hl7v2.transport import split_messages, split_segments

__all__ = [
    "FORMAT",
    "HL7_CHARSETS",
    "TEXT_VALUE_TYPES",
    "Delimiters",
    "extract_hl7v2",
    "split_messages",
    "split_segments",
    "unescape",
]
