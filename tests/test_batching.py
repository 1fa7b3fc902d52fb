"""Token-budget micro-batching and the split-and-retry scoring loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from tests.fakes import note_of
from worker.batching import (
    CPU_LIMITS,
    GPU_LIMITS,
    BatchingSettings,
    batching_for,
    padding_ratio,
    plan_batches,
    plan_packed,
)
from worker.config import WorkerSettings
from worker.inference import InferenceLoop
from worker.notes import Note, SentenceJob
from worker.scoring import PlainScorer, score_jobs


def test_batches_respect_budget_and_sort_by_length() -> None:
    lengths = [30, 5, 12, 8, 40, 7, 25, 9, 3, 31]
    settings = BatchingSettings(token_budget=64, max_batch_sentences=4)
    batches = plan_batches(lengths, settings)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    flat = [lengths[i] for batch in batches for i in batch]
    assert flat == sorted(lengths)
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 64


def test_oversized_sentence_gets_its_own_batch_and_padding_multiple_counts() -> None:
    settings = BatchingSettings(token_budget=32, pad_multiple=8)
    assert plan_batches([100, 3], settings) == [[1], [0]]
    assert plan_batches([9, 9, 9], settings) == [[0, 1], [2]]  # 9 pads to 16: two rows fit
    assert padding_ratio([2, 4], 1) == pytest.approx(0.25)


class _Recorder(PlainScorer):
    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if self.fail_on is not None and any(self.fail_on in row for row in batch):
            raise RuntimeError("boom")
        self.batches.append(len(batch))
        return [len(row) / 100 for row in batch]


def _jobs(rows: list[list[int]]) -> tuple[Note, list[SentenceJob]]:
    note = note_of(rows)
    return note, note.jobs


def test_unset_batch_limits_follow_the_device_and_set_ones_win() -> None:
    class GpuScorer:
        pad_multiple = 8
        batch_limits = GPU_LIMITS

    defaults = WorkerSettings()
    assert (defaults.token_budget, defaults.max_batch_sentences) == (None, None)
    gpu = batching_for(GpuScorer(), token_budget=None, max_batch_sentences=None, max_wait_s=0.005)
    assert (gpu.token_budget, gpu.max_batch_sentences) == (16_384, 4_096)
    assert (gpu.pad_multiple, gpu.max_wait_s) == (8, 0.005)
    assert gpu.wait_when_idle  # a GPU batch costs its launches: an idle lane still fills one
    cpu = batching_for(PlainScorer(), token_budget=None, max_batch_sentences=None)
    assert not cpu.wait_when_idle  # a CPU batch costs its tokens: an idle lane starts at once
    assert (
        (cpu.token_budget, cpu.max_batch_sentences)
        == (8_192, 256)
        == (
            CPU_LIMITS.token_budget,
            CPU_LIMITS.max_batch_sentences,
        )
    )
    mixed = batching_for(GpuScorer(), token_budget=2_048, max_batch_sentences=None)
    assert (mixed.token_budget, mixed.max_batch_sentences) == (2_048, 4_096)
    capped = batching_for(GpuScorer(), token_budget=None, max_batch_sentences=64)
    assert (capped.token_budget, capped.max_batch_sentences) == (16_384, 64)


def test_failing_sentence_is_isolated_by_splitting() -> None:
    rows = [[1, 2], [3, 99], [4], [5, 6, 7]]
    work, jobs = _jobs(rows)
    done: list[Note] = []
    score_jobs(_Recorder(fail_on=99), jobs, BatchingSettings(), on_complete=done.append)
    assert done == [work]
    assert work.error is not None and "sentence 1" in work.error
    assert work.scores[0] == 0.02 and work.scores[3] == 0.03


def test_cancelled_work_is_skipped() -> None:
    work, jobs = _jobs([[1], [2]])
    work.cancelled = True
    recorder = _Recorder()
    score_jobs(recorder, jobs, BatchingSettings(), on_complete=lambda _w: None)
    assert recorder.batches == []


class _Gated(_Recorder):
    """One lane; a batch holding token 99 blocks until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.started = threading.Event()

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if any(99 in row for row in batch):
            self.started.set()
            assert self.gate.wait(10)
        return super().predict_ids(batch)


def test_an_idle_lane_starts_a_lone_note_without_waiting_out_max_wait() -> None:
    recorder = _Recorder()
    finished = threading.Event()
    loop = InferenceLoop(
        scorer=recorder,
        settings=BatchingSettings(token_budget=1000, max_wait_s=30.0),
        on_complete=lambda _w: finished.set(),
    )
    loop.start()
    try:
        began = time.monotonic()
        loop.submit([note_of([[1, 2]])])
        assert finished.wait(5)
        assert time.monotonic() - began < 5  # not the 30 s max_wait: waiting leaves a lane idle
        assert recorder.batches == [1]
    finally:
        loop.stop()


