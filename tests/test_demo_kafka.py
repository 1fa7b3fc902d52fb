"""``biomarker-worker demo``, the README's first command, end to end: it starts its own local
broker, streams sample notes through the default model and prints the enriched events' summary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.kafka


def test_demo_streams_sample_notes_end_to_end_whatever_the_environment_selects() -> None:
    """Settings meant for a real deployment (several EHR inputs, another format) do not leak
    into the demo: it reads its own topic in its own format."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BIOMARKER_")}
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "BIOMARKER_INPUTS": json.dumps([{"topic": "mdm", "format": "hl7v2"}]),
            "BIOMARKER_INPUT_FORMAT": "hl7v2",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "worker", "demo", "--notes", "30", "--show", "2"],
        capture_output=True,
        cwd=REPO,
        env=env,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    out = result.stdout
    # MTSamples notes when the public corpora lie next to the checkout, else the bundled sample
    read = re.search(r"^notes: (\d+) from (MTSamples|bundled synthetic sample)", out, re.MULTILINE)
    assert read, out
    count = int(read.group(1))
    assert 1 <= count <= 30
    assert f"enriched events: {count} of {count} notes" in out
    assert re.search(r"throughput: [\d.]+ notes/s", out)
    flagged = re.search(r"(\d+) notes with a biomarker sentence", out)
    assert flagged and int(flagged.group(1)) >= 1  # both samples name biomarkers
