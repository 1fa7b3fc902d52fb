"""Bounded runs of a pipeline: until a condition holds (the demo, tests, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol


class Stoppable(Protocol):
    def run(self) -> int: ...

    def request_stop(self) -> None: ...


def run_until(pipeline: Stoppable, done: Callable[[], bool], *, poll_s: float = 0.01) -> int:
    """Run ``pipeline`` until ``done()`` holds (checked every ``poll_s`` by a watcher thread),
    then let it drain; return its exit code."""
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(poll_s):
            if done():
                pipeline.request_stop()
                return

    watcher = threading.Thread(target=watch, name="stop-watcher", daemon=True)
    watcher.start()
    try:
        return pipeline.run()
    finally:
        finished.set()
        watcher.join()
