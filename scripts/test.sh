#!/usr/bin/env bash
# The project's test command: set-up, lint, types, chart checks, then the whole pytest suite. The suite starts
# (and stops) its own Apache Kafka broker on 127.0.0.1; integration tests fail, never skip,
# when it cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
bash scripts/install_chart_tools.sh
bash scripts/check_chart.sh
HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -q "$@"
