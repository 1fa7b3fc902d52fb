"""Host work in several processes: decoding, segmenting and tokenising notes, and rendering
their outputs, so that the host side keeps up with a fast accelerator.

    polling loop ── records ──> HostPreparation ─┐                 ┌─> host process 1
                                                  ├─> requests ──> ├─> host process 2   (spawned,
    OffsetTracker.take_ready ──> HostRenderer ───┘  (one courier   └─> ...               stateless)
                                                     thread each)

The host processes hold no state between requests, so any of them takes the next request: a
courier thread per process sends it, waits for the reply and hands the result on. What crosses a
process boundary is per record and per chunk, never a Python object per sentence:

* a prepared chunk comes back as one buffer of token ids (int32) and one of sentence lengths for
  all of its notes, plus per note its key, retraction flag, sentence count, the lexicon rules of
  its few sentences that have one, and an opaque *payload* (the parsed event, its spans,
  truncation flags and rules, pickled in the host process);
  the worker's sentence jobs are numpy views of the id buffer;
* a render request carries each note's payload back with its scores (one float64 buffer), and
  the reply is the enriched events' bytes.

Everything else stays where it was: the polling loop owns the records, the inference loop
batches the views, outputs are produced in offset order per partition (the renderer hands them
out in the order records became ready), and offsets are committed only once delivered. A host
process that dies, a reply that says it failed, or a request left unanswered past the deadline
(the process is killed) stops the worker (exit 1) as a dead worker thread does; a record that
cannot be prepared is dead-lettered alone, as in one process. The worker waits for every host
process to be ready (:meth:`HostPool.wait_ready`) before it joins its group, so a start that
fails stops it before it owns a partition. :class:`HostProcessFailed` names the host process,
the failure's class and location there, or its exit code, never a message (it may quote text).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import pickle
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
import structlog

from worker.errors import FatalError, InvalidEvent
from worker.events import NoteEvent, Provenance, SourceRef, build_output
from worker.heap import startup_objects_frozen
from worker.inputs.decoding import DecoderSpec, decoder_specs, decoders_for, decoders_from
from worker.logs import where_raised
from worker.model.wordpieces import SentenceEncoder, SentenceEncoderSpec
from worker.notes import Note, Record, SentenceJob
from worker.prepare import PendingRecords, Preparer, prepare_isolated
from worker.render import Outgoing, outgoing

if TYPE_CHECKING:
    from worker.config import WorkerSettings

log = structlog.get_logger(__name__)

#: Records per prepare request and per render request.
CHUNK_RECORDS = 32
_START_TIMEOUT_S = 120.0
#: A request a host process has not answered after this long is taken as a hang.
DEFAULT_DEADLINE_S = 60.0


@dataclass(frozen=True, slots=True)
class HostSettings:
    """What a host process needs (picklable): the tokenizer, the decoders, the note budgets."""

    encoder: SentenceEncoderSpec
    decoders: tuple[DecoderSpec, ...]
    max_note_chars: int
    max_sentence_tokens: int
    include_note_text: bool
    lexicon_rules: bool = True


#: At most this many host processes by default (one GPU's worth on the machines measured).
DEFAULT_MAX_HOST_PROCESSES = 4


#: The cgroup (v2) CPU quota of this container: ``<quota> <period>`` in microseconds, or ``max``.
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by the cgroup's CPU quota
    (``docker run --cpus 2`` on a 32-core machine: 2), at least 1."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota == "max":
            return cores
        return max(1, min(cores, int(quota) // int(period)))
    except (OSError, ValueError, ZeroDivisionError):  # no cgroup v2 quota to read
        return cores


def host_processes_for(settings: WorkerSettings, device: str, *, cpu_max: Path = CPU_MAX) -> int:
    """``host_processes``, or its default: 1 on CPU (the model takes every core; the host work
    is ~5% of it, docs/PERFORMANCE.md), on a GPU the usable cores (:func:`usable_cores`) less
    two (the worker's own threads), at most :data:`DEFAULT_MAX_HOST_PROCESSES`. The faust
    runtime always has 1."""
    if settings.runtime == "faust":
        return 1
    if settings.host_processes is not None:
        return settings.host_processes
    if not device.startswith("cuda"):
        return 1
    return max(1, min(DEFAULT_MAX_HOST_PROCESSES, usable_cores(cpu_max) - 2))


def host_pool_for(
    settings: WorkerSettings,
    *,
    device: str,
    encoder: SentenceEncoderSpec | None,
    smallest_pool: int = 2,
) -> HostPool | None:
    """The pool of host processes the settings ask for; ``None`` for fewer than
    ``smallest_pool`` (the worker's own threads do the host work; benchmarks pass 1 to measure
    one host process)."""
    processes = host_processes_for(settings, device)
    if processes < max(1, smallest_pool):
        return None
    # The host processes build their own decoders; building them here too makes a bad mapping
    # file the same one-line usage error as without host processes, before anything starts.
    decoders_for(settings)
    if encoder is None:
        raise FatalError(
            "host_processes > 1 needs a fast (Rust) tokenizer; this model has a slow one"
        )
    host = HostSettings(
        encoder=encoder,
        decoders=decoder_specs(settings),
        max_note_chars=settings.max_note_chars,
        max_sentence_tokens=settings.max_sentence_tokens,
        include_note_text=settings.include_note_text,
        lexicon_rules=settings.lexicon_rules,
    )
    return HostPool(host, processes, deadline_s=settings.liveness_timeout_s)


class HostProcessFailed(RuntimeError):
    """A host process died or could not do a request: the worker must stop. The message names
    the process, the failure's class and location in it or its exit code, never note text, so
    it is logged as it is."""


# ---------------------------------------------------------------------------- host process side
class _Host:
    """The work of one host process; every request is answered from the request alone."""

    def __init__(self, settings: HostSettings) -> None:
        decoders = decoders_from(
            settings.decoders,
            max_chars=settings.max_note_chars,
            include_text=settings.include_note_text,
        )
        self._preparer = Preparer(
            encoder=SentenceEncoder.from_spec(settings.encoder),
            max_note_chars=settings.max_note_chars,
            max_sentence_tokens=settings.max_sentence_tokens,
            decoders=decoders,
            lexicon_rules=settings.lexicon_rules,
        )

    def handle(self, request: tuple[Any, ...]) -> tuple[Any, ...]:
        if request[0] == "prepare":
            return self._prepare(request[1], request[2])
        if request[0] == "render":
            return self._render(request[1], request[2], request[3])
        raise ValueError(f"unknown request {request[0]!r}")

    def _prepare(
        self, max_note_sentences: int | None, items: list[tuple[SourceRef, bytes | None]]
    ) -> tuple[Any, ...]:
        if self._preparer.max_note_sentences != max_note_sentences:
            self._preparer = replace(self._preparer, max_note_sentences=max_note_sentences)
        records = [Record(source=source, key=None, value=value) for source, value in items]
        notes = prepare_isolated(self._preparer, records)
        ids = [job.ids for note in notes for job in note.jobs]
        lengths = np.fromiter((len(item) for item in ids), dtype=np.int32, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum()))
        results = [
            (
                None if record.failure is None else (record.failure.reason, record.failure.message),
                record.skipped,
                [_note_summary(note) for note in record.notes],
            )
            for record in records
        ]
        return ("prepared", results, flat.tobytes(), lengths.tobytes())

    @staticmethod
    def _render(
        provenance: Provenance,
        include_text: bool,
        records: list[tuple[SourceRef, list[tuple[bytes, bytes]]]],
    ) -> tuple[Any, ...]:
        rendered = []
        for source, notes in records:
            values = []
            for index, (payload, scores) in enumerate(notes):
                event, spans, truncated, rules = pickle.loads(payload)
                values.append(
                    build_output(
                        event,
                        spans=spans,
                        scores=np.frombuffer(scores, dtype=np.float64).tolist(),
                        truncated=truncated,
                        rules=rules,
                        source=source,
                        provenance=provenance,
                        include_text=include_text,
                        note_index=index,
                    )
                )
            rendered.append(values)
        return ("rendered", rendered)


def _note_summary(note: Note) -> tuple[bytes | None, bool, int, dict[int, str], bytes]:
    """Key, retraction flag, sentence count, lexicon rules (few: the worker counts the labels
    they give) and the opaque payload the worker hands back for rendering (it never unpickles
    it)."""
    payload = pickle.dumps((note.event, note.spans, note.truncated, note.rules), protocol=5)
    return (note.event.key, note.event.retraction, len(note.spans), note.rules, payload)


def serve(connection: Connection, settings: HostSettings) -> None:
    """A host process's main loop: answer requests until the worker closes the pipe.

    Signals are the worker's business (it drains, then closes the pipe); a host process ends
    when its pipe does, and is killed when the worker dies, also in the middle of a request
    (:func:`_die_with_parent`). Whatever it raises, also a ``BaseException`` such as the Rust
    tokenizer's ``PanicException``, is answered as a failure (its class and location, never its
    message: it may quote note text) and ends the process; nothing is printed.
    """
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # One process is one core of host work: the tokenizer's own thread pool would have every
    # host process spin threads on every core.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        host = _Host(settings)
        connection.send(("ready",))
        with startup_objects_frozen():  # full collections skip the tokenizer, parsers, modules
            _answer(connection, host)
    except BaseException as exc:  # the worker reports it and exits
        _reply_failed(connection, exc)
        os._exit(1)  # not the interpreter's exit: it would print what escaped, with its message


def _answer(connection: Connection, host: _Host) -> None:
    while True:
        try:
            request = connection.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        try:
            reply = host.handle(request)
        except Exception as exc:  # a bug: the worker stops; not the message, it may quote text
            reply = ("failed", type(exc).__name__, where_raised(exc))
        connection.send(reply)


def _reply_failed(connection: Connection, exc: BaseException) -> None:
    with contextlib.suppress(BaseException):  # the worker is gone or closed the pipe
        connection.send(("failed", type(exc).__name__, where_raised(exc)))


#: ``prctl`` option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Have the kernel kill this process when the worker dies (Linux), also while it is busy
    on a request and never reads its pipe; elsewhere a thread watches the parent's pid. The
    kernel ties it to the worker's thread that started the pool (:meth:`HostPool.start`)."""
    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None else None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        tied = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        tied = False
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before prctl
        os._exit(1)
    if not tied and parent_pid is not None:
        threading.Thread(
            target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
        ).start()


