"""The chart's optional PrometheusRule, and strict validation of the CRD kinds.

Rendered with helm, and validated with kubeconform and the CRD schemas, that
``scripts/install_chart_tools.sh`` puts in
``${BIOMARKER_TOOLS_DIR:-~/.cache/biomarker-worker/tools}``. Without them these tests fail (they
never skip): CI installs the tools first. The alerts' behaviour is unit-tested by promtool
(``tests/alerts/prometheusrule_test.yaml``, run by ``scripts/check_chart.sh``).
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from tests.chart_tools import CHART, CI_VALUES, HELM, KUBECONFORM, ROOT, TOOLS_DIR

K8S_SCHEMAS = TOOLS_DIR / "kubernetes-json-schema"
CRD_SCHEMAS = TOOLS_DIR / "crd-json-schema"
KUBE_VERSION = "1.29.0"
RELEASE = "prod"
NAMESPACE = "nlp"
METRICS_JOB = f"{RELEASE}-biomarker-worker-metrics"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
KEDA_APIS = ("keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication")
DEFAULT_RUNBOOK = (
    "https://github.com/biomarker-worker/biomarker-worker/blob/main/docs/OPERATIONS.md"
)
ALERTS = (
    "BiomarkerWorkerDown",
    "BiomarkerLagGrowing",
    "BiomarkerDeadLettersSpike",
    "BiomarkerModelStalled",
    "BiomarkerFlaggedRatioDrift",
    "BiomarkerCommitsFailing",
)
ALERT_KEYS = {
    "BiomarkerWorkerDown": "workerDown",
    "BiomarkerLagGrowing": "lagGrowing",
    "BiomarkerDeadLettersSpike": "deadLettersSpike",
    "BiomarkerModelStalled": "modelStalled",
    "BiomarkerFlaggedRatioDrift": "flaggedRatioDrift",
    "BiomarkerCommitsFailing": "commitsFailing",
}
# A vector selector of the worker's metrics: name and, when present, its label matchers.
SELECTOR = re.compile(r"\b(biomarker_[a-z_]+)(\{[^}]*\})?")

Manifest = dict[str, Any]


def _run(tool: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if not tool.is_file():
        pytest.fail(f"{tool.name} not found at {tool}: run scripts/install_chart_tools.sh first")
    return subprocess.run(
        [str(tool), *args], input=stdin, capture_output=True, text=True, check=False, timeout=120
    )


def _helm_args(
    values: dict[str, Any] | None, value_files: tuple[Path, ...], api_versions: tuple[str, ...]
) -> list[str]:
    args = [RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION]
    for path in value_files:
        args += ["-f", str(path)]
    if values is not None:
        args += ["-f", "-"]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def render(
    values: dict[str, Any] | None = None,
    *,
    value_files: tuple[Path, ...] = (),
    api_versions: tuple[str, ...] = (PROMETHEUS_RULE_API,),
) -> list[Manifest]:
    stdin = yaml.safe_dump(values) if values is not None else None
    result = _run(HELM, "template", *_helm_args(values, value_files, api_versions), stdin=stdin)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(values: dict[str, Any]) -> str:
    result = _run(
        HELM,
        "template",
        *_helm_args(values, (), (PROMETHEUS_RULE_API,)),
        stdin=yaml.safe_dump(values),
    )
    assert result.returncode != 0, "helm template unexpectedly succeeded"
    return result.stderr


def enabled(**rule: Any) -> dict[str, Any]:
    return {"prometheusRule": {"enabled": True, **rule}}


def prometheus_rules(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == "PrometheusRule"]


def alerts_of(manifests: list[Manifest]) -> dict[str, Manifest]:
    (rule,) = prometheus_rules(manifests)
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


@pytest.fixture(scope="module")
def default_alerts() -> dict[str, Manifest]:
    return alerts_of(render(enabled()))


def test_disabled_by_default_renders_no_rule() -> None:
    assert not prometheus_rules(render())
    assert not prometheus_rules(render({"prometheusRule": {"enabled": False}}))


def test_not_rendered_where_the_cluster_lacks_the_crd() -> None:
    assert not prometheus_rules(render(enabled(), api_versions=()))
    assert not prometheus_rules(render(enabled(), api_versions=(SERVICE_MONITOR_API,)))


def test_the_six_alerts_exist(default_alerts: dict[str, Manifest]) -> None:
    assert tuple(default_alerts) == ALERTS


@pytest.mark.parametrize("name", ALERTS)
def test_alert_annotations_and_severity(default_alerts: dict[str, Manifest], name: str) -> None:
    alert = default_alerts[name]
    annotations = alert["annotations"]
    assert annotations["runbook_url"] == f"{DEFAULT_RUNBOOK}#{name.lower()}"
    assert annotations["summary"] and annotations["description"]
    assert alert["labels"]["severity"] in ("warning", "critical")
    assert re.fullmatch(r"[0-9]+[smh]", alert["for"])


@pytest.mark.parametrize("name", ALERTS)
def test_every_selector_is_scoped_to_the_release(
    default_alerts: dict[str, Manifest], name: str
) -> None:
    """Each metric is selected in the release's namespace and the metrics Service's job, so
    another release (or another namespace) never feeds this release's alerts."""
    expr = default_alerts[name]["expr"]
    selectors = SELECTOR.findall(expr)
    assert selectors, expr
    for metric, matchers in selectors:
        assert f'namespace="{NAMESPACE}"' in matchers, (metric, expr)
        assert f'job="{METRICS_JOB}"' in matchers, (metric, expr)


