"""Scores of recently scored sentences, so a repeated sentence skips the model.

Clinical notes repeat themselves: section headers, template lines ("The patient tolerated the
procedure well."), and whole notes again when a note is amended or a topic is replayed. In the
benchmark's 600 MTSamples notes 7.9% of the sentences (3.7% of the wordpieces) repeat the token
ids of an earlier one. A sentence's score depends only on its token ids and the model, so the
inference loop keeps the last ``capacity`` scores by token ids (least recently used out first)
and answers a repeat from here. A repeat of a sentence that is planned or running in a batch
waits for that batch (under a backlog, a repeat is often planned before the batch holding its
first occurrence ends). A repeat gets the first occurrence's score, or its failure; scoring it
again would give the same score in float32 and one within the packing tolerance in bfloat16
(docs/PERFORMANCE.md).

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
    """The last ``capacity`` sentence scores by token ids, least recently used out first, and
    the repeats waiting for a sentence that is being scored."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._scores: OrderedDict[bytes, float] = OrderedDict()
        self._leaders: dict[SentenceJob, bytes] = {}  # sent to the model, others may wait on it
        self._followers: dict[bytes, list[SentenceJob]] = {}  # by the leader's key

    def __len__(self) -> int:
        return len(self._scores)

    @property
    def waiting(self) -> int:
        """Repeats waiting for a sentence that is being scored."""
        return sum(len(followers) for followers in self._followers.values())

    def sort(
        self, jobs: Sequence[SentenceJob]
    ) -> tuple[list[SentenceJob], Results, list[SentenceJob]]:
        """The jobs answered here and their scores, and the jobs the model must score. A repeat
        of a job sent to the model before (and not yet settled) is neither: it waits for it."""
        hits: list[SentenceJob] = []
        found: Results = []
        to_score: list[SentenceJob] = []
        scores = self._scores
        for job in jobs:
            key = key_of(job.ids)
            score = scores.get(key)
            if score is not None:
                scores.move_to_end(key)
                hits.append(job)
                found.append(score)
            elif key in self._followers:
                self._followers[key].append(job)
            else:
                self._followers[key] = []
                self._leaders[job] = key
                to_score.append(job)
        return hits, found, to_score

    def needed(self, job: SentenceJob) -> bool:
        """Whether a job of a cancelled note must still be scored (repeats wait for it); if
        not, it is forgotten, so that a later repeat is scored instead of waiting for it."""
        key = self._leaders.get(job)
        if key is None:
            return False
        if self._followers.get(key):
            return True
        del self._leaders[job]
        del self._followers[key]
        return False

    def settle(
        self, jobs: Sequence[SentenceJob], results: Results
    ) -> tuple[list[SentenceJob], Results]:
        """Keep a scored batch's scores (not its failures); the repeats that waited for its
        jobs (those of live notes), with their leaders' results."""
        cache = self._scores
        followers: list[SentenceJob] = []
        answers: Results = []
        for job, result in zip(jobs, results, strict=True):
            key = self._leaders.pop(job, None)
            if key is None:
                continue
            if not isinstance(result, Failure):
                cache[key] = result
                cache.move_to_end(key)
            for follower in self._followers.pop(key, ()):
                if not follower.note.cancelled:
                    followers.append(follower)
                    answers.append(result)
        while len(cache) > self.capacity:
            cache.popitem(last=False)
        return followers, answers
