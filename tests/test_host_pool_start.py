"""Host processes (worker.host_pool) at start and at the end: the worker joins its group only once
they are up, a failure names the host process's own error (never its message) or exit code,
a drain or revoke stops waiting for a dead side, and a host process dies with the worker.

The targets below run in spawned host processes: they replace the host's work (``_Host``) and
keep the real :func:`~worker.host_pool.serve` around it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import MutableMapping, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
import structlog
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

import worker.pipeline as pipeline_module
from tests.fakes import Encoded, ModelCrash, WordModel
from tests.test_pipeline_unit import IN, Kit, _note
from worker import host_pool
from worker.completions import check_threads
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.events import SourceRef
from worker.host_pool import (
    HostPool,
    HostPreparation,
    HostProcessFailed,
    HostSettings,
    host_processes_for,
    usable_cores,
)
from worker.inputs.decoding import DecoderSpec
from worker.kafka.offsets import PartitionState
from worker.model.wordpieces import SentenceEncoderSpec
from worker.notes import Record
from worker.pipeline import EXIT_FATAL, Pipeline

SECRET = "Pt John Q. Public, HIV+"


# --------------------------------------------------------------------------- host-side targets
class _CannotStart:
    def __init__(self, settings: Any) -> None:
        raise OSError(f"no tokenizer for {SECRET}")


class _Fails:
    def __init__(self, settings: Any) -> None:
        pass

    def handle(self, request: Any) -> Any:
        raise KeyError(SECRET)


class FakePanic(BaseException):
    """Stands for ``pyo3_runtime.PanicException`` (a ``BaseException``) of the Rust tokenizer."""


class _Panics(_Fails):
    def handle(self, request: Any) -> Any:
        raise FakePanic(f"byte index 3 is not a char boundary; it is inside `{SECRET}`")


class _Busy(_Fails):
    """Takes a request and works on it forever; ``settings`` is a file it creates first."""

    def __init__(self, settings: Any) -> None:
        self.marker = settings

    def handle(self, request: Any) -> Any:
        if isinstance(self.marker, str):
            Path(self.marker).touch()
        while True:
            time.sleep(1)


def _serve_with(host: type) -> Any:
    def target(connection: Connection, settings: Any) -> None:
        host_pool._Host = host  # type: ignore[misc,assignment]
        host_pool.serve(connection, settings)

    return target


def cannot_start(connection: Connection, settings: Any) -> None:
    _serve_with(_CannotStart)(connection, settings)


def fails(connection: Connection, settings: Any) -> None:
    _serve_with(_Fails)(connection, settings)


def panics(connection: Connection, settings: Any) -> None:
    _serve_with(_Panics)(connection, settings)


def busy(connection: Connection, settings: Any) -> None:
    _serve_with(_Busy)(connection, settings)


def never_ready(connection: Connection, settings: Any) -> None:
    time.sleep(120)


def second_is_late(connection: Connection, settings: Any) -> None:
    if multiprocessing.current_process().name == "host-1":
        time.sleep(1.5)
    busy(connection, settings)


# --------------------------------------------------------------------------- helpers
def tiny_spec() -> SentenceEncoderSpec:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "psa", "was", "4", ".", "2", "ng", "/", "ml"]
    vocab += [chr(c) for c in range(97, 123)] + ["##" + chr(c) for c in range(97, 123)]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return SentenceEncoderSpec(tokenizer.to_str(), 64, 3)


class FastTokenizerModel(WordModel):
    def encoder_spec(self) -> SentenceEncoderSpec:  # type: ignore[override]
        return tiny_spec()


def _settings() -> HostSettings:
    return HostSettings(tiny_spec(), (DecoderSpec("in", "note"),), 10_000, 64, False)


def _record(offset: int = 0) -> Record:
    return Record(source=SourceRef("in", 0, offset, None), key=None, value=b'{"text": "PSA 4"}')


def _use_pools(monkeypatch: pytest.MonkeyPatch, target: Any) -> list[HostPool]:
    """The pipeline's host pools (as it builds them): two processes running ``target``."""
    made: list[HostPool] = []

    def pool_for(settings: WorkerSettings, **_: Any) -> HostPool:
        made.append(HostPool(_settings(), 2, target=target))
        return made[-1]

    monkeypatch.setattr(pipeline_module, "host_pool_for", pool_for)
    return made


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


