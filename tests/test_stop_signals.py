"""SIGTERM and SIGINT handlers must be safe wherever they interrupt the main thread.

Python runs a signal handler in the main thread between two bytecodes, possibly while that
thread holds structlog's write lock (a plain, non-reentrant ``threading.Lock``). A handler that
logged would then wait for itself forever: the worker would never drain or exit. Here the signal
is sent from inside a log write, in a child process (a deadlock there is a timeout, not a hung
test run).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys

import orjson
import structlog

from tests.test_pipeline_unit import Kit
from worker.cli.redrive import _stop_on_signals as stop_redrive_on_signals
from worker.cli.run import stop_on_signals
from worker.logs import configure_logging
from worker.pipeline import EXIT_OK

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _SignalOnFirstWrite(io.StringIO):
    """A log stream that sends this process SIGTERM from inside its first write."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def write(self, text: str) -> int:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before this write returns
        return super().write(text)


def signal_inside_a_log_write() -> None:
    """The child's side: SIGTERM lands mid-log-line, then the pipeline runs; prints a summary."""
    stream = _SignalOnFirstWrite()
    configure_logging(stream=stream)
    kit = Kit()
    kit.fill(6)
    pipeline = kit.pipeline()
    stop_on_signals(pipeline)
    structlog.get_logger("test").info("before_the_signal")
    stopping = pipeline.readiness() == (False, "stopping")
    code = pipeline.run()
    events = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    reasons = [event.get("reason") for event in events if event["event"] == "stop_requested"]
    print(orjson.dumps({"code": code, "stopping": stopping, "reasons": reasons}).decode())


class _Redriver:
    stopped = False

    def request_stop(self) -> None:
        self.stopped = True


def redrive_signal_inside_a_log_write() -> None:
    """The child's side for ``biomarker-worker redrive``'s handler."""
    configure_logging(stream=_SignalOnFirstWrite())
    redriver = _Redriver()
    stop_redrive_on_signals(redriver, [])  # type: ignore[arg-type]
    structlog.get_logger("test").info("before_the_signal")
    print(orjson.dumps({"stopped": redriver.stopped}).decode())


def _child(function: str) -> dict[str, object]:
    code = f"from tests.test_stop_signals import {function} as f; f()"
    try:
        child = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            cwd=_REPO,
            capture_output=True,
            timeout=30,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError("the signal handler deadlocked on the log's write lock") from exc
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    summary: dict[str, object] = orjson.loads(child.stdout.splitlines()[-1])
    return summary


def test_a_stop_signal_during_a_log_write_drains_and_exits_instead_of_deadlocking() -> None:
    summary = _child("signal_inside_a_log_write")
    assert summary == {"code": EXIT_OK, "stopping": True, "reasons": ["SIGTERM"]}


def test_redrive_stops_on_a_signal_that_lands_during_a_log_write() -> None:
    assert _child("redrive_signal_inside_a_log_write") == {"stopped": True}
