"""The wheel the Docker image installs carries the schemas, the default model and demo notes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_wheel_contents_and_packaged_schemas(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("biomarker_worker-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in ("note-event.v1.json", "enriched-note.v1.json", "dead-letter.v1.json"):
        assert f"worker/_schemas/{schema}" in names
    assert "worker/model/default/delta.safetensors" in names
    assert "worker/model/default/manifest.json" in names
    assert "worker/demo/sample_notes.jsonl" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/results"))]

    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    probe = (
        "import worker.schemas as s; d = s._schema_dir(); "
        "assert '_schemas' in str(d), d; s.validator(s.OUTPUT_SCHEMA); print(d)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
