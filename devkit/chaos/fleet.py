"""The worker processes of a chaos run: started, killed and restarted like pods with
``restartPolicy: Always``, with their memory sampled from ``/proc``.

Each start of a slot is a new *generation* with its own log file. A process that exits without
being asked to is restarted after ``restart_delay_s`` (its exit is recorded); one that the run
kills or stops is restarted (or not) by the fault that did it. Workers are started only by the
caller's thread or the fleet's supervisor thread, which outlives them, and die with that thread
(:mod:`devkit.lifeline`) if the run itself is killed outright.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from devkit.lifeline import die_with_parent


@dataclass(slots=True)
class Exit:
    at_ms: int
    slot: int
    generation: int
    code: int
    expected: bool


@dataclass(slots=True)
class Slot:
    index: int
    slow_delay_ms: int = 0
    restart_at: float | None = None  # monotonic time of a pending restart
    process: subprocess.Popen[bytes] | None = None
    generation: int = 0
    log_path: Path | None = None
    expected_exit: bool = False
    peak_rss_kib: int = 0
    peak_hwm_kib: int = 0


@dataclass(slots=True)
class FleetStats:
    starts: int = 0
    hung: int = 0  # did not exit within the timeout after a signal
    exits: list[Exit] = field(default_factory=list)


def read_memory_kib(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) of a live process in KiB, from ``/proc/PID/status``."""
    values: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values[name] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if "VmRSS" not in values:
        return None
    return values["VmRSS"], values.get("VmHWM", values["VmRSS"])


