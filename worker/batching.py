"""Cut a pool of tokenised sentences into micro-batches under a token budget.

For a scorer that packs several sentences per row (:mod:`worker.model.packing`), padding does not
depend on which sentences share a batch: :func:`plan_packed` cuts the pool in arrival order, so a
note's sentences stay together and notes finish in the order they came. For padded batches,
:func:`plan_batches` sorts by length first.

The budget counts *padded* tokens (rows x longest row), which is what the device computes. Sorting
by length first keeps padding low; TEI does the same with its max-batch-tokens setting.

A small pool (light load) still spans a wide range of lengths, so a budget-filling batch of its
shortest sentences would be padded to a far longer one (40% of the compute was padding at one
note per pool on MTSamples). A batch therefore also ends when the next row would push its padding
share over ``max_padding``, once it holds ``min_batch_rows`` rows (fewer, wider-apart batches
cost more in per-call overhead than the padding they save).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

#: A pool is split over idle lanes only when each part keeps at least this many tokens: on the
#: reference CPU one model call costs ~160 tokens' worth of compute before its first token.
MIN_SPLIT_TOKENS = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchLimits:
    """A batch's size limits where the settings leave them unset, and whether an idle lane
    waits to fill a batch (they depend on the device)."""

    token_budget: int
    max_batch_sentences: int
    wait_when_idle: bool = False


#: CPU: a few single-threaded batches at once, each small enough to keep latency low. A batch
#: costs about its tokens there (plus ~7 ms a call), so an idle lane starts what waits at once.
CPU_LIMITS = BatchLimits(token_budget=8_192, max_batch_sentences=256)
#: GPU: on one H100 (two lanes, BERT-base size) 16,384 padded tokens per batch (~1,000 MTSamples
#: sentences) ran as fast as larger budgets or faster; the row cap must not bind first
#: (docs/PERFORMANCE.md, GPU). A batch there costs its launches and copies whatever its size, on
#: a host that is the limit, so an idle lane still waits for a budget or ``max_wait_s``.
GPU_LIMITS = BatchLimits(token_budget=16_384, max_batch_sentences=4_096, wait_when_idle=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchingSettings:
    """How micro-batches are formed."""

    token_budget: int = 8_192
    max_batch_sentences: int = 256
    max_wait_s: float = 0.02
    pad_multiple: int = 1
    max_padding: float = 0.1
    min_batch_rows: int = 16
    wait_when_idle: bool = False  # True: an idle lane too waits for a budget or max_wait_s

    def __post_init__(self) -> None:
        if self.token_budget < 1 or self.max_batch_sentences < 1 or self.pad_multiple < 1:
            raise ValueError("token_budget, max_batch_sentences and pad_multiple must be >= 1")
        if self.max_wait_s < 0:
            raise ValueError("max_wait_s must be >= 0")
        if not 0 <= self.max_padding <= 1 or self.min_batch_rows < 1:
            raise ValueError("max_padding must be in [0, 1] and min_batch_rows >= 1")


class BatchShaped(Protocol):
    """What :func:`batching_for` reads from a scorer."""

    pad_multiple: int
    batch_limits: BatchLimits


def batching_for(
    scorer: BatchShaped,
    *,
    token_budget: int | None,
    max_batch_sentences: int | None,
    max_wait_s: float = 0.02,
) -> BatchingSettings:
    """The settings' limits, each unset one taken from the scorer's ``batch_limits``, with the
    scorer's ``pad_multiple`` and its device's ``wait_when_idle``."""
    limits = scorer.batch_limits
    return BatchingSettings(
        token_budget=token_budget if token_budget is not None else limits.token_budget,
        max_batch_sentences=(
            max_batch_sentences if max_batch_sentences is not None else limits.max_batch_sentences
        ),
        max_wait_s=max_wait_s,
        pad_multiple=scorer.pad_multiple,
        wait_when_idle=limits.wait_when_idle,
    )


def padded(length: int, multiple: int) -> int:
    return -(-length // multiple) * multiple


def plan_batches(lengths: Sequence[int], settings: BatchingSettings) -> list[list[int]]:
    """Indices into ``lengths`` grouped into batches, shortest sentences first.

    A batch grows while ``rows * padded(longest)`` stays within the budget and the row cap, and
    while its padding share stays within ``max_padding`` (checked from ``min_batch_rows`` rows
    on); a single sentence over the budget still gets a batch of its own.
    """
    multiple = settings.pad_multiple
    budget = settings.token_budget
    cap = settings.max_batch_sentences
    keep = 1.0 - settings.max_padding  # the real share a batch must keep
    min_rows = settings.min_batch_rows
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0  # sum of the rows' own padded lengths in ``current``
    for index in order:
        width = padded(lengths[index], multiple)  # sorted: the new row is the longest
        rows = len(current) + 1
        if current and (
            rows * width > budget
            or rows > cap
            or (rows > min_rows and real + width < keep * rows * width)
        ):
            batches.append(current)
            current = []
            real = 0
        current.append(index)
        real += width
    if current:
        batches.append(current)
    return batches


def padding_ratio(lengths: Sequence[int], multiple: int = 1) -> float:
    """Share of computed positions that are padding for one batch of these lengths."""
    if not lengths:
        return 0.0
    total = len(lengths) * padded(max(lengths), multiple)
    return 1.0 - sum(lengths) / total


def plan_packed(
    lengths: Sequence[int], settings: BatchingSettings, parts: int = 1
) -> list[list[int]]:
    """Consecutive runs of ``lengths`` (arrival order) with about equal token counts.

    The pool is cut into as few batches as the budget and the row cap allow, but into at least
    ``parts`` (the idle lanes) when each keeps :data:`MIN_SPLIT_TOKENS`, so a lone note under
    light load is spread over the idle cores instead of running on one.
    """
    count = len(lengths)
    if count == 0:
        return []
    total = sum(lengths)
    budget = settings.token_budget
    cap = settings.max_batch_sentences
    wanted = max(
        math.ceil(total / budget), math.ceil(count / cap), min(parts, total // MIN_SPLIT_TOKENS)
    )
    target = total / max(1, wanted)
    batches: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    done = 0  # tokens of the finished batches
    for index, length in enumerate(lengths):
        if current and (
            tokens + length > budget
            or len(current) >= cap
            or done + tokens + length / 2 > target * (len(batches) + 1)
        ):
            batches.append(current)
            done += tokens
            current = []
            tokens = 0
        current.append(index)
        tokens += length
    batches.append(current)
    return batches