def _watch_parent(parent_pid: int, interval_s: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(interval_s)
    os._exit(1)


# ---------------------------------------------------------------------------- worker side
class Request(Protocol):
    """One round trip to a host process, made on a courier thread."""

    def message(self) -> tuple[Any, ...] | None:
        """What to send (built at send time); ``None``: nothing left to do."""

    def done(self, reply: tuple[Any, ...] | None) -> None:
        """Hand the reply on (``None`` when nothing was sent)."""


class HostPool:
    """``processes`` spawned host processes, each served by a courier thread of the worker.

    A host process that does not answer a request within ``deadline_s`` (a note that sends the
    segmenter or a parser into an endless loop) is killed, and the worker stops with exit 1
    like for any dead host process; on restart the poison-record tracking
    (:mod:`worker.kafka.crashes`) pins the crashes on the record and dead-letters it.
    ``target`` is the host process's main function (tests give one that hangs).
    """

    def __init__(
        self,
        settings: HostSettings,
        processes: int,
        *,
        deadline_s: float = DEFAULT_DEADLINE_S,
        start_timeout_s: float = _START_TIMEOUT_S,
        target: Callable[[Connection, HostSettings], None] | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")  # never fork a process holding a model
        self._deadline_s = deadline_s
        self._start_timeout_s = start_timeout_s
        self._requests: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._processes = []
        self._couriers = []
        for number in range(processes):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=target or serve, args=(theirs, settings), name=f"host-{number}", daemon=True
            )
            self._processes.append((process, theirs))
            self._couriers.append(
                threading.Thread(
                    target=self._courier,
                    args=(number, ours, process),
                    name=f"host-{number}",
                    daemon=True,
                )
            )
        self.failure: BaseException | None = None
        self._ready = [threading.Event() for _ in range(processes)]
        self._stopping = False

    def start(self) -> None:
        """Spawn the processes (without waiting for them: :meth:`wait_ready`). Call it from a
        thread that outlives the pool, such as the main thread: on Linux a host process is
        killed when the thread that started it ends (``PR_SET_PDEATHSIG``)."""
        for process, theirs in self._processes:
            process.start()
            theirs.close()  # the child holds its end: EOF here once it exits
        for courier in self._couriers:
            courier.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every host process is ready (True), one has failed, or ``timeout``
        (default: the start timeout) passed; a host process not ready within the start timeout
        is killed and is a failure (:attr:`failure`)."""
        deadline = time.monotonic() + (self._start_timeout_s if timeout is None else timeout)
        for ready in self._ready:
            while not ready.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                if not self.alive() or time.monotonic() >= deadline:
                    return False
        return True

    def submit(self, request: Request) -> None:
        self._requests.put(request)

    def alive(self) -> bool:
        return self.failure is None and all(courier.is_alive() for courier in self._couriers)

    def stop(self, timeout: float = 5.0) -> None:
        """Let queued requests finish, close the pipes, and end the processes (one not ready
        yet has taken no request: it is killed at once)."""
        self._stopping = True
        for (process, _), ready in zip(self._processes, self._ready, strict=True):
            if process.pid is not None and not ready.is_set():
                process.kill()
        for _ in self._couriers:
            self._requests.put(None)
        deadline = time.monotonic() + timeout
        for courier in self._couriers:
            if courier.is_alive():
                courier.join(max(0.0, deadline - time.monotonic()))
        for process, _ in self._processes:
            if process.pid is None:
                continue
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)

    def _courier(self, number: int, pipe: Connection, process: BaseProcess) -> None:
        host = _Peer(number, pipe, process)
        try:
            host.expect("ready", self._start_timeout_s)
            self._ready[number].set()
            while (request := self._requests.get()) is not None:
                message = request.message()
                if message is None:
                    request.done(None)
                    continue
                host.send(message)
                request.done(host.expect(None, self._deadline_s))
            host.send(None)
        except BaseException as exc:  # reported to the owner, which exits non-zero
            if self._stopping:  # a process killed at the end of stop(): nothing to report
                return
            if self.failure is None:
                self.failure = exc
            log.error(
                "host_process_failed",
                process=number,
                error_class=type(exc).__name__,
                where=where_raised(exc),
                # its own words: a host process's failure class and location, or exit code
                **({"reason": str(exc)} if isinstance(exc, HostProcessFailed) else {}),
            )
        finally:
            pipe.close()


@dataclass(frozen=True, slots=True)
class _Peer:
    """One host process as its courier sees it: send, then expect a reply or a failure."""

    number: int
    pipe: Connection
    process: BaseProcess

    def send(self, message: tuple[Any, ...] | None) -> None:
        try:
            self.pipe.send(message)
        except OSError as exc:  # a broken pipe: the process died between two requests
            raise self._exited() from exc

    def expect(self, kind: str | None, timeout: float) -> Any:
        if not self.pipe.poll(timeout):
            self.process.kill()  # stuck: its work is not delivered, so it is not committed either
            doing = "did not start" if kind == "ready" else "did not answer"
            raise HostProcessFailed(f"{self._name()} {doing} within {timeout:.0f} s (killed)")
        try:
            reply = self.pipe.recv()
        except (EOFError, OSError) as exc:
            raise self._exited() from exc
        if reply[0] == "failed":
            doing = "failed to start" if kind == "ready" else "failed"
            raise HostProcessFailed(f"{self._name()} {doing}: {reply[1]} at {reply[2]}")
        if kind is not None and reply[0] != kind:
            raise HostProcessFailed(f"{self._name()} answered {reply[0]!r}, not {kind!r}")
        return reply

    def _exited(self) -> HostProcessFailed:
        self.process.join(1.0)  # its exit code: -9 is a SIGKILL (the OOM killer, say)
        code = self.process.exitcode
        return HostProcessFailed(
            f"{self._name()} exited (exit code {'unknown' if code is None else code})"
        )

    def _name(self) -> str:
        return f"host process {self.number} (pid {self.process.pid})"


class HostPreparation:
    """Prepares records in the host processes; the interface of
    :class:`~worker.prepare.PreparationThread` (it owns the pool: start and stop)."""

    def __init__(
        self,
        *,
        pool: HostPool,
        score: Callable[[list[Note]], None],
        on_prepared: Callable[[Record], None],
        max_note_sentences: int | None = None,
        chunk: int = CHUNK_RECORDS,
    ) -> None:
        self.pool = pool
        self.max_note_sentences = max_note_sentences  # may be changed until the first submit()
        self._score = score
        self._on_prepared = on_prepared
        self._chunk = chunk
        self._pending = PendingRecords()

    def limit_sentences(self, max_note_sentences: int | None) -> None:
        self.max_note_sentences = max_note_sentences

    def start(self) -> None:
        self.pool.start()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """See :meth:`HostPool.wait_ready`."""
        return self.pool.wait_ready(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self.pool.stop(timeout)

    def alive(self) -> bool:
        return self.pool.alive()

    @property
    def failure(self) -> BaseException | None:
        return self.pool.failure

    @property
    def pending(self) -> int:
        """Records submitted and not yet prepared (their sentences are not known yet)."""
        return self._pending.count

    @property
    def heartbeat(self) -> float:
        """See :class:`~worker.prepare.PendingRecords` (a host process past its deadline is
        also killed: the worker stops)."""
        return self._pending.heartbeat

    def submit(self, records: list[Record]) -> None:
        if not records:
            return
        self._pending.add(len(records))
        for start in range(0, len(records), self._chunk):
            self.pool.submit(_PrepareRequest(self, records[start : start + self._chunk]))

    def _prepared(self, chunk: list[Record], live: list[Record], reply: Any) -> None:
        if reply is not None:
            notes = _rebuild(live, reply[1], reply[2], reply[3])
            for record in live:
                self._on_prepared(record)
            self._score(notes)
        self._pending.done(len(chunk))


@dataclass(slots=True)
class _PrepareRequest:
    owner: HostPreparation
    chunk: list[Record]
    live: list[Record] | None = None

    def message(self) -> tuple[Any, ...] | None:
        self.live = [record for record in self.chunk if not record.cancelled]
        if not self.live:
            return None
        items = [(record.source, record.value) for record in self.live]
        return ("prepare", self.owner.max_note_sentences, items)

    def done(self, reply: tuple[Any, ...] | None) -> None:
        self.owner._prepared(self.chunk, self.live or [], reply)


def _rebuild(records: list[Record], results: list[Any], ids: bytes, lengths: bytes) -> list[Note]:
    """The records' notes from a host process's reply; sentence ids are views of ``ids``."""
    flat = np.frombuffer(ids, dtype=np.int32)
    sizes = np.frombuffer(lengths, dtype=np.int32)
    ends = np.cumsum(sizes).tolist()
    starts = [0, *ends[:-1]]
    sentence = 0
    notes: list[Note] = []
    for record, (failure, skipped, summaries) in zip(records, results, strict=True):
        record.skipped = skipped
        if failure is not None:
            record.notes = []
            record.fail(InvalidEvent(*failure))
        else:
            record.notes = []
            for key, retraction, count, rules, payload in summaries:
                event = NoteEvent(fields={}, body="", key=key, retraction=retraction)
                note = Note(record=record, event=event, rules=rules, payload=payload)
                note.expect(count)
                note.jobs = [
                    SentenceJob(note, index, cast(Sequence[int], flat[starts[at] : ends[at]]))
                    for index, at in enumerate(range(sentence, sentence + count))
                ]
                sentence += count
                record.notes.append(note)
        record.unscored = len(record.notes)
        notes.extend(record.notes)
    return notes


class Renderer(Protocol):
    """Turns ready records into what to produce, handing them out in the order submitted."""

    def submit(self, records: Iterable[Record]) -> None: ...

    def take(self) -> Iterator[tuple[Record, list[Outgoing]]]: ...


class InlineRenderer:
    """Renders on the calling thread (one host process: the worker itself)."""

    def __init__(self, *, provenance: Provenance, include_text: bool) -> None:
        self._provenance = provenance
        self._include_text = include_text
        self._done: deque[tuple[Record, list[Outgoing]]] = deque()

    def submit(self, records: Iterable[Record]) -> None:
        for record in records:
            outs = outgoing(record, provenance=self._provenance, include_text=self._include_text)
            self._done.append((record, outs))

    def take(self) -> Iterator[tuple[Record, list[Outgoing]]]:
        while self._done:
            yield self._done.popleft()


@dataclass(slots=True)
class _Rendering:
    record: Record
    outs: list[Outgoing] | None = None


class HostRenderer:
    """Renders notes prepared by host processes in those processes; a dead letter, or a record
    without notes, is rendered inline. Results are handed out in submission order."""

    def __init__(
        self, *, pool: HostPool, provenance: Provenance, include_text: bool, chunk: int = 32
    ) -> None:
        self._pool = pool
        self._provenance = provenance
        self._include_text = include_text
        self._chunk = chunk
        self._queue: deque[_Rendering] = deque()

    @property
    def pending(self) -> int:
        """Records submitted and not yet handed out."""
        return len(self._queue)

    def submit(self, records: Iterable[Record]) -> None:
        remote: list[_Rendering] = []
        for record in records:
            entry = _Rendering(record)
            self._queue.append(entry)
            if record.failure is not None or not _all_remote(record.notes):
                entry.outs = outgoing(
                    record, provenance=self._provenance, include_text=self._include_text
                )
            else:
                remote.append(entry)
        for start in range(0, len(remote), self._chunk):
            self._pool.submit(_RenderRequest(self, remote[start : start + self._chunk]))

    def take(self) -> Iterator[tuple[Record, list[Outgoing]]]:
        while self._queue and self._queue[0].outs is not None:
            entry = self._queue.popleft()
            if entry.outs is not None and not entry.record.cancelled:  # else: revoked meanwhile
                yield entry.record, entry.outs


def _all_remote(notes: Sequence[Note]) -> bool:
    return all(note.payload is not None for note in notes) and bool(notes)


@dataclass(slots=True)
class _RenderRequest:
    owner: HostRenderer
    entries: list[_Rendering]

    def message(self) -> tuple[Any, ...]:
        records = [
            (
                entry.record.source,
                [
                    (note.payload, np.asarray(note.scores, dtype=np.float64).tobytes())
                    for note in entry.record.notes
                ],
            )
            for entry in self.entries
        ]
        return ("render", self.owner._provenance, self.owner._include_text, records)

    def done(self, reply: tuple[Any, ...] | None) -> None:
        assert reply is not None
        for entry, values in zip(self.entries, reply[1], strict=True):
            entry.outs = outgoing(
                entry.record,
                provenance=self.owner._provenance,
                include_text=self.owner._include_text,
                values=values,
            )
