"""Hugging Face sequence-classification checkpoint, loaded once, run on CUDA or CPU.

The transport layers only call :meth:`SequenceClassifier.encode` (text -> token ids) and
:meth:`SequenceClassifier.predict_ids` (a micro-batch of token ids -> probability of label 1).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from worker.batching import CPU_LIMITS, GPU_LIMITS
from worker.errors import FatalError
from worker.model.backends import Engine, IntArray, PackingEngine, TorchEngine, check_backend
from worker.model.packing import DEFAULT_WIDTH, flat_ids, pack, packed_positions
from worker.model.wordpieces import (
    Encoded,
    SentenceEncoder,
    SentenceEncoderSpec,
    WordpieceEncoder,
    cut_to_length,
)

_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin")
#: A sharded checkpoint's index and shards, hashed after :data:`_WEIGHT_FILES` in name order (an
#: unsharded checkpoint has none, so its hash is what it always was).
_SHARD_PATTERNS = (
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model-*-of-*.bin",
)
#: The tokenizer's files, hashed last in this order: its vocabulary and settings decide the ids,
#: so the scores, as much as the weights do.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
_HASH_CHUNK = 1 << 20
#: On a multi-core CPU, run one single-threaded batch per core rather than spreading each batch
#: over every core: no per-operator barriers, so a core taken by Kafka I/O, tokenising or another
#: process delays one batch instead of stalling all of them (docs/PERFORMANCE.md).
BATCH_PARALLEL_DEFAULT = True
#: Batches in flight on one GPU, each launched from its own thread: while one waits for its
#: kernels, the next is packed, copied and launched. One H100, BERT-base size, same call: 19,139
#: -> 27,002 and 22,160 -> 26,461 sentences/s from one lane to two (docs/PERFORMANCE.md, GPU).
CUDA_LANES = 2
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
    backend: str = "torch"


#: Models whose position ids start after the padding index: ``max_position_embeddings`` (514
#: for RoBERTa) counts ``pad_token_id + 1`` positions no token can use.
_POSITIONS_AFTER_PADDING = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "longformer"}
)


def content_hash(path: Path) -> str:
    """sha256 over the checkpoint's config, weight and tokenizer files (stable across copies;
    a file a checkpoint lacks adds nothing, so one of config and weights alone hashes as it
    always did)."""
    digest = hashlib.sha256()
    shards = sorted({file.name for pattern in _SHARD_PATTERNS for file in path.glob(pattern)})
    for name in (*_WEIGHT_FILES, *shards, *_TOKENIZER_FILES):
        file = path / name
        if file.is_file():
            digest.update(name.encode())
            with file.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
    return digest.hexdigest()


def checkpoint_dir(path: str | Path, revision: str | None = None) -> Path:
    """The local directory of a checkpoint: ``path`` itself, or for a hub id its snapshot in
    the local hub cache (``$HF_HOME/hub``), which loading it has just filled. Never downloads."""
    local = Path(path)
    if local.is_dir():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(path), revision=revision, local_files_only=True))
    except (OSError, ValueError) as exc:
        raise FatalError(f"cannot find the files of model {path} to hash them: {exc}") from exc


def resolve_device(device: str) -> torch.device:
    """The torch device ``device`` names (``auto``, ``cpu``, ``cuda`` or ``cuda:<index>``);
    :class:`FatalError` for one that is malformed or not on this machine."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FatalError(f"device {device!r} requested but CUDA is not available")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise FatalError(f"device {device!r} is not auto, cpu, cuda or cuda:<index>") from None
    if resolved.type == "cuda" and (resolved.index or 0) >= (count := torch.cuda.device_count()):
        visible = f"cuda:0 to cuda:{count - 1}" if count > 1 else "cuda:0"
        raise FatalError(f"device {device!r} requested but the CUDA devices are {visible}")
    return resolved


