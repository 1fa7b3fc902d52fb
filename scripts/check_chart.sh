#!/usr/bin/env bash
# Offline checks of the Helm chart and the Dockerfile:
#   1. helm lint --strict with the defaults and with each helm/ci-values/*.yaml set;
#   2. helm template for each set, validated by kubeconform in strict mode against the offline
#      Kubernetes schemas of every version scripts/install_chart_tools.sh prepared, and the CRD
#      kinds (ScaledObject, TriggerAuthentication, ServiceMonitor, PrometheusRule) against the
#      schemas converted from their CRDs; a manifest with a misspelt field must fail there;
#   3. promtool: the rendered PrometheusRules' rules check, and the alert unit tests
#      (tests/alerts/prometheusrule_test.yaml) pass against the rules rendered with the defaults;
#   4. every value documented in values.yaml and listed in the chart README;
#   5. hadolint on the Dockerfile.
# Exits non-zero on the first failing step. Run scripts/install_chart_tools.sh first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${BIOMARKER_TOOLS_DIR:-$HOME/.cache/biomarker-worker/tools}"
BIN_DIR="$TOOLS_DIR/bin"
SCHEMA_DIR="$TOOLS_DIR/kubernetes-json-schema"
CRD_SCHEMA_DIR="$TOOLS_DIR/crd-json-schema"
CHART="$ROOT/helm/biomarker-worker"
VALUES_DIR="$ROOT/helm/ci-values"
RELEASE="ci"
ALERT_TESTS="$ROOT/tests/alerts/prometheusrule_test.yaml"
# The alert unit tests expect the rules of release $RELEASE in this namespace.
ALERT_NAMESPACE="biomarker"

for tool in helm kubeconform promtool hadolint; do
    if [[ ! -x "$BIN_DIR/$tool" ]]; then
        echo "check_chart: $BIN_DIR/$tool is missing; run scripts/install_chart_tools.sh" >&2
        exit 1
    fi