# --------------------------------------------------------------------------- start
def test_an_invalid_mapping_file_is_a_usage_error_also_with_host_processes(
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("fields: [text\n")
    kit = Kit(partitions=1)
    with pytest.raises(UsageError, match="not valid YAML/JSON"):
        kit.pipeline(
            model=FastTokenizerModel(),
            host_processes=2,
            input_format="mapping",
            input_mapping=str(mapping),
        )


def test_a_host_process_that_cannot_start_stops_the_worker_before_it_joins_the_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = _use_pools(monkeypatch, cannot_start)
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    pipeline = kit.pipeline()
    with structlog.testing.capture_logs() as logs:
        assert kit.run(pipeline, lambda: False, timeout_s=60) == EXIT_FATAL
    assert not kit.consumer.callbacks  # never subscribed: no partition, no attempt count
    assert kit.broker.metadata == {} and kit.broker.committed == {}
    [fatal] = [line for line in logs if line["event"] == "fatal_error"]
    assert "failed to start: OSError at test_host_pool_start.py" in fatal["error"]
    assert fatal["in_flight"] == []
    assert SECRET not in str(logs)
    assert not any(process.is_alive() for process, _ in pools[0]._processes)


def test_a_stop_while_the_host_processes_start_leaves_without_joining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = _use_pools(monkeypatch, never_ready)
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    pipeline = kit.pipeline()
    assert pipeline.readiness() == (False, "model not running")
    seen: list[tuple[bool, str]] = []

    def done() -> bool:
        seen.append(pipeline.readiness())
        return len(seen) > 20

    started = time.monotonic()
    assert kit.run(pipeline, done, timeout_s=60) == 0
    assert time.monotonic() - started < 10
    assert (False, "starting") in seen and not any(ready for ready, _ in seen)
    assert not kit.consumer.callbacks and kit.consumer.closed
    assert kit.broker.metadata == {} and kit.broker.committed == {}
    assert not any(process.is_alive() for process, _ in pools[0]._processes)


def test_the_worker_waits_for_every_host_process_in_short_waits() -> None:
    pool = HostPool(None, 2, target=second_is_late)  # type: ignore[arg-type]
    pool.start()
    try:
        deadline = time.monotonic() + 20
        while not pool.wait_ready(0.1):
            assert pool.alive() and time.monotonic() < deadline
    finally:
        pool.stop()


# --------------------------------------------------------------------------- failures
def _fail_one_request(target: Any) -> tuple[HostPreparation, list[MutableMapping[str, Any]]]:
    preparation = HostPreparation(
        pool=HostPool(None, 1, target=target),  # type: ignore[arg-type]
        score=lambda notes: None,
        on_prepared=lambda record: None,
    )
    preparation.start()
    with structlog.testing.capture_logs() as logs:
        assert preparation.wait_ready(60)
        preparation.submit([_record()])
        deadline = time.monotonic() + 30
        while preparation.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
    return preparation, logs


def test_a_failed_request_is_logged_with_the_host_process_class_and_location() -> None:
    preparation, logs = _fail_one_request(fails)
    try:
        [line] = [line for line in logs if line["event"] == "host_process_failed"]
        assert "failed: KeyError at test_host_pool_start.py" in line["reason"]
        with pytest.raises(FatalError, match=r"KeyError at test_host_pool_start\.py:\d+ in handle"):
            check_threads({"preparation": preparation})
        assert SECRET not in str(logs) and SECRET not in str(preparation.failure)
    finally:
        preparation.stop()


def test_a_host_process_killed_on_a_request_reports_its_exit_code() -> None:
    preparation = HostPreparation(
        pool=HostPool(None, 1, target=busy),  # type: ignore[arg-type]
        score=lambda notes: None,
        on_prepared=lambda record: None,
    )
    preparation.start()
    try:
        assert preparation.wait_ready(60)
        preparation.submit([_record()])
        time.sleep(0.3)
        os.kill(preparation.pool._processes[0][0].pid or 0, signal.SIGKILL)  # the OOM killer
        deadline = time.monotonic() + 30
        while preparation.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(FatalError, match=r"host process 0 \(pid \d+\) exited \(exit code -9\)"):
            check_threads({"preparation": preparation})
    finally:
        preparation.stop()


def test_a_base_exception_in_a_host_process_prints_nothing_and_is_reported(
    capfd: pytest.CaptureFixture[str],
) -> None:
    preparation, _ = _fail_one_request(panics)
    try:
        assert isinstance(preparation.failure, HostProcessFailed)
        assert "failed: FakePanic at test_host_pool_start.py" in str(preparation.failure)
        process = preparation.pool._processes[0][0]
        process.join(10)
        assert process.exitcode == 1
    finally:
        preparation.stop()
    out, err = capfd.readouterr()
    assert SECRET not in out + err and "Traceback" not in err


# --------------------------------------------------------------------------- drain and revoke
def _kill_when_draining(pipeline: Pipeline, kill: Any) -> list[float]:
    """Run ``kill`` as the drain begins (it pauses the source); the time it ran."""
    killed: list[float] = []
    pause = pipeline.source.set_paused

    def set_paused(paused: bool) -> None:
        if paused and pipeline.source.stopping and not killed:
            kill()
            killed.append(time.monotonic())
        pause(paused)

    pipeline.source.set_paused = set_paused  # type: ignore[method-assign]
    return killed


def test_a_drain_stops_waiting_when_the_host_processes_die(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = _use_pools(monkeypatch, busy)
    kit = Kit(partitions=2)
    kit.fill(20)
    pipeline = kit.pipeline(drain_timeout_s=15)

    def kill() -> None:
        for process, _ in pools[0]._processes:
            process.kill()

    killed = _kill_when_draining(pipeline, kill)
    code = kit.run(pipeline, lambda: pipeline._preparation.pending > 0, timeout_s=60)
    assert code == EXIT_FATAL
    assert time.monotonic() - killed[0] < 5
    assert kit.broker.committed.get((IN, 0), 0) == 0  # nothing was delivered


class _DiesWhenReleased(WordModel):
    """Holds the note saying HOLD in ``side`` until released, then dies as a segfault would."""

    def __init__(self, side: str) -> None:
        super().__init__()
        self.side = side
        self.release = threading.Event()

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        if self.side == "preparation" and any("HOLD" in text for text in texts):
            self.release.wait(30)
            raise ModelCrash("gone")
        return [Encoded([99 if "HOLD" in text else 1]) for text in texts]

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        if self.side == "inference" and any(99 in row for row in batch):
            self.release.wait(30)
            raise ModelCrash("gone")
        return [0.1 for _ in batch]


@pytest.mark.parametrize("side", ["preparation", "inference"])
def test_a_drain_stops_waiting_when_a_worker_thread_dies(side: str) -> None:
    kit = Kit(partitions=1)
    kit.broker.append(IN, _note(0, "Please HOLD this."))
    model = _DiesWhenReleased(side)
    pipeline = kit.pipeline(model=model, drain_timeout_s=15)
    killed = _kill_when_draining(pipeline, model.release.set)
    code = kit.run(pipeline, lambda: pipeline.tracker.inflight > 0, timeout_s=60)
    assert code == EXIT_FATAL
    assert time.monotonic() - killed[0] < 5
    assert kit.broker.read("enriched") == []


def test_a_revoke_stops_waiting_when_the_host_processes_die(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pools = _use_pools(monkeypatch, busy)
    kit = Kit(partitions=1)
    kit.fill(5, partitions=1)
    pipeline = kit.pipeline(revoke_timeout_s=15)
    killed: list[float] = []
    revoking = pipeline.revoking

    def kill_then_revoke(states: list[PartitionState]) -> None:
        for process, _ in pools[0]._processes:
            process.kill()
        killed.append(time.monotonic())
        revoking(states)

    pipeline.revoking = kill_then_revoke  # type: ignore[method-assign]

    def done() -> bool:
        if pipeline._preparation.pending > 0 and not killed and not kit.consumer.pending:
            kit.consumer.rebalance("revoke", [(IN, 0)])
        return False

    assert kit.run(pipeline, done, timeout_s=60) == EXIT_FATAL
    assert time.monotonic() - killed[0] < 5


# --------------------------------------------------------------------------- worker killed
_PARENT = """
import sys, time
from pathlib import Path
from tests.test_host_pool_start import busy
from tests.test_host_pool_start import _record
from worker.host_pool import HostPool, HostPreparation

if __name__ == "__main__":
    marker = sys.argv[1]
    pool = HostPool(marker, 1, target=busy)
    preparation = HostPreparation(pool=pool, score=lambda n: None, on_prepared=lambda r: None)
    preparation.start()
    assert pool.wait_ready(60)
    preparation.submit([_record()])
    while not Path(marker).exists():
        time.sleep(0.05)
    print(*(process.pid for process, _ in pool._processes), flush=True)
    time.sleep(600)
"""


def test_a_host_process_busy_on_a_request_dies_with_the_worker(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    marker = tmp_path / "busy"
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    parent = subprocess.Popen(
        [sys.executable, str(script), str(marker)], stdout=subprocess.PIPE, text=True, env=env
    )
    children: list[int] = []
    try:
        assert parent.stdout is not None
        children = [int(pid) for pid in parent.stdout.readline().split()]
        assert children and all(_alive(pid) for pid in children)
        parent.kill()  # SIGKILL: nothing of the worker runs any more
        parent.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in children)
    finally:
        parent.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- default count
def test_the_default_count_follows_the_cgroup_cpu_quota(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(32)))
    cpu_max = tmp_path / "cpu.max"
    settings = WorkerSettings()
    cpu_max.write_text("200000 100000\n")  # docker run --cpus 2
    assert usable_cores(cpu_max) == 2
    assert host_processes_for(settings, "cuda", cpu_max=cpu_max) == 1
    cpu_max.write_text("650000 100000\n")  # 6.5 CPUs
    assert host_processes_for(settings, "cuda", cpu_max=cpu_max) == 4
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one core of work
    assert usable_cores(cpu_max) == 1
    cpu_max.write_text("max 100000\n")  # no quota
    assert usable_cores(cpu_max) == 32
    assert usable_cores(tmp_path / "absent") == 32  # cgroup v1, or none
    assert host_processes_for(settings, "cuda", cpu_max=tmp_path / "absent") == 4
    assert host_processes_for(settings, "cpu", cpu_max=cpu_max) == 1
