#!/usr/bin/env bash
# Set up everything the worker, its tests and the demo need, from the repo's own files:
# a virtualenv in .venv with the package (editable, so the checkout's bench/, devkit/ and
# training/ packages import too) and its extras (dev, train, onnx, bench), and the Kafka
# broker jars (Maven).
# Idempotent; pip's and Maven's caches make re-runs fast.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/pip install --quiet --upgrade pip
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[dev,train,onnx,bench]'
.venv/bin/python -m devkit.localkafka fetch >/dev/null
echo "setup done: .venv ready, Kafka $(.venv/bin/python -c 'from devkit.localkafka import KAFKA_VERSION; print(KAFKA_VERSION)') jars cached"
