"""Semantics of the rendered Helm chart that Kubernetes schemas cannot check.

The chart is rendered with the helm binary that ``scripts/install_chart_tools.sh`` puts in
``${BIOMARKER_TOOLS_DIR:-~/.cache/biomarker-worker/tools}/bin``. Without it these tests fail (they
never skip): CI installs the tools first. Schema validation (kubeconform) is in
``scripts/check_chart.sh``.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "biomarker-worker"
CI_VALUES = ROOT / "helm" / "ci-values"
TOOLS_DIR = Path(
    os.environ.get("BIOMARKER_TOOLS_DIR", Path.home() / ".cache" / "biomarker-worker" / "tools")
)
HELM = TOOLS_DIR / "bin" / "helm"
RELEASE = "ci"
KUBE_VERSION = "1.29.0"
FULLNAME = f"{RELEASE}-biomarker-worker"
CONFIG_NAME = f"{FULLNAME}-config"
MAPPINGS_NAME = f"{FULLNAME}-mappings"
KEDA_APIS = ("keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication")
CRD_API_VERSIONS = {
    "keda": KEDA_APIS,
    "ehr-inputs": KEDA_APIS,
    "servicemonitor": ("monitoring.coreos.com/v1/ServiceMonitor",),
}
VALUE_SETS = sorted(path.stem for path in CI_VALUES.glob("*.yaml"))
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

Manifest = dict[str, Any]


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    if not HELM.is_file():
        pytest.fail(f"helm not found at {HELM}: run scripts/install_chart_tools.sh first")
    return subprocess.run(
        [str(HELM), *args], capture_output=True, text=True, check=False, timeout=120
    )


def _values_args(value_set: str | None, sets: dict[str, Any] | None) -> list[str]:
    """``-f`` arguments: the value set, then the dotted ``sets`` as a YAML file (typed values)."""
    args = []
    if value_set is not None:
        args += ["-f", str(CI_VALUES / f"{value_set}.yaml")]
    if sets:
        nested: dict[str, Any] = {}
        for dotted, value in sets.items():
            *parents, leaf = dotted.split(".")
            node = nested
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 # removed at exit
            "w", suffix=".yaml", delete=False
        )
        with handle:
            yaml.safe_dump(nested, handle)
        atexit.register(os.unlink, handle.name)
        args += ["-f", handle.name]
    return args


def _template_args(
    value_set: str | None, sets: dict[str, Any] | None, api_versions: tuple[str, ...]
) -> list[str]:
    args = [RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *_values_args(value_set, sets)]
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def render(
    value_set: str | None = None,
    sets: dict[str, Any] | None = None,
    api_versions: tuple[str, ...] | None = None,
) -> list[Manifest]:
    """Render the chart; ``api_versions`` defaults to the CRDs the value set is meant for."""
    if api_versions is None:
        api_versions = CRD_API_VERSIONS.get(value_set or "", ())
    result = _helm("template", *_template_args(value_set, sets, api_versions))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_error(
    value_set: str | None = None,
    sets: dict[str, Any] | None = None,
    extra_args: tuple[str, ...] = (),
) -> str:
    """Render a chart that must fail; returns helm's error output."""
    result = _helm("template", *_template_args(value_set, sets, ()), *extra_args)
    assert result.returncode != 0, "helm template unexpectedly succeeded"
    return result.stderr


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def workload(manifests: list[Manifest]) -> Manifest:
    found = [m for m in manifests if m["kind"] in WORKLOAD_KINDS]
    assert len(found) == 1, f"expected exactly one Deployment or StatefulSet, got {len(found)}"
    return found[0]


def pod_specs(manifests: list[Manifest]) -> Iterator[tuple[str, Manifest]]:
    for m in manifests:
        if m["kind"] in (*WORKLOAD_KINDS, "Job"):
            yield m["kind"], m["spec"]["template"]["spec"]


def container(pod_spec: Manifest, name: str | None = None) -> Manifest:
    containers = pod_spec["containers"]
    if name is None:
        assert len(containers) == 1
        only: Manifest = containers[0]
        return only
    named: Manifest = next(c for c in containers if c["name"] == name)
    return named


def config_data(manifests: list[Manifest]) -> dict[str, str]:
    """The settings ConfigMap's data (the mapping files have a ConfigMap of their own)."""
    (settings,) = (
        m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"] == CONFIG_NAME
    )
    data: dict[str, str] = settings["data"]
    return data


def env_by_name(ctr: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in ctr.get("env", [])}


