"""The wheel the Docker image installs is the service: ``worker/`` with its schemas, default model
and demo notes, and nothing of the checkout's ``bench/``, ``devkit/`` and ``training/``."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.cli.checkout import CHECKOUT_PACKAGES

REPO = Path(__file__).resolve().parent.parent

#: Modules the service used to carry; they live in the checkout now.
MOVED = ("worker/benchmark/", "worker/training/", "worker/localkafka.py", "worker/localtls.py")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    target: Path
    names: frozenset[str]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The project's wheel, built without dependencies and installed alone into a directory."""
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(REPO)],
        check=True,
        timeout=300,
    )
    [wheel] = dist.glob("biomarker_worker-*.whl")
    target = dist / "site"
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
    return Installed(wheel, target, frozenset(zipfile.ZipFile(wheel).namelist()))


def _wheel_alone(installed: Installed, *args: str) -> subprocess.CompletedProcess[str]:
    """Python on the installed wheel plus this venv's third-party packages, without the venv's
    ``.pth`` files (``-S``), so the editable install's path to the checkout is not on sys.path."""
    paths = [str(installed.target), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return subprocess.run(
        [sys.executable, "-S", *args],
        env={"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=installed.target.parent,
    )


def test_wheel_contents_and_packaged_schemas(installed: Installed) -> None:
    names = installed.names
    for schema in ("note-event.v1.json", "enriched-note.v1.json", "dead-letter.v1.json"):
        assert f"worker/_schemas/{schema}" in names
    assert "worker/model/default/delta.safetensors" in names
    assert "worker/model/default/manifest.json" in names
    assert "worker/demo/sample_notes.jsonl" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/results"))]

    probe = (
        "import worker.schemas as s; d = s._schema_dir(); "
        "assert '_schemas' in str(d), d; s.validator(s.OUTPUT_SCHEMA); print(d)"
    )
    result = _wheel_alone(installed, "-c", probe)
    assert result.returncode == 0, result.stderr
    assert str(installed.target) in result.stdout


def test_wheel_leaves_out_the_checkout_packages(installed: Installed) -> None:
    checkout = tuple(f"{package}/" for package in sorted(CHECKOUT_PACKAGES))
    assert not [name for name in installed.names if name.startswith(checkout + MOVED)]
    tops = {name.split("/")[0] for name in installed.names} - {"worker"}
    assert len(tops) == 1 and tops.pop().endswith(".dist-info")


def _distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_runtime_dependencies_are_what_worker_imports(installed: Installed) -> None:
    """Every unconditional requirement is imported by ``worker/``, and every import is required."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        sources = {name: wheel.read(name) for name in installed.names if name.endswith(".py")}
        [metadata] = [name for name in installed.names if name.endswith(".dist-info/METADATA")]
        requires = [
            line.removeprefix("Requires-Dist:").strip()
            for line in wheel.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    unconditional = [req for req in requires if ";" not in req]
    declared = {_distribution(re.split(r"[<>=!~ \[]", req)[0]) for req in unconditional}
    imported: set[str] = set()
    for source in sources.values():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "worker"}
    third_party -= CHECKOUT_PACKAGES
    providers = importlib.metadata.packages_distributions()
    unknown = sorted(module for module in third_party if module not in providers)
    assert not unknown, f"imported by worker/ but no installed distribution provides: {unknown}"
    needed = {_distribution(providers[module][0]) for module in third_party}
    assert declared == needed, (
        f"declared only: {sorted(declared - needed)}; imported only: {sorted(needed - declared)}"
    )


def test_cli_runs_from_the_wheel_alone(installed: Installed) -> None:
    probe = (
        "import importlib.util, worker, worker.cli; worker.cli.build_parser(); "
        "print(worker.__file__); "
        "print([p for p in ('bench', 'devkit', 'training') if importlib.util.find_spec(p)])"
    )
    result = _wheel_alone(installed, "-c", probe)
    assert result.returncode == 0, result.stderr
    worker_file, found = result.stdout.splitlines()
    assert worker_file.startswith(str(installed.target))
    assert found == "[]", "the checkout leaked onto sys.path; the checks below would prove nothing"

    script = installed.target / "bin" / "biomarker-worker"
    result = _wheel_alone(installed, str(script), "--help")
    assert result.returncode == 0, result.stderr
    for command in ("run", "classify", "replay", "config", "train", "bench"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["train", "--base", "b", "--train", "t.jsonl", "--out", "out"], "[train] extra"),
        (["evaluate", "--model", "m", "--data", "d.jsonl"], "[train] extra"),
        (["dataset", "--out", "out"], "[train] extra"),
        (["soup", "--model", "a", "--model", "b", "--out", "out"], "[train] extra"),
        (["bench", "--quick"], "[bench,onnx] extras"),
        (["demo", "--notes", "1"], "(pip install -e .)"),
        (["chaos", "--notes", "1"], "(pip install -e .)"),
    ],
)
def test_checkout_only_commands_say_so_in_one_line(
    installed: Installed, args: list[str], extra: str
) -> None:
    script = installed.target / "bin" / "biomarker-worker"
    result = _wheel_alone(installed, str(script), *args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(
        f"biomarker-worker {args[0]}: error: needs a source checkout of biomarker-worker"
    )
    assert extra in line
