"""Input formats: what a record's value is, and how its notes are read out of it.

``note`` is the project's own JSON event (the default). ``hl7v2``, ``fhir``, ``cda`` and
``mapping`` extract notes from EHR messages (:mod:`worker.inputs.extracted` has the shared
types); ``auto`` tells the wire formats apart by their first bytes. Each input topic has its own
format (:mod:`worker.config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from worker.inputs.extracted import Extraction, Extractor

InputFormat = Literal["note", "hl7v2", "fhir", "cda", "mapping", "auto"]
FORMATS: tuple[str, ...] = get_args(InputFormat)


def extractor_for(format_name: str, mapping: Path | None = None) -> Extractor:
    """The extractor of a format (``mapping`` needs its mapping file). The worker reads ``note``
    events without it (their output keeps the input's bytes); ``extract`` uses it.

    Raises :class:`~worker.errors.UsageError` for a bad mapping file.
    """
    if format_name == "note":  # the project's own event, read as one extracted note
        from worker.inputs.detect import note_extraction

        return note_extraction
    if format_name == "hl7v2":
        from worker.inputs.hl7v2 import extract_hl7v2

        return extract_hl7v2
    if format_name == "fhir":
        from worker.inputs.fhir import extract_fhir

        return extract_fhir
    if format_name == "cda":
        from worker.inputs.cda import extract_cda

        return extract_cda
    if format_name == "mapping":
        from worker.errors import UsageError
        from worker.inputs.mapping import load_mapping, mapping_extractor

        if mapping is None:
            raise UsageError("format mapping needs a mapping file (--mapping / input mapping)")
        return mapping_extractor(load_mapping(mapping))
    if format_name == "auto":
        from worker.inputs.detect import extract_any

        return extract_any
    raise ValueError(f"no extractor for format {format_name!r}")


__all__ = ["FORMATS", "Extraction", "Extractor", "InputFormat", "extractor_for"]
