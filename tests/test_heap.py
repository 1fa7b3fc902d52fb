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
