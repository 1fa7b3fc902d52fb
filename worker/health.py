"""Probe and metrics HTTP endpoints: ``/livez``, ``/healthz``, ``/readyz``, ``/metrics``.

Liveness means the main loop *and* the inference thread are making progress (a wedged model call
or a stuck poll loop fails it), not merely that the process exists. Readiness means able to work
(:func:`readiness`, the same for both runtimes): not stopping, the model loaded and running, the
brokers reachable, and the loop and the inference thread progressing within half the liveness
timeout. A member that owns no partitions (more pods than partitions) is ready, reason ``idle``;
``biomarker_assigned_partitions`` tells idle members apart.

The server is one asyncio event loop on its own thread, so an idle or slow client costs a socket,
not a thread. Each connection carries one request (``Connection: close``) and must complete it
within ``timeout_s``; at most ``max_connections`` are open. Probes are answered on the loop (they
must not block); ``/metrics`` is rendered on one extra thread, and concurrent scrapes share one
rendering. Client errors are logged as one warning line each, never as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from worker.errors import UsageError

log = structlog.get_logger(__name__)

_MAX_HEAD_BYTES = 8192
_BACKLOG = 128
_SHED_LOG_INTERVAL_S = 10.0
_TEXT = "text/plain; charset=utf-8"
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

Response = tuple[int, str, bytes]


@dataclass(frozen=True, slots=True)
class Probes:
    """Callables the server asks; each returns (ok, reason)."""

    live: Callable[[], tuple[bool, str]]
    ready: Callable[[], tuple[bool, str]]


def progress_probe(
    beats: Callable[[], list[float]], timeout_s: float
) -> Callable[[], tuple[bool, str]]:
    """Live while every heartbeat (monotonic seconds) is more recent than ``timeout_s``."""

    def probe() -> tuple[bool, str]:
        oldest = min(beats())
        age = time.monotonic() - oldest
        if age > timeout_s:
            return False, f"no progress for {age:.0f}s"
        return True, "ok"

    return probe


def readiness_window(liveness_timeout_s: float) -> float:
    """Heartbeats older than this make a member not ready: half the liveness timeout, so a
    stalled member leaves the Service well before it is restarted."""
    return liveness_timeout_s / 2


def readiness(
    *,
    stopping: bool,
    model_running: bool,
    brokers: str | None,
    heartbeats: Mapping[str, float],
    window_s: float,
    partitions: int,
    now: float | None = None,
) -> tuple[bool, str]:
    """Ready when able to work; (ready, reason), the first failing condition named.

    ``model_running``: the model is loaded and the inference thread runs it. ``brokers``: why
    the brokers cannot be used, None when they can. ``heartbeats``: monotonic times each named
    thread last made progress. Owning no ``partitions`` is ready, reason ``idle``.
    """
    if stopping:
        return False, "stopping"
    if not model_running:
        return False, "model not running"
    if brokers is not None:
        return False, brokers
    now = time.monotonic() if now is None else now
    for name, beat in heartbeats.items():
        age = now - beat
        if age > window_s:
            return False, f"no progress for {age:.0f}s ({name})"
    if not partitions:
        return True, "idle"
    return True, "ok"


class HealthServer:
    """The probe and metrics server; it binds in the constructor (``port=0`` picks a free port).

    ``timeout_s`` bounds a connection from accept to the end of its response. When
    ``max_connections`` are open, a new connection replaces the oldest one still waiting for its
    request, or is closed at once if none is waiting.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        probes: Probes,
        registry: CollectorRegistry,
        max_connections: int = 256,
        timeout_s: float = 5.0,
    ) -> None:
        self._probes = probes
        self._registry = registry
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        dualstack = host == "::" and socket.has_dualstack_ipv6()
        self._sock = socket.create_server(
            (host, port), family=family, backlog=_BACKLOG, dualstack_ipv6=dualstack
        )
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_loop_error)
        self._thread = threading.Thread(target=self._loop.run_forever, name="health", daemon=True)
        self._renderer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-metrics")
        self._rendering: asyncio.Future[bytes] | None = None
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.Task[None]] = set()
        self._waiting: dict[asyncio.Task[None], None] = {}  # still reading; oldest first
        self._shed = 0
        self._shed_logged = float("-inf")

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def start(self) -> HealthServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection; idempotent."""
        if self._thread.is_alive():
            closing = asyncio.run_coroutine_threadsafe(self._close(), self._loop)
            with contextlib.suppress(TimeoutError):  # a probe that never returns: leave it be
                closing.result(timeout=5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()
        self._sock.close()
        self._renderer.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, sock=self._sock, limit=_MAX_HEAD_BYTES, backlog=_BACKLOG
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._open:
            task.cancel()
        await asyncio.gather(*self._open, return_exceptions=True)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._open) >= self._max_connections:
            self._shed_one()
            if not self._waiting:
                writer.transport.abort()
                return
            oldest = next(iter(self._waiting))
            self._forget(oldest)
            oldest.cancel()
        self._open.add(task)
        self._waiting[task] = None
        try:
            await self._exchange(task, reader, writer)
        except asyncio.CancelledError:
            pass  # replaced at the cap, or the server stops: end quietly
        finally:
            self._forget(task)
            writer.transport.abort()  # the response, if any, is already in the kernel's buffer

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._open.discard(task)
        self._waiting.pop(task, None)

    async def _exchange(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        phase = "request"
        try:
            async with asyncio.timeout(self._timeout_s):
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    head = b""  # larger than _MAX_HEAD_BYTES
                self._waiting.pop(task, None)
                phase = "response"
                method, response = await self._answer(head, client)
                status, content_type, body = response
                writer.transport.set_write_buffer_limits(high=0)  # drain() waits for all of it
                writer.write(_head(status, content_type, len(body)))
                if method != "HEAD":
                    writer.write(body)
                await writer.drain()
        except TimeoutError:
            log.warning("health_timeout", client=client, phase=phase, timeout_s=self._timeout_s)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:  # a connection closed without a byte is a TCP check: not worth a line
                log.warning("health_request_incomplete", client=client, received=len(exc.partial))
        except OSError as exc:
            log.warning("health_client_gone", client=client, phase=phase, error=type(exc).__name__)

    async def _answer(self, head: bytes, client: str) -> tuple[str, Response]:
        """The request's method and the response to it."""
        if not head:
            log.warning("health_bad_request", client=client, received=_MAX_HEAD_BYTES)
            return "", _text(431, "request head too large")
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            log.warning("health_bad_request", client=client, received=len(head))
            return "", _text(400, "bad request")
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return method, _text(405, "method not allowed")
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return method, await self._metrics()
        if path in ("/livez", "/healthz"):
            return method, _probe(self._probes.live)
        if path == "/readyz":
            return method, _probe(self._probes.ready)
        return method, _text(404, "not found")

    async def _metrics(self) -> Response:
        """Render the registry on the renderer thread; scrapes that arrive meanwhile share it."""
        if self._rendering is None or self._rendering.done():
            self._rendering = self._loop.run_in_executor(
                self._renderer, generate_latest, self._registry
            )
        try:
            return 200, CONTENT_TYPE_LATEST, await asyncio.shield(self._rendering)
        except Exception as exc:
            log.warning("health_metrics_failed", error=type(exc).__name__)
            return _text(500, "metrics failed")

    def _shed_one(self) -> None:
        """Count a connection dropped at the cap; log the count at most every 10 s."""
        self._shed += 1
        now = time.monotonic()
        if now - self._shed_logged >= _SHED_LOG_INTERVAL_S:
            log.warning(
                "health_connections_shed", dropped=self._shed, max_connections=self._max_connections
            )
            self._shed, self._shed_logged = 0, now


