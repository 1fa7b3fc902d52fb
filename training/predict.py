"""Batched probability of label 1 for an in-memory model (used while training)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["length_sorted_batches", "predict_probs"]


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (less padding), longest first."""
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


@torch.inference_mode()
def predict_probs(
    model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int, max_length: int
) -> list[float]:
    """Softmax probability of label 1 for each text, in input order."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    probs = [0.0] * len(texts)
    was_training = model.training
    model.eval()
    for batch in length_sorted_batches([len(ids) for ids in encoded], batch_size):
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
        logits = model(**padded).logits
        for index, prob in zip(
            batch, torch.softmax(logits.float(), dim=-1)[:, 1].tolist(), strict=True
        ):
            probs[index] = float(prob)
    model.train(was_training)
    return probs
