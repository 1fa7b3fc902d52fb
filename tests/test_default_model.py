"""The embedded default model: materialises offline, loads, and flags the policy's examples."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from transformers import AutoModelForSequenceClassification, AutoTokenizer

from worker.errors import FatalError
from worker.model import default
from worker.model.classifier import SequenceClassifier

# DESIGN.md section 1, full sentences; expected label (None: reported, not asserted).
SEED_SENTENCES: tuple[tuple[str, int | None], ...] = (
    ("In the realm of cancer research, several biomarkers have emerged as crucial indicators of "
     "disease progression and treatment response.", 0),
    ("For instance, the expression levels of HER2/neu, a protein receptor, have been linked to "
     "aggressive forms of breast cancer.", 1),
    ("Additionally, the presence of prostate-specific antigen (PSA) is often monitored to track "
     "the progression of prostate cancer.", 1),
    ("Moreover, in cardiovascular health, high-sensitivity C-reactive protein (hs-CRP) serves as "
     "a biomarker for inflammation and potential risk of heart disease.", 1),
    ("Meanwhile, elevated levels of troponin T are indicative of myocardial damage, commonly "
     "observed in acute coronary syndrome.", 1),
    ("In the context of diabetes management, glycated hemoglobin is a widely used to assess "
     "long-term blood sugar control.", 1),
    ("Its levels reflect the average blood glucose concentration over the past two to three "
     "months, offering valuable insights into disease management.", None),
)  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Materialise the default model into a fresh cache directory."""
    cache = tmp_path_factory.mktemp("model-cache")
    previous = os.environ.get(default.CACHE_ENV)
    os.environ[default.CACHE_ENV] = str(cache)
    try:
        yield default.default_model_dir()
    finally:
        if previous is None:
            del os.environ[default.CACHE_ENV]
        else:
            os.environ[default.CACHE_ENV] = previous


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(model_dir, device="cpu", dtype="float32", threads=1)


def test_materialised_once_into_the_cache(model_dir: Path) -> None:
    assert model_dir.name == default.content_hash()
    assert model_dir.parent == default.cache_root()
    stamp = (model_dir / "model.safetensors").stat().st_mtime_ns
    assert default.default_model_dir() == model_dir
    assert (model_dir / "model.safetensors").stat().st_mtime_ns == stamp
    leftovers = [p.name for p in model_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_loads_offline_with_named_labels(model_dir: Path) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    assert model.config.id2label == {0: "no_biomarker", 1: "biomarker"}
    assert model.config.model_version == default.DEFAULT_MODEL_VERSION
    assert len(tokenizer("Serum PSA was 4.2 ng/mL.")["input_ids"]) < 32  # no fixed padding


def test_artifact_is_small_and_versioned() -> None:
    manifest = json.loads((default.ARTIFACT_DIR / "manifest.json").read_text())
    assert manifest["name"] == default.DEFAULT_MODEL_NAME
    assert manifest["version"] == default.DEFAULT_MODEL_VERSION
    size = sum(p.stat().st_size for p in default.ARTIFACT_DIR.iterdir() if p.is_file())
    assert size < 60 * 1024 * 1024


def test_obvious_positive_and_negative(classifier: SequenceClassifier) -> None:
    positive, negative = classifier.predict(
        ["Serum PSA was 4.2 ng/mL.", "The patient tolerated the procedure well."]
    )
    assert positive >= 0.5
    assert negative < 0.5


def test_seed_sentences(classifier: SequenceClassifier) -> None:
    scores = classifier.predict([text for text, _ in SEED_SENTENCES])
    for (text, expected), score in zip(SEED_SENTENCES, scores, strict=True):
        if expected is not None:
            assert (score >= 0.5) == bool(expected), (text[:40], score)


def test_unwritable_cache_is_a_fatal_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv(default.CACHE_ENV, str(blocker / "models"))
    with pytest.raises(FatalError, match="BIOMARKER_CACHE_DIR"):
        default.default_model_dir()
