"""``biomarker-worker run`` whose host processes hang (as on an endless loop in a parser or the
segmenter) whenever they prepare a note that says POISON-PILL. For the poison-record tests only:
the worker runs ``-m tests.hanging_host_worker``, and its host processes, spawned from this
module, take the same patch."""

from __future__ import annotations

import multiprocessing
import sys
import time

from worker import prepare
from worker.cli import main

_split = prepare.split_sentences


def _split_or_hang(text: str, *, max_chars: int | None = None) -> list[tuple[int, int]]:
    if "POISON-PILL" in text and multiprocessing.parent_process() is not None:
        time.sleep(3600)  # the worker's deadline kills this process long before
    return _split(text, max_chars=max_chars)


prepare.split_sentences = _split_or_hang  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(["run"]))
