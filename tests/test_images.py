"""Static checks of the image build: lock files, Dockerfile, set-up script, docs. No build runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQ = ROOT / "requirements"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
INSTRUCTIONS = "\n".join(
    line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#")
)
HASHED_LOCKS = ["build.lock", "cpu.lock", "cuda-cu132.lock", "dev.lock"]
CUDA_ONLY = re.compile(r"^(nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+|triton)$")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def requirements(text: str) -> list[str]:
    """The requirement entries of a requirements file, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def pins(name: str) -> dict[str, str]:
    out = {}
    for entry in requirements((REQ / name).read_text()):
        match = PIN.match(entry)
        assert match, f"{name}: not an exact pin: {entry[:80]}"
        out[match.group(1).lower()] = match.group(2)
    return out


def normalise(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("name", HASHED_LOCKS)
def test_every_lock_entry_is_pinned_and_hashed(name: str) -> None:
    entries = requirements((REQ / name).read_text())
    assert entries, name
    for entry in entries:
        assert PIN.match(entry), f"{name}: not an exact pin: {entry[:80]}"
        assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{name}: no hash: {entry[:80]}"


@pytest.mark.parametrize("name", [*HASHED_LOCKS, "torch-cpu.lock"])
def test_locks_name_no_temporary_files(name: str) -> None:
    assert "/tmp/" not in (REQ / name).read_text()


def test_cpu_lock_is_the_cuda_lock_without_torch_and_cuda_wheels() -> None:
    cpu, cuda = pins("cpu.lock"), pins("cuda-cu132.lock")
    assert "torch" not in cpu
    assert not [n for n in cpu if CUDA_ONLY.match(n)]
    assert {n: v for n, v in cuda.items() if n != "torch" and not CUDA_ONLY.match(n)} == cpu


def test_torch_cpu_lock_matches_the_cuda_torch_version() -> None:
    text = (REQ / "torch-cpu.lock").read_text()
    entries = requirements(text)
    assert len(entries) == 1
    torch_cuda = pins("cuda-cu132.lock")["torch"]
    assert entries[0].startswith(f"torch=={torch_cuda.split('+')[0]}+cpu")
    # Either hashed, or it says loudly that it is not.
    assert "--hash=sha256:" in entries[0] or "NOT HASHED" in text


def test_locks_cover_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {normalise(r) for r in project["project"]["dependencies"]}
    optional = project["project"]["optional-dependencies"]
    extras = {normalise(r) for requirements_ in optional.values() for r in requirements_}
    backend = {normalise(r) for r in project["build-system"]["requires"]}
    assert runtime <= set(pins("cuda-cu132.lock"))
    assert runtime - {"torch"} <= set(pins("cpu.lock"))
    assert runtime | extras | backend <= set(pins("dev.lock"))
    assert backend <= set(pins("build.lock"))


def test_dev_lock_uses_the_cuda_images_versions_where_it_can() -> None:
    # Same torch in CI as in the cuda image.
    assert pins("dev.lock")["torch"] == pins("cuda-cu132.lock")["torch"]


def test_dockerfile_installs_from_the_locks_only() -> None:
    commands = re.split(r"&&|;|\bthen\b|\belse\b|\n", re.sub(r"\\\n\s*", " ", INSTRUCTIONS))
    installs = [c.strip() for c in commands if "pip install" in c]
    assert installs
    for install in installs:
        assert "--no-deps" in install, install
        # The only unhashed installs: the project's own wheel, and a torch-cpu.lock that says it
        # has no hashes (the Dockerfile warns, or fails with TORCH_CPU_REQUIRE_HASHES=1).
        if "--require-hashes" not in install:
            assert "/dist/*.whl" in install or "TORCH_CPU_LOCK" in install, install
    assert "-r requirements/cpu.lock" in DOCKERFILE
    assert '-r "requirements/cuda-${TORCH_CUDA}.lock"' in DOCKERFILE
    assert "-r requirements/build.lock" in DOCKERFILE
    assert "--no-build-isolation" in DOCKERFILE
    assert "COPY pyproject.toml" not in DOCKERFILE  # dependencies come from the locks


def test_dockerfile_build_args() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.12-", DOCKERFILE, re.M)
    default_line = re.search(r"^ARG TORCH_CUDA=(\S+)$", DOCKERFILE, re.M)
    assert default_line
    assert (REQ / f"cuda-{default_line.group(1)}.lock").is_file()
    assert re.search(r"^ARG TORCH_CPU_REQUIRE_HASHES=", DOCKERFILE, re.M)


def test_images_are_offline_by_default() -> None:
    assert re.search(r"^\s+HF_HUB_OFFLINE=1 ", DOCKERFILE, re.M)
    assert re.search(r"^\s+TRANSFORMERS_OFFLINE=1 ", DOCKERFILE, re.M)


def test_build_context_carries_the_locks() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!requirements/" in lines


def test_setup_installs_the_dev_lock_with_hashes() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert re.search(r"--require-hashes --no-deps \\\n\s+-r requirements/dev.lock", setup)
    assert "--no-deps --no-build-isolation -e ." in setup
    assert "install --upgrade" not in setup


def test_setup_remakes_a_venv_without_a_working_pip() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "if ! .venv/bin/python -m pip --version" in setup
    assert "rm -rf .venv" in setup


def test_chart_tools_install_from_their_hashed_lock() -> None:
    script = (ROOT / "scripts" / "install_chart_tools.sh").read_text()
    assert re.search(r"--require-hashes \\\n\s+--no-deps -r \"\$py_lock\"", script)
    lock = (ROOT / "requirements" / "chart-tools.lock").read_text()
    wanted = (ROOT / "requirements" / "chart-tools.in").read_text()
    for pin in re.findall(r"^([a-z0-9-]+==\S+)$", wanted, re.M):
        assert re.search(rf"^{re.escape(pin)} \\\n\s+--hash=sha256:", lock, re.M), pin
    for block in lock.split("\n\n"):
        for line in block.splitlines():
            if re.match(r"^[a-z0-9]", line):
                assert line.endswith("\\"), f"unhashed pin: {line}"


def test_docs_name_every_build_arg() -> None:
    docs = (ROOT / "docs" / "IMAGES.md").read_text()
    for arg in set(re.findall(r"^ARG ([A-Z_]+)", DOCKERFILE, re.M)):
        assert f"`{arg}`" in docs, arg
    assert "scripts/lock.sh" in docs
    assert "HF_HUB_OFFLINE" in docs
