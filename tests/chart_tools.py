"""Where the chart and the tools that render and validate it are (shared by the chart tests).

``scripts/install_chart_tools.sh`` installs the tools into
``${BIOMARKER_TOOLS_DIR:-~/.cache/biomarker-worker/tools}``.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "biomarker-worker"
CI_VALUES = ROOT / "helm" / "ci-values"
TOOLS_DIR = Path(
    os.environ.get("BIOMARKER_TOOLS_DIR", Path.home() / ".cache" / "biomarker-worker" / "tools")
)
HELM = TOOLS_DIR / "bin" / "helm"
KUBECONFORM = TOOLS_DIR / "bin" / "kubeconform"