def test_metrics_service_is_the_scraped_job() -> None:
    """The job in the rules is the metrics Service's name: the job label the chart's
    ServiceMonitor gives the worker's series."""
    manifests = render(
        {**enabled(), "metrics": {"serviceMonitor": {"enabled": True}}},
        api_versions=(PROMETHEUS_RULE_API, SERVICE_MONITOR_API),
    )
    (service,) = [
        m for m in manifests if m["kind"] == "Service" and m["metadata"]["name"] == METRICS_JOB
    ]
    (monitor,) = [m for m in manifests if m["kind"] == "ServiceMonitor"]
    assert "jobLabel" not in monitor["spec"]  # Prometheus Operator: job = the Service's name
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [NAMESPACE]


def test_expressions_use_the_scraped_metric_names(default_alerts: dict[str, Manifest]) -> None:
    """Counters are scraped with ``_total`` (prometheus_client); the names exist in
    worker/metrics.py."""
    source = (ROOT / "worker" / "metrics.py").read_text(encoding="utf-8")
    counters = set(re.findall(r'Counter\(\s*"(biomarker_[a-z_]+)"', source))
    others = set(re.findall(r'(?:Gauge|Histogram)\(\s*"(biomarker_[a-z_]+)"', source))
    used = {metric for a in default_alerts.values() for metric, _ in SELECTOR.findall(a["expr"])}
    for metric in used:
        if metric.endswith("_total"):
            assert metric.removesuffix("_total") in counters, metric
        else:
            assert metric in others, metric


def test_default_expressions(default_alerts: dict[str, Manifest]) -> None:
    sel = f'namespace="{NAMESPACE}", job="{METRICS_JOB}"'

    def flat(name: str) -> str:
        return " ".join(default_alerts[name]["expr"].split())

    assert flat("BiomarkerWorkerDown") == f"absent(biomarker_build_info{{{sel}}})"
    lag = flat("BiomarkerLagGrowing")
    group_lag = (
        "sum by (namespace, job, topic) (max by (namespace, job, topic, partition) "
        f"(biomarker_group_lag{{{sel}}}))"
    )
    assert f"( {group_lag} > 10000 ) and" in lag
    assert f"deriv(( {group_lag} )[15m:1m]) > 0" in lag
    assert flat("BiomarkerDeadLettersSpike") == (
        f"sum by (namespace, job) (rate(biomarker_dead_letters_total{{{sel}}}[10m])) / "
        f"sum by (namespace, job) (rate(biomarker_events_in_total{{{sel}}}[10m])) > 0.05"
    )
    assert flat("BiomarkerModelStalled") == (
        "max by (namespace, job, pod) "
        f"(max_over_time(biomarker_queue_sentences{{{sel}}}[15m])) > 0 and "
        f"sum by (namespace, job, pod) (increase(biomarker_sentences_out_total{{{sel}}}[15m])) == 0"
    )
    drift = flat("BiomarkerFlaggedRatioDrift")
    assert "< 0.02 or" in drift and "> 0.6 )" in drift
    assert drift.endswith(
        f"and sum by (namespace, job) (rate(biomarker_sentences_out_total{{{sel}}}[1h])) > 0"
    )
    assert flat("BiomarkerCommitsFailing") == (
        f'sum by (namespace, job) (rate(biomarker_commits_total{{{sel}, outcome!="ok"}}[10m])) > 0'
    )
    fors = {name: alert["for"] for name, alert in default_alerts.items()}
    assert fors == {
        "BiomarkerWorkerDown": "5m",
        "BiomarkerLagGrowing": "15m",
        "BiomarkerDeadLettersSpike": "10m",
        "BiomarkerModelStalled": "5m",
        "BiomarkerFlaggedRatioDrift": "1h",
        "BiomarkerCommitsFailing": "10m",
    }