done
shopt -s nullglob
schema_trees=("$SCHEMA_DIR"/v*-standalone-strict)
if ((${#schema_trees[@]} == 0)); then
    echo "check_chart: no schemas under $SCHEMA_DIR; run scripts/install_chart_tools.sh" >&2
    exit 1
fi
if [[ ! -f "$CRD_SCHEMA_DIR/.complete" ]]; then
    echo "check_chart: no CRD schemas under $CRD_SCHEMA_DIR; run scripts/install_chart_tools.sh" >&2
    exit 1
fi
value_sets=("$VALUES_DIR"/*.yaml)
if ((${#value_sets[@]} == 0)); then
    echo "check_chart: no value sets in $VALUES_DIR" >&2
    exit 1
fi
versions=()
for tree in "${schema_trees[@]}"; do
    name="${tree##*/}"                  # v1.29.0-standalone-strict
    versions+=("${name%-standalone-strict}")
done
oldest="${versions[0]#v}"

helm() { "$BIN_DIR/helm" "$@"; }
python() { "$TOOLS_DIR/venv/bin/python" "$@"; }
# Strict kubeconform: the Kubernetes schemas first, then the CRD kinds' (no kind is skipped, and a
# kind without a schema is an error).
kubeconform() {  # kubeconform KUBERNETES_VERSION ARGS...
    local version="$1"
    shift
    "$BIN_DIR/kubeconform" -strict -kubernetes-version "$version" \
        -schema-location "$SCHEMA_DIR/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
        -schema-location "$CRD_SCHEMA_DIR/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
        "$@"
}
# The optional CRDs exist only in clusters that installed them; the sets that use them render as
# if the cluster served them.
api_flags() {
    case "$(basename "$1" .yaml)" in
        keda|ehr-inputs) echo "--api-versions keda.sh/v1alpha1/ScaledObject --api-versions keda.sh/v1alpha1/TriggerAuthentication" ;;
        servicemonitor) echo "--api-versions monitoring.coreos.com/v1/ServiceMonitor" ;;
        prometheusrule) echo "--api-versions monitoring.coreos.com/v1/ServiceMonitor --api-versions monitoring.coreos.com/v1/PrometheusRule" ;;
    esac
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== helm lint --strict"
helm lint --strict --kube-version "$oldest" "$CHART"
for values in "${value_sets[@]}"; do
    helm lint --strict --kube-version "$oldest" "$CHART" -f "$values" --quiet
done

echo "== helm template + kubeconform -strict (kubernetes ${versions[*]}, CRD kinds included)"
for values in "${value_sets[@]}"; do
    set_name="$(basename "$values" .yaml)"
    for version in "${versions[@]}"; do
        out="$work/$set_name-$version.yaml"
        # shellcheck disable=SC2046 # api_flags prints separate flags
        helm template "$RELEASE" "$CHART" -f "$values" --kube-version "${version#v}" \
            $(api_flags "$values") >"$out"
        printf '%-16s %-8s ' "$set_name" "$version"
        kubeconform "${version#v}" -summary -exit-on-error "$out"
    done
done

echo "== kubeconform rejects a misspelt CRD field"
# The CRD schemas are really applied: a ScaledObject with "maxReplicaCont" must fail.
cat >"$work/broken-scaledobject.yaml" <<'YAML'
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: broken
spec:
  scaleTargetRef:
    name: worker
  maxReplicaCont: 3
  triggers:
    - type: kafka
      metadata:
        topic: notes
YAML
if kubeconform "$oldest" "$work/broken-scaledobject.yaml" >"$work/broken.out" 2>&1; then
    echo "check_chart: kubeconform accepted a ScaledObject with a misspelt field" >&2
    exit 1
fi
grep -q "additional properties 'maxReplicaCont' not allowed" "$work/broken.out" || {
    echo "check_chart: kubeconform rejected the broken ScaledObject for another reason:" >&2
    cat "$work/broken.out" >&2
    exit 1
}
echo "rejected: $(tail -n 1 "$work/broken.out")"

echo "== promtool check rules + test rules"
# Every PrometheusRule rendered above (oldest Kubernetes version), as Prometheus rule files.
rule_files=()
for values in "${value_sets[@]}"; do
    set_name="$(basename "$values" .yaml)"
    python - "$work/$set_name-v$oldest.yaml" "$work/rules-$set_name.yaml" <<'PY'
import sys

import yaml

source, target = sys.argv[1], sys.argv[2]
rules = [doc for doc in yaml.safe_load_all(open(source, encoding="utf-8")) if doc and doc.get("kind") == "PrometheusRule"]
if rules:
    groups = [group for rule in rules for group in rule["spec"]["groups"]]
    yaml.safe_dump({"groups": groups}, open(target, "w", encoding="utf-8"), sort_keys=False)
PY
    if [[ -f "$work/rules-$set_name.yaml" ]]; then
        rule_files+=("$work/rules-$set_name.yaml")
    fi
done
# The unit tests' rules: the chart's defaults, only enabled.
mkdir "$work/alerts"
helm template "$RELEASE" "$CHART" --namespace "$ALERT_NAMESPACE" --kube-version "$oldest" \
    --api-versions monitoring.coreos.com/v1/PrometheusRule --set prometheusRule.enabled=true \
    >"$work/alerts/rendered.yaml"
python - "$work/alerts/rendered.yaml" "$work/alerts/rules.yaml" <<'PY'
import sys

import yaml

source, target = sys.argv[1], sys.argv[2]
(rule,) = [doc for doc in yaml.safe_load_all(open(source, encoding="utf-8")) if doc and doc.get("kind") == "PrometheusRule"]
yaml.safe_dump(rule["spec"], open(target, "w", encoding="utf-8"), sort_keys=False)
PY
rule_files+=("$work/alerts/rules.yaml")
if ((${#rule_files[@]} < 2)); then
    echo "check_chart: no value set in $VALUES_DIR renders a PrometheusRule" >&2
    exit 1
fi
"$BIN_DIR/promtool" check rules --lint=all --lint-fatal "${rule_files[@]}"
cp "$ALERT_TESTS" "$work/alerts/"
"$BIN_DIR/promtool" test rules "$work/alerts/$(basename "$ALERT_TESTS")"

echo "== values.yaml documentation"
# Every value (or an object above it) has a helm-docs "# --" comment, and the chart README's table
# lists every documented key.
python - "$CHART/values.yaml" "$CHART/README.md" <<'PY'
import re
import sys

import yaml

values_path, readme_path = sys.argv[1], sys.argv[2]
values = yaml.safe_load(open(values_path, encoding="utf-8"))
documented, stack, pending = set(), [], False
for line in open(values_path, encoding="utf-8"):
    if re.match(r"^\s*# -- ", line):
        pending = True
        continue
    key = re.match(r"^(\s*)([A-Za-z0-9_]+):", line)
    if key:
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending:
            documented.add(".".join(name for _, name in stack))
        pending = False


def undocumented(node, path):
    for name, value in node.items():
        dotted = ".".join([*path, name])
        parts = dotted.split(".")
        if any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            continue
        if isinstance(value, dict) and value:
            yield from undocumented(value, [*path, name])
        else:
            yield dotted


missing = sorted(undocumented(values, []))
readme = open(readme_path, encoding="utf-8").read()
not_in_readme = sorted(k for k in documented if f"| `{k}` |" not in readme)
for key in missing:
    print(f"values.yaml: {key} has no '# --' comment")
for key in not_in_readme:
    print(f"README.md: the values table lacks {key}")
if missing or not_in_readme:
    sys.exit(1)
print(f"{len(documented)} documented values, all in README.md")
PY

echo "== hadolint Dockerfile"
"$BIN_DIR/hadolint" "$ROOT/Dockerfile"

echo "check_chart: all checks passed"
