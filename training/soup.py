"""Average the weights of checkpoints fine-tuned from one base (a "model soup").

Runs of the same recipe that differ only in their seed end close together in weight space, so
the element-wise mean of their weights is itself a working model, at the cost of one (Wortsman et
al., 2022, "Model soups"). A single run's held-out F1 moves by about 0.02 with the seed alone; an
average does not depend on one lucky or unlucky seed. Its scores sit nearer the middle than its
members' (docs/MODEL_CARD.md, round 15), so choose its threshold on development data.

Every ingredient must be a Hugging Face checkpoint directory (``config.json``,
``model.safetensors``) of the same architecture with the same tensors. Tensors equal in every
ingredient (the frozen word embeddings, integer buffers) are copied, not averaged, so they stay
bit-identical to the base and :mod:`training.export` still leaves them out of the delta. The
output holds the averaged ``model.safetensors``, the first ingredient's config and tokenizer
files, and ``soup.json`` naming the ingredients (with their weights' sha256) and their weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from training.temperature import FOLD_MANIFEST as TEMPERATURE_FOLD
from training.threshold import FOLD_MANIFEST as THRESHOLD_FOLD
from worker.errors import UsageError

__all__ = ["SOUP_MANIFEST", "make_soup"]

SOUP_MANIFEST = "soup.json"
_WEIGHTS = "model.safetensors"
_CONFIG = "config.json"
#: Files copied from the first ingredient besides the config (whichever exist).
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)
#: Config keys that may differ between runs of one architecture.
_VOLATILE_CONFIG = frozenset(
    {"_name_or_path", "name_or_path", "transformers_version", "model_version"}
)


def _read_config(model_dir: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((model_dir / _CONFIG).read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(
            f"{model_dir} is not a checkpoint: cannot read {_CONFIG} ({exc.strerror})"
        ) from exc
    except ValueError as exc:
        raise UsageError(f"{model_dir / _CONFIG} is not valid JSON: {exc}") from exc
    return {key: value for key, value in config.items() if key not in _VOLATILE_CONFIG}


def _read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    path = model_dir / _WEIGHTS
    if not path.is_file():
        raise UsageError(f"{model_dir} is not a checkpoint: no {_WEIGHTS}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise UsageError(f"cannot read {path}: {exc}") from exc


def _check_same_shape(
    first: dict[str, torch.Tensor], other: dict[str, torch.Tensor], name: Path
) -> None:
    missing = sorted(first.keys() ^ other.keys())
    if missing:
        raise UsageError(
            f"{name} has different tensors from the first checkpoint ({len(missing)} differ, "
            f"e.g. {missing[0]}): a soup needs runs of one architecture"
        )
    for key, tensor in first.items():
        if tensor.shape != other[key].shape:
            raise UsageError(
                f"{name}: tensor {key} has shape {tuple(other[key].shape)}, "
                f"not {tuple(tensor.shape)}: a soup needs runs of one architecture"
            )


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UsageError(f"{len(weights)} weights for {count} checkpoints")
    if not all(math.isfinite(weight) and weight > 0 for weight in weights):
        raise UsageError("soup weights must be positive")
    total = sum(weights)
    return [weight / total for weight in weights]


def _mix(tensors: list[torch.Tensor], weights: list[float], key: str) -> torch.Tensor:
    first = tensors[0]
    if all(torch.equal(first, tensor) for tensor in tensors[1:]):
        return first
    if not first.is_floating_point():
        raise UsageError(f"integer tensor {key} differs between the checkpoints")
    total = torch.zeros(first.shape, dtype=torch.float64)
    for tensor, weight in zip(tensors, weights, strict=True):
        total += tensor.to(torch.float64) * weight
    return total.to(first.dtype).contiguous()


def make_soup(
    model_dirs: Sequence[Path], out_dir: Path, weights: Sequence[float] | None = None
) -> dict[str, Any]:
    """Write the weighted mean of ``model_dirs`` (uniform by default) to ``out_dir``.

    Returns the manifest also written as ``soup.json``.
    """
    if len(model_dirs) < 2:
        raise UsageError("a soup needs at least two checkpoints")
    mix_weights = _normalised(weights, len(model_dirs))
    if any(out_dir.resolve() == model_dir.resolve() for model_dir in model_dirs):
        raise UsageError(f"the soup's output {out_dir} is one of its checkpoints")
    for model_dir in model_dirs:
        folded = [
            name for name in (THRESHOLD_FOLD, TEMPERATURE_FOLD) if (model_dir / name).exists()
        ]
        if folded:
            raise UsageError(
                f"{model_dir} is a folded copy ({folded[0]}): average the runs themselves, then "
                "fold the soup (its bias shift would be averaged with the other runs' weights)"
            )
    config = _read_config(model_dirs[0])
    for model_dir in model_dirs[1:]:
        if _read_config(model_dir) != config:
            raise UsageError(
                f"{model_dir} has a different config.json from {model_dirs[0]}: "
                "a soup needs runs of one architecture and label set"
            )
    states = [_read_weights(model_dir) for model_dir in model_dirs]
    for model_dir, state in zip(model_dirs[1:], states[1:], strict=True):
        _check_same_shape(states[0], state, model_dir)
    averaged = {
        key: _mix([state[key] for state in states], mix_weights, key) for key in sorted(states[0])
    }
    copied = sum(averaged[key] is states[0][key] for key in averaged)
    manifest: dict[str, Any] = {
        "ingredients": [
            {
                "path": str(model_dir),
                "sha256": hashlib.sha256((model_dir / _WEIGHTS).read_bytes()).hexdigest(),
                "weight": weight,
            }
            for model_dir, weight in zip(model_dirs, mix_weights, strict=True)
        ],
        "tensors": len(averaged),
        "tensors_averaged": len(averaged) - copied,
    }
    try:
        _write(out_dir, averaged, model_dirs[0], manifest)
    except OSError as exc:
        raise UsageError(f"cannot write the soup to {out_dir}: {exc.strerror}") from exc
    return manifest


def _write(
    out_dir: Path, weights: dict[str, torch.Tensor], first: Path, manifest: dict[str, Any]
) -> None:
    """The averaged weights, the first ingredient's config and tokenizer, and ``soup.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out_dir / _WEIGHTS), metadata={"format": "pt"})
    for name in (_CONFIG, *_TOKENIZER_FILES):
        if (first / name).is_file():
            shutil.copyfile(first / name, out_dir / name)
    (out_dir / SOUP_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
