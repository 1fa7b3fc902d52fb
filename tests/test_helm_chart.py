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

from tests.chart_tools import CHART, CI_VALUES, HELM
from worker.config.secrets import SECRET_CLIENT_KEYS, SECRET_KEY_WORDS

RELEASE = "ci"
NAMESPACE = "nlp"
KUBE_VERSION = "1.29.0"
FULLNAME = f"{RELEASE}-biomarker-worker"
LIVE_GROUP = f"{NAMESPACE}.{FULLNAME}"  # the default group id: <namespace>.<fullname>
CONFIG_NAME = f"{FULLNAME}-config"
MAPPINGS_NAME = f"{FULLNAME}-mappings"
KEDA_APIS = ("keda.sh/v1alpha1/ScaledObject", "keda.sh/v1alpha1/TriggerAuthentication")
CRD_API_VERSIONS = {
    "keda": KEDA_APIS,
    "ehr-inputs": KEDA_APIS,
    "servicemonitor": ("monitoring.coreos.com/v1/ServiceMonitor",),
    "prometheusrule": (
        "monitoring.coreos.com/v1/ServiceMonitor",
        "monitoring.coreos.com/v1/PrometheusRule",
    ),
}
VALUE_SETS = sorted(path.stem for path in CI_VALUES.glob("*.yaml"))
WORKLOAD_KINDS = ("Deployment", "StatefulSet")
CHART_VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text("utf-8"))
CREDENTIALS_DIR = "/var/run/secrets/biomarker/kafka"

Manifest = dict[str, Any]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that rejects a mapping with a key twice (PyYAML would keep the last), so a
    label or setting rendered twice fails the test instead of hiding."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    keys = [loader.construct_object(key) for key, _ in node.value]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise yaml.constructor.ConstructorError(
            None, None, f"duplicate keys {sorted(duplicates)}", node.start_mark
        )
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


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
    value_set: str | None,
    sets: dict[str, Any] | None,
    api_versions: tuple[str, ...],
    namespace: str = NAMESPACE,
) -> list[str]:
    args = [RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--namespace", namespace]
    args += _values_args(value_set, sets)
    for api in api_versions:
        args += ["--api-versions", api]
    return args


def render(
    value_set: str | None = None,
    sets: dict[str, Any] | None = None,
    api_versions: tuple[str, ...] | None = None,
    namespace: str = NAMESPACE,
) -> list[Manifest]:
    """Render the chart; ``api_versions`` defaults to the CRDs the value set is meant for."""
    if api_versions is None:
        api_versions = CRD_API_VERSIONS.get(value_set or "", ())
    result = _helm("template", *_template_args(value_set, sets, api_versions, namespace))
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.load_all(result.stdout, Loader=_UniqueKeyLoader) if doc]


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


def with_file_values(env: dict[str, str]) -> dict[str, str]:
    """``env`` with each ``BIOMARKER_<NAME>_FILE`` (a file mounted from a Secret, whose content is
    the value of ``BIOMARKER_<NAME>``) replaced by ``BIOMARKER_<NAME>`` with a placeholder value,
    as the worker sees it once it has read the file."""
    resolved = dict(env)
    for name in [k for k in env if k.startswith("BIOMARKER_") and k.endswith("_FILE")]:
        assert env[name].startswith(f"{CREDENTIALS_DIR}/"), name
        del resolved[name]
        resolved[name.removesuffix("_FILE")] = "from-a-file"
    return resolved


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
        "networkpolicy",
        "hpa-partitions",
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


CLOSE_ALLOWANCE_S = CHART_VALUES["shutdown"]["closeAllowanceSeconds"]


