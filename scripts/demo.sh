#!/usr/bin/env bash
# Set up, then run the demo end to end: local Kafka broker, sample notes in, enriched events out.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
HF_HUB_OFFLINE=1 exec .venv/bin/biomarker-worker demo "$@"