def lanes_for(device: torch.device, cores: int, batch_parallel: bool) -> int:
    """How many ``predict_ids`` calls may run at once: one per core for batch-parallel CPU
    inference, :data:`CUDA_LANES` on a GPU, else one."""
    if device.type == "cuda":
        return CUDA_LANES
    return cores if batch_parallel else 1


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX tiles (bf16 matrix units, Sapphire Rapids and later)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() and torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private helpers: absent in other torch builds
        return False


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with AMX, where it ran
    2.5-3x faster than fp32 with 99.9% label agreement (docs/PERFORMANCE.md); fp32 on other
    CPUs (bf16 without matrix units is several times slower)."""
    if dtype == "auto":
        if device.type != "cuda":
            return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    return table[dtype]


def positive_index(id2label: dict[int, str]) -> int:
    """The index of the label the worker scores (named biomarker, positive, ...; else 1)."""
    if len(id2label) != 2:
        raise FatalError(f"expected a binary classifier, the checkpoint has {len(id2label)} labels")
    for index, name in id2label.items():
        if str(name).strip().lower() in _POSITIVE_NAMES:
            return int(index)
    return 1


class SequenceClassifier:
    """A binary sequence classifier; ``predict_ids`` returns the probability of label 1."""

    def __init__(
        self,
        *,
        model: Any,
        tokenizer: Any,
        info: ModelInfo,
        positive_index: int,
        engine: Engine | None = None,
        packing: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.info = info
        self.positive_index = positive_index
        self._device = torch.device(info.device)
        self._engine: Engine = engine or TorchEngine(model, self._device)
        self._pad_id = int(tokenizer.pad_token_id or 0)
        self._sep_id = tokenizer.sep_token_id
        self._wordpieces = WordpieceEncoder.for_tokenizer(tokenizer, info.max_length + 1)
        self.pad_multiple = 8 if self._device.type == "cuda" else 1
        #: Batch limits where the settings leave them unset.
        self.batch_limits = GPU_LIMITS if self._device.type == "cuda" else CPU_LIMITS
        #: Several sentences per row (:mod:`worker.model.packing`), where the model allows it.
        self.packs = packing and bool(getattr(self._engine, "packs", False))
        self.pack_width = DEFAULT_WIDTH
        #: ``predict_ids`` calls that may run at once (see :class:`worker.inference.Scorer`).
        self.concurrency = 1

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
        backend: str = "torch",
        batch_parallel: bool | None = None,
        packing: bool = True,
    ) -> SequenceClassifier:
        """Load a local checkpoint directory (or a hub id where the hub is reachable).

        ``info.sha256`` is :func:`content_hash` of the files loaded: the directory, or for a hub
        id its snapshot in the local hub cache (:func:`checkpoint_dir`).

        ``backend`` picks the engine (:mod:`worker.model.backends`); unsupported ones raise
        :class:`FatalError`. On CPU, ``threads`` cores (default: all usable) either each run a
        single-threaded batch of their own (``batch_parallel``, the default, see
        :data:`BATCH_PARALLEL_DEFAULT`) or share every batch (intra-op threads). ``packing``
        puts several sentences in each row of a batch where the model is a BERT classifier.
        """
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch_device = resolve_device(device)
        cores = threads or len(os.sched_getaffinity(0))
        split = torch_device.type == "cpu" and cores > 1
        split = split and (BATCH_PARALLEL_DEFAULT if batch_parallel is None else batch_parallel)
        if split:
            torch.set_num_threads(1)
        elif threads:
            torch.set_num_threads(threads)
        check_backend(backend)
        torch_dtype = resolve_dtype(dtype, torch_device)
        local = Path(path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), use_fast=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                str(path), dtype=torch_dtype, attn_implementation="sdpa"
            )
        except (OSError, ValueError) as exc:
            raise FatalError(f"cannot load model from {path}: {exc}") from exc
        model.to(torch_device).eval()
        config = model.config
        limit = int(getattr(config, "max_position_embeddings", max_length))
        if getattr(config, "model_type", "") in _POSITIONS_AFTER_PADDING:
            limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
        info = ModelInfo(
            name=name or (local.name if local.exists() else str(path)),
            version=version or str(getattr(config, "model_version", "") or "unversioned"),
            sha256=content_hash(checkpoint_dir(path)),
            device=str(torch_device),
            dtype=str(torch_dtype).removeprefix("torch."),
            max_length=min(max_length, limit),
            backend=backend,
        )
        classifier = cls(
            model=model,
            tokenizer=tokenizer,
            info=info,
            positive_index=positive_index(dict(config.id2label)),
            packing=packing,
        )
        classifier.concurrency = lanes_for(torch_device, cores, split)
        return classifier

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenise sentences without padding, cutting each to the model's max length."""
        if not texts:
            return []
        limit = self.info.max_length
        if self._wordpieces is not None:
            batch = self._wordpieces.ids(texts)
        else:
            batch = self.tokenizer(
                list(texts), truncation=True, max_length=limit + 1, padding=False
            )["input_ids"]
        return cut_to_length(batch, limit, self._sep_id)

    def encoder_spec(self) -> SentenceEncoderSpec | None:
        """How another process tokenises as :meth:`encode` does; ``None`` for a slow (Python)
        tokenizer, which cannot be serialised."""
        if self._wordpieces is None:
            return None
        return SentenceEncoder(self._wordpieces, self.info.max_length, self._sep_id).spec()

    def padded_length(self, longest: int) -> int:
        step = self.pad_multiple
        return -(-longest // step) * step

    def pad(self, batch: Sequence[Sequence[int]]) -> tuple[IntArray, IntArray]:
        """``input_ids`` and ``attention_mask`` of a batch, built in numpy in one pass."""
        count = len(batch)
        lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=count)
        width = self.padded_length(int(lengths.max()))
        flat = flat_ids(batch, int(lengths.sum()))
        mask = np.arange(width, dtype=np.int64) < lengths[:, None]
        input_ids = np.full((count, width), self._pad_id, dtype=np.int64)
        input_ids[mask] = flat
        return input_ids, mask.astype(np.int64)

    def computed_positions(self, lengths: Sequence[int]) -> int:
        """Positions the model computes for one batch of sentences of ``lengths``."""
        if not lengths:
            return 0
        if self.packs:
            return packed_positions(lengths, width=self.pack_width, multiple=self.pad_multiple)
        return len(lengths) * self.padded_length(max(lengths))

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        """Probability of the positive label for each token-id sequence of the batch."""
        if not batch:
            return []
        if self.packs:
            packed = pack(
                batch, width=self.pack_width, pad_id=self._pad_id, multiple=self.pad_multiple
            )
            probs = cast(PackingEngine, self._engine).packed_probabilities(packed)
        else:
            input_ids, attention = self.pad(batch)
            probs = self._engine.probabilities(input_ids, attention)
        result: list[float] = probs[:, self.positive_index].tolist()
        return result

    def predict(self, texts: Sequence[str]) -> list[float]:
        """Convenience: encode then predict one batch (for evaluation and tests)."""
        return self.predict_ids([item.ids for item in self.encode(texts)])

    @property
    def device_type(self) -> str:
        """``cpu`` or ``cuda``."""
        return self._device.type

    def device_memory_bytes(self) -> int | None:
        if self._device.type != "cuda":
            return None
        return int(torch.cuda.memory_allocated(self._device))
