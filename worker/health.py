"""HTTP endpoints for Kubernetes and Prometheus: ``/livez``, ``/readyz``, ``/metrics``.

Liveness means the main loop *and* the inference thread are making progress (a wedged model call
or a stuck poll loop fails it), not merely that the process exists. Readiness means the model is
loaded and warmed up and this member has partitions assigned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


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


class HealthServer:
    """A small threaded HTTP server (``port=0`` picks a free one)."""

    def __init__(
        self, *, host: str, port: int, probes: Probes, registry: CollectorRegistry
    ) -> None:
        handler = _handler(probes, registry)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(probes: Probes, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/livez", "/healthz"):
                self._probe(probes.live)
            elif path == "/readyz":
                self._probe(probes.ready)
            else:
                self._send(404, b"not found\n", "text/plain")

        def _probe(self, probe: Callable[[], tuple[bool, str]]) -> None:
            ok, reason = probe()
            self._send(200 if ok else 503, f"{reason}\n".encode(), "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Silence the default stderr access log (probes would flood it)."""

    return Handler
