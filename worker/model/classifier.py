"""Hugging Face sequence-classification checkpoint, loaded once, run on CUDA or CPU.

The transport layers only call :meth:`SequenceClassifier.encode` (text -> token ids) and
:meth:`SequenceClassifier.predict_ids` (a micro-batch of token ids -> probability of label 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from worker.errors import FatalError

_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
_HASH_CHUNK = 1 << 20
_POSITIVE_NAMES = {"1", "label_1", "biomarker", "positive", "pos", "yes", "true"}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the provenance block of every output says about the model."""

    name: str
    version: str
    sha256: str
    device: str
    dtype: str
    max_length: int


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids of one sentence, already cut to the model's max length."""

    ids: list[int]
    truncated: bool


def content_hash(path: Path) -> str:
    """sha256 over the checkpoint's config and weight files (stable across copies)."""
    digest = hashlib.sha256()
    for name in _WEIGHT_FILES:
        file = path / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FatalError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32  # bf16 on CPUs without bf16 units is several times slower
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    return table[dtype]


def _positive_index(id2label: dict[int, str]) -> int:
    if len(id2label) != 2:
        raise FatalError(f"expected a binary classifier, the checkpoint has {len(id2label)} labels")
    for index, name in id2label.items():
        if str(name).strip().lower() in _POSITIVE_NAMES:
            return int(index)
    return 1


class SequenceClassifier:
    """A binary sequence classifier; ``predict_ids`` returns the probability of label 1."""

    def __init__(self, *, model: Any, tokenizer: Any, info: ModelInfo, positive_index: int) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.info = info
        self._positive_index = positive_index
        self._device = torch.device(info.device)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._sep_id = tokenizer.sep_token_id
        self.pad_multiple = 8 if self._device.type == "cuda" else 1

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        name: str | None = None,
        version: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 512,
        threads: int | None = None,
    ) -> SequenceClassifier:
        """Load a local checkpoint directory (or a hub id where the hub is reachable)."""
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if threads:
            torch.set_num_threads(threads)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), dtype=torch_dtype, attn_implementation="sdpa"
            )
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot load model from {path}: {exc}") from exc
        model.to(torch_device).eval()
        local = Path(path)
        limit = int(getattr(model.config, "max_position_embeddings", max_length))
        info = ModelInfo(
            name=name or (local.name if local.exists() else str(path)),
            version=version or str(getattr(model.config, "model_version", "") or "unversioned"),
            sha256=content_hash(local) if local.is_dir() else "unknown",
            device=str(torch_device),
            dtype=str(torch_dtype).removeprefix("torch."),
            max_length=min(max_length, limit),
        )
        return cls(
            model=model,
            tokenizer=tokenizer,
            info=info,
            positive_index=_positive_index(dict(model.config.id2label)),
        )

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenise sentences without padding, cutting each to the model's max length."""
        if not texts:
            return []
        limit = self.info.max_length
        batch = self._tokenizer(list(texts), truncation=True, max_length=limit + 1, padding=False)[
            "input_ids"
        ]
        out: list[Encoded] = []
        for ids in batch:
            if len(ids) > limit:
                cut = ids[: limit - 1]
                cut.append(self._sep_id if self._sep_id is not None else ids[-1])
                out.append(Encoded(cut, truncated=True))
            else:
                out.append(Encoded(ids, truncated=False))
        return out

    def padded_length(self, longest: int) -> int:
        step = self.pad_multiple
        return -(-longest // step) * step

    @torch.inference_mode()
    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        """Probability of the positive label for each token-id sequence of the batch."""
        if not batch:
            return []
        width = self.padded_length(max(len(ids) for ids in batch))
        pin = self._device.type == "cuda"
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
            attention[row, : len(ids)] = 1
        if pin:
            input_ids = input_ids.pin_memory()
            attention = attention.pin_memory()
        logits = self._model(
            input_ids=input_ids.to(self._device, non_blocking=pin),
            attention_mask=attention.to(self._device, non_blocking=pin),
        ).logits
        probs = torch.softmax(logits.float(), dim=-1)[:, self._positive_index]
        return [float(p) for p in probs.cpu().tolist()]

    def predict(self, texts: Sequence[str]) -> list[float]:
        """Convenience: encode then predict one batch (for evaluation and tests)."""
        return self.predict_ids([item.ids for item in self.encode(texts)])

    def device_memory_bytes(self) -> int | None:
        if self._device.type != "cuda":
            return None
        return int(torch.cuda.memory_allocated(self._device))
