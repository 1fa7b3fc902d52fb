"""Run a blocking client call with a deadline it cannot overrun.

librdkafka's ``send_offsets_to_transaction`` can block far past its own timeout when the group
coordinator's broker dies (librdkafka issues #5456 and #5511: the coordinator request's timeout
is never checked). The call releases the GIL, so it runs on a helper thread here and the caller
waits at most ``seconds``; a call still running then is reported as :class:`ClientHung`, and the
process must exit without tearing the client down (that would block on the same call).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from worker.errors import FatalError

T = TypeVar("T")


class ClientHung(FatalError):
    """A client call overran its deadline; exit the process at once (``os._exit``)."""


def call_with_deadline(action: Callable[[], T], *, seconds: float, what: str) -> T:
    """``action()``'s result or exception; :class:`ClientHung` after ``seconds``."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(action())
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"deadline-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise ClientHung(f"{what} still blocked after {seconds:.0f} s")
    if failure:
        raise failure[0]
    return outcome[0]
