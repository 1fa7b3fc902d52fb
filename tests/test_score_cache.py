"""The score cache: a repeated sentence is answered without the model, by the inference loop."""

from __future__ import annotations

import threading
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
from worker.notes import Note, SentenceJob
from worker.score_cache import ScoreCache, key_of
from worker.scoring import BatchObserver, Failure, PlainScorer, Results


class _Counting(PlainScorer):
    """Scores a row by its first id and counts every row it is asked for (``asked``, failures
    included); fails on id 13; a batch holding id 99 waits until ``gate`` opens."""

    def __init__(self) -> None:
        self.rows: list[list[int]] = []
        self.asked: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.asked.extend(list(row) for row in batch)
        if any(99 in row for row in batch):
            self.started.set()
            assert self.gate.wait(10)
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
    observer: BatchObserver | None = None,
    max_batch_sentences: int = 256,
) -> InferenceLoop:
    """A started loop that plans every window at once and hands notes back into ``done``."""
    loop = InferenceLoop(
        scorer=scorer,
        settings=BatchingSettings(
            token_budget=1000, max_wait_s=0.0, max_batch_sentences=max_batch_sentences
        ),
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


def _scored(cache: ScoreCache, jobs: list[SentenceJob], results: Results) -> None:
    """Send ``jobs`` to the model through ``cache`` and settle them with ``results``."""
    hits, _scores, to_score = cache.sort(jobs)
    assert (hits, to_score) == ([], jobs)
    assert cache.settle(jobs, results) == ([], [])


def test_least_recently_used_scores_leave_first() -> None:
    cache = ScoreCache(2)
    a, b, c = (note_of([[n, 1]]).jobs[0] for n in (1, 2, 3))
    _scored(cache, [a, b], [0.1, 0.2])
    assert cache.sort([a]) == ([a], [0.1], [])  # a is now the most recently used
    _scored(cache, [c], [0.3])
    assert len(cache) == 2
    hits, scores, to_score = cache.sort([a, b, c])
    assert hits == [a, c] and scores == [0.1, 0.3] and to_score == [b]


def test_a_repeat_of_a_sentence_being_scored_waits_for_it_and_shares_its_result() -> None:
    cache = ScoreCache(4)
    first, again, other = (note_of([[7, 1]]).jobs[0] for _ in range(3))
    assert cache.sort([first, again]) == ([], [], [first])  # the second waits for the first
    assert cache.sort([other]) == ([], [], []) and cache.waiting == 2
    assert cache.settle([first], [0.7]) == ([again, other], [0.7, 0.7])
    assert cache.waiting == 0 and cache.sort([first]) == ([first], [0.7], [])


def test_a_failure_is_passed_to_waiting_repeats_but_not_remembered() -> None:
    cache = ScoreCache(4)
    first, again = (note_of([[13]]).jobs[0] for _ in range(2))
    assert cache.sort([first, again])[2] == [first]
    failure = Failure(RuntimeError("boom"))
    assert cache.settle([first], [failure]) == ([again], [failure])
    assert len(cache) == 0 and cache.sort([again])[2] == [again]  # scored again next time
    with pytest.raises(ValueError, match="capacity"):
        ScoreCache(0)


def test_a_cancelled_sentence_is_scored_only_while_live_repeats_wait_for_it() -> None:
    cache = ScoreCache(4)
    leader, follower = note_of([[5, 1]]), note_of([[5, 1]])
    cache.sort(leader.jobs + follower.jobs)
    leader.cancelled = True
    assert cache.needed(leader.jobs[0])  # the follower's note is live and waits for it
    lone = note_of([[6, 1]])
    cache.sort(lone.jobs)
    lone.cancelled = True
    assert not cache.needed(lone.jobs[0])  # forgotten: a later repeat is scored, never stuck
    later = note_of([[6, 1]]).jobs[0]
    assert cache.sort([later]) == ([], [], [later])


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


def _wait_for(done: list[Note], count: int) -> None:
    deadline = time.monotonic() + 5
    while len(done) < count and time.monotonic() < deadline:
        time.sleep(0.002)
    assert len(done) == count, "notes did not come back"


def test_repeats_in_one_window_are_scored_once() -> None:
    scorer = _Counting()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100))
    try:
        notes = [note_of([[10, 1], [20, 2], [10, 1]]), note_of([[20, 2]]), note_of([[10, 1]])]
        loop.submit(notes)
        _wait_for(done, 3)
    finally:
        loop.stop()
    assert sorted(scorer.asked) == [[10, 1], [20, 2]]
    assert [n.scores for n in notes] == [[0.1, 0.2, 0.1], [0.2], [0.1]]
    assert all(n.remaining == 0 and n.error is None for n in notes)


def test_a_repeat_of_a_running_sentence_waits_for_its_batch() -> None:
    scorer = _Counting()
    scorer.gate.clear()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100))
    try:
        running = note_of([[99, 1]])
        loop.submit([running])
        assert scorer.started.wait(5)  # the only lane is busy with it from here on
        repeat = note_of([[99, 1]])
        loop.submit([repeat])
        time.sleep(0.1)
        assert done == []  # waits: neither answered nor scored again
        scorer.gate.set()
        _wait_for(done, 2)
    finally:
        scorer.gate.set()
        loop.stop()
    assert scorer.asked == [[99, 1]] and repeat.scores == [0.99]


def test_a_revoked_note_still_scores_a_sentence_a_live_note_waits_for() -> None:
    scorer = _Counting()
    scorer.gate.clear()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100), max_batch_sentences=1)  # a batch per sentence
    try:
        blocker = note_of([[99, 2]])
        loop.submit([blocker])
        assert scorer.started.wait(5)  # the only lane is busy from here on
        filler, revoked, live = note_of([[97, 1, 1, 1]]), note_of([[40, 1]]), note_of([[40, 1]])
        # one window: the filler's batch takes the spare slot, the revoked note's stays planned,
        # and the live note's repeat waits for it
        loop.submit([filler, revoked, live])
        time.sleep(0.05)
        revoked.cancelled = True  # as a revoke does
        scorer.gate.set()
        _wait_for(done, 4)  # the revoked note comes back too: its sentence was scored
    finally:
        scorer.gate.set()
        loop.stop()
    assert scorer.asked.count([40, 1]) == 1 and live.scores == [0.4] and live.remaining == 0


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
    assert scorer.asked.count([13, 1]) == 2  # the second note's sentence went to the model too


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


class _BatchesOnly:
    """An observer written before the score cache: no ``cache_answered``."""

    def __init__(self) -> None:
        self.model_sentences = 0

    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None:
        self.model_sentences += sentences


def test_an_observer_without_cache_counts_still_sees_batches_and_notes_complete() -> None:
    scorer = _Counting()
    observed = _BatchesOnly()
    done: list[Note] = []
    loop = _loop(scorer, done, ScoreCache(100), observed)
    try:
        _run(loop, [note_of([[10, 1]]), note_of([[10, 1]])], done)
    finally:
        loop.stop()
    assert [note.scores for note in done] == [[0.1], [0.1]]  # the second from the cache
    assert observed.model_sentences == 1 and scorer.asked == [[10, 1]]