class Fleet:
    """``count`` worker slots; thread-safe. ``env`` is the workers' whole environment."""

    def __init__(
        self,
        env: dict[str, str],
        logs: Path,
        count: int,
        *,
        cwd: Path,
        restart_delay_s: float = 1.0,
        per_slot_env: dict[int, dict[str, str]] | None = None,
    ) -> None:
        self._env = env
        self._per_slot_env = per_slot_env or {}
        self._logs = logs
        self._cwd = cwd
        self._restart_delay = restart_delay_s
        self.slots = [Slot(index=i) for i in range(count)]
        self.stats = FleetStats()
        self._lock = threading.RLock()
        self._stopping = threading.Event()  # no more restarts
        self._exit = threading.Event()  # the supervisor thread ends (after the workers)
        self._thread = threading.Thread(target=self._supervise, name="fleet", daemon=True)
        logs.mkdir(parents=True, exist_ok=True)

    # --- starting and stopping
    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot.index)
        self._thread.start()

    def start(self, index: int, *, slow_delay_ms: int = 0) -> None:
        """Start a new generation of slot ``index`` (a slow-model worker with a delay > 0)."""
        with self._lock:
            slot = self.slots[index]
            if slot.process is not None and slot.process.poll() is None:
                raise RuntimeError(f"worker slot {index} is still running")
            slot.generation += 1
            slot.slow_delay_ms = slow_delay_ms
            slot.expected_exit = False
            slot.restart_at = None
            slot.log_path = self._logs / f"worker-{index}-{slot.generation}.log"
            if slow_delay_ms > 0:
                command = [sys.executable, "-m", "devkit.slow_worker"]
                command += ["--delay-ms", str(slow_delay_ms)]
            else:
                command = [sys.executable, "-m", "worker", "run"]
            env = {**self._env, **self._per_slot_env.get(index, {}), "PYTHONFAULTHANDLER": "1"}
            with slot.log_path.open("ab") as log:
                slot.process = subprocess.Popen(
                    [*die_with_parent(), *command],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self._cwd,
                    start_new_session=True,  # a terminal's Ctrl-C reaches only the run itself
                )
            self.stats.starts += 1

    def kill(self, index: int) -> None:
        """SIGKILL slot ``index`` and wait for it (the caller restarts it)."""
        self._signal_and_wait(index, signal.SIGKILL, timeout=30.0)

    def terminate(self, index: int, timeout: float = 60.0) -> int | None:
        """SIGTERM slot ``index`` and wait up to ``timeout`` (then SIGABRT for a thread dump,
        then SIGKILL); its exit code."""
        return self._signal_and_wait(index, signal.SIGTERM, timeout=timeout)

    def _signal_and_wait(self, index: int, signum: int | None, *, timeout: float) -> int | None:
        """Send ``signum`` (``None``: already sent) and wait for the exit."""
        with self._lock:
            slot = self.slots[index]
            process = slot.process
            if process is None:
                return None
            slot.expected_exit = True
            self._sample(slot)
            if signum is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signum)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Hung: SIGABRT makes Python's faulthandler (PYTHONFAULTHANDLER=1) write every
            # thread's stack to the log (see worker_logs.hang_dumps), then SIGKILL.
            self.stats.hung += 1
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGABRT)
            try:
                code = process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait(timeout=30)
        with self._lock:
            self._record_exit(slot, code)
            slot.process = None
        return code

    def stop_all(self, timeout: float = 60.0) -> dict[int, int | None]:
        """Stop restarting, SIGTERM every worker, wait (SIGKILL after ``timeout``)."""
        self._stopping.set()
        with self._lock:
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is None:
                    slot.expected_exit = True
                    with contextlib.suppress(ProcessLookupError):
                        slot.process.send_signal(signal.SIGTERM)
        codes = {s.index: self._signal_and_wait(s.index, None, timeout=timeout) for s in self.slots}
        self._end_supervisor()
        return codes

    def _end_supervisor(self) -> None:
        self._exit.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def kill_all(self) -> None:
        """Last resort (errors, Ctrl-C): SIGKILL every worker by PID."""
        self._stopping.set()
        with self._lock:
            for slot in self.slots:
                if slot.process is not None and slot.process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        slot.process.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        slot.process.wait(timeout=10)
        self._end_supervisor()

    # --- observing
    def log_contains(self, index: int, text: str) -> bool:
        path = self.slots[index].log_path
        try:
            return path is not None and text in path.read_text(errors="replace")
        except OSError:
            return False

    def wait_for_log(self, index: int, text: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log_contains(index, text):
                return True
            time.sleep(0.25)
        return False

    def log_paths(self) -> list[Path]:
        return sorted(self._logs.glob("worker-*.log"))

    def peak_memory_mib(self) -> dict[str, float]:
        with self._lock:
            rss = max((slot.peak_rss_kib for slot in self.slots), default=0)
            hwm = max((slot.peak_hwm_kib for slot in self.slots), default=0)
        return {"peak_rss_mib": round(rss / 1024, 1), "peak_hwm_mib": round(hwm / 1024, 1)}

    # --- the supervisor thread
    def _supervise(self) -> None:
        while not self._exit.is_set():
            with self._lock:
                for slot in self.slots:
                    self._check(slot)
            self._exit.wait(0.5)

    def _check(self, slot: Slot) -> None:
        self._sample(slot)
        process = slot.process
        if process is not None and not slot.expected_exit:
            code = process.poll()
            if code is not None:  # restartPolicy: Always
                self._record_exit(slot, code)
                slot.process = None
                slot.restart_at = time.monotonic() + self._restart_delay
        due = slot.restart_at is not None and time.monotonic() >= slot.restart_at
        if due and slot.process is None and not self._stopping.is_set():
            self.start(slot.index, slow_delay_ms=slot.slow_delay_ms)

    def _sample(self, slot: Slot) -> None:
        if slot.process is None or slot.process.poll() is not None:
            return
        memory = read_memory_kib(slot.process.pid)
        if memory is not None:
            slot.peak_rss_kib = max(slot.peak_rss_kib, memory[0])
            slot.peak_hwm_kib = max(slot.peak_hwm_kib, memory[1])

    def _record_exit(self, slot: Slot, code: int) -> None:
        self.stats.exits.append(
            Exit(
                at_ms=int(time.time() * 1000),
                slot=slot.index,
                generation=slot.generation,
                code=code,
                expected=slot.expected_exit,
            )
        )
