"""The worker's loop runs with the start-up heap frozen, and leaves nothing frozen after."""

from __future__ import annotations

import gc

import pytest

from worker.heap import startup_objects_frozen


def test_objects_alive_at_start_are_frozen_only_inside() -> None:
    alive = [object() for _ in range(100)]
    assert gc.get_freeze_count() == 0
    with startup_objects_frozen():
        assert gc.get_freeze_count() >= len(alive)
    assert gc.get_freeze_count() == 0


def test_unfrozen_when_the_loop_fails() -> None:
    with pytest.raises(RuntimeError), startup_objects_frozen():
        raise RuntimeError("loop failed")
    assert gc.get_freeze_count() == 0


def test_free_memory_is_returned_once_after_work_when_idle() -> None:
    from worker.heap import FreeMemoryReturner

    calls: list[int] = []
    returner = FreeMemoryReturner(interval_s=10)
    returner._trim = calls.append  # type: ignore[assignment]
    assert not returner.tick(idle=True, now=0)  # nothing was done yet
    assert not returner.tick(idle=False, now=1)
    assert returner.tick(idle=True, now=2) and calls == [0]
    assert not returner.tick(idle=True, now=3)  # no new work since
    returner.tick(idle=False, now=4)
    assert not returner.tick(idle=True, now=5)  # within the interval
    assert returner.tick(idle=True, now=13) and calls == [0, 0]
