"""Token-budget micro-batching and the split-and-retry scoring loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from worker.batching import BatchingSettings, padding_ratio, plan_batches
from worker.inference import InferenceLoop, NoteWork, SentenceJob, score_jobs


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


class _Recorder:
    pad_multiple = 1

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[int] = []
        self.fail_on = fail_on

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if self.fail_on is not None and any(self.fail_on in row for row in batch):
            raise RuntimeError("boom")
        self.batches.append(len(batch))
        return [len(row) / 100 for row in batch]


def _jobs(rows: list[list[int]]) -> tuple[NoteWork, list[SentenceJob]]:
    work = NoteWork.for_sentences(len(rows))
    return work, [SentenceJob(work=work, index=i, ids=row) for i, row in enumerate(rows)]


def test_failing_sentence_is_isolated_by_splitting() -> None:
    rows = [[1, 2], [3, 99], [4], [5, 6, 7]]
    work, jobs = _jobs(rows)
    done: list[NoteWork] = []
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


def test_loop_waits_for_deadline_to_fill_a_batch() -> None:
    recorder = _Recorder()
    finished = threading.Event()
    loop = InferenceLoop(
        scorer=recorder,
        settings=BatchingSettings(token_budget=1000, max_wait_s=0.3),
        on_complete=lambda _w: finished.set() if sum(recorder.batches) == 2 else None,
    )
    loop.start()
    try:
        first, jobs_a = _jobs([[1, 2]])
        second, jobs_b = _jobs([[3, 4]])
        loop.submit(jobs_a)
        time.sleep(0.05)
        loop.submit(jobs_b)  # arrives within max_wait: pooled into the same batch
        assert finished.wait(5)
        assert recorder.batches == [2]
        assert first.remaining == second.remaining == 0
    finally:
        loop.stop()