def test_commit_outcomes_match_the_worker() -> None:
    """BiomarkerCommitsFailing counts every outcome but "ok": the worker's others are failures."""
    outcomes: set[str] = set()
    for path in (ROOT / "worker").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        outcomes |= set(re.findall(r'commits\.labels\(outcome="([a-z_]+)"\)', text))
        if re.search(r"commits\.labels\(outcome=\"ok\" if", text):
            outcomes |= {"ok", *re.findall(r'else "([a-z_]+)"\)', text)}
    assert "ok" in outcomes
    assert outcomes - {"ok"} <= {"failed", "aborted"}, outcomes


def test_values_tune_the_alerts() -> None:
    alerts = alerts_of(
        render(
            enabled(
                labels={"release": "kube-prometheus-stack"},
                alertLabels={"team": "nlp"},
                runbookBaseUrl="https://runbooks.example.internal/biomarker.html#",
                alerts={
                    "lagGrowing": {"threshold": 50000, "window": "30m", "for": "30m"},
                    "deadLettersSpike": {"ratio": 0.01, "severity": "critical"},
                    "flaggedRatioDrift": {"low": 0.05, "high": 0.4, "for": "2h"},
                    "commitsFailing": {"enabled": False},
                },
            )
        )
    )
    assert "BiomarkerCommitsFailing" not in alerts
    assert len(alerts) == 5
    for name, alert in alerts.items():
        assert alert["labels"]["team"] == "nlp"
        assert alert["annotations"]["runbook_url"] == (
            f"https://runbooks.example.internal/biomarker.html#{name.lower()}"
        )
    lag = alerts["BiomarkerLagGrowing"]
    assert "> 50000" in lag["expr"] and "[30m:1m]" in lag["expr"] and lag["for"] == "30m"
    dlq = alerts["BiomarkerDeadLettersSpike"]
    assert dlq["expr"].endswith("> 0.01") and dlq["labels"]["severity"] == "critical"
    drift = alerts["BiomarkerFlaggedRatioDrift"]
    assert "< 0.05" in drift["expr"] and "> 0.4" in drift["expr"] and drift["for"] == "2h"


def test_rule_selector_labels() -> None:
    (rule,) = prometheus_rules(render(enabled(labels={"release": "kube-prometheus-stack"})))
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["app.kubernetes.io/instance"] == RELEASE
    assert "namespace" not in rule["metadata"]  # the release namespace


def test_rule_labels_win_over_common_labels() -> None:
    values = {
        **enabled(labels={"release": "kube-prometheus-stack"}),
        "commonLabels": {"release": "other", "team": "nlp"},
    }
    (rule,) = prometheus_rules(render(values))
    labels = rule["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"
    assert labels["team"] == "nlp"


def test_no_enabled_alert_renders_no_rule() -> None:
    off = {key: {"enabled": False} for key in ALERT_KEYS.values()}
    assert not prometheus_rules(render(enabled(alerts=off)))


def test_explicit_job() -> None:
    alerts = alerts_of(
        render({**enabled(job="kubernetes-pods"), "metrics": {"service": {"enabled": False}}})
    )
    for alert in alerts.values():
        assert 'job="kubernetes-pods"' in alert["expr"]
        assert METRICS_JOB not in alert["expr"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {**enabled(), "metrics": {"service": {"enabled": False}}},
            "prometheusRule.enabled needs metrics.service.enabled",
        ),
        (
            enabled(alerts={"flaggedRatioDrift": {"low": 0.5, "high": 0.5}}),
            "flaggedRatioDrift.low (0.5) must be below .high (0.5)",
        ),
        (
            enabled(alertLabels={"severity": "page"}),
            "prometheusRule.alertLabels must not set severity",
        ),
        (
            enabled(labels={"app.kubernetes.io/instance": "x"}),
            "prometheusRule.labels must not set app.kubernetes.io/instance",
        ),
    ],
)
def test_inconsistent_values_fail(values: dict[str, Any], message: str) -> None:
    assert message in render_error(values)


@pytest.mark.parametrize(
    "values",
    [
        enabled(unknown=True),
        enabled(alerts={"workerDown": {"for": "five minutes"}}),
        enabled(alerts={"deadLettersSpike": {"ratio": 2}}),
        enabled(alerts={"lagGrowing": {"treshold": 1}}),
        enabled(alerts={"lagGrowing": {"threshold": 1.5}}),
    ],
)
def test_values_schema_rejects(values: dict[str, Any]) -> None:
    render_error(values)


