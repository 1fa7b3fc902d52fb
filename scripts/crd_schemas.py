#!/usr/bin/env python3
"""Convert CustomResourceDefinitions into kubeconform's JSON schemas.

For every served version of every CRD given, write ``OUT/<group>/<kind>_<version>.json`` (kind
in lower case), the layout that kubeconform reads with
``-schema-location 'OUT/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'``.

The conversion follows kubeconform's ``openapi2jsonschema.py``, made strict the way the API
server prunes: an object schema that lists ``properties`` rejects other fields
(``additionalProperties: false``) unless the CRD keeps unknown fields there
(``x-kubernetes-preserve-unknown-fields``) or says otherwise (its own ``additionalProperties``).
OpenAPI's ``nullable`` becomes a ``null`` type, and int-or-string fields accept both.
Subschemas of ``allOf``/``anyOf``/``oneOf``/``not`` only constrain the fields their parent
declares, so they are left open.

A CRD's ``metadata`` is only ``type: object``; with ``--definitions`` (a ``_definitions.json`` of
the Kubernetes schemas, ``$defs`` layout) it is replaced by Kubernetes' strict ObjectMeta, so a
typo in ``metadata`` fails too.

Usage: crd_schemas.py [--definitions _definitions.json] OUT_DIR CRD.yaml [CRD.yaml ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

Schema = dict[str, Any]

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
# Keywords whose values are maps of name -> subschema, or one subschema, or lists of subschemas.
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions")
SCHEMA_ONE = ("items", "additionalItems", "contains", "propertyNames")
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def int_or_string() -> list[Schema]:
    return [{"type": "integer"}, {"type": "string"}]


def convert(node: Any, *, strict: bool = True) -> Any:
    """The JSON schema of one OpenAPI v3 (structural CRD) schema node."""
    if not isinstance(node, dict):
        return node
    out: Schema = {}
    for key, value in node.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: convert(sub) for name, sub in value.items()}
        elif key in (*SCHEMA_ONE, "additionalProperties") and isinstance(value, dict):
            out[key] = convert(value)
        elif key in JUNCTORS:
            subs = value if isinstance(value, list) else [value]
            converted = [convert(sub, strict=False) for sub in subs]
            out[key] = converted if isinstance(value, list) else converted[0]
        else:
            out[key] = value

    if out.pop("nullable", False) is True and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"] if "null" not in types else types
    if out.get("x-kubernetes-int-or-string") is True or out.get("format") == "int-or-string":
        out.pop("type", None)
        if out.get("format") == "int-or-string":
            out.pop("format")
        if "anyOf" not in out and "oneOf" not in out:
            out["anyOf"] = int_or_string()
    if (
        strict
        and "properties" in out
        and "additionalProperties" not in out
        and out.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        out["additionalProperties"] = False
    return out


def object_meta(definitions_path: Path) -> tuple[Schema, dict[str, Schema]]:
    """Kubernetes' ObjectMeta schema and the ``$defs`` it references (transitively)."""
    defs: dict[str, Schema] = json.loads(definitions_path.read_text(encoding="utf-8"))["$defs"]
    if OBJECT_META not in defs:
        raise SystemExit(f"{definitions_path}: no {OBJECT_META}")
    needed: dict[str, Schema] = {}
    pending = [OBJECT_META]
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed[name] = defs[name]
        for ref in re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(defs[name])):
            pending.append(ref)
    return {"$ref": f"#/$defs/{OBJECT_META}"}, needed


def crd_documents(path: Path) -> list[Schema]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    crds = [doc for doc in docs if doc.get("kind") == "CustomResourceDefinition"]
    if not crds:
        raise SystemExit(f"{path}: no CustomResourceDefinition")
    return crds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("crds", type=Path, nargs="+")
    parser.add_argument(
        "--definitions",
        type=Path,
        help="Kubernetes _definitions.json ($defs) whose strict ObjectMeta replaces metadata",
    )
    args = parser.parse_args(argv)

    meta: tuple[Schema, dict[str, Schema]] | None = None
    if args.definitions:
        meta = object_meta(args.definitions)
    written = 0
    for path in args.crds:
        for crd in crd_documents(path):
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                openapi = version.get("schema", {}).get("openAPIV3Schema")
                if not version.get("served", True) or openapi is None:
                    continue
                schema = convert(copy.deepcopy(openapi))
                schema["$schema"] = DRAFT
                schema.setdefault("properties", {})
                if meta is not None:
                    ref, defs = meta
                    schema["properties"]["metadata"] = dict(ref)
                    schema["$defs"] = {**schema.get("$defs", {}), **copy.deepcopy(defs)}
                # apiVersion and kind must name this version of this kind, as in the Kubernetes
                # schemas.
                schema["properties"]["apiVersion"] = {
                    "type": "string",
                    "enum": [f"{group}/{version['name']}"],
                }
                schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
                target = args.out_dir / group / f"{kind.lower()}_{version['name']}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(json.dumps(schema, indent=1, sort_keys=True), encoding="utf-8")
                print(f"{path.name}: {group}/{version['name']} {kind} -> {target}")
                written += 1
    if not written:
        raise SystemExit("no schema written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
