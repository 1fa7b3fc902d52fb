"""Cut a pool of tokenised sentences into length-sorted micro-batches under a token budget.

The budget counts *padded* tokens (rows x longest row), which is what the device computes. Sorting
by length first keeps padding low; TEI does the same with its max-batch-tokens setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchingSettings:
    """How micro-batches are formed."""

    token_budget: int = 8_192
    max_batch_sentences: int = 256
    max_wait_s: float = 0.02
    pad_multiple: int = 1

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_batch_sentences < 1 or self.pad_multiple < 1:
            raise ValueError("token_budget, max_batch_sentences and pad_multiple must be >= 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def plan_batches(lengths: Sequence[int], settings: BatchingSettings) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, shortest sentences first.

    A batch grows while ``rows * padded(longest)`` stays within the budget and the row cap; a
    single sentence over the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        width = padded(lengths[index], settings.pad_multiple)  # sorted: the new row is the longest
        if current and (
            (len(current) + 1) * width > settings.token_budget
            or len(current) >= settings.max_batch_sentences
        ):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def padding_ratio(lengths: Sequence[int], multiple: int = 1) -> float:
    """Share of computed positions that are padding for one batch of these lengths."""
    if not lengths:
        return 0.0
    total = len(lengths) * padded(max(lengths), multiple)
    return 1.0 - sum(lengths) / total
