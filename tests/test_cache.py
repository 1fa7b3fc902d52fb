"""One cache folder for everything built once: a subfolder per kind, under the same root."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.models import _stand_in_root
from bench.onnx_engine import onnx_cache_root
from worker.cache import CACHE_ENV, cache_dir
from worker.model.default import cache_root


def test_every_kind_has_its_own_folder_under_the_configured_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert cache_dir() == tmp_path
    kinds = {cache_root(), onnx_cache_root(), _stand_in_root()}
    assert kinds == {tmp_path / "models", tmp_path / "onnx", tmp_path / "bench-models"}


def test_the_default_root_is_the_user_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    assert cache_root() == Path.home() / ".cache" / "biomarker-worker" / "models"
