#!/usr/bin/env bash
# Offline checks of the Helm chart and the Dockerfile:
#   1. helm lint --strict with the defaults and with each helm/ci-values/*.yaml set;
#   2. helm template for each set, validated by kubeconform in strict mode against the offline
#      Kubernetes schemas of every version scripts/install_chart_tools.sh prepared (the CRD kinds
#      ServiceMonitor, ScaledObject and TriggerAuthentication are skipped here and asserted by
#      tests/test_helm_chart.py);
#   3. every value documented in values.yaml and listed in the chart README;
#   4. hadolint on the Dockerfile.
# Exits non-zero on the first failing step. Run scripts/install_chart_tools.sh first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${BIOMARKER_TOOLS_DIR:-$HOME/.cache/biomarker-worker/tools}"
BIN_DIR="$TOOLS_DIR/bin"
SCHEMA_DIR="$TOOLS_DIR/kubernetes-json-schema"
CHART="$ROOT/helm/biomarker-worker"
VALUES_DIR="$ROOT/helm/ci-values"
RELEASE="ci"
CRD_KINDS="ServiceMonitor,ScaledObject,TriggerAuthentication"

for tool in helm kubeconform hadolint; do
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
# The optional CRDs exist only in clusters that installed them; the sets that use them render as
# if the cluster served them.
api_flags() {
    case "$(basename "$1" .yaml)" in
        keda|ehr-inputs) echo "--api-versions keda.sh/v1alpha1/ScaledObject --api-versions keda.sh/v1alpha1/TriggerAuthentication" ;;
        servicemonitor) echo "--api-versions monitoring.coreos.com/v1/ServiceMonitor" ;;
    esac
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== helm lint --strict"
helm lint --strict --kube-version "$oldest" "$CHART"
for values in "${value_sets[@]}"; do
    helm lint --strict --kube-version "$oldest" "$CHART" -f "$values" --quiet
done

echo "== helm template + kubeconform -strict (kubernetes ${versions[*]})"
for values in "${value_sets[@]}"; do
    set_name="$(basename "$values" .yaml)"
    for version in "${versions[@]}"; do
        out="$work/$set_name-$version.yaml"
        # shellcheck disable=SC2046 # api_flags prints separate flags
        helm template "$RELEASE" "$CHART" -f "$values" --kube-version "${version#v}" \
            $(api_flags "$values") >"$out"
        printf '%-16s %-8s ' "$set_name" "$version"
        "$BIN_DIR/kubeconform" -strict -summary -exit-on-error \
            -kubernetes-version "${version#v}" \
            -schema-location "$SCHEMA_DIR/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
            -skip "$CRD_KINDS" \
            "$out"
    done
done

echo "== values.yaml documentation"
# Every value (or an object above it) has a helm-docs "# --" comment, and the chart README's table
# lists every documented key.
"$TOOLS_DIR/venv/bin/python" - "$CHART/values.yaml" "$CHART/README.md" <<'PY'
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
