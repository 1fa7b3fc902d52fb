"""The probe and metrics server over real sockets: load, bad clients, endpoints, shutdown."""

from __future__ import annotations

import asyncio
import select
import socket
import statistics
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog.testing
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worker.errors import UsageError
from worker.health import HealthServer, Probes, progress_probe, serve_probes

CLIENT_TIMEOUT_S = 5.0
MakeServer = Callable[..., HealthServer]


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("test_things", "Things counted.", registry=registry).inc(3)
    return registry


@pytest.fixture()
def make_server() -> Iterator[MakeServer]:
    servers: list[HealthServer] = []

    def make(**kwargs: Any) -> HealthServer:
        kwargs.setdefault(
            "probes", Probes(live=lambda: (True, "ok"), ready=lambda: (True, "ready"))
        )
        kwargs.setdefault("registry", _registry())
        server = HealthServer(host="127.0.0.1", port=0, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes, float]:
    """Send ``raw``; the status, headers, body and seconds until the server closed."""
    started = time.perf_counter()
    with _connect(port) as sock:
        sock.sendall(raw)
        data = _read_all(sock)
    took = time.perf_counter() - started
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        headers[name] = value
    return int(lines[0].split(" ")[1]), headers, body, took


def _get(port: int, path: str, method: str = "GET") -> tuple[int, bytes, float]:
    raw = f"{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode()
    status, _, body, took = _request(port, raw)
    return status, body, took


def _closed_by_server(sock: socket.socket, within_s: float = CLIENT_TIMEOUT_S) -> bool:
    """True once the server has closed ``sock`` (EOF or reset) within ``within_s``."""
    readable, _, _ = select.select([sock], [], [], within_s)
    if not readable:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _wait_for(events: Sequence[Mapping[str, Any]], name: str) -> None:
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    while not any(event["event"] == name for event in events):
        assert time.monotonic() < deadline, f"no {name} event in {events}"
        time.sleep(0.02)


class _SlowCollector(Collector):
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def collect(self) -> Iterable[Metric]:
        time.sleep(self.delay_s)
        yield GaugeMetricFamily("test_slow", "Rendered slowly.", value=1)


def test_probes_answer_while_200_idle_connections_are_held(make_server: MakeServer) -> None:
    server = make_server()
    threads_before = threading.active_count()
    idle = [_connect(server.port) for _ in range(200)]
    try:
        time.sleep(0.2)  # let the server accept them all
        for path, expected in (("/readyz", b"ready\n"), ("/livez", b"ok\n")):
            status, body, took = _get(server.port, path)
            print(f"{path} with 200 idle connections held: {took * 1000:.1f} ms")
            assert (status, body) == (200, expected)
        assert threading.active_count() <= threads_before + 1
    finally:
        for sock in idle:
            sock.close()


def test_200_concurrent_metrics_requests_and_a_probe_are_all_answered(
    make_server: MakeServer,
) -> None:
    registry = _registry()
    server = make_server(registry=registry)
    expected = generate_latest(registry)

    async def get(path: str) -> tuple[bytes, float]:
        started = time.perf_counter()
        async with asyncio.timeout(30):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
        return data, time.perf_counter() - started

    async def burst() -> tuple[list[tuple[bytes, float]], tuple[bytes, float]]:
        scrapes = [asyncio.create_task(get("/metrics")) for _ in range(200)]
        await asyncio.sleep(0.01)
        probe = await get("/readyz")
        return await asyncio.gather(*scrapes), probe

    scrapes, (probe, probe_s) = asyncio.run(burst())
    seconds = [took for _, took in scrapes]
    print(
        f"/metrics x200 concurrent: p50 {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms; /readyz meanwhile {probe_s * 1000:.0f} ms"
    )
    assert probe.startswith(b"HTTP/1.1 200 ") and probe.endswith(b"\r\n\r\nready\n")
    for data, _ in scrapes:
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.partition(b"\r\n\r\n")[2] == expected