def test_ci_value_set_renders_the_rule() -> None:
    manifests = render(
        value_files=(CI_VALUES / "prometheusrule.yaml",),
        api_versions=(PROMETHEUS_RULE_API, SERVICE_MONITOR_API),
    )
    assert len(prometheus_rules(manifests)) == 1
    assert [m for m in manifests if m["kind"] == "ServiceMonitor"]


# --- kubeconform with the CRD schemas ------------------------------------------------------


def kubeconform(manifests: list[Manifest]) -> subprocess.CompletedProcess[str]:
    """Strict kubeconform as scripts/check_chart.sh runs it (no kind skipped)."""
    if not (CRD_SCHEMAS / ".complete").is_file():
        pytest.fail(f"no CRD schemas at {CRD_SCHEMAS}: run scripts/install_chart_tools.sh first")
    return _run(
        KUBECONFORM,
        "-strict",
        "-summary",
        "-kubernetes-version",
        KUBE_VERSION,
        "-schema-location",
        f"{K8S_SCHEMAS}/{{{{ .NormalizedKubernetesVersion }}}}-standalone{{{{ .StrictSuffix }}}}"
        "/{{ .ResourceKind }}{{ .KindSuffix }}.json",
        "-schema-location",
        f"{CRD_SCHEMAS}/{{{{ .Group }}}}"
        "/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json",
        stdin=yaml.safe_dump_all(manifests),
    )


@pytest.fixture(scope="module")
def crd_manifests() -> dict[str, Manifest]:
    """One rendered object of every optional CRD kind."""
    # The KEDA value set renders a ScaledObject and, with SASL, a TriggerAuthentication.
    keda = render(value_files=(CI_VALUES / "keda.yaml",), api_versions=KEDA_APIS)
    monitoring = render(
        {**enabled(), "metrics": {"serviceMonitor": {"enabled": True}}},
        api_versions=(PROMETHEUS_RULE_API, SERVICE_MONITOR_API),
    )
    kinds = ("ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule")
    found = {m["kind"]: m for m in keda + monitoring if m["kind"] in kinds}
    assert set(found) == set(kinds)
    return found


def test_crd_kinds_are_valid_and_validated(crd_manifests: dict[str, Manifest]) -> None:
    result = kubeconform(list(crd_manifests.values()))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid: 4, Invalid: 0, Errors: 0, Skipped: 0" in result.stdout, result.stdout


def _broken(manifest: Manifest, path: tuple[str | int, ...], key: str, value: Any) -> Manifest:
    broken = copy.deepcopy(manifest)
    node: Any = broken
    for step in path:
        node = node[step]
    node[key] = value
    return broken


class Typo(NamedTuple):
    """``kind`` with ``key`` set to ``value`` at ``path``: kubeconform reports ``error``."""

    kind: str
    path: tuple[str | int, ...]
    key: str
    value: Any
    error: str


TYPOS = [
    Typo("ScaledObject", ("spec",), "maxReplicaCont", 3, "'maxReplicaCont' not allowed"),
    Typo("ScaledObject", ("spec", "triggers", 0, "authenticationRef"), "nmae", "x", "'nmae'"),
    Typo("ScaledObject", ("spec",), "minReplicaCount", "one", "want integer"),
    Typo("ScaledObject", ("metadata",), "lables", {"a": "b"}, "'lables' not allowed"),
    Typo("TriggerAuthentication", ("spec",), "secretTargetRefs", [], "not allowed"),
    Typo("ServiceMonitor", ("spec", "endpoints", 0), "intervall", "30s", "not allowed"),
    Typo("PrometheusRule", ("spec", "groups", 0, "rules", 0), "anotations", {}, "'anotations'"),
    Typo("PrometheusRule", ("spec", "groups", 0, "rules", 0), "for", "5 minutes", "pattern"),
]


@pytest.mark.parametrize("typo", TYPOS, ids=[f"{t.kind}.{t.key}" for t in TYPOS])
def test_misspelt_crd_fields_fail(crd_manifests: dict[str, Manifest], typo: Typo) -> None:
    result = kubeconform([_broken(crd_manifests[typo.kind], typo.path, typo.key, typo.value)])
    assert result.returncode != 0, result.stdout
    assert typo.error in result.stdout, result.stdout


def test_a_crd_kind_without_schema_is_an_error(crd_manifests: dict[str, Manifest]) -> None:
    """No schema (an unknown API version) fails instead of being skipped."""
    other = _broken(crd_manifests["ScaledObject"], (), "apiVersion", "keda.sh/v1alpha2")
    result = kubeconform([other])
    assert result.returncode != 0
    assert "could not find schema for ScaledObject" in result.stdout, result.stdout
