"""Small, valid EHR messages built for tests: HL7 v2 MDM, FHIR R4 DocumentReference and Bundle."""

from __future__ import annotations

import base64
from typing import Any

import orjson

SENTENCES = (
    "Serum PSA was 4.2 ng/mL.",
    "HER2 was positive by IHC.",
    "The patient tolerated the procedure well.",
    "EGFR mutation was not detected.",
)


def body(i: int, lines: int = 3) -> list[str]:
    """``lines`` sentences of note text, different per ``i``."""
    return [f"Visit {i} line {n}. {SENTENCES[(i + n) % len(SENTENCES)]}" for n in range(lines)]


def mdm(
    event: str,
    document: str,
    *,
    parent: str = "",
    lines: list[str] | None = None,
    control_id: str = "MSG1",
    patient: str = "PAT1",
) -> bytes:
    """An MDM message (CR segment terminators) with one TX OBX per line of text."""
    segments = [
        f"MSH|^~\\&|EHR|HOSP|NLP|HOSP|20261202101500||MDM^{event}^MDM_{event}|{control_id}|P|2.5.1",
        f"EVN|{event}|20261202101500",
        f"PID|1||{patient}^^^HOSP^MR||DOE^JANE||19700101|F",
        "PV1|1|O|CLINIC^1^1||||||||||||||||ENC1",
        _segment(
            "TXA",
            {1: "1", 2: "PN", 3: "TX", 4: "20261202101000", 12: document, 13: parent, 17: "AU"},
        ),
    ]
    for n, line in enumerate(lines or [], start=1):
        segments.append(f"OBX|{n}|TX|NOTE^Progress note^L||{line}||||||F")
    return "\r".join(segments).encode() + b"\r"


def _segment(name: str, fields: dict[int, str]) -> str:
    """A segment with ``fields`` (1-based HL7 positions) set and the others empty."""
    values = [""] * max(fields)
    for position, value in fields.items():
        values[position - 1] = value
    return "|".join([name, *values])


def document_reference(
    resource_id: str,
    text: str,
    *,
    version: str = "1",
    status: str = "current",
    replaces: str | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": resource_id,
        "meta": {"versionId": version},
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    if replaces:
        resource["relatesTo"] = [
            {"code": "replaces", "target": {"reference": f"DocumentReference/{replaces}"}}
        ]
    return resource


def bundle(*resources: dict[str, Any], kind: str = "collection") -> bytes:
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources]
    return orjson.dumps({"resourceType": "Bundle", "type": kind, "entry": entries})
