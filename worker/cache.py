"""Where the worker keeps what it builds once and reuses: ``$BIOMARKER_CACHE_DIR``, else
``~/.cache/biomarker-worker``, with one folder per kind (``models``, ``kafka-<version>``,
``bench-models``, ``onnx``)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BIOMARKER_CACHE_DIR"


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "biomarker-worker"
