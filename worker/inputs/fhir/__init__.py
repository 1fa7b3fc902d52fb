"""FHIR R4 DocumentReference and DiagnosticReport (JSON, NDJSON, XML) to clinical notes.

Libraries: the standard library ``json`` reads JSON and NDJSON; FHIR XML is parsed by
:func:`worker.inputs.content.parse_xml` (defusedxml) and turned into the FHIR JSON dict shape by
:mod:`worker.inputs.fhir.xml`, so one code path extracts both; :mod:`worker.inputs.content`
decodes base64 and charsets and renders HTML/XHTML (inscriptis) and RTF (striprtf).

Written here: the resource walk (Bundles of every type, nested Bundles, entry DELETEs), the
attachment rules (content-type sniffing when none is given, contained and in-Bundle ``Binary``
resolution of ``attachment.url``, renditions versus parts), ids, versions and retractions
(``status``, ``relatesTo`` replaces), and the server envelopes: HAPI FHIR / Smile CDR
resource-modified messages (``operationType``, ``payloadId``, ``payload`` = the resource as a
JSON or XML string, optionally inside a channel message ``{"headers", "payload"}``) and IBM /
LinuxForHealth FHIR Server notification events (``operationType``, ``location``, ``resource``).

Every field is read through :func:`~.accessors.many` / :func:`~.accessors.one` /
:func:`~.accessors.string`, which accept a single value or a list and ignore wrong types,
so hostile JSON and the schema-less XML conversion are read the same way.

Modules, one job each: :mod:`.documents` (record value to JSON, NDJSON or XML documents),
:mod:`.xml` (FHIR XML to the JSON shape), :mod:`.envelopes` (server envelopes), :mod:`.bundles`
(resource dispatch and the Bundle walk), :mod:`.resources` (a DocumentReference or
DiagnosticReport to a note), :mod:`.attachments` (attachment text), :mod:`.retractions`
(status, replaces and deletes), :mod:`.accessors` (field readers), :mod:`.scope` (shared shapes
and ``origin``) and :mod:`.extract` (the entry point).
"""

from __future__ import annotations

from worker.inputs.fhir.bundles import MAX_BUNDLE_DEPTH
from worker.inputs.fhir.extract import UNREADABLE, extract_fhir
from worker.inputs.fhir.scope import NOTE_TYPES, Json
from worker.inputs.fhir.xml import xml_to_resource

__all__ = [
    "MAX_BUNDLE_DEPTH",
    "NOTE_TYPES",
    "UNREADABLE",
    "Json",
    "extract_fhir",
    "xml_to_resource",
]
