"""The committable watermark never passes an undelivered output, whatever the delivery order."""

from __future__ import annotations

import random

import pytest

from tests.fakes import note_of
from worker.events import SourceRef
from worker.kafka.offsets import OffsetTracker, PartitionState
from worker.notes import Record


def _record(offset: int, *, done: bool = True) -> Record:
    record = Record(source=SourceRef("t", 0, offset, None), key=None, value=b"{}")
    note = note_of([[1]], record)
    record.notes.append(note)
    record.prepared = True
    record.unscored = 0 if done else 1
    return record


def test_outputs_leave_in_offset_order_even_when_scored_out_of_order() -> None:
    state = PartitionState("t", 0)
    records = [_record(offset, done=False) for offset in (10, 11, 12)]
    for record in records:
        state.add(record.source.offset or 0, record)
    records[2].note_scored(records[2].notes[0])
    assert list(state.take_ready()) == []  # head (10) not scored yet
    records[0].note_scored(records[0].notes[0])
    assert list(state.take_ready()) == [records[0]]
    records[1].note_scored(records[1].notes[0])
    assert list(state.take_ready()) == records[1:]


def test_a_record_that_is_not_prepared_yet_holds_back_the_ones_after_it() -> None:
    state = PartitionState("t", 0)
    first, second = _record(1), _record(2)
    first.prepared = False
    state.add(1, first)
    state.add(2, second)
    assert list(state.take_ready()) == []
    first.prepared = True
    assert list(state.take_ready()) == [first, second]


@pytest.mark.parametrize("seed", range(20))
def test_watermark_is_contiguous_under_random_delivery_order(seed: int) -> None:
    rng = random.Random(seed)
    tracker = OffsetTracker()
    [state] = tracker.assign([("t", 0)])
    offsets = sorted(rng.sample(range(1000), 60))  # gaps, as after compaction
    for offset in offsets:
        tracker.add(state, offset, _record(offset))
    produced = list(tracker.take_ready())
    rng.shuffle(produced)
    delivered: set[int] = set()
    for record in produced:
        tracker.delivered(record)
        delivered.add(record.source.offset or 0)
        committable = tracker.committable().get(("t", 0))
        if committable is not None:
            below = [o for o in offsets if o < committable]
            assert all(o in delivered for o in below)
    assert state.committable == offsets[-1] + 1
    assert state.inflight == 0
    assert tracker.inflight_bytes == 0


def test_abandon_cancels_unscored_work_and_releases_its_bytes() -> None:
    tracker = OffsetTracker()
    [state] = tracker.assign([("t", 0)])
    pending = _record(5, done=False)
    tracker.add(state, 5, pending)
    assert tracker.inflight_bytes == 2
    assert tracker.remove([("t", 0)]) == 1
    assert pending.notes[0].cancelled
    assert not state.active and state.inflight == 0
    assert tracker.inflight_bytes == 0


def test_offsets_must_grow() -> None:
    state = PartitionState("t", 0)
    state.add(3, _record(3))
    with pytest.raises(ValueError):
        state.add(3, _record(3))


def test_a_forgotten_partitions_records_are_cancelled_and_counted_out_once() -> None:
    """Revoked or lost with a record produced and not yet acknowledged: the record is
    cancelled (a host process still rendering it hands it to no one) and its bytes leave
    the backpressure count once, not again when its delivery report comes late."""
    tracker = OffsetTracker()
    [state] = tracker.assign([("t", 0)])
    taken, waiting = _record(0), _record(1, done=False)
    tracker.add(state, 0, taken)
    tracker.add(state, 1, waiting)
    assert list(tracker.take_ready()) == [taken]
    assert tracker.inflight_bytes == 4
    assert tracker.remove([("t", 0)]) == 2
    assert taken.cancelled and waiting.cancelled
    assert tracker.inflight_bytes == 0
    tracker.delivered(taken)  # the brokers acknowledge it afterwards
    assert tracker.inflight_bytes == 0
    assert tracker.committable() == {}