def effective_env(manifests: list[Manifest], ctr: Manifest) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: the ConfigMap (``envFrom``), then
    ``env``, which wins. Values from Secrets and the downward API are placeholders here."""
    env = dict(config_data(manifests))
    for item in ctr.get("env", []):
        env[item["name"]] = item.get("value", "placeholder")
    return env


def use_env(patch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env`` the only ``BIOMARKER_*`` variables of this process (within ``patch``)."""
    for key in list(os.environ):
        if key.startswith("BIOMARKER_"):
            patch.delenv(key)
    for key, value in env.items():
        patch.setenv(key, value)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(name) for name in VALUE_SETS}


def test_value_sets_exist() -> None:
    assert {
        "default",
        "gpu",
        "statefulset",
        "keda",
        "backfill",
        "servicemonitor",
        "ehr-inputs",
    } <= set(VALUE_SETS)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_one_workload_with_selector_matching_its_pods(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    wl = workload(manifests)
    selector = wl["spec"]["selector"]["matchLabels"]
    pod_labels = wl["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    # Selectors are immutable: only name, instance and the fixed component.
    assert set(selector) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    assert selector["app.kubernetes.io/component"] == "worker"
    for kind in ("Service", "PodDisruptionBudget"):
        for obj in by_kind(manifests, kind):
            obj_selector = obj["spec"]["selector"]
            obj_selector = obj_selector.get("matchLabels", obj_selector)
            assert obj_selector.items() <= pod_labels.items(), obj["metadata"]["name"]
    for job in by_kind(manifests, "Job"):
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= job_labels.items(), "the worker selector matches Job pods"


def test_default_renders_deployment_without_optional_objects(
    rendered: dict[str, list[Manifest]],
) -> None:
    kinds = sorted(m["kind"] for m in rendered["default"])
    assert kinds == sorted(
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]
    )
    deployment = one(rendered["default"], "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert container(deployment["spec"]["template"]["spec"])["args"] == ["run"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_security_defaults(rendered: dict[str, list[Manifest]], value_set: str) -> None:
    manifests = rendered[value_set]
    cache_dir = config_data(manifests)["BIOMARKER_CACHE_DIR"]
    for kind, spec in pod_specs(manifests):
        assert spec["automountServiceAccountToken"] is False, kind
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True
        assert pod_sc["runAsUser"] != 0
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
        empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for ctr in spec["containers"] + spec.get("initContainers", []):
            sc = ctr["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, ctr["name"]
            assert sc["allowPrivilegeEscalation"] is False, ctr["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], ctr["name"]
            assert "add" not in sc["capabilities"]
        mounts = {m["mountPath"]: m["name"] for m in container(spec)["volumeMounts"]}
        # A read-only root filesystem needs writable emptyDirs for /tmp and the model cache.
        assert mounts["/tmp"] in empty_dirs
        assert mounts[cache_dir] in empty_dirs
    for sa in by_kind(manifests, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_exceeds_drain_deadline(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    drain = float(config_data(manifests)["BIOMARKER_DRAIN_TIMEOUT_S"])
    for kind, spec in pod_specs(manifests):
        assert spec["terminationGracePeriodSeconds"] > drain, kind


def test_grace_period_is_derived_from_drain_deadline() -> None:
    spec = workload(render(sets={"shutdown.drainTimeoutSeconds": 50.5}))["spec"]["template"]
    assert spec["spec"]["terminationGracePeriodSeconds"] == 51 + 15


def test_grace_period_not_above_drain_deadline_fails() -> None:
    error = render_error(
        sets={"shutdown.drainTimeoutSeconds": 30, "shutdown.terminationGracePeriodSeconds": 30}
    )
    assert "must exceed shutdown.drainTimeoutSeconds" in error


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_and_port(rendered: dict[str, list[Manifest]], value_set: str) -> None:
    manifests = rendered[value_set]
    ctr = container(workload(manifests)["spec"]["template"]["spec"])
    port = next(p for p in ctr["ports"] if p["name"] == "metrics")
    assert str(port["containerPort"]) == config_data(manifests)["BIOMARKER_METRICS_PORT"]
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert ctr["startupProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def test_statefulset_uses_pod_name_as_group_instance_id(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["statefulset"]
    sts = one(manifests, "StatefulSet")
    assert not by_kind(manifests, "Deployment")
    env = env_by_name(container(sts["spec"]["template"]["spec"]))
    field_ref = env["BIOMARKER_GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]
    assert field_ref["fieldPath"] == "metadata.name"
    headless = next(
        s
        for s in by_kind(manifests, "Service")
        if s["metadata"]["name"] == sts["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["replicas"] == 3


def test_deployment_has_no_static_membership(rendered: dict[str, list[Manifest]]) -> None:
    deployment = one(rendered["default"], "Deployment")
    env = env_by_name(container(deployment["spec"]["template"]["spec"]))
    assert "BIOMARKER_GROUP_INSTANCE_ID" not in env
    assert "BIOMARKER_GROUP_INSTANCE_ID" not in config_data(rendered["default"])


def test_statefulset_reads_kafka_credentials_and_ca_from_secrets(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["statefulset"]
    assert not by_kind(manifests, "Secret"), "existingSecret must not create a Secret"
    spec = one(manifests, "StatefulSet")["spec"]["template"]["spec"]
    env = env_by_name(container(spec))
    for name, key in (
        ("BIOMARKER_SASL_USERNAME", "sasl-username"),
        ("BIOMARKER_SASL_PASSWORD", "sasl-password"),
    ):
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "biomarker-kafka-credentials", "key": key}
    data = config_data(manifests)
    assert data["BIOMARKER_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert data["BIOMARKER_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert "BIOMARKER_SASL_PASSWORD" not in data
    tls_volume = next(v for v in spec["volumes"] if v["name"] == "kafka-tls")
    assert tls_volume["secret"]["secretName"] == "kafka-ca"
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "kafka-tls")
    assert data["BIOMARKER_SSL_CA_LOCATION"] == f"{mount['mountPath']}/ca.crt"


def test_gpu_set_requests_one_gpu(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["gpu"]
    spec = workload(manifests)["spec"]["template"]["spec"]
    resources = container(spec)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1
    assert resources["requests"]["nvidia.com/gpu"] == 1
    for init in spec.get("initContainers", []):
        assert "nvidia.com/gpu" not in init["resources"].get("limits", {})
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert spec["runtimeClassName"] == "nvidia"
    assert container(spec)["image"].endswith("-cuda")
    assert config_data(manifests)["BIOMARKER_DEVICE"] == "cuda"


def test_cpu_sets_request_no_gpu(rendered: dict[str, list[Manifest]]) -> None:
    for name in VALUE_SETS:
        if name == "gpu":
            continue
        for _, spec in pod_specs(rendered[name]):
            resources = container(spec)["resources"]
            assert "nvidia.com/gpu" not in resources.get("limits", {}), name
            assert container(spec)["image"].endswith("-cpu"), name
        assert config_data(rendered[name])["BIOMARKER_DEVICE"] == "cpu"


def test_torch_threads_follow_cpu_request() -> None:
    assert config_data(render())["BIOMARKER_TORCH_THREADS"] == "2"
    millicores = render(sets={"resources.requests.cpu": "3500m"})
    assert config_data(millicores)["BIOMARKER_TORCH_THREADS"] == "3"
    small = render(sets={"resources.requests.cpu": "500m"})
    assert config_data(small)["BIOMARKER_TORCH_THREADS"] == "1"


def test_batch_limits_are_left_to_the_worker_unless_set(
    rendered: dict[str, list[Manifest]],
) -> None:
    # Unset, the worker picks them by device (CPU or GPU); the GPU set relies on that.
    for name in ("default", "gpu"):
        data = config_data(rendered[name])
        assert "BIOMARKER_TOKEN_BUDGET" not in data
        assert "BIOMARKER_MAX_BATCH_SENTENCES" not in data
    data = config_data(
        render(sets={"inference.tokenBudget": 32768, "inference.maxBatchSentences": 1024})
    )
    assert (data["BIOMARKER_TOKEN_BUDGET"], data["BIOMARKER_MAX_BATCH_SENTENCES"]) == (
        "32768",
        "1024",
    )


def test_keda_set_renders_scaled_object_and_no_hpa(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["keda"]
    assert not by_kind(manifests, "HorizontalPodAutoscaler")
    deployment = one(manifests, "Deployment")
    assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
    scaled = one(manifests, "ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert scaled["spec"]["maxReplicaCount"] == 12
    (trigger,) = scaled["spec"]["triggers"]
    data = config_data(manifests)
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == data["BIOMARKER_GROUP_ID"]
    assert trigger["metadata"]["topic"] == data["BIOMARKER_INPUT_TOPIC"]
    assert trigger["metadata"]["bootstrapServers"] == data["BIOMARKER_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["sasl"] == "scram_sha256"
    assert trigger["metadata"]["tls"] == "enable"
    assert all(isinstance(v, str) for v in trigger["metadata"].values())
    auth = one(manifests, "TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret = one(manifests, "Secret")
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["username"]["name"] == secret["metadata"]["name"]
    assert refs["username"]["key"] in secret["data"]
    assert refs["password"]["key"] in secret["data"]
    assert refs["ca"] == {"parameter": "ca", "name": "kafka-ca", "key": "ca.crt"}


def test_keda_without_crd_falls_back_to_cpu_hpa() -> None:
    manifests = render("keda", api_versions=())
    assert not by_kind(manifests, "ScaledObject")
    assert not by_kind(manifests, "TriggerAuthentication")
    hpa = one(manifests, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == FULLNAME
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_keda_targets_statefulset() -> None:
    manifests = render(
        "keda",
        sets={"workload.kind": "StatefulSet"},
        api_versions=CRD_API_VERSIONS["keda"],
    )
    scaled = one(manifests, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert "replicas" not in one(manifests, "StatefulSet")["spec"]


def test_backfill_set_renders_replay_job(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["backfill"]
    job = one(manifests, "Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["restartPolicy"] == "Never"
    ctr = container(spec)
    args = ctr["args"]
    assert args[0] == "replay"

    def flag(name: str) -> str:
        return str(args[args.index(name) + 1])

    assert flag("--from-timestamp") == "2026-01-01T00:00:00Z"
    assert flag("--to-timestamp") == "2026-01-02T00:00:00Z"
    assert flag("--output-topic") == "clinical-notes-enriched-replay"
    assert float(flag("--rate-limit")) == 200
    live_group = config_data(manifests)["BIOMARKER_GROUP_ID"]
    assert flag("--group-id") != live_group
    assert flag("--group-id").startswith(f"{live_group}-backfill-")
    assert "livenessProbe" not in ctr and "readinessProbe" not in ctr
    job_labels = job["spec"]["template"]["metadata"]["labels"]
    assert job_labels["app.kubernetes.io/component"] == "backfill"
    # The live worker keeps running next to the Job.
    live = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert container(live)["args"] == ["run"]


def test_backfill_by_offsets() -> None:
    manifests = render(
        sets={
            "backfill.enabled": True,
            "backfill.fromOffsets": "0:100,1:250",
            "backfill.toOffsets": "0:900,1:999",
            "backfill.groupId": "replay-2026-01",
        }
    )
    args = container(one(manifests, "Job")["spec"]["template"]["spec"])["args"]
    assert args == [
        "replay",
        "--from-offsets",
        "0:100,1:250",
        "--to-offsets",
        "0:900,1:999",
        "--group-id",
        "replay-2026-01",
    ]


def test_backfill_open_end_stops_at_the_end_offsets_found_at_start() -> None:
    manifests = render(
        sets={"backfill.enabled": True, "backfill.fromTimestamp": 1767225600000},
    )
    args = container(one(manifests, "Job")["spec"]["template"]["spec"])["args"]
    assert args[:3] == ["replay", "--from-timestamp", "1767225600000"]
    assert "--to-timestamp" not in args and "--to-offsets" not in args


def test_backfill_job_name_changes_with_its_range() -> None:
    first = one(render("backfill"), "Job")["metadata"]["name"]
    again = one(render("backfill"), "Job")["metadata"]["name"]
    other = one(render("backfill", sets={"backfill.toTimestamp": "2026-01-03T00:00:00Z"}), "Job")
    assert first == again
    assert other["metadata"]["name"] != first
    assert len(first) <= 63


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"backfill.enabled": True}, "needs a range"),
        (
            {
                "backfill.enabled": True,
                "backfill.fromTimestamp": "2026-01-01T00:00:00Z",
                "backfill.fromOffsets": "0:1",
            },
            "not both",
        ),
        ({"cache.dir": "/opt/biomarker/cache"}, "must differ from cache.imageDir"),
        (
            {
                "backfill.enabled": True,
                "backfill.fromOffsets": "0:1",
                "backfill.toOffsets": "0:2",
                "backfill.groupId": "biomarker-worker",
            },
            "must differ from kafka.groupId",
        ),
        ({"kafka.security.protocol": "SASL_SSL"}, "saslMechanism is required"),
        (
            {"kafka.security.protocol": "SASL_SSL", "kafka.security.saslMechanism": "PLAIN"},
            "SASL needs credentials",
        ),
        ({"kafka.outputTopic": "clinical-notes"}, "must differ"),
        (
            {"runtime": "faust", "kafka.processingGuarantee": "exactly-once"},
            "runtime=faust supports at-least-once only",
        ),
    ],
)
def test_inconsistent_values_fail_rendering(sets: dict[str, str], message: str) -> None:
    assert message in render_error(sets=sets)


@pytest.mark.parametrize(
    "sets",
    [
        {"kafka.bootstrapServer": "kafka:9092"},  # missing trailing "s"
        {"resources.request.cpu": "1"},  # "request" instead of "requests"
        {"gpu.enable": True},
        {"workload.kind": "DaemonSet"},
        {"replicaCount": "two"},
        {"autoscaling.keda.maxReplicas": 4},  # HPA's name under KEDA
        {"model.backend": "onnx"},  # measured and rejected: the worker accepts torch only
        {"kafka.inputFormat": "xml"},
        {"kafka.inputs": [{"topic": "a", "fmt": "hl7v2"}]},  # unknown key of an input
        {"kafka.inputs": [{"format": "fhir"}]},  # no topic
        {"kafka.inputs": [{"topic": "bad topic", "format": "fhir"}]},
        {"kafka.inputs": [{"topic": "a", "format": "mapping"}]},  # format mapping, no mapping
        {"kafka.inputs": "hl7-feed"},
        {"mappings": {"bad/name": {"preset": "debezium"}}},
        {"mappings": {"empty": ""}},
        {"mappings": {"listed": ["id", "text"]}},
        {"inference.includeNoteText": "yes"},
        {"inference.maxInflightSentences": 0},
        {"backfill.inputTopic": "bad topic"},
    ],
)
def test_values_typo_fails_lint_and_template(sets: dict[str, str]) -> None:
    error = render_error(sets=sets)
    assert "values don't meet the specifications of the schema" in error, error
    lint = _helm(
        "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *_values_args(None, sets)
    )
    assert lint.returncode != 0, lint.stdout


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_config_checksum_annotation(rendered: dict[str, list[Manifest]], value_set: str) -> None:
    for kind, _ in pod_specs(rendered[value_set]):
        template = next(m for m in rendered[value_set] if m["kind"] == kind)["spec"]["template"]
        assert len(template["metadata"]["annotations"]["checksum/config"]) == 64


def test_config_change_rolls_pods() -> None:
    def checksum(manifests: list[Manifest]) -> str:
        annotations = workload(manifests)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = checksum(render())
    assert checksum(render()) == base
    assert checksum(render(sets={"model.threshold": 0.7})) != base


def test_servicemonitor_selects_metrics_service(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["servicemonitor"]
    monitor = one(manifests, "ServiceMonitor")
    service = next(
        s for s in by_kind(manifests, "Service") if s["metadata"]["name"].endswith("-metrics")
    )
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The headless Service (if any) must not be selected too, or every pod is scraped twice.
    for other in by_kind(manifests, "Service"):
        if other is not service:
            assert not selector.items() <= other["metadata"]["labels"].items()


def test_optional_crds_are_not_rendered_without_their_api() -> None:
    manifests = render("servicemonitor", api_versions=())
    assert not by_kind(manifests, "ServiceMonitor")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_settings_are_valid_worker_settings(
    rendered: dict[str, list[Manifest]], value_set: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every BIOMARKER_* variable the chart sets is a worker setting with a valid value."""
    from worker.config import ENV_PREFIX, WorkerSettings, load_settings

    manifests = rendered[value_set]
    not_settings = {"BIOMARKER_CACHE_DIR"}  # read by the model cache, not by WorkerSettings
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in WorkerSettings.model_fields}
    for kind, spec in pod_specs(manifests):
        env = effective_env(manifests, container(spec))
        unknown = {k for k in env if k.startswith(ENV_PREFIX)} - fields - not_settings
        assert not unknown, f"{kind} sets variables the worker does not know: {sorted(unknown)}"
        with monkeypatch.context() as patch:
            use_env(patch, env)
            settings = load_settings()
        assert settings.metrics_port == 9108, kind
        assert settings.drain_timeout_s == float(env["BIOMARKER_DRAIN_TIMEOUT_S"]), kind


# --- EHR input formats: kafka.inputFormat/inputMapping, kafka.inputs, mappings ------------------

MAPPINGS_DIR = "/etc/biomarker/mappings"
EHR_INPUTS = [
    {"topic": "ehr.hl7v2.mdm", "format": "hl7v2"},
    {"topic": "ehr.fhir.document-reference", "format": "fhir"},
    {
        "topic": "notesdb.public.clinical_notes",
        "format": "mapping",
        "mapping": f"{MAPPINGS_DIR}/debezium-notes.yaml",
    },
]


def ehr_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CI_VALUES / "ehr-inputs.yaml").read_text("utf-8"))
    return loaded


def mappings_config_map(manifests: list[Manifest]) -> Manifest:
    found = [m for m in by_kind(manifests, "ConfigMap") if m["metadata"]["name"] == MAPPINGS_NAME]
    assert len(found) == 1, f"expected one mappings ConfigMap, got {len(found)}"
    return found[0]


def settings_of(manifests: list[Manifest], ctr: Manifest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The worker settings a container of the rendered chart starts with (its args parsed by the
    worker's own command-line parser, its environment as Kubernetes builds it)."""
    import argparse

    from worker.cli import replay
    from worker.cli.options import settings_from_args
    from worker.config import load_settings

    with monkeypatch.context() as patch:
        use_env(patch, effective_env(manifests, ctr))
        if ctr["args"][0] != "replay":
            return load_settings()
        parser = argparse.ArgumentParser()
        replay.register(parser.add_subparsers(dest="command"))
        return settings_from_args(parser.parse_args(ctr["args"]))


def test_ehr_inputs_render_the_inputs_setting(rendered: dict[str, list[Manifest]]) -> None:
    data = config_data(rendered["ehr-inputs"])
    assert json.loads(data["BIOMARKER_INPUTS"]) == EHR_INPUTS
    # kafka.inputs replaces the single-topic settings: none of them is left to mislead.
    for key in ("BIOMARKER_INPUT_TOPIC", "BIOMARKER_INPUT_FORMAT", "BIOMARKER_INPUT_MAPPING"):
        assert key not in data
    assert data["BIOMARKER_INCLUDE_NOTE_TEXT"] == "false"
    assert data["BIOMARKER_MAX_INFLIGHT_SENTENCES"] == "20000"


def test_ehr_inputs_worker_settings(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["ehr-inputs"]
    settings = settings_of(
        manifests, container(workload(manifests)["spec"]["template"]["spec"]), monkeypatch
    )
    assert [item.model_dump() for item in settings.input_topics] == [
        {"mapping": None, **item} if "mapping" not in item else item for item in EHR_INPUTS
    ]
    assert settings.include_note_text is False
    assert settings.max_inflight_sentences == 20000


def test_default_input_settings(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    data = config_data(manifests)
    assert data["BIOMARKER_INPUT_TOPIC"] == "clinical-notes"
    assert data["BIOMARKER_INPUT_FORMAT"] == "note"
    assert "BIOMARKER_INPUT_MAPPING" not in data
    assert "BIOMARKER_INPUTS" not in data
    assert data["BIOMARKER_INCLUDE_NOTE_TEXT"] == "true"
    assert data["BIOMARKER_MAX_INFLIGHT_SENTENCES"] == "50000"
    spec = workload(manifests)["spec"]["template"]["spec"]
    assert "mappings" not in {v["name"] for v in spec["volumes"]}
    assert "mappings" not in {m["name"] for m in container(spec)["volumeMounts"]}


def test_mappings_are_mounted_read_only_where_the_settings_point(
    rendered: dict[str, list[Manifest]], tmp_path: Path
) -> None:
    from worker.inputs.mapping import load_mapping

    manifests = rendered["ehr-inputs"]
    files = mappings_config_map(manifests)
    assert set(files["data"]) == {"debezium-notes.yaml", "vendor-event.yaml"}
    # A string entry is the file's text, verbatim; an object entry is its YAML.
    values = ehr_values()["mappings"]
    assert files["data"]["vendor-event.yaml"] == values["vendor-event"]
    assert yaml.safe_load(files["data"]["debezium-notes.yaml"]) == values["debezium-notes"]
    # Every file is a mapping the worker accepts.
    for name, text in files["data"].items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        load_mapping(tmp_path / name)
    pods = list(pod_specs(manifests))
    assert {kind for kind, _ in pods} == {"Deployment", "Job"}
    for kind, spec in pods:
        volume = next(v for v in spec["volumes"] if v["name"] == "mappings")
        assert volume["configMap"]["name"] == files["metadata"]["name"], kind
        assert volume["configMap"]["defaultMode"] == 0o444, kind
        mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "mappings")
        assert mount == {"name": "mappings", "mountPath": MAPPINGS_DIR, "readOnly": True}, kind
    for item in json.loads(config_data(manifests)["BIOMARKER_INPUTS"]):
        if "mapping" in item:
            directory, _, name = item["mapping"].rpartition("/")
            assert directory == MAPPINGS_DIR
            assert name in files["data"]


def test_single_topic_with_a_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    manifests = render(
        sets={
            "kafka.inputTopic": "vendor-notes",
            "kafka.inputFormat": "mapping",
            "kafka.inputMapping": "acme",
            "mappings.acme": {"id": "/id", "text": "/body"},
        }
    )
    data = config_data(manifests)
    assert data["BIOMARKER_INPUT_TOPIC"] == "vendor-notes"
    assert data["BIOMARKER_INPUT_FORMAT"] == "mapping"
    assert data["BIOMARKER_INPUT_MAPPING"] == f"{MAPPINGS_DIR}/acme.yaml"
    assert "BIOMARKER_INPUTS" not in data
    assert "acme.yaml" in mappings_config_map(manifests)["data"]
    ctr = container(workload(manifests)["spec"]["template"]["spec"])
    (only,) = settings_of(manifests, ctr, monkeypatch).input_topics
    assert (only.topic, only.format, only.mapping) == (
        "vendor-notes",
        "mapping",
        f"{MAPPINGS_DIR}/acme.yaml",
    )


@pytest.mark.parametrize("input_format", ["hl7v2", "fhir", "cda", "auto"])
def test_single_topic_formats(input_format: str) -> None:
    data = config_data(render(sets={"kafka.inputFormat": input_format}))
    assert data["BIOMARKER_INPUT_FORMAT"] == input_format
    assert data["BIOMARKER_INPUT_TOPIC"] == "clinical-notes"


def test_ehr_inputs_keda_has_one_trigger_per_topic(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["ehr-inputs"]
    data = config_data(manifests)
    triggers = one(manifests, "ScaledObject")["spec"]["triggers"]
    assert [t["metadata"]["topic"] for t in triggers] == [i["topic"] for i in EHR_INPUTS]
    for trigger in triggers:
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == data["BIOMARKER_GROUP_ID"]
        assert trigger["metadata"]["bootstrapServers"] == data["BIOMARKER_BOOTSTRAP_SERVERS"]
        assert trigger["metadata"]["lagThreshold"] == "200"
        assert all(isinstance(v, str) for v in trigger["metadata"].values())


def test_mapping_change_rolls_pods(rendered: dict[str, list[Manifest]]) -> None:
    def checksum(manifests: list[Manifest]) -> str:
        annotations = workload(manifests)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = rendered["ehr-inputs"]
    for sets in (
        {"mappings.debezium-notes.id_prefix": "notes-db-2:"},  # an object entry
        {"mappings.vendor-event": "id: /id\ntext: /text\n"},  # a string entry, not referenced
    ):
        changed = render("ehr-inputs", sets=sets)
        # The settings are the same; only the mounted file differs, and the pods must restart.
        assert config_data(changed) == config_data(base)
        assert mappings_config_map(changed)["data"] != mappings_config_map(base)["data"]
        assert checksum(changed) != checksum(base), sets
    assert checksum(render("ehr-inputs")) == checksum(base)


def test_backfill_with_inputs_replays_the_first_input_topic(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["ehr-inputs"]
    ctr = container(one(manifests, "Job")["spec"]["template"]["spec"])
    env = env_by_name(ctr)
    assert env["BIOMARKER_INPUTS"]["value"] == "[]"
    assert env["BIOMARKER_INPUT_TOPIC"]["value"] == "ehr.hl7v2.mdm"
    assert env["BIOMARKER_INPUT_FORMAT"]["value"] == "hl7v2"
    assert "BIOMARKER_INPUT_MAPPING" not in env
    settings = settings_of(manifests, ctr, monkeypatch)
    assert settings.input_topic == "ehr.hl7v2.mdm"
    (only,) = settings.input_topics
    assert (only.topic, only.format, only.mapping) == ("ehr.hl7v2.mdm", "hl7v2", None)
    assert settings.output_topic == "clinical-notes-enriched-replay"
    assert settings.group_id.startswith(f"{config_data(manifests)['BIOMARKER_GROUP_ID']}-backfill-")


def test_backfill_input_topic_picks_the_topic_with_its_mapping(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render("ehr-inputs", sets={"backfill.inputTopic": "notesdb.public.clinical_notes"})
    ctr = container(one(manifests, "Job")["spec"]["template"]["spec"])
    (only,) = settings_of(manifests, ctr, monkeypatch).input_topics
    assert (only.topic, only.format, only.mapping) == (
        "notesdb.public.clinical_notes",
        "mapping",
        f"{MAPPINGS_DIR}/debezium-notes.yaml",
    )

    # The replay of each topic runs in its own consumer group.
    def group(job_manifests: list[Manifest]) -> str:
        args = container(one(job_manifests, "Job")["spec"]["template"]["spec"])["args"]
        return str(args[args.index("--group-id") + 1])

    assert group(manifests) != group(rendered["ehr-inputs"])


def test_backfill_single_topic_reads_the_input_topic(
    rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = rendered["backfill"]
    ctr = container(one(manifests, "Job")["spec"]["template"]["spec"])
    assert "env" not in ctr, "a single-topic replay takes the worker's own input settings"
    settings = settings_of(manifests, ctr, monkeypatch)
    assert settings.input_topic == config_data(manifests)["BIOMARKER_INPUT_TOPIC"]


@pytest.mark.parametrize(
    ("value_set", "sets", "message"),
    [
        (
            "ehr-inputs",
            {"kafka.inputs": [{"topic": "cdc", "format": "mapping", "mapping": "debezium"}]},
            'kafka.inputs[0] (topic "cdc"): mapping "debezium" is not an entry of mappings '
            "(known: debezium-notes, vendor-event)",
        ),
        (
            None,
            {
                "kafka.inputFormat": "mapping",
                "kafka.inputMapping": "nope",
                "mappings.acme": "id: /id",
            },
            'kafka.inputMapping "nope" is not an entry of mappings (known: acme)',
        ),
        (
            None,
            {"kafka.inputFormat": "mapping"},
            "kafka.inputFormat=mapping needs kafka.inputMapping: the name of a mappings entry",
        ),
        (
            "ehr-inputs",
            {"kafka.inputMapping": "debezium-notes", "kafka.inputs": []},
            'kafka.inputMapping "debezium-notes" is set with kafka.inputFormat=note: a mapping is '
            "read only with format mapping",
        ),
        (
            "ehr-inputs",
            {
                "kafka.inputs": [
                    {"topic": "hl7-feed", "format": "hl7v2", "mapping": "debezium-notes"}
                ]
            },
            'kafka.inputs[0] (topic "hl7-feed"): mapping "debezium-notes" is set with format hl7v2',
        ),
        (
            None,
            {"kafka.inputs": [{"topic": "a"}, {"topic": "clinical-notes-enriched"}]},
            'kafka.inputs[1] (topic "clinical-notes-enriched"): an input topic must differ from '
            "kafka.outputTopic and kafka.dlqTopic",
        ),
        (
            None,
            {"kafka.inputs": [{"topic": "clinical-notes-dlq", "format": "fhir"}]},
            "an input topic must differ from kafka.outputTopic and kafka.dlqTopic",
        ),
        (
            None,
            {
                "kafka.inputs": [
                    {"topic": "a", "format": "hl7v2"},
                    {"topic": "b"},
                    {"topic": "a", "format": "fhir"},
                ]
            },
            'kafka.inputs[2] (topic "a"): the topic is listed twice in kafka.inputs '
            "(first at kafka.inputs[0])",
        ),
        (
            None,
            {"kafka.inputs": [{"topic": "a", "format": "hl7v2"}], "kafka.inputFormat": "fhir"},
            "kafka.inputFormat=fhir does not apply when kafka.inputs is set",
        ),
        (
            "ehr-inputs",
            {"backfill.inputTopic": "clinical-notes"},
            'backfill.inputTopic "clinical-notes" is not an input topic of the worker '
            "(ehr.hl7v2.mdm, ehr.fhir.document-reference, notesdb.public.clinical_notes)",
        ),
        (
            "ehr-inputs",
            {"backfill.outputTopic": "ehr.fhir.document-reference"},
            'backfill.outputTopic "ehr.fhir.document-reference" must differ from the input topics',
        ),
    ],
)
def test_inconsistent_inputs_fail_rendering(
    value_set: str | None, sets: dict[str, Any], message: str
) -> None:
    error = render_error(value_set, sets)
    assert message in error, error


def test_mapping_format_without_mapping_fails_schema_and_template_check() -> None:
    sets = {"kafka.inputs": [{"topic": "cdc", "format": "mapping"}]}
    error = render_error(sets=sets)
    assert "values don't meet the specifications of the schema" in error, error
    assert "missing property 'mapping'" in error, error
    # The template's own check says it too, even where the schema is skipped.
    error = render_error(sets=sets, extra_args=("--skip-schema-validation",))
    assert 'kafka.inputs[0] (topic "cdc"): format mapping needs mapping' in error, error
