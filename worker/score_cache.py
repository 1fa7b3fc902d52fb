"""Scores of recently scored sentences, so a repeated sentence skips the model.

Clinical notes repeat themselves: section headers, template lines ("The patient tolerated the
procedure well."), and whole notes again when a note is amended or a topic is replayed. In the
benchmark's 600 MTSamples notes 7.5% of the sentences (3.5% of the wordpieces) repeat an earlier
one. A sentence's score depends only on its token ids and the model, so the inference loop keeps
the last ``capacity`` scores by token ids (least recently used out first) and answers a repeat
from here. A repeat gets the first occurrence's score; scoring it again would give the same
score in float32 and one within the packing tolerance in bfloat16 (docs/PERFORMANCE.md).

The keys are the token ids as bytes, in memory only: never logged, never written anywhere. Only
the inference loop's thread touches a cache, so it needs no lock.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from worker.notes import SentenceJob
from worker.scoring import Failure, Results


def key_of(ids: Sequence[int] | NDArray[np.integer]) -> bytes:
    """The token ids as int32 bytes (the host processes' ids are int32 views already)."""
    if isinstance(ids, np.ndarray):
        return np.ascontiguousarray(ids, dtype=np.int32).tobytes()
    return array("i", ids).tobytes()


class ScoreCache:
    """The last ``capacity`` sentence scores by token ids, least recently used out first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._scores: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._scores)

    def split(
        self, jobs: Sequence[SentenceJob]
    ) -> tuple[list[SentenceJob], Results, list[SentenceJob]]:
        """The jobs answered here and their scores, and the jobs the model must score."""
        hits: list[SentenceJob] = []
        found: Results = []
        misses: list[SentenceJob] = []
        scores = self._scores
        for job in jobs:
            key = key_of(job.ids)
            score = scores.get(key)
            if score is None:
                misses.append(job)
            else:
                scores.move_to_end(key)
                hits.append(job)
                found.append(score)
        return hits, found, misses

    def remember(self, jobs: Sequence[SentenceJob], results: Results) -> None:
        """Keep the scores of a scored batch (not its failures)."""
        cache = self._scores
        for job, score in zip(jobs, results, strict=True):
            if not isinstance(score, Failure):
                key = key_of(job.ids)
                cache[key] = score
                cache.move_to_end(key)
        while len(cache) > self.capacity:
            cache.popitem(last=False)
