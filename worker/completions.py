"""The hand-back from the worker threads, read by the thread that owns the records.

The preparation thread hands back each prepared :class:`~worker.notes.Record`, the inference
thread each scored :class:`~worker.notes.Note`, through one queue. Both runtimes' loops drain it
with :func:`take_completed` and watch the threads with :func:`check_threads`.
"""

from __future__ import annotations

import queue
from typing import Protocol

from worker.errors import FatalError
from worker.logs import where_raised
from worker.metrics import Metrics
from worker.notes import Note, Record

Completions = queue.SimpleQueue[Record | Note]


class WorkerThread(Protocol):
    @property
    def failure(self) -> BaseException | None: ...

    def alive(self) -> bool: ...


def take_completed(completed: Completions, metrics: Metrics) -> None:
    """Mark records prepared (counting their sentences and skipped parts) and notes scored."""
    while True:
        try:
            done = completed.get_nowait()
        except queue.Empty:
            return
        if isinstance(done, Record):
            done.prepared = True
            metrics.sentences_in.inc(sum(len(note.spans) for note in done.notes))
            for skip in done.skipped:
                metrics.skipped.labels(reason=skip.reason).inc()
        else:
            done.record.note_scored(done)


def check_threads(threads: dict[str, WorkerThread]) -> None:
    """:class:`FatalError` naming the first thread that stopped, and where it failed."""
    for name, thread in threads.items():
        if not thread.alive():
            failure = thread.failure
            where = where_raised(failure) if failure is not None else "unknown"
            raise FatalError(f"{name} thread stopped: {type(failure).__name__} at {where}")
