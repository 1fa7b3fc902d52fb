"""The score cache: a repeated sentence is answered without the model, by the inference loop."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pytest

from tests.fakes import WordModel, note_of
from worker.batching import BatchingSettings
from worker.completions import worker_threads
from worker.config import WorkerSettings
from worker.inference import InferenceLoop
from worker.metrics import Metrics
from worker.notes import Note
from worker.score_cache import ScoreCache, key_of
from worker.scoring import Failure, PlainScorer


class _Counting(PlainScorer):
    """Scores a row by its first id; counts the rows it was asked for; fails on id 13."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if any(13 in row for row in batch):
            raise RuntimeError("boom")
        self.rows.extend(list(row) for row in batch)
        return [row[0] / 100 for row in batch]


class _Observed:
    def __init__(self) -> None:
        self.model_sentences = 0
        self.cached: list[tuple[int, int]] = []

    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None:
        self.model_sentences += sentences

    def cache_answered(self, *, sentences: int, tokens: int) -> None:
        self.cached.append((sentences, tokens))


def _loop(
    scorer: _Counting,
    done: list[Note],
    cache: ScoreCache | None,
    observer: _Observed | None = None,
) -> InferenceLoop:
    """A started loop that plans every window at once and hands notes back into ``done``."""
    loop = InferenceLoop(
        scorer=scorer,
        settings=BatchingSettings(token_budget=1000, max_wait_s=0.0),
        on_complete=done.append,
        observer=observer,
        cache=cache,
    )
    loop.start()
    return loop


def _run(loop: InferenceLoop, notes: Sequence[Note], done: list[Note]) -> None:
    """Submit ``notes`` one at a time, each after the one before came back."""
    for note in notes:
        before = len(done)
        loop.submit([note])
        deadline = time.monotonic() + 5
        while len(done) == before and time.monotonic() < deadline:
            time.sleep(0.002)
        assert len(done) == before + 1, "note did not come back"


def test_keys_are_the_ids_whatever_their_container() -> None:
    ids = [101, 2023, 102]
    assert key_of(ids) == key_of(np.array(ids, dtype=np.int32)) == key_of(tuple(ids))
    assert key_of(np.array(ids, dtype=np.int64)) == key_of(ids)
    assert key_of(np.array([0, *ids], dtype=np.int32)[1:]) == key_of(ids)  # a view
    assert key_of([101, 2023]) != key_of(ids)


def test_least_recently_used_scores_leave_first() -> None:
    cache = ScoreCache(2)
    a, b, c = (note_of([[n, 1]]).jobs[0] for n in (1, 2, 3))
    cache.remember([a, b], [0.1, 0.2])
    hits, scores, misses = cache.split([a])  # a is now the most recently used
    assert (hits, scores, misses) == ([a], [0.1], [])
    cache.remember([c], [0.3])
    assert len(cache) == 2
    hits, scores, misses = cache.split([a, b, c])
    assert hits == [a, c] and scores == [0.1, 0.3] and misses == [b]


def test_a_failure_is_not_remembered() -> None:
    cache = ScoreCache(4)
    job = note_of([[13]]).jobs[0]
    cache.remember([job], [Failure(RuntimeError("boom"))])
    assert len(cache) == 0
    with pytest.raises(ValueError, match="capacity"):
        ScoreCache(0)


def test_a_repeated_sentence_skips_the_model_and_gets_the_first_score() -> None:
    scorer = _Counting()
    observed = _Observed()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100), observed)
    try:
        first = note_of([[10, 1, 2], [20, 3]])
        again = note_of([[20, 3], [30, 4], [10, 1, 2]])  # two repeats and one new sentence
        alone = note_of([[30, 4]])  # wholly a repeat: complete without a batch
        _run(loop, [first, again, alone], done)
    finally:
        loop.stop()
    assert sorted(scorer.rows) == [[10, 1, 2], [20, 3], [30, 4]]  # each sentence once
    assert again.scores == [0.2, 0.3, 0.1] and again.remaining == 0
    assert alone.scores == [0.3] and alone.remaining == 0
    assert observed.model_sentences == 3
    assert observed.cached == [(2, 5), (1, 2)]
    assert loop.queued_sentences == 0


def test_without_a_cache_every_sentence_is_scored() -> None:
    scorer = _Counting()
    done: list[Note] = []
    loop = _loop(scorer, done, None)
    try:
        _run(loop, [note_of([[10, 1]]), note_of([[10, 1]])], done)
    finally:
        loop.stop()
    assert scorer.rows == [[10, 1], [10, 1]]


def test_a_failed_sentence_is_tried_again_and_fails_its_note_again() -> None:
    scorer = _Counting()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100))
    try:
        first = note_of([[13, 1]])
        again = note_of([[13, 1]])
        _run(loop, [first, again], done)
    finally:
        loop.stop()
    assert first.error is not None and again.error is not None  # not answered as a score


def test_cancelled_repeats_are_dropped_like_cancelled_sentences() -> None:
    scorer = _Counting()
    done: list[Note] = []
    cache = ScoreCache(100)
    loop = _loop(scorer, done, cache)
    try:
        _run(loop, [note_of([[10, 1]])], done)
        revoked = note_of([[10, 1]])
        revoked.cancelled = True
        loop.submit([revoked])
        deadline = time.monotonic() + 1
        while loop.queued_sentences and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        loop.stop()
    assert revoked.remaining == 1 and revoked not in done
    assert loop.queued_sentences == 0


def test_the_worker_builds_its_cache_from_the_settings() -> None:
    def loop_of(settings: WorkerSettings) -> InferenceLoop:
        _preparation, inference = worker_threads(
            settings, WordModel(), Metrics(), lambda _done: None
        )
        return inference

    cache = loop_of(WorkerSettings())._cache
    assert isinstance(cache, ScoreCache) and cache.capacity == WorkerSettings().score_cache_size
    assert loop_of(WorkerSettings(score_cache_size=0))._cache is None


def test_metrics_count_cache_answers_as_scored_sentences() -> None:
    metrics = Metrics()
    metrics.cache_answered(sentences=3, tokens=40)
    assert metrics.score_cache_hits._value.get() == 3
    assert metrics.sentences_out._value.get() == 3
