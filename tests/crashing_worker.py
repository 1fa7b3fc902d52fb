"""``biomarker-worker run`` whose process is killed (SIGKILL, as by the OOM killer or a segfault)
whenever it prepares a note that says POISON-PILL. For the poison-record tests only."""

from __future__ import annotations

import os
import signal
import sys

from worker import prepare
from worker.cli import main

_split = prepare.split_sentences


def _split_or_die(text: str, *, max_chars: int | None = None) -> list[tuple[int, int]]:
    if "POISON-PILL" in text:
        os.kill(os.getpid(), signal.SIGKILL)
    return _split(text, max_chars=max_chars)


prepare.split_sentences = _split_or_die  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main(["run"]))