def _probe(probe: Callable[[], tuple[bool, str]]) -> Response:
    try:
        ok, reason = probe()
    except Exception as exc:
        log.warning("health_probe_failed", error=type(exc).__name__)
        ok, reason = False, f"probe failed: {type(exc).__name__}"
    return _text(200 if ok else 503, reason)


def _text(status: int, text: str) -> Response:
    return status, _TEXT, f"{text}\n".encode()


def _head(status: int, content_type: str, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Anything the loop itself reports (e.g. accept() out of file descriptors): one line."""
    exc = context.get("exception")
    log.warning(
        "health_loop_error",
        message=str(context.get("message", "")),
        error=type(exc).__name__ if exc is not None else None,
    )


def serve_probes(
    *,
    host: str,
    port: int | None,
    heartbeats: Callable[[], list[float]],
    liveness_timeout_s: float,
    readiness: Callable[[], tuple[bool, str]],
    registry: CollectorRegistry,
) -> HealthServer | None:
    """Start the probe and metrics server for a runtime (None when ``port`` is unset)."""
    if port is None:
        return None
    probes = Probes(live=progress_probe(heartbeats, liveness_timeout_s), ready=readiness)
    try:
        server = HealthServer(host=host, port=port, probes=probes, registry=registry).start()
    except OSError as exc:  # the port is taken, or the host does not resolve
        raise UsageError(
            f"cannot serve probes and metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None
    log.info("health_server_started", port=server.port)
    return server
