#!/usr/bin/env bash
# Set up everything the worker, its tests and the demo need, from the repo's own files:
# a virtualenv in .venv with every dependency of the package and its extras (dev, train, onnx,
# bench) from requirements/dev.lock (pinned, hash-checked), the package itself editable on top
# (so the checkout's bench/, devkit/ and training/ packages import too), and the Kafka broker
# jars (Maven).
# Idempotent and quick on re-runs: the lock is installed again only when requirements/dev.lock,
# pyproject.toml or the venv's Python changed (a stamp in .venv records what was installed);
# BIOMARKER_SETUP_FORCE=1 installs anyway. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
# A venv whose creation was interrupted (no working pip) is made again from scratch.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  "$python" -m venv .venv
fi
stamp=.venv/.biomarker-dev-lock.sha256
want=$({ .venv/bin/python -VV; cat requirements/dev.lock pyproject.toml; } | sha256sum | cut -d' ' -f1)
if [ "${BIOMARKER_SETUP_FORCE:-0}" = 1 ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -f "$stamp"
  .venv/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
    -r requirements/dev.lock
  # The build backend (hatchling) is in the lock: no isolated build fetching unpinned packages.
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
  .venv/bin/pip check --disable-pip-version-check >/dev/null
  echo "$want" >"$stamp"
fi
.venv/bin/python -m devkit.localkafka fetch >/dev/null
echo "setup done: .venv ready, Kafka $(.venv/bin/python -c 'from devkit.localkafka import KAFKA_VERSION; print(KAFKA_VERSION)') jars cached"