def test_an_idle_lane_that_waits_when_idle_fills_a_batch_until_max_wait() -> None:
    recorder = _Recorder()
    finished = threading.Event()
    loop = InferenceLoop(
        scorer=recorder,
        settings=BatchingSettings(token_budget=1000, max_wait_s=0.3, wait_when_idle=True),
        on_complete=lambda _w: finished.set() if sum(recorder.batches) == 2 else None,
    )
    loop.start()
    try:
        first = note_of([[1, 2]])
        second = note_of([[3, 4]])
        loop.submit([first])
        time.sleep(0.05)
        loop.submit([second])  # arrives within max_wait: pooled into the same batch (GPU)
        assert finished.wait(5)
        assert recorder.batches == [2]
        assert first.remaining == second.remaining == 0
    finally:
        loop.stop()


def test_while_every_lane_is_busy_waiting_notes_gather_for_max_wait() -> None:
    scorer = _Gated()
    finished: list[Note] = []
    loop = InferenceLoop(
        scorer=scorer,
        settings=BatchingSettings(token_budget=1000, max_wait_s=0.3),
        on_complete=finished.append,
    )
    loop.start()
    try:
        blocker = note_of([[99, 1]])
        loop.submit([blocker])
        assert scorer.started.wait(5)  # the only lane is busy from here on
        first = note_of([[1, 2]])
        second = note_of([[3, 4]])
        loop.submit([first])
        time.sleep(0.05)
        loop.submit([second])  # arrives within max_wait: pooled into the same batch
        time.sleep(0.5)  # past max_wait: planned into the slot that waits for the lane
        scorer.gate.set()
        deadline = time.monotonic() + 5
        while len(finished) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert finished == [blocker, first, second]
        assert scorer.batches == [1, 2]
    finally:
        scorer.gate.set()
        loop.stop()


def test_packed_plan_keeps_arrival_order_and_limits() -> None:
    lengths = [30, 5, 12, 8, 40, 7, 25, 9, 3, 31] * 20
    settings = BatchingSettings(token_budget=200, max_batch_sentences=12)
    batches = plan_packed(lengths, settings)
    assert [i for batch in batches for i in batch] == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 12
        assert sum(lengths[i] for i in batch) <= 200
    # A small pool stays one batch however many lanes are idle; a large one is spread over them.
    assert plan_packed([20] * 10, BatchingSettings(), parts=2) == [list(range(10))]
    spread = plan_packed([20] * 40, BatchingSettings(), parts=2)
    assert [len(batch) for batch in spread] == [20, 20]
    assert plan_packed([], BatchingSettings()) == []


class _Lanes(PlainScorer):
    """A packing scorer with two lanes; a batch holding token 99 blocks until ``gate`` opens."""

    concurrency = 2
    packs = True

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.batches: list[list[int]] = []

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        self.batches.append([row[0] for row in batch])
        if any(99 in row for row in batch):
            assert self.gate.wait(10)
        return [0.5] * len(batch)


def test_loop_keeps_scoring_new_notes_while_an_earlier_batch_runs() -> None:
    scorer = _Lanes()
    finished: list[Note] = []
    loop = InferenceLoop(
        scorer=scorer,
        settings=BatchingSettings(max_wait_s=0.0),
        on_complete=finished.append,
    )
    loop.start()
    try:
        slow = note_of([[99, 1]])
        loop.submit([slow])
        deadline = time.monotonic() + 5
        while not scorer.batches and time.monotonic() < deadline:
            time.sleep(0.005)
        later = []
        for first_token in (1, 2, 3):
            note = note_of([[first_token, 5, 6]])
            later.append(note)
            loop.submit([note])
            time.sleep(0.02)
        while len(finished) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        # No barrier: the notes that came later are done while the first batch still runs.
        assert finished == later
        assert slow.remaining == 1
        scorer.gate.set()
        while len(finished) < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert finished[-1] is slow
    finally:
        scorer.gate.set()
        loop.stop()


def test_loop_spreads_a_lone_large_note_over_the_idle_lanes() -> None:
    scorer = _Lanes()
    finished: list[Note] = []
    loop = InferenceLoop(scorer=scorer, settings=BatchingSettings(), on_complete=finished.append)
    loop.start()
    try:
        work = note_of([[index, *range(1, 40)] for index in range(30)])
        loop.submit([work])
        deadline = time.monotonic() + 5
        while not finished and time.monotonic() < deadline:
            time.sleep(0.005)
        assert finished == [work]
        assert sorted(len(batch) for batch in scorer.batches) == [15, 15]
        assert sorted(scorer.batches) == [list(range(15)), list(range(15, 30))]
    finally:
        loop.stop()


class _Crash(BaseException):
    pass


class _Crashing(_Recorder):
    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        raise _Crash("lost the device")


def test_a_crash_outside_the_split_and_retry_stops_the_loop_with_the_cause() -> None:
    loop = InferenceLoop(
        scorer=_Crashing(), settings=BatchingSettings(max_wait_s=0.0), on_complete=lambda _w: None
    )
    loop.start()
    try:
        loop.submit([note_of([[1, 2]])])
        deadline = time.monotonic() + 5
        while loop.alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert not loop.alive()
        assert isinstance(loop.failure, _Crash)
    finally:
        loop.stop()
