"""Inference engines behind :meth:`SequenceClassifier.predict_ids`.

An engine takes one padded micro-batch as numpy arrays (``input_ids`` and ``attention_mask``,
int64, rows x width) and returns the softmax probabilities as a float32 array (rows x labels).
Engines that also have ``packed_probabilities`` take a :class:`~worker.model.packing.PackedBatch`
(several sentences per row) and return one row of probabilities per sentence.

The worker has one engine, ``torch``: eager PyTorch with SDPA attention, on CUDA (bf16/fp16,
pinned host memory, non-blocking copies) or CPU (bf16 where the CPU has AMX matrix units, see
:func:`worker.model.classifier.resolve_dtype`). The other candidates were measured on the same
sentences (``biomarker-worker bench``, ``bench/backend_accuracy.py``) and rejected; selecting
one fails at start-up with the reason (docs/PERFORMANCE.md has the numbers).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch

from worker.backend_choices import backend_problem
from worker.errors import FatalError
from worker.model.packing import PackedBatch

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


class Engine(Protocol):
    """One loaded model that turns padded id arrays into class probabilities."""

    name: str

    def probabilities(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray: ...


class PackingEngine(Engine, Protocol):
    """An engine that also scores packed batches (several sentences per row)."""

    packs: bool

    def packed_probabilities(self, packed: PackedBatch) -> FloatArray: ...


def check_backend(backend: str) -> None:
    """Raise :class:`FatalError` for an unknown or rejected backend."""
    problem = backend_problem(backend)
    if problem is not None:
        raise FatalError(problem)


def supports_packing(model: Any) -> bool:
    """True for BERT sequence classifiers, whose parts :meth:`TorchEngine.packed_probabilities`
    calls one by one (encoder with position ids and a 4-D mask, pooler, classifier)."""
    bert = getattr(model, "bert", None)
    return (
        getattr(model.config, "model_type", None) == "bert"
        and bert is not None
        and getattr(bert, "pooler", None) is not None
        and hasattr(model, "classifier")
        and hasattr(model, "dropout")
    )


class TorchEngine:
    """Eager PyTorch; on CUDA the host arrays go through pinned memory, copied non-blocking."""

    name = "torch"

    def __init__(self, model: Any, device: torch.device) -> None:
        self._model = model
        self._device = device
        self._cuda = device.type == "cuda"
        self.packs = supports_packing(model)

    def _to_device(self, array: IntArray) -> torch.Tensor:
        tensor = torch.from_numpy(array)  # no copy
        if not self._cuda:
            return tensor
        return tensor.pin_memory().to(self._device, non_blocking=True)

    @torch.inference_mode()
    def probabilities(self, input_ids: IntArray, attention_mask: IntArray) -> FloatArray:
        logits = self._model(
            input_ids=self._to_device(input_ids), attention_mask=self._to_device(attention_mask)
        ).logits
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.cpu().numpy()

    @torch.inference_mode()
    def packed_probabilities(self, packed: PackedBatch) -> FloatArray:
        """Probabilities per sentence of a packed batch (needs :attr:`packs`)."""
        model = self._model
        input_ids = self._to_device(packed.input_ids)
        segments = self._to_device(packed.segments)
        # Each position attends to its own sentence only (padding to padding, never empty).
        mask = (segments[:, :, None] == segments[:, None, :]).unsqueeze(1)
        hidden = model.bert(
            input_ids=input_ids,
            position_ids=self._to_device(packed.position_ids),
            token_type_ids=torch.zeros_like(input_ids),
            attention_mask=mask,
        ).last_hidden_state
        firsts = hidden.reshape(-1, hidden.shape[-1]).index_select(
            0, self._to_device(packed.starts)
        )
        pooled = model.bert.pooler(firsts.unsqueeze(1))
        logits = model.classifier(model.dropout(pooled))
        probs = torch.softmax(logits.float(), dim=-1)
        return probs.cpu().numpy()
