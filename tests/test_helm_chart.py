"""Semantics of the rendered Helm chart that Kubernetes schemas cannot check.

The chart is rendered with the helm binary that ``scripts/install_chart_tools.sh`` puts in
``${BIOMARKER_TOOLS_DIR:-~/.cache/biomarker-worker/tools}/bin``. Without it these tests fail (they
never skip): CI installs the tools first. Schema validation (kubeconform) is in
``scripts/check_chart.sh``.
"""

from __future__ import annotations

import atexit
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
CRD_API_VERSIONS = {
    "keda": ("keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication"),
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


def render_error(value_set: str | None = None, sets: dict[str, Any] | None = None) -> str:
    """Render a chart that must fail; returns helm's error output."""
    result = _helm("template", *_template_args(value_set, sets, ()))
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
    data: dict[str, str] = one(manifests, "ConfigMap")["data"]
    return data


def env_by_name(ctr: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in ctr.get("env", [])}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: render(name) for name in VALUE_SETS}


def test_value_sets_exist() -> None:
    assert {"default", "gpu", "statefulset", "keda", "backfill", "servicemonitor"} <= set(
        VALUE_SETS
    )


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
    env = dict(config_data(manifests))
    for _, spec in pod_specs(manifests):
        for item in container(spec).get("env", []):
            # Values from Secrets and the downward API are unknown here: use placeholders.
            env.setdefault(item["name"], item.get("value", "placeholder"))
    not_settings = {"BIOMARKER_CACHE_DIR"}  # read by the model cache, not by WorkerSettings
    fields = {f"{ENV_PREFIX}{name.upper()}" for name in WorkerSettings.model_fields}
    unknown = {k for k in env if k.startswith(ENV_PREFIX)} - fields - not_settings
    assert not unknown, f"the chart sets variables the worker does not know: {sorted(unknown)}"
    for key in list(os.environ):
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.metrics_port == 9108
    assert settings.drain_timeout_s == float(env["BIOMARKER_DRAIN_TIMEOUT_S"])
