"""Several sentences per row: a micro-batch without padding waste.

A padded batch computes ``rows x longest`` positions, so a batch of mixed lengths (the sentences
of a few notes) is mostly padding unless it is first sorted by length and cut into small batches,
and each small batch pays the model's fixed per-call cost again (on CPU that is streaming every
weight from memory: ~7 ms for MiniLM-L6, the cost of ~160 tokens). Packing puts whole sentences
side by side in rows of ``width`` positions (best-fit decreasing), restarts the position ids at
each sentence and confines attention to each sentence with a block-diagonal mask, so every
sentence gets exactly the scores it would get alone while a batch of any mix of lengths costs
about its token count. Hugging Face's BERT models take the position ids and a 4-D mask as they
are; :class:`~worker.model.backends.TorchEngine` builds the mask on the device from
``segments``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

#: Row width when every sentence is shorter: wide enough to pack several typical clinical
#: sentences (~20 wordpieces), narrow enough that attention (width^2 per row) stays a few percent.
DEFAULT_WIDTH = 128


@dataclass(frozen=True, slots=True)
class PackedBatch:
    """Rows of packed sentences.

    ``segments`` holds, per position, the index of the sentence it belongs to (-1 for padding);
    ``starts`` holds, per sentence, the flat position (``row * width + column``) of its first
    token, where the classification head reads it.
    """

    input_ids: IntArray
    position_ids: IntArray
    segments: IntArray
    starts: IntArray

    @property
    def positions(self) -> int:
        return int(self.input_ids.size)


def _place(lengths: IntArray, row_width: int) -> tuple[IntArray, IntArray, int]:
    """Row and column of each sentence, and the row count (best-fit decreasing)."""
    count = len(lengths)
    rows_free: list[tuple[int, int]] = []  # (free positions, row), sorted
    row_of = np.empty(count, dtype=np.int64)
    column_of = np.empty(count, dtype=np.int64)
    rows = 0
    for index in np.argsort(-lengths, kind="stable").tolist():
        length = int(lengths[index])
        slot = bisect.bisect_left(rows_free, (length, -1))
        if slot < len(rows_free):
            free, row = rows_free.pop(slot)
        else:
            free, row = row_width, rows
            rows += 1
        row_of[index] = row
        column_of[index] = row_width - free
        if free > length:
            bisect.insort(rows_free, (free - length, row))
    return row_of, column_of, rows


def flat_ids(batch: Sequence[Sequence[int]], total: int) -> IntArray:
    """The ids of every sentence of ``batch`` end to end (``total`` of them): lists of ints, or
    numpy views of a host process's id buffer (:mod:`worker.host_pool`)."""
    if batch and isinstance(batch[0], np.ndarray):
        return np.concatenate(batch).astype(np.int64, copy=False)
    return np.fromiter(itertools.chain.from_iterable(batch), dtype=np.int64, count=total)


def _row_width(longest: int, width: int, multiple: int) -> int:
    return -(-max(width, longest) // multiple) * multiple


def packed_positions(
    lengths: Sequence[int], *, width: int = DEFAULT_WIDTH, multiple: int = 1
) -> int:
    """Positions (rows x row width) that :func:`pack` computes for sentences of ``lengths``."""
    if not lengths:
        return 0
    array = np.asarray(lengths, dtype=np.int64)
    row_width = _row_width(int(array.max()), width, multiple)
    return _place(array, row_width)[2] * row_width


def pack(
    batch: Sequence[Sequence[int]],
    *,
    width: int = DEFAULT_WIDTH,
    pad_id: int = 0,
    multiple: int = 1,
) -> PackedBatch:
    """Best-fit decreasing: longest sentences first, each into the fullest row it still fits."""
    count = len(batch)
    lengths = np.fromiter((len(ids) for ids in batch), dtype=np.int64, count=count)
    row_width = _row_width(int(lengths.max()), width, multiple)
    row_of, column_of, rows = _place(lengths, row_width)
    starts = row_of * row_width + column_of
    total = int(lengths.sum())
    offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
    within = np.arange(total, dtype=np.int64) - offsets
    flat = np.repeat(starts, lengths) + within
    shape = (rows, row_width)
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    position_ids = np.zeros(shape, dtype=np.int64)
    segments = np.full(shape, -1, dtype=np.int64)
    input_ids.flat[flat] = flat_ids(batch, total)
    position_ids.flat[flat] = within
    segments.flat[flat] = np.repeat(np.arange(count, dtype=np.int64), lengths)
    return PackedBatch(input_ids, position_ids, segments, starts)
