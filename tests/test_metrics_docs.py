"""docs/METRICS.md lists exactly the metric families and labels the worker registers."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from worker.metrics import Metrics

DOC = Path(__file__).resolve().parent.parent / "docs" / "METRICS.md"
_ROW = re.compile(r"^\| `(biomarker_\w+)` \| (counter|gauge|histogram) \| ([^|]*) \|")
#: How the table names a family of each type (docs/METRICS.md, "Names as scraped").
_SUFFIX = {"counter": "_total", "histogram": "_bucket", "gauge": ""}
#: Families of prometheus_client's standard collectors, which the page describes as groups.
_GROUPS = ("process_", "python_info", "python_gc_")


def documented() -> dict[str, tuple[str, set[str]]]:
    """Family name -> (type, label names), from the table of docs/METRICS.md."""
    families: dict[str, tuple[str, set[str]]] = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        scraped, kind, labels = match.groups()
        suffix = _SUFFIX[kind]
        assert scraped.endswith(suffix), f"{scraped}: a {kind} is listed as <name>{suffix}"
        family = scraped.removesuffix(suffix) if suffix else scraped
        assert family not in families, f"{scraped} is listed twice"
        families[family] = (kind, set(re.findall(r"`(\w+)`", labels)))
    return families


def exported_labels(metrics: Metrics, docs: dict[str, tuple[str, set[str]]]) -> dict[str, set[str]]:
    """Label names each biomarker family's samples carry, once every labelled metric has a
    child with the documented labels (``labels()`` refuses any other set of names)."""
    for wrapper in vars(metrics).values():
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        family = wrapper.describe()[0].name
        labels = docs.get(family, ("", set()))[1] - {"le"}  # undocumented: the test above
        if labels:
            try:
                wrapper.labels(**dict.fromkeys(labels, "0"))
            except ValueError as exc:
                message = f"{family}: documented labels {sorted(labels)}: {exc}"
                raise AssertionError(message) from exc
    seen: dict[str, set[str]] = defaultdict(set)
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                seen[family.name].update(sample.labels)
    return seen


def test_the_reference_lists_every_biomarker_family_and_nothing_else() -> None:
    docs = documented()
    exported = {
        family.name: family.type
        for family in Metrics().registry.collect()
        if family.name.startswith("biomarker_")
    }
    assert sorted(exported.keys() - docs.keys()) == [], "exported but missing in docs/METRICS.md"
    assert sorted(docs.keys() - exported.keys()) == [], "in docs/METRICS.md but not exported"
    for family, kind in exported.items():
        assert docs[family][0] == kind, f"{family} is a {kind}"


def test_the_reference_lists_every_family_with_its_labels() -> None:
    docs = documented()
    seen = exported_labels(Metrics(), docs)
    for family, (_kind, labels) in docs.items():
        # Samples: an unlabelled metric has them at once, a labelled one once it has a child.
        assert family in seen, f"{family} has labels docs/METRICS.md does not list"
        assert seen[family] == labels, f"{family}: labels"


def test_the_standard_collectors_are_exported_and_described_as_groups() -> None:
    text = DOC.read_text()
    others = {
        family.name
        for family in Metrics().registry.collect()
        if not family.name.startswith("biomarker_")
    }
    assert {"python_info", "python_gc_collections"} <= others
    for family in others:
        group = next((g for g in _GROUPS if family.startswith(g)), None)
        assert group is not None, f"{family} is not described in docs/METRICS.md"
    for group in _GROUPS:
        assert f"`{group}" in text