def test_shutdown_allowances_default() -> None:
    shutdown = CHART_VALUES["shutdown"]
    assert (shutdown["drainTimeoutSeconds"], shutdown["revokeTimeoutSeconds"]) == (25, 10)
    assert (shutdown["closeAllowanceSeconds"], shutdown["gracePeriodMarginSeconds"]) == (10, 5)
    spec = workload(render())["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 25 + 10 + 10 + 5


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_grace_period_covers_drain_revoke_and_close(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    data = config_data(manifests)
    drain = float(data["BIOMARKER_DRAIN_TIMEOUT_S"])
    revoke = float(data["BIOMARKER_REVOKE_TIMEOUT_S"])
    for kind, spec in pod_specs(manifests):
        assert spec["terminationGracePeriodSeconds"] > drain + revoke + CLOSE_ALLOWANCE_S, kind


def test_grace_period_is_derived_from_drain_revoke_and_close() -> None:
    sets = {"shutdown.drainTimeoutSeconds": 50.5, "shutdown.revokeTimeoutSeconds": 20}
    spec = workload(render(sets=sets))["spec"]["template"]
    # ceil(50.5 + 20 + 10) + the 5 s margin
    assert spec["spec"]["terminationGracePeriodSeconds"] == 81 + 5
    sets["shutdown.closeAllowanceSeconds"] = 30
    spec = workload(render(sets=sets))["spec"]["template"]
    assert spec["spec"]["terminationGracePeriodSeconds"] == 101 + 5


@pytest.mark.parametrize(
    ("drain", "revoke", "grace"),
    [
        (30, 10, 30),  # the old rule's limit: not even the drain deadline
        (30, 10, 40),  # drain + revoke, no time to flush, commit and close
        (30, 10, 50),  # exactly drain + revoke + close allowance: must exceed it
        (25, 30, 60),  # a long revoke deadline counts too
    ],
)
def test_grace_period_not_above_drain_revoke_and_close_fails(
    drain: int, revoke: int, grace: int
) -> None:
    error = render_error(
        sets={
            "shutdown.drainTimeoutSeconds": drain,
            "shutdown.revokeTimeoutSeconds": revoke,
            "shutdown.terminationGracePeriodSeconds": grace,
        }
    )
    assert (
        f"shutdown.terminationGracePeriodSeconds ({grace}) must exceed "
        f"shutdown.drainTimeoutSeconds ({drain}) + shutdown.revokeTimeoutSeconds ({revoke}) + "
        f"shutdown.closeAllowanceSeconds (10) = {drain + revoke + 10} s"
    ) in error, error


def test_explicit_grace_period_above_the_sum_is_kept() -> None:
    sets = {"shutdown.drainTimeoutSeconds": 30, "shutdown.terminationGracePeriodSeconds": 51}
    spec = workload(render(sets=sets))["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 51


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_and_port(rendered: dict[str, list[Manifest]], value_set: str) -> None:
    manifests = rendered[value_set]
    ctr = container(workload(manifests)["spec"]["template"]["spec"])
    port = next(p for p in ctr["ports"] if p["name"] == "metrics")
    assert str(port["containerPort"]) == config_data(manifests)["BIOMARKER_METRICS_PORT"]
    assert ctr["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert ctr["startupProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert ctr["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}


def group_instance_id(manifests: list[Manifest], pod_name: str, namespace: str) -> str:
    """The StatefulSet pod's BIOMARKER_GROUP_INSTANCE_ID as the kubelet expands it: the
    downward-API variables first, then ``$(VAR)`` references to the variables before it."""
    ctr = container(one(manifests, "StatefulSet")["spec"]["template"]["spec"])
    fields = {"metadata.name": pod_name, "metadata.namespace": namespace}
    resolved: dict[str, str] = {}
    for item in ctr["env"]:
        if "valueFrom" in item:
            resolved[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            value = item["value"]
            for name, known in resolved.items():
                value = value.replace(f"$({name})", known)
            resolved[item["name"]] = value
    return resolved["BIOMARKER_GROUP_INSTANCE_ID"]


def test_statefulset_uses_namespace_and_pod_name_as_group_instance_id(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["statefulset"]
    sts = one(manifests, "StatefulSet")
    assert not by_kind(manifests, "Deployment")
    env = container(sts["spec"]["template"]["spec"])["env"]
    names = [e["name"] for e in env]
    # The referenced variables come first, or the kubelet leaves $(...) unexpanded.
    assert names.index("POD_NAMESPACE") < names.index("BIOMARKER_GROUP_INSTANCE_ID")
    assert names.index("POD_NAME") < names.index("BIOMARKER_GROUP_INSTANCE_ID")
    by_name = env_by_name(container(sts["spec"]["template"]["spec"]))
    assert by_name["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert by_name["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert by_name["BIOMARKER_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAMESPACE).$(POD_NAME)"
    assert group_instance_id(manifests, f"{FULLNAME}-0", NAMESPACE) == f"nlp.{FULLNAME}-0"
    headless = next(
        s
        for s in by_kind(manifests, "Service")
        if s["metadata"]["name"] == sts["spec"]["serviceName"]
    )
    assert headless["spec"]["clusterIP"] == "None"
    assert sts["spec"]["replicas"] == 3


def test_same_release_in_two_namespaces_never_shares_group_or_instance_ids() -> None:
    """Two same-named StatefulSets in different namespaces of one Kafka cluster: distinct groups
    and distinct group.instance.ids (so neither fences the other), and so distinct transactional
    ids, which the worker derives from both."""
    first = render("statefulset", namespace="team-a")
    second = render("statefulset", namespace="team-b")
    group_a = config_data(first)["BIOMARKER_GROUP_ID"]
    group_b = config_data(second)["BIOMARKER_GROUP_ID"]
    assert (group_a, group_b) == (f"team-a.{FULLNAME}", f"team-b.{FULLNAME}")
    pod = f"{FULLNAME}-0"  # the same pod name in both namespaces
    assert group_instance_id(first, pod, "team-a") != group_instance_id(second, pod, "team-b")
    assert "BIOMARKER_TRANSACTIONAL_ID" not in config_data(first)


def test_group_id_defaults_to_namespace_and_fullname(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert CHART_VALUES["kafka"]["groupId"] == ""
    for name in VALUE_SETS:
        assert config_data(rendered[name])["BIOMARKER_GROUP_ID"] == LIVE_GROUP, name

    def group(fullname: str, namespace: str) -> str:
        manifests = render(sets={"fullnameOverride": fullname}, namespace=namespace)
        (settings,) = (
            m for m in by_kind(manifests, "ConfigMap") if "BIOMARKER_GROUP_ID" in m["data"]
        )
        return str(settings["data"]["BIOMARKER_GROUP_ID"])

    assert group("notes-nlp", "clinical") == "clinical.notes-nlp"
    # The longest names still give a group id well within 255 characters.
    assert len(group("f" * 63, "n" * 63)) == 127


def test_group_id_override_keeps_the_former_default(
    rendered: dict[str, list[Manifest]],
) -> None:
    """Releases installed when the default was the fixed ``biomarker-worker`` keep their
    committed offsets with kafka.groupId=biomarker-worker; KEDA measures the same group."""
    manifests = render("keda", sets={"kafka.groupId": "biomarker-worker"})
    assert config_data(manifests)["BIOMARKER_GROUP_ID"] == "biomarker-worker"
    (trigger,) = one(manifests, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == "biomarker-worker"
    (trigger,) = one(rendered["keda"], "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["consumerGroup"] == LIVE_GROUP
    error = render_error(sets={"kafka.groupId": "g" * 256})
    assert "values don't meet the specifications of the schema" in error, error


def test_deployment_has_no_static_membership(rendered: dict[str, list[Manifest]]) -> None:
    deployment = one(rendered["default"], "Deployment")
    env = env_by_name(container(deployment["spec"]["template"]["spec"]))
    assert "BIOMARKER_GROUP_INSTANCE_ID" not in env
    assert "BIOMARKER_GROUP_INSTANCE_ID" not in config_data(rendered["default"])


def credential_files(manifests: list[Manifest], spec: Manifest) -> dict[str, str]:
    """``BIOMARKER_*_FILE`` variable -> the Secret key whose file it names, checked against the
    pod's credentials volume (the key is projected at the file's name) and its read-only mount."""
    data = config_data(manifests)
    files = {k: v for k, v in data.items() if k.endswith("_FILE")}
    volume = next(v for v in spec["volumes"] if v["name"] == "kafka-credentials")
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "kafka-credentials")
    assert mount["readOnly"] is True
    assert mount["mountPath"] == CREDENTIALS_DIR
    assert volume["secret"]["defaultMode"] == 0o440
    projected = {item["path"]: item["key"] for item in volume["secret"]["items"]}
    keys = {}
    for name, path in files.items():
        directory, _, file = path.rpartition("/")
        assert directory == CREDENTIALS_DIR, name
        keys[name] = projected[file]
    assert set(keys.values()) == set(projected.values()), "a projected key no setting reads"
    return keys


def secret_key_refs(ctr: Manifest) -> list[Manifest]:
    return [e for e in ctr.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]


def test_statefulset_reads_kafka_credentials_and_ca_from_secrets(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["statefulset"]
    assert not by_kind(manifests, "Secret"), "existingSecret must not create a Secret"
    spec = one(manifests, "StatefulSet")["spec"]["template"]["spec"]
    assert not secret_key_refs(container(spec)), "credentials come from files, not env values"
    volume = next(v for v in spec["volumes"] if v["name"] == "kafka-credentials")
    assert volume["secret"]["secretName"] == "biomarker-kafka-credentials"
    assert credential_files(manifests, spec) == {
        "BIOMARKER_SASL_USERNAME_FILE": "sasl-username",
        "BIOMARKER_SASL_PASSWORD_FILE": "sasl-password",
    }
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


def test_host_processes_one_on_cpu_and_from_the_cpu_request_on_a_gpu(
    rendered: dict[str, list[Manifest]],
) -> None:
    assert config_data(render())["BIOMARKER_HOST_PROCESSES"] == "1"
    assert config_data(rendered["gpu"])["BIOMARKER_HOST_PROCESSES"] == "2"  # 4 CPUs requested
    big = render("gpu", sets={"resources.requests.cpu": "16"})
    assert config_data(big)["BIOMARKER_HOST_PROCESSES"] == "4"
    small = render("gpu", sets={"resources.requests.cpu": "2"})
    assert config_data(small)["BIOMARKER_HOST_PROCESSES"] == "1"
    faust = render("gpu", sets={"resources.requests.cpu": "16", "runtime": "faust"})
    assert config_data(faust)["BIOMARKER_HOST_PROCESSES"] == "1"
    explicit = render(sets={"inference.hostProcesses": 3})
    assert config_data(explicit)["BIOMARKER_HOST_PROCESSES"] == "3"


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


def test_backfill_dead_letters_can_have_their_own_topic() -> None:
    sets = {"backfill.enabled": True, "backfill.fromOffsets": "0:100"}
    args = container(one(render(sets=sets), "Job")["spec"]["template"]["spec"])["args"]
    assert "--dlq-topic" not in args  # the live worker's dead-letter topic
    own = {**sets, "backfill.dlqTopic": "clinical-notes-dlq-replay"}
    args = container(one(render(sets=own), "Job")["spec"]["template"]["spec"])["args"]
    assert args[args.index("--dlq-topic") + 1] == "clinical-notes-dlq-replay"
    for clash in ("clinical-notes", "clinical-notes-enriched"):  # an input, the output
        error = render_error(sets={**sets, "backfill.dlqTopic": clash})
        assert "must differ from the input topics and the replay's output topic" in error


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


def job_group(job: Manifest) -> str:
    args = container(job["spec"]["template"]["spec"])["args"]
    return str(args[args.index("--group-id") + 1])


@pytest.mark.parametrize(
    "sets",
    [
        {"logLevel": "debug"},
        {"model.threshold": 0.7},
        {"model.sha256": "ab" * 32},
        {"kafka.commitIntervalMs": 5000},
        {"inference.maxWaitMs": 50},
    ],
)
def test_backfill_job_identity_ignores_other_worker_values(sets: dict[str, Any]) -> None:
    """A worker value outside the Job's identity neither renames the Job nor changes its
    (immutable) pod template, so an upgrade leaves a running replay alone, while the live
    workers roll with the new configuration."""
    base = render("backfill")
    changed = render("backfill", sets=sets)
    assert config_data(changed) != config_data(base)
    assert one(changed, "Job") == one(base, "Job")

    def checksum(manifests: list[Manifest]) -> str:
        return str(
            workload(manifests)["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )

    assert checksum(changed) != checksum(base)


def test_backfill_pod_template_has_no_volatile_metadata(
    rendered: dict[str, list[Manifest]],
) -> None:
    template = one(rendered["backfill"], "Job")["spec"]["template"]
    assert "checksum/config" not in template["metadata"].get("annotations", {})
    labels = template["metadata"]["labels"]
    assert "helm.sh/chart" not in labels and "app.kubernetes.io/version" not in labels
    job_labels = one(rendered["backfill"], "Job")["metadata"]["labels"]
    assert "helm.sh/chart" in job_labels  # the Job object itself (mutable metadata) keeps them


@pytest.mark.parametrize(
    ("value_set", "sets"),
    [
        ("backfill", {"backfill.toTimestamp": "2026-01-03T00:00:00Z"}),
        ("backfill", {"backfill.fromTimestamp": "2025-12-31T00:00:00Z"}),
        ("backfill", {"backfill.outputTopic": "clinical-notes-enriched-replay-2"}),
        ("backfill", {"backfill.dlqTopic": "clinical-notes-dlq-replay"}),
        ("backfill", {"backfill.groupId": "replay-2026-01"}),
        ("backfill", {"image.tag": "0.1.1-cpu"}),
        ("backfill", {"image.digest": "sha256:" + "0" * 64}),
        ("backfill", {"image.repository": "registry.example.com/biomarker-worker"}),
        ("backfill", {"kafka.groupId": "biomarker-worker"}),
        ("backfill", {"backfill.runId": "2"}),
        ("ehr-inputs", {"backfill.inputTopic": "ehr.fhir.document-reference"}),
    ],
)
def test_backfill_job_identity_changes_with_range_topics_group_image_and_run_id(
    rendered: dict[str, list[Manifest]], value_set: str, sets: dict[str, Any]
) -> None:
    base = one(rendered[value_set], "Job")["metadata"]["name"]
    name = one(render(value_set, sets=sets), "Job")["metadata"]["name"]
    assert name != base
    assert len(name) <= 63


def test_backfill_run_id_is_a_deliberate_rerun(rendered: dict[str, list[Manifest]]) -> None:
    """A new runId is a new Job in a new group (which starts at the range's beginning); the
    same runId renders the same Job again, and an empty one is no runId."""
    base = one(rendered["backfill"], "Job")
    rerun = one(render("backfill", sets={"backfill.runId": "2026-03-01"}), "Job")
    assert rerun["metadata"]["name"] != base["metadata"]["name"]
    assert job_group(rerun) != job_group(base)
    assert job_group(rerun).startswith(f"{LIVE_GROUP}-backfill-")
    assert one(render("backfill", sets={"backfill.runId": "2026-03-01"}), "Job") == rerun
    assert one(render("backfill", sets={"backfill.runId": ""}), "Job") == base
    numeric = one(render("backfill", sets={"backfill.runId": 3}), "Job")
    assert numeric == one(render("backfill", sets={"backfill.runId": "3"}), "Job")
    # With an explicit group the runId renames the Job only: the operator chose the group.
    fixed = {"backfill.groupId": "replay-2026-01"}
    again = one(render("backfill", sets={**fixed, "backfill.runId": "2"}), "Job")
    assert job_group(again) == "replay-2026-01"
    assert (
        again["metadata"]["name"] != one(render("backfill", sets=fixed), "Job")["metadata"]["name"]
    )


def test_backfill_group_id_stays_within_255_characters() -> None:
    job = one(render("backfill", sets={"kafka.groupId": "g" * 255}), "Job")
    assert len(job_group(job)) == 255
    assert job_group(job).startswith("g" * 237 + "-backfill-")


def test_backfill_ttl_is_below_the_offset_retention(rendered: dict[str, list[Manifest]]) -> None:
    """A Job re-created by an upgrade after its TTL removed it must still find its group's
    committed offsets (and end at once): the default TTL is well below Kafka's offset retention."""
    retention_s = CHART_VALUES["kafka"]["offsetsRetentionMinutes"] * 60
    assert retention_s == 7 * 24 * 3600  # Kafka's default offsets.retention.minutes (10080)
    ttl = one(rendered["backfill"], "Job")["spec"]["ttlSecondsAfterFinished"]
    assert ttl == 24 * 3600
    assert ttl * 7 == retention_s


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"backfill.ttlSecondsAfterFinished": 604800},
            "backfill.ttlSecondsAfterFinished (604800) must be below the brokers' offset "
            "retention, kafka.offsetsRetentionMinutes (10080 min = 604800 s)",
        ),
        (
            {"backfill.ttlSecondsAfterFinished": 7200, "kafka.offsetsRetentionMinutes": 60},
            "backfill.ttlSecondsAfterFinished (7200) must be below the brokers' offset "
            "retention, kafka.offsetsRetentionMinutes (60 min = 3600 s)",
        ),
    ],
)
def test_backfill_ttl_not_below_offset_retention_fails(sets: dict[str, Any], message: str) -> None:
    assert message in render_error("backfill", sets=sets)


def test_backfill_ttl_check_follows_the_retention() -> None:
    sets = {"backfill.ttlSecondsAfterFinished": 604800, "kafka.offsetsRetentionMinutes": 20160}
    assert one(render("backfill", sets=sets), "Job")["spec"]["ttlSecondsAfterFinished"] == 604800
    kept = one(render("backfill", sets={"backfill.ttlSecondsAfterFinished": None}), "Job")
    assert "ttlSecondsAfterFinished" not in kept["spec"]  # kept forever: never re-created


# --- Replicas against partitions, and the disruption budget -------------------------------------


def test_autoscaling_sets_declare_their_partitions(rendered: dict[str, list[Manifest]]) -> None:
    for name in ("keda", "ehr-inputs", "servicemonitor", "hpa-partitions"):
        values = yaml.safe_load((CI_VALUES / f"{name}.yaml").read_text("utf-8"))
        partitions = values["kafka"]["inputPartitions"]
        for scaler in by_kind(rendered[name], "ScaledObject"):
            assert scaler["spec"]["maxReplicaCount"] <= partitions, name
        for hpa in by_kind(rendered[name], "HorizontalPodAutoscaler"):
            assert hpa["spec"]["maxReplicas"] <= partitions, name
    hpa = one(rendered["hpa-partitions"], "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 8)
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"


@pytest.mark.parametrize(
    ("value_set", "sets", "message"),
    [
        (
            None,
            {"autoscaling.hpa.enabled": True},
            "kafka.inputPartitions is required with autoscaling (autoscaling.keda.enabled or "
            "autoscaling.hpa.enabled): set it to the input topic's partition count",
        ),
        (
            None,
            {"autoscaling.keda.enabled": True},  # even where KEDA's API is absent
            "kafka.inputPartitions is required with autoscaling",
        ),
        (
            "keda",
            {"autoscaling.keda.maxReplicaCount": 13},
            "autoscaling.keda.maxReplicaCount (13) exceeds kafka.inputPartitions (12): a "
            "partition is consumed by one member of the group at a time",
        ),
        (
            "keda",
            {"kafka.inputPartitions": 4, "autoscaling.keda.maxReplicaCount": 4},
            "autoscaling.hpa.maxReplicas (6) exceeds kafka.inputPartitions (4)",
        ),
        (
            "hpa-partitions",
            {"autoscaling.hpa.maxReplicas": 9},
            "autoscaling.hpa.maxReplicas (9) exceeds kafka.inputPartitions (8)",
        ),
        (
            "ehr-inputs",
            {"autoscaling.keda.maxReplicaCount": 7},
            "autoscaling.keda.maxReplicaCount (7) exceeds kafka.inputPartitions (6)",
        ),
        (
            None,
            {"kafka.inputPartitions": 3, "replicaCount": 4},
            "replicaCount (4) exceeds kafka.inputPartitions (3)",
        ),
    ],
)
def test_replicas_beyond_partitions_fail_rendering(
    value_set: str | None, sets: dict[str, Any], message: str
) -> None:
    error = render_error(value_set, sets)
    assert message in error, error


def test_replicas_within_partitions_render() -> None:
    assert workload(render(sets={"kafka.inputPartitions": 3, "replicaCount": 3}))
    # An autoscaler owns the replica count: replicaCount is not checked then.
    hpa = {"kafka.inputPartitions": 8, "replicaCount": 20}
    assert one(render("hpa-partitions", sets=hpa), "HorizontalPodAutoscaler")
    # KEDA keeping idle members on purpose.
    idle = {"autoscaling.keda.maxReplicaCount": 24, "autoscaling.keda.allowIdleConsumers": True}
    assert one(render("keda", sets=idle), "ScaledObject")["spec"]["maxReplicaCount"] == 24


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_disruption_budget_lets_drains_proceed(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    pdb = one(rendered[value_set], "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    # Not-ready members (idle, or rebalancing) never block an eviction.
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"replicaCount": 3, "podDisruptionBudget.minAvailable": 3},
            "podDisruptionBudget.minAvailable (3) keeps all 3 pod(s) the workload can run with "
            "available, so a node drain could never evict a worker",
        ),
        (
            {"replicaCount": 3, "podDisruptionBudget.minAvailable": "100%"},
            "podDisruptionBudget.minAvailable (100%) keeps all 3 pod(s)",
        ),
        (
            {"replicaCount": 1, "podDisruptionBudget.minAvailable": "50%"},  # rounds up to 1
            "podDisruptionBudget.minAvailable (50%) keeps all 1 pod(s)",
        ),
        (
            {
                "kafka.inputPartitions": 6,
                "autoscaling.hpa.enabled": True,
                "autoscaling.hpa.minReplicas": 2,
                "podDisruptionBudget.minAvailable": 2,
            },
            "podDisruptionBudget.minAvailable (2) keeps all 2 pod(s)",
        ),
    ],
)
def test_disruption_budget_blocking_drains_fails(sets: dict[str, Any], message: str) -> None:
    error = render_error(sets=sets)
    assert message in error, error


def test_disruption_budget_without_disruptions_fails() -> None:
    for value in (0, "0%"):
        error = render_error(sets={"podDisruptionBudget.maxUnavailable": value})
        assert "values don't meet the specifications of the schema" in error, error
        error = render_error(
            sets={"podDisruptionBudget.maxUnavailable": value},
            extra_args=("--skip-schema-validation",),
        )
        assert "podDisruptionBudget.maxUnavailable must not be 0" in error, error


def test_disruption_budget_min_available_below_every_pod_renders() -> None:
    sets: dict[str, Any] = {"replicaCount": 3, "podDisruptionBudget.minAvailable": 2}
    assert one(render(sets=sets), "PodDisruptionBudget")["spec"]["minAvailable"] == 2
    sets = {"replicaCount": 4, "podDisruptionBudget.minAvailable": "50%"}
    assert one(render(sets=sets), "PodDisruptionBudget")["spec"]["minAvailable"] == "50%"
    assert one(render(sets={"podDisruptionBudget.maxUnavailable": "25%"}), "PodDisruptionBudget")


# --- Credentials from mounted files -------------------------------------------------------------


def test_no_credentials_volume_without_security(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["default"]
    spec = workload(manifests)["spec"]["template"]["spec"]
    assert "kafka-credentials" not in {v["name"] for v in spec["volumes"]}
    assert not [k for k in config_data(manifests) if k.endswith("_FILE")]


def test_chart_created_secret_is_mounted_as_files(rendered: dict[str, list[Manifest]]) -> None:
    for name in ("keda", "networkpolicy"):
        manifests = rendered[name]
        secret = one(manifests, "Secret")
        pods = list(pod_specs(manifests))
        for kind, spec in pods:
            assert not secret_key_refs(container(spec)), (name, kind)
            volume = next(v for v in spec["volumes"] if v["name"] == "kafka-credentials")
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            files = credential_files(manifests, spec)
            assert files == {
                "BIOMARKER_SASL_USERNAME_FILE": "sasl-username",
                "BIOMARKER_SASL_PASSWORD_FILE": "sasl-password",
            }, (name, kind)
            assert set(files.values()) <= set(secret["data"])
        if name == "networkpolicy":  # the backfill Job reads the same files
            assert {kind for kind, _ in pods} == {"Deployment", "Job"}


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (
            {
                "kafka.security.protocol": "SASL_SSL",
                "kafka.security.saslMechanism": "OAUTHBEARER",
                "kafka.credentials.existingSecret": "kafka-oauth",
            },
            {"BIOMARKER_SASL_OAUTHBEARER_CONFIG_FILE": "sasl-oauthbearer-config"},
        ),
        (
            {
                "kafka.security.protocol": "SASL_SSL",
                "kafka.security.saslMechanism": "PLAIN",
                "kafka.credentials.existingSecret": "kafka-plain",
                "kafka.credentials.keys.username": "user",
                "kafka.credentials.keys.password": "pass",
            },
            {"BIOMARKER_SASL_USERNAME_FILE": "user", "BIOMARKER_SASL_PASSWORD_FILE": "pass"},
        ),
        (
            {  # mutual TLS with an encrypted key, its password in an existing Secret
                "kafka.security.protocol": "SSL",
                "kafka.tls.existingSecret": "kafka-mtls",
                "kafka.tls.certKey": "tls.crt",
                "kafka.tls.keyKey": "tls.key",
                "kafka.tls.keyEncrypted": True,
                "kafka.credentials.existingSecret": "kafka-mtls-password",
            },
            {"BIOMARKER_SSL_KEY_PASSWORD_FILE": "ssl-key-password"},
        ),
        (
            {  # the same key password from the chart-created Secret
                "kafka.security.protocol": "SSL",
                "kafka.tls.existingSecret": "kafka-mtls",
                "kafka.tls.certKey": "tls.crt",
                "kafka.tls.keyKey": "tls.key",
                "kafka.credentials.sslKeyPassword": "ci-only-not-a-secret",
            },
            {"BIOMARKER_SSL_KEY_PASSWORD_FILE": "ssl-key-password"},
        ),
        (
            {  # SCRAM plus an encrypted client key
                "kafka.security.protocol": "SASL_SSL",
                "kafka.security.saslMechanism": "SCRAM-SHA-256",
                "kafka.tls.existingSecret": "kafka-mtls",
                "kafka.tls.certKey": "tls.crt",
                "kafka.tls.keyKey": "tls.key",
                "kafka.tls.keyEncrypted": True,
                "kafka.credentials.existingSecret": "kafka-all",
            },
            {
                "BIOMARKER_SASL_USERNAME_FILE": "sasl-username",
                "BIOMARKER_SASL_PASSWORD_FILE": "sasl-password",
                "BIOMARKER_SSL_KEY_PASSWORD_FILE": "ssl-key-password",
            },
        ),
        (
            {  # an unencrypted client key: no password file
                "kafka.security.protocol": "SSL",
                "kafka.tls.existingSecret": "kafka-mtls",
                "kafka.tls.certKey": "tls.crt",
                "kafka.tls.keyKey": "tls.key",
                "kafka.credentials.existingSecret": "kafka-unused",
            },
            {},
        ),
    ],
)
def test_credentials_files_are_only_the_needed_keys(
    sets: dict[str, Any], expected: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = render(sets={**sets, "backfill.enabled": True, "backfill.fromOffsets": "0:0"})
    for kind, spec in pod_specs(manifests):
        assert not secret_key_refs(container(spec)), kind
        if not expected:
            assert "kafka-credentials" not in {v["name"] for v in spec["volumes"]}, kind
            continue
        assert credential_files(manifests, spec) == expected, kind
        volume = next(v for v in spec["volumes"] if v["name"] == "kafka-credentials")
        secret = sets.get("kafka.credentials.existingSecret", f"{FULLNAME}-kafka")
        assert volume["secret"]["secretName"] == secret, kind
        assert "optional" not in volume["secret"], "a missing key must fail the start"
    if "kafka.credentials.sslKeyPassword" in sets:
        assert set(one(manifests, "Secret")["data"]) == {"ssl-key-password"}


def test_credentials_mount_path_is_configurable() -> None:
    manifests = render("statefulset", sets={"kafka.credentials.mountPath": "/run/kafka-auth"})
    data = config_data(manifests)
    assert data["BIOMARKER_SASL_PASSWORD_FILE"] == "/run/kafka-auth/sasl-password"
    spec = workload(manifests)["spec"]["template"]["spec"]
    mount = next(m for m in container(spec)["volumeMounts"] if m["name"] == "kafka-credentials")
    assert mount == {"name": "kafka-credentials", "mountPath": "/run/kafka-auth", "readOnly": True}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"kafka.security.protocol": "SSL", "kafka.tls.keyEncrypted": True},
            "kafka.tls.keyEncrypted needs kafka.tls.keyKey",
        ),
        (
            {
                "kafka.security.protocol": "SSL",
                "kafka.tls.existingSecret": "kafka-mtls",
                "kafka.tls.certKey": "tls.crt",
                "kafka.tls.keyKey": "tls.key",
                "kafka.tls.keyEncrypted": True,
            },
            "kafka.tls.keyEncrypted needs the key's password: kafka.credentials.existingSecret "
            "with the key ssl-key-password, or kafka.credentials.sslKeyPassword",
        ),
    ],
)
def test_inconsistent_key_password_fails(sets: dict[str, Any], message: str) -> None:
    error = render_error(sets=sets)
    assert message in error, error


# --- NetworkPolicy ------------------------------------------------------------------------------


def test_network_policy_is_off_by_default(rendered: dict[str, list[Manifest]]) -> None:
    assert CHART_VALUES["networkPolicy"]["enabled"] is False
    for name in VALUE_SETS:
        if name != "networkpolicy":
            assert not by_kind(rendered[name], "NetworkPolicy"), name


def test_network_policy_allows_only_kafka_dns_extra_egress_and_metrics(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["networkpolicy"]
    policy = one(manifests, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    # It selects the worker pods and the backfill pods.
    selector = spec["podSelector"]["matchLabels"]
    pods = dict(pod_specs(manifests))
    assert set(pods) == {"Deployment", "Job"}
    for m in manifests:
        if m["kind"] in ("Deployment", "Job"):
            assert selector.items() <= m["spec"]["template"]["metadata"]["labels"].items()
    # Ingress: the metrics port only, from the monitoring namespace.
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": 9108, "protocol": "TCP"}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    kafka, dns, extra = spec["egress"]
    # Kafka: the default ports plus the bootstrap servers' port, to the brokers' CIDR.
    assert [(p["port"], p["protocol"]) for p in kafka["ports"]] == [
        (9092, "TCP"),
        (9093, "TCP"),
        (9096, "TCP"),
    ]
    assert kafka["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    # DNS: the cluster DNS, UDP and TCP.
    assert sorted((p["port"], p["protocol"]) for p in dns["ports"]) == [(53, "TCP"), (53, "UDP")]
    assert dns["to"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ]
    # The extra rule (a model mirror) as given.
    assert extra == {
        "to": [{"ipBlock": {"cidr": "10.30.4.0/24"}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }


def test_network_policy_defaults_and_options() -> None:
    spec = one(render(sets={"networkPolicy.enabled": True}), "NetworkPolicy")["spec"]
    kafka, dns = spec["egress"]  # no extra egress by default (e.g. no model hub)
    # Without broker CIDRs or peers: the Kafka ports to any destination.
    assert "to" not in kafka
    assert [p["port"] for p in kafka["ports"]] == [9092, 9093]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}]
    spec = one(
        render(
            sets={
                "networkPolicy.enabled": True,
                "networkPolicy.kafka.peers": peers,
                "networkPolicy.kafka.cidrs": ["10.1.0.0/16"],
                "networkPolicy.kafka.ports": [],
                "networkPolicy.metrics.from": [],
                "kafka.bootstrapServers": "kafka-0.kafka.kafka:9094",
            }
        ),
        "NetworkPolicy",
    )["spec"]
    assert spec["egress"][0]["to"] == [{"ipBlock": {"cidr": "10.1.0.0/16"}}, *peers]
    assert spec["egress"][0]["ports"] == [{"port": 9094, "protocol": "TCP"}]
    # metrics.from empty: the metrics port from anywhere (and still nothing else).
    assert spec["ingress"] == [{"ports": [{"port": 9108, "protocol": "TCP"}]}]


def test_network_policy_without_any_kafka_port_fails() -> None:
    error = render_error(
        sets={
            "networkPolicy.enabled": True,
            "networkPolicy.kafka.ports": [],
            "kafka.bootstrapServers": "kafka",
        }
    )
    assert "networkPolicy.kafka.ports is empty and kafka.bootstrapServers names no port" in error


# --- commonLabels, ephemeral storage, model hash ------------------------------------------------


def selectors(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, str]]]:
    for m in manifests:
        spec = m.get("spec", {})
        if m["kind"] in ("Deployment", "StatefulSet", "PodDisruptionBudget"):
            yield m["kind"], spec["selector"]["matchLabels"]
        elif m["kind"] == "Service":
            yield m["kind"], spec["selector"]
        elif m["kind"] == "ServiceMonitor":
            yield m["kind"], spec["selector"]["matchLabels"]
        elif m["kind"] == "NetworkPolicy":
            yield m["kind"], spec["podSelector"]["matchLabels"]


@pytest.mark.parametrize("value_set", ["networkpolicy", "hpa-partitions"])
def test_common_labels_on_every_resource_never_in_selectors(
    rendered: dict[str, list[Manifest]], value_set: str
) -> None:
    manifests = rendered[value_set]
    common = yaml.safe_load((CI_VALUES / f"{value_set}.yaml").read_text("utf-8"))["commonLabels"]
    for m in manifests:
        labels = m["metadata"]["labels"]
        assert common.items() <= labels.items(), (m["kind"], m["metadata"]["name"])
        assert labels["app.kubernetes.io/name"] == "biomarker-worker"
    for m in manifests:
        if "template" in m.get("spec", {}):
            assert common.items() <= m["spec"]["template"]["metadata"]["labels"].items()
    for kind, selector in selectors(manifests):
        assert not set(common) & set(selector), kind


def test_common_labels_with_other_labels() -> None:
    manifests = render(
        "servicemonitor",
        sets={
            "commonLabels": {"team": "nlp", "release": "none"},
            "podLabels": {"team": "nlp-oncall"},
        },
    )
    # The ServiceMonitor's own labels (the selecting Prometheus's) win over commonLabels; pod
    # labels win over them on the pods; each key appears once (render() rejects duplicates).
    monitor = one(manifests, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["team"] == "nlp"
    pod_labels = workload(manifests)["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "nlp-oncall"
    assert workload(manifests)["metadata"]["labels"]["team"] == "nlp"


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (
            {"commonLabels": {"app.kubernetes.io/name": "other"}},
            "commonLabels must not set app.kubernetes.io/name: the chart sets it",
        ),
        (
            {"commonLabels": {"app.kubernetes.io/component": "x"}},
            "commonLabels must not set app.kubernetes.io/component",
        ),
        (
            {"podLabels": {"app.kubernetes.io/instance": "other"}},
            "podLabels must not set app.kubernetes.io/instance",
        ),
    ],
)
def test_common_labels_cannot_override_chart_labels(sets: dict[str, Any], message: str) -> None:
    error = render_error(sets=sets)
    assert message in error, error


def test_ephemeral_storage_is_requested(rendered: dict[str, list[Manifest]]) -> None:
    assert CHART_VALUES["resources"]["requests"]["ephemeral-storage"] == "1Gi"
    for name in VALUE_SETS:
        for kind, spec in pod_specs(rendered[name]):
            resources = container(spec)["resources"]
            expected = "2Gi" if name == "hpa-partitions" else "1Gi"
            assert resources["requests"]["ephemeral-storage"] == expected, (name, kind)
            if name != "hpa-partitions":
                assert "ephemeral-storage" not in resources.get("limits", {}), (name, kind)
    # The request is below what the emptyDirs may hold (their size limits cap them).
    spec = workload(rendered["default"])["spec"]["template"]["spec"]
    limits = {v["name"]: v["emptyDir"]["sizeLimit"] for v in spec["volumes"] if "emptyDir" in v}
    assert limits == {"cache": "2Gi", "tmp": "1Gi"}
    limited = container(workload(rendered["hpa-partitions"])["spec"]["template"]["spec"])
    assert limited["resources"]["limits"]["ephemeral-storage"] == "4Gi"


def test_model_sha256(rendered: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch) -> None:
    assert "BIOMARKER_MODEL_SHA256" not in config_data(rendered["default"])
    digest = "4f1c2d0e9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d"
    manifests = rendered["networkpolicy"]
    assert config_data(manifests)["BIOMARKER_MODEL_SHA256"] == digest
    for _, spec in pod_specs(manifests):  # the workers and the replay check the same model
        assert settings_of(manifests, container(spec), monkeypatch).model_sha256 == digest

    def checksum(m: list[Manifest]) -> str:
        return str(workload(m)["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum(render(sets={"model.sha256": digest})) != checksum(rendered["default"])
    for bad in ("ABC", digest.upper(), digest[:63], "sha256:" + digest):
        error = render_error(sets={"model.sha256": bad})
        assert "values don't meet the specifications of the schema" in error, bad


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
                "backfill.groupId": LIVE_GROUP,
            },
            f'backfill.groupId must differ from the live group "{LIVE_GROUP}" (kafka.groupId',
        ),
        (
            {
                "kafka.groupId": "biomarker-worker",
                "backfill.enabled": True,
                "backfill.fromOffsets": "0:1",
                "backfill.groupId": "biomarker-worker",
            },
            'backfill.groupId must differ from the live group "biomarker-worker"',
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
        if kind == "Job":  # immutable: a running replay keeps the configuration it started with
            assert "checksum/config" not in template["metadata"].get("annotations", {})
        else:
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
        # BIOMARKER_<NAME>_FILE: <NAME>'s value is the content of that (mounted) file.
        env = with_file_values(effective_env(manifests, container(spec)))
        unknown = {k for k in env if k.startswith(ENV_PREFIX)} - fields - not_settings
        assert not unknown, f"{kind} sets variables the worker does not know: {sorted(unknown)}"
        with monkeypatch.context() as patch:
            use_env(patch, env)
            settings = load_settings(check_files=False)  # the files exist in the pod only
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
    worker's own command-line parser, its environment as Kubernetes builds it). The files the
    settings name (mounted CA, mappings, credentials) exist in the pod only: not checked here."""
    import argparse

    from worker.cli import replay
    from worker.cli.options import settings_from_args
    from worker.config import load_settings

    with monkeypatch.context() as patch:
        use_env(patch, with_file_values(effective_env(manifests, ctr)))
        if ctr["args"][0] != "replay":
            return load_settings(check_files=False)
        parser = argparse.ArgumentParser()
        replay.register(parser.add_subparsers(dest="command"))
        return settings_from_args(parser.parse_args(ctr["args"]), check_files=False)


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


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"inference.hostProcesses": 2}, "prepares notes in its own process only"),
        ({"kafka.groupProtocol": "consumer"}, "needs kafka.groupProtocol=classic"),
        ({"kafka.extra": {"fetch.max.bytes": "1048576"}}, "cannot apply kafka.extra"),
    ],
)
def test_faust_runtime_refuses_what_it_cannot_run_at_render_time(
    sets: dict[str, Any], message: str
) -> None:
    assert message in render_error(sets={"runtime": "faust", **sets})


def test_keda_refuses_idle_consumers_with_lagging_partitions_only() -> None:
    error = render_error(
        "keda",
        sets={
            "autoscaling.keda.allowIdleConsumers": True,
            "autoscaling.keda.limitToPartitionsWithLag": True,
        },
    )
    assert "cannot both be true" in error


def test_keda_lag_thresholds_render_as_integers() -> None:
    manifests = render("keda", sets={"autoscaling.keda.lagThreshold": 1000000})
    (trigger,) = one(manifests, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["lagThreshold"] == "1000000"


def test_recreate_strategy_renders_without_rolling_update() -> None:
    manifests = render(sets={"workload.strategy.type": "Recreate"})
    assert one(manifests, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_gpu_pods_tolerate_the_gpu_taint_whatever_the_resource_name() -> None:
    manifests = render("gpu", sets={"gpu.resourceName": "nvidia.com/mig-1g.10gb"})
    spec = workload(manifests)["spec"]["template"]["spec"]
    assert container(spec)["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == 1
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]


def test_close_allowance_below_the_workers_own_close_deadline_is_refused() -> None:
    assert "closeAllowanceSeconds" in render_error(sets={"shutdown.closeAllowanceSeconds": 5})


#: The keda value set over TLS without SASL or a CA Secret (brokers with public certificates).
_KEDA_PUBLIC_TLS = {
    "kafka.security.protocol": "SSL",
    "kafka.security.saslMechanism": "",
    "kafka.tls.existingSecret": "",
    "kafka.credentials.username": "",
    "kafka.credentials.password": "",
}


def test_keda_over_tls_with_public_certificates_needs_no_trigger_authentication() -> None:
    manifests = render("keda", sets=_KEDA_PUBLIC_TLS)
    assert not by_kind(manifests, "TriggerAuthentication")
    (trigger,) = one(manifests, "ScaledObject")["spec"]["triggers"]
    assert trigger["metadata"]["tls"] == "enable" and "authenticationRef" not in trigger


def test_keda_refuses_brokers_whose_host_names_are_not_checked() -> None:
    error = render_error(
        "keda", sets={**_KEDA_PUBLIC_TLS, "kafka.security.endpointIdentification": "none"}
    )
    assert "always verifies broker host names" in error


def test_a_poll_interval_below_the_session_timeout_is_refused_with_the_classic_protocol() -> None:
    pair = {"kafka.sessionTimeoutMs": 60000, "kafka.maxPollIntervalMs": 30000}
    assert "must be at least kafka.sessionTimeoutMs (60000)" in render_error(sets=pair)
    # The consumer protocol (KIP-848) has no client session timeout: the pair is not compared.
    render(sets={**pair, "kafka.groupProtocol": "consumer"})


def test_exactly_once_is_refused_without_stable_pod_names() -> None:
    error = render_error(sets={"kafka.processingGuarantee": "exactly-once"})
    assert "exactly-once needs workload.kind=StatefulSet" in error
    manifests = render(
        sets={"kafka.processingGuarantee": "exactly-once", "workload.kind": "StatefulSet"}
    )
    assert by_kind(manifests, "StatefulSet") and not by_kind(manifests, "Deployment")


@pytest.mark.parametrize("key", sorted(SECRET_CLIENT_KEYS))
def test_a_credential_in_kafka_extra_is_refused_it_would_land_in_a_config_map(key: str) -> None:
    error = render_error(sets={"kafka.extra": {key: "s3cret"}})
    assert f"kafka.extra.{key} looks like a credential" in error


def test_the_chart_marks_credentials_with_the_workers_words() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text("utf-8")
    words = " ".join(f'"{word}"' for word in SECRET_KEY_WORDS)
    assert f"range list {words} }}}}" in helpers
    manifests = render(sets={"kafka.extra": {"fetch.max.bytes": "52428800"}})
    assert "52428800" in config_data(manifests)["BIOMARKER_KAFKA_EXTRA"]
