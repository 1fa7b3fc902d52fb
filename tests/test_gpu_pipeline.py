"""``bench/gpu_pipeline.py`` as a user runs it, on CPU with the tiny model: every pass measured,
pipeline scores equal to scoring each note alone, in one process and through host processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parent.parent


def test_the_gpu_script_smoke_run_on_cpu_measures_every_pass(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    command = [
        sys.executable,
        str(REPO / "bench" / "gpu_pipeline.py"),
        "--device",
        "cpu",
        "--quick",
        "--models",
        str(tiny_model_dir),
        "--notes",
        "8",
        "--budgets",
        "256,512",
        "--host-processes",
        "2",
        "--check-notes",
        "8",
        "--tag",
        "smoke",
        "--out",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert done.returncode == 0, done.stderr[-2000:]

    results = orjson.loads((tmp_path / "gpu_pipeline_cpu-smoke.json").read_bytes())
    assert results["device"] == "cpu" and results["notes"] == 8
    (entry,) = results["models"]
    assert [point["token_budget"] for point in entry["model_only"]["sweep"]] == [256, 512]
    assert entry["model_only"]["best_budget"] in (256, 512)
    assert entry["settings"]["token_budget"] == entry["model_only"]["best_budget"]
    assert entry["host_only"]["sentences_per_s"] > 0
    assert entry["pipeline"]["sentences_per_s"] > 0

    alone = entry["pipeline_vs_notes_alone"]
    assert alone["notes"] == 8 and alone["sentences"] > 8
    assert alone["label_agreement"] == 1.0 and alone["max_abs_diff"] < 1e-4

    (hosts,) = entry["host_processes"]
    assert hosts["host_processes"] == 2
    assert hosts["pipeline"]["sentences_per_s"] > 0
    assert hosts["pipeline_over_model_only"] > 0
    host_alone = hosts["pipeline_vs_notes_alone"]
    assert host_alone["sentences"] == alone["sentences"]
    assert host_alone["label_agreement"] == 1.0 and host_alone["max_abs_diff"] < 1e-4
    assert "wrote" in done.stdout
