"""Model provenance: a content hash for every loaded model (hub ids too), and pinning it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.loading import check_model_hash, load_classifier
from worker.model.classifier import SequenceClassifier, checkpoint_dir, content_hash

REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_ID = "acme/tiny-bert"


@pytest.fixture()
def hub_cache(tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$HF_HOME`` in ``tmp_path`` holding :data:`HUB_ID` laid out as the hub cache does it:
    blobs named by their hash, a snapshot of links to them, ``refs/main`` naming the snapshot."""
    home = tmp_path / "hf"
    repo = home / "hub" / f"models--{HUB_ID.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for file in tiny_model_dir.iterdir():
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, blob)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The hub client reads its cache location once, at import: point the loaded module there.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return snapshot


def test_a_hub_model_is_hashed_from_its_cached_snapshot(
    hub_cache: Path, tiny_model_dir: Path
) -> None:
    assert checkpoint_dir(HUB_ID) == hub_cache
    classifier = SequenceClassifier.load(HUB_ID, device="cpu", dtype="float32", threads=1)
    assert classifier.info.name == HUB_ID
    assert classifier.info.sha256 == content_hash(tiny_model_dir)  # same files, same hash
    assert len(classifier.info.sha256) == 64


def test_a_hub_id_that_is_not_in_the_cache_cannot_be_hashed(hub_cache: Path) -> None:
    with pytest.raises(FatalError, match="cannot find the files of model acme/missing"):
        checkpoint_dir("acme/missing")


def test_a_sharded_checkpoint_is_hashed_over_every_shard(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    for shard in (1, 2):
        (tmp_path / f"model-0000{shard}-of-00002.safetensors").write_bytes(b"weights")
    before = content_hash(tmp_path)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"other weights")
    assert content_hash(tmp_path) != before


def test_the_tokenizer_files_are_hashed_too(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A changed vocabulary changes the ids, so the scores: it must change the hash, and a
    pinned ``model_sha256`` then refuses the model."""
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    before = content_hash(copy)
    vocab = copy / "vocab.txt"
    assert vocab.is_file()
    words = vocab.read_text("utf-8").splitlines()
    words[-1], words[-2] = words[-2], words[-1]
    vocab.write_text("\n".join(words) + "\n", "utf-8")
    after = content_hash(copy)
    assert after != before
    pinned = WorkerSettings(
        model_path=str(copy), model_sha256=before, device="cpu", torch_threads=1
    )
    with pytest.raises(FatalError, match=f"has sha256 {after}"):
        load_classifier(pinned)


def test_an_unsharded_checkpoint_keeps_its_hash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    expected = hashlib.sha256(b"config.json{}model.safetensorsweights").hexdigest()
    assert content_hash(tmp_path) == expected


FULL = "ab" * 32


@pytest.mark.parametrize("expected", [FULL, FULL[:12], FULL[:40], f" {FULL.upper()} "])
def test_the_pinned_hash_may_be_the_full_hash_or_a_prefix(expected: str) -> None:
    check_model_hash(expected, FULL)


def test_a_different_hash_is_refused_naming_both() -> None:
    with pytest.raises(FatalError) as refused:
        check_model_hash("cd" * 6, FULL, model="m")
    message = str(refused.value)
    assert "\n" not in message
    assert FULL in message and "cd" * 6 in message


@pytest.mark.parametrize("expected", ["", "abab", FULL[:11], "xy" * 6, FULL + "00"])
def test_a_pin_that_is_not_a_hash_or_long_enough_a_prefix_is_refused(expected: str) -> None:
    with pytest.raises(FatalError, match="model_sha256 must be"):
        check_model_hash(expected, FULL)


def test_start_up_refuses_a_model_whose_hash_differs(tiny_model_dir: Path) -> None:
    actual = content_hash(tiny_model_dir)
    pinned = WorkerSettings(
        model_path=str(tiny_model_dir), model_sha256=actual[:12], device="cpu", torch_threads=1
    )
    assert load_classifier(pinned).info.sha256 == actual
    wrong = "0" * 64 if not actual.startswith("0" * 12) else "f" * 64
    other = pinned.model_copy(update={"model_sha256": wrong})
    with pytest.raises(FatalError, match=f"has sha256 {actual}, model_sha256 is {wrong}"):
        load_classifier(other)