def test_a_slow_metrics_collector_does_not_hold_up_probes(make_server: MakeServer) -> None:
    registry = _registry()
    registry.register(_SlowCollector(delay_s=2.0))
    server = make_server(registry=registry)
    with ThreadPoolExecutor(max_workers=1) as pool:
        scrape = pool.submit(_get, server.port, "/metrics")
        time.sleep(0.3)
        status, body, took = _get(server.port, "/livez")
        print(f"/livez while /metrics renders for 2 s: {took * 1000:.1f} ms")
        assert (status, body) == (200, b"ok\n")
        assert not scrape.done()
        status, body, _ = scrape.result(timeout=30)
    assert status == 200
    assert b"test_slow 1.0" in body


def test_endpoints(make_server: MakeServer) -> None:
    registry = _registry()
    server = make_server(
        probes=Probes(
            live=progress_probe(lambda: [time.monotonic() - 120], 60.0),
            ready=lambda: (False, "no partitions assigned"),
        ),
        registry=registry,
    )
    port = server.port
    assert _get(port, "/nope")[:2] == (404, b"not found\n")
    assert _get(port, "/livez")[:2] == (503, b"no progress for 120s\n")
    assert _get(port, "/healthz")[:2] == (503, b"no progress for 120s\n")
    assert _get(port, "/readyz?verbose=1")[:2] == (503, b"no partitions assigned\n")
    assert _get(port, "/readyz", method="HEAD")[:2] == (503, b"")
    assert _get(port, "/readyz", method="POST")[0] == 405
    status, headers, body, _ = _request(port, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert headers["Connection"] == "close"
    assert body == generate_latest(registry)
    assert b"test_things_total 3.0" in body


def test_a_probe_that_raises_answers_503(make_server: MakeServer) -> None:
    def broken() -> tuple[bool, str]:
        raise RuntimeError("boom")

    server = make_server(probes=Probes(live=lambda: (True, "ok"), ready=broken))
    with structlog.testing.capture_logs() as logs:
        assert _get(server.port, "/readyz")[:2] == (503, b"probe failed: RuntimeError\n")
    assert logs == [
        {"event": "health_probe_failed", "error": "RuntimeError", "log_level": "warning"}
    ]
    assert _get(server.port, "/livez")[:2] == (200, b"ok\n")


def test_malformed_and_oversized_requests_are_refused(make_server: MakeServer) -> None:
    server = make_server()
    assert _request(server.port, b"NONSENSE\r\n\r\n")[0] == 400
    assert _request(server.port, b"GET /readyz SPDY/3\r\n\r\n")[0] == 400
    huge = b"GET /readyz HTTP/1.1\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
    assert _request(server.port, huge)[0] == 431
    assert _get(server.port, "/readyz")[:2] == (200, b"ready\n")


def test_clients_that_hang_up_leave_no_traceback(
    make_server: MakeServer, capfd: pytest.CaptureFixture[str]
) -> None:
    registry = _registry()
    registry.register(_SlowCollector(delay_s=0.3))
    server = make_server(registry=registry)
    with structlog.testing.capture_logs() as logs:
        with _connect(server.port) as sock:  # half a request, then gone
            sock.sendall(b"GET /readyz HTT")
        _wait_for(logs, "health_request_incomplete")
        with _connect(server.port) as sock:  # gone before the response is ready
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        with _connect(server.port) as sock:  # the same with a reset
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with _connect(server.port):  # a TCP check: connects and closes, says nothing
            pass
        time.sleep(0.6)  # the renderings finish; their answers meet closed sockets
        for _ in range(3):
            assert _get(server.port, "/readyz")[:2] == (200, b"ready\n")
            assert _get(server.port, "/metrics")[0] == 200
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    assert "Error" not in out + err
    events = [event["event"] for event in logs]
    assert events.count("health_request_incomplete") == 1
    assert set(events) <= {"health_request_incomplete", "health_client_gone"}
    assert len(events) <= 3
    assert all(event["log_level"] == "warning" for event in logs)
    assert all("exc_info" not in event and "exception" not in event for event in logs)


def test_idle_and_trickling_clients_are_dropped_after_the_timeout(
    make_server: MakeServer,
) -> None:
    server = make_server(timeout_s=0.5)
    with structlog.testing.capture_logs() as logs, _connect(server.port) as idle:
        started = time.perf_counter()
        assert _closed_by_server(idle)
        print(f"idle connection dropped after {time.perf_counter() - started:.2f} s")
        with _connect(server.port) as trickle:
            trickle.sendall(b"GET /readyz HTTP/1.1\r\n")
            started = time.perf_counter()
            dropped = False
            while not dropped and time.perf_counter() - started < CLIENT_TIMEOUT_S:
                try:
                    trickle.sendall(b"X")
                except OSError:
                    break
                dropped = _closed_by_server(trickle, within_s=0.1)
            took = time.perf_counter() - started
        print(f"trickling connection dropped after {took:.2f} s")
        assert took < CLIENT_TIMEOUT_S
        _wait_for(logs, "health_timeout")
    assert all(event["event"] == "health_timeout" for event in logs)
    assert logs[0]["phase"] == "request"
    assert _get(server.port, "/readyz")[:2] == (200, b"ready\n")


def test_at_the_cap_a_new_connection_replaces_the_oldest_waiting_one(
    make_server: MakeServer,
) -> None:
    server = make_server(max_connections=4)
    idle = []
    try:
        for _ in range(4):
            idle.append(_connect(server.port))
            time.sleep(0.05)  # accepted in this order
        with structlog.testing.capture_logs() as logs:
            assert _get(server.port, "/readyz")[:2] == (200, b"ready\n")
        assert _closed_by_server(idle[0])
        assert not any(_closed_by_server(sock, within_s=0.2) for sock in idle[1:])
        assert logs[0]["event"] == "health_connections_shed"
    finally:
        for sock in idle:
            sock.close()


def test_at_the_cap_with_none_waiting_a_new_connection_is_closed_at_once(
    make_server: MakeServer,
) -> None:
    registry = _registry()
    registry.register(_SlowCollector(delay_s=1.5))
    server = make_server(registry=registry, max_connections=2)
    with ThreadPoolExecutor(max_workers=2) as pool:
        scrapes = [pool.submit(_get, server.port, "/metrics") for _ in range(2)]
        time.sleep(0.4)  # both requests read: the server renders for them
        started = time.perf_counter()
        with _connect(server.port) as extra:
            assert _closed_by_server(extra, within_s=1.0)
        print(f"connection over the cap closed after {time.perf_counter() - started:.3f} s")
        assert [scrape.result(timeout=30)[0] for scrape in scrapes] == [200, 200]
    assert _get(server.port, "/readyz")[:2] == (200, b"ready\n")


def test_stop_is_prompt_closes_connections_and_frees_the_port(make_server: MakeServer) -> None:
    server = make_server()
    port = server.port
    assert _get(port, "/livez")[0] == 200
    held = [_connect(port) for _ in range(20)]
    time.sleep(0.1)
    started = time.perf_counter()
    server.stop()
    took = time.perf_counter() - started
    print(f"stop() with 20 open connections: {took * 1000:.1f} ms")
    assert took < 5
    assert all(_closed_by_server(sock) for sock in held)
    for sock in held:
        sock.close()
    with pytest.raises(ConnectionRefusedError):
        _connect(port)
    server.stop()  # idempotent
    again = HealthServer(
        host="127.0.0.1",
        port=port,
        probes=Probes(live=lambda: (True, "ok"), ready=lambda: (True, "ready")),
        registry=_registry(),
    ).start()
    try:
        assert _get(port, "/readyz")[:2] == (200, b"ready\n")
    finally:
        again.stop()


def test_stop_without_start_releases_the_port() -> None:
    probes = Probes(live=lambda: (True, "ok"), ready=lambda: (True, "ok"))
    server = HealthServer(host="127.0.0.1", port=0, probes=probes, registry=_registry())
    port = server.port
    server.stop()
    HealthServer(host="127.0.0.1", port=port, probes=probes, registry=_registry()).stop()


def test_a_taken_probe_port_is_a_one_line_usage_error(make_server: MakeServer) -> None:
    taken = make_server()
    with pytest.raises(
        UsageError, match=f"cannot serve probes and metrics on 127.0.0.1:{taken.port}"
    ):
        serve_probes(
            host="127.0.0.1",
            port=taken.port,
            heartbeats=lambda: [time.monotonic()],
            liveness_timeout_s=60,
            readiness=lambda: (True, "ok"),
            registry=CollectorRegistry(),
        )
