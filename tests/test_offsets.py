"""The committable watermark never passes an undelivered output, whatever the delivery order."""

from __future__ import annotations

import random

import pytest

from worker.inference import NoteWork
from worker.kafka.offsets import PartitionState, PendingNote


def _note(state: PartitionState, offset: int, *, done: bool = True) -> PendingNote:
    work = NoteWork.for_sentences(1)
    if done:
        work.remaining = 0
    return PendingNote(
        state=state,
        offset=offset,
        timestamp=None,
        key=None,
        value=b"{}",
        headers=None,
        work=work,
    )


def test_outputs_leave_in_offset_order_even_when_scored_out_of_order() -> None:
    state = PartitionState("t", 0)
    notes = [_note(state, offset, done=False) for offset in (10, 11, 12)]
    for note in notes:
        state.add(note)
    assert notes[2].work is not None and notes[1].work is not None
    notes[2].work.remaining = 0
    assert list(state.take_ready()) == []  # head (10) not scored yet
    notes[0].work.remaining = 0  # type: ignore[union-attr]
    assert [n.offset for n in state.take_ready()] == [10]
    notes[1].work.remaining = 0
    assert [n.offset for n in state.take_ready()] == [11, 12]


@pytest.mark.parametrize("seed", range(20))
def test_watermark_is_contiguous_under_random_delivery_order(seed: int) -> None:
    rng = random.Random(seed)
    state = PartitionState("t", 0)
    offsets = sorted(rng.sample(range(1000), 60))  # gaps, as after compaction
    for offset in offsets:
        state.add(_note(state, offset))
    produced = list(state.take_ready())
    rng.shuffle(produced)
    delivered: set[int] = set()
    for note in produced:
        note.delivered = True
        delivered.add(note.offset)
        committable = state.acknowledge()
        if committable is not None:
            below = [o for o in offsets if o < committable]
            assert all(o in delivered for o in below)
    assert state.committable == offsets[-1] + 1
    assert state.inflight == 0


def test_abandon_cancels_unscored_work() -> None:
    state = PartitionState("t", 0)
    pending = _note(state, 5, done=False)
    state.add(pending)
    assert state.abandon() == 1
    assert pending.work is not None and pending.work.cancelled
    assert not state.active and state.inflight == 0


def test_offsets_must_grow() -> None:
    state = PartitionState("t", 0)
    state.add(_note(state, 3))
    with pytest.raises(ValueError):
        state.add(_note(state, 3))
