"""A real Apache Kafka (KRaft) on 127.0.0.1 for tests, the demo and benchmarks.

The broker's jars come from Maven Central (``org.apache.kafka:kafka_2.13`` and its dependencies,
fetched once with ``mvn dependency:copy-dependencies`` into the cache dir) and run on the local
Java 17+. Each node is a combined broker+controller with its own free ports and a temporary data
directory; ``nodes=3`` gives a three-node quorum for fault tests. Processes are stopped by PID.

The jars come from :mod:`devkit.kafka_jars` and topics are made by
:func:`devkit.kafka_admin.create_topics`; both are re-exported here.

Command line: ``python -m devkit.localkafka fetch`` pre-fetches the jars;
``python -m devkit.localkafka run`` starts one node and prints its bootstrap address.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

__all__ = [
    "KAFKA_VERSION",
    "KafkaStartError",
    "LocalKafka",
    "Node",
    "create_topics",
    "find_keytool",
    "free_port",
    "kafka_libs",
]

from devkit import lifeline
from devkit.kafka_admin import create_topics
from devkit.kafka_jars import KAFKA_VERSION, KafkaStartError, kafka_libs
from devkit.localtls import BrokerTls, make_broker_tls

_START_TIMEOUT_S = 90.0
#: Starts tried when a chosen port was taken by another process before the broker bound it.
_BIND_ATTEMPTS = 3

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = {level}
rootLogger.appenderRef.file.ref = file
"""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 now (all bound at once, so none repeats)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(slots=True)
class Node:
    """One combined broker+controller process."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"


@dataclass(slots=True)
class LocalKafka:
    """A running local cluster; use as a context manager or call :meth:`stop`."""

    nodes: list[Node]
    workdir: Path
    libs: Path
    owns_workdir: bool
    sasl_users: dict[str, str] = field(default_factory=dict)
    java: str = "java"
    tls: BrokerTls | None = None
    #: Nodes get SIGKILL when the thread that started them ends (see :mod:`devkit.lifeline`).
    die_with_parent: bool = False

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    @classmethod
    def start(
        cls,
        *,
        nodes: int = 1,
        workdir: Path | None = None,
        sasl_users: dict[str, str] | None = None,
        tls: bool = False,
        heap_mb: int = 512,
        die_with_parent: bool = False,
    ) -> LocalKafka:
        """Fetch (if needed), format and start ``nodes`` KRaft nodes; wait until they answer.

        ``sasl_users`` turns the client listener into SASL_PLAINTEXT with SCRAM-SHA-256/512
        credentials for those users; ``tls`` puts it behind TLS with a throwaway CA
        (:mod:`devkit.localtls`; SSL, or SASL_SSL with users). The controller listener stays
        PLAINTEXT. ``die_with_parent`` ties the nodes' lives to the calling thread's, for runs
        that may be killed outright (:mod:`devkit.lifeline`).
        """
        for attempt in range(1, _BIND_ATTEMPTS + 1):
            try:
                return cls._start_once(
                    nodes=nodes,
                    workdir=workdir,
                    sasl_users=sasl_users,
                    tls=tls,
                    heap_mb=heap_mb,
                    die_with_parent=die_with_parent,
                )
            except PortTaken:
                # The ports were free when chosen; another process took one since. Only a fresh
                # directory of our own can be formatted again.
                if workdir is not None or attempt == _BIND_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    @classmethod
    def _start_once(
        cls,
        *,
        nodes: int,
        workdir: Path | None,
        sasl_users: dict[str, str] | None,
        tls: bool,
        heap_mb: int,
        die_with_parent: bool,
    ) -> LocalKafka:
        java = shutil.which("java", path=_java_path())
        if java is None:
            raise KafkaStartError("Java 17+ is needed to run the local Kafka broker")
        libs = kafka_libs()
        owns = workdir is None
        root = Path(tempfile.mkdtemp(prefix="biomarker-kafka-")) if workdir is None else workdir
        ports = free_ports(2 * nodes)
        members = [
            Node(
                node_id=i + 1,
                port=ports[2 * i],
                controller_port=ports[2 * i + 1],
                directory=root / f"node-{i + 1}",
            )
            for i in range(nodes)
        ]
        cluster = cls(
            nodes=members,
            workdir=root,
            libs=libs,
            owns_workdir=owns,
            sasl_users=dict(sasl_users or {}),
            java=java,
            die_with_parent=die_with_parent,
        )
        cluster_id = _cluster_id()
        try:
            if tls:
                keytool = find_keytool()
                if keytool is None:
                    raise KafkaStartError("the JDK's keytool is needed for a TLS listener")
                cluster.tls = make_broker_tls(root / "tls", keytool)
            for node in members:
                cluster._write_config(node)
                cluster._format(node, cluster_id)
            for node in members:
                cluster._launch(node, heap_mb)
            cluster.wait_ready()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _write_config(self, node: Node) -> None:
        node.directory.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in self.nodes)
        replicas = min(3, len(self.nodes))
        client_protocol = self.client_protocol
        lines = [
            "process.roles=broker,controller",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={voters}",
            f"listeners=CLIENT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{node.port}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map=CLIENT:{client_protocol},CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=CLIENT",
            f"log.dirs={node.directory / 'data'}",
            "num.partitions=1",
            "auto.create.topics.enable=false",
            f"default.replication.factor={replicas}",
            f"offsets.topic.replication.factor={replicas}",
            "offsets.topic.num.partitions=6",
            f"transaction.state.log.replication.factor={replicas}",
            f"transaction.state.log.min.isr={min(2, replicas)}",
            "transaction.state.log.num.partitions=6",
            f"share.coordinator.state.topic.replication.factor={replicas}",
            f"share.coordinator.state.topic.min.isr={min(2, replicas)}",
            "group.initial.rebalance.delay.ms=0",
            "log.flush.interval.messages=9223372036854775807",
        ]
        if self.sasl_users:
            lines += [
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
                "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
                "listener.name.client.scram-sha-256.sasl.jaas.config="
                + _scram_jaas(*next(iter(self.sasl_users.items()))),
                "listener.name.client.scram-sha-512.sasl.jaas.config="
                + _scram_jaas(*next(iter(self.sasl_users.items()))),
            ]
        if self.tls is not None:
            prefix = "listener.name.client.ssl"
            lines += [
                f"{prefix}.{kind}.{key}={value}"
                for kind in ("keystore", "truststore")
                for key, value in (
                    ("type", "PKCS12"),
                    ("location", self.tls.store),
                    ("password", self.tls.password),
                )
            ]
            lines.append(f"{prefix}.key.password={self.tls.password}")
        node.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (node.directory / "log4j2.properties").write_text(
            _LOG4J2.format(path=node.log_path, level="INFO"), encoding="utf-8"
        )

    def _java_command(self, node: Node, main: str, heap_mb: int) -> list[str]:
        return [
            self.java,
            f"-Xmx{heap_mb}m",
            "-Xss1m",
            "-XX:+UseG1GC",
            # C1 only: on a small machine shared with the worker, the C2 compiler threads cost
            # more CPU over a run of minutes than the faster code saves (measured on 2 cores:
            # broker CPU over a 600-note backlog pass 1.39 -> 0.99 s, request handling unchanged).
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp",
            f"{self.libs}/*",
            main,
        ]

    def _format(self, node: Node, cluster_id: str) -> None:
        command = [
            *self._java_command(node, "kafka.tools.StorageTool", 256),
            "format",
            "-t",
            cluster_id,
            "-c",
            str(node.config_path),
            "--ignore-formatted",
        ]
        for user, password in self.sasl_users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                command += ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise KafkaStartError(
                f"formatting KRaft storage failed: {result.stderr.strip()[-500:]}"
            )

    def _launch(self, node: Node, heap_mb: int) -> None:
        with (node.directory / "stdout.log").open("ab") as out:
            node.process = subprocess.Popen(
                [
                    *(lifeline.die_with_parent() if self.die_with_parent else []),
                    *self._java_command(node, "kafka.Kafka", heap_mb),
                    str(node.config_path),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Block until every running node accepts a metadata request."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is None:
                continue
            admin = None
            while True:
                if node.process.poll() is not None:
                    logs = [node.directory / "stdout.log", node.log_path]
                    taken = any(_mentions_bind(log) for log in logs)
                    raise (PortTaken if taken else KafkaStartError)(
                        f"Kafka node {node.node_id} exited with {node.process.returncode}: "
                        + "".join(_tail(log) for log in logs)
                    )
                if _port_open(node.port):
                    admin = admin or AdminClient(
                        {**self.client_config(), "bootstrap.servers": f"127.0.0.1:{node.port}"}
                    )
                    try:
                        metadata = admin.list_topics(timeout=2)
                        if len(metadata.brokers) >= self._running_count():
                            break
                    except Exception:  # listener up, metadata not served yet
                        pass
                if time.monotonic() > deadline:
                    raise KafkaStartError(f"Kafka node {node.node_id} did not answer in {timeout}s")
                time.sleep(0.3)

    def _running_count(self) -> int:
        return sum(1 for node in self.nodes if node.process is not None)

    @property
    def client_protocol(self) -> str:
        """The client listener's security protocol."""
        secured = "SSL" if self.tls is not None else "PLAINTEXT"
        return f"SASL_{secured}" if self.sasl_users else secured

    def client_config(self) -> dict[str, str]:
        """librdkafka settings a client needs to reach this cluster."""
        config = {"bootstrap.servers": self.bootstrap_servers}
        if self.client_protocol != "PLAINTEXT":
            config["security.protocol"] = self.client_protocol
        if self.tls is not None:
            config["ssl.ca.location"] = str(self.tls.ca_pem)
        if self.sasl_users:
            user, password = next(iter(self.sasl_users.items()))
            config.update(
                {
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": user,
                    "sasl.password": password,
                }
            )
        return config

    def stop_node(self, node_id: int, *, kill: bool = False) -> None:
        """Stop one node by PID (SIGKILL with ``kill``), keeping its data for a restart."""
        node = self.nodes[node_id - 1]
        process = node.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        node.process = None

    def start_node(self, node_id: int, heap_mb: int = 512) -> None:
        node = self.nodes[node_id - 1]
        if node.process is None:
            self._launch(node, heap_mb)

    def stop(self) -> None:
        # Signal every node first, then wait: a node stopped last alone would otherwise wait for
        # a controller quorum that is already gone.
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            self.stop_node(node.node_id)
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own ``Uuid.randomUuid``, never one that starts
    with "-": the storage tool's argument parser would read it as an option (1 start in 64)."""
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _scram_jaas(user: str, password: str) -> str:
    return (
        "org.apache.kafka.common.security.scram.ScramLoginModule required "
        f'username="{user}" password="{password}";'
    )


def find_keytool() -> str | None:
    """The JDK's keytool (``$JAVA_HOME/bin`` first, then ``PATH``)."""
    return shutil.which("keytool", path=_java_path())


def _java_path() -> str:
    java_home = os.environ.get("JAVA_HOME")
    path = os.environ.get("PATH", "")
    return f"{java_home}/bin:{path}" if java_home else path


class PortTaken(KafkaStartError):
    """A node could not bind a chosen port: another process took it after it was chosen."""


def _mentions_bind(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return "Address already in use" in text


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.localkafka")
    parser.add_argument("action", choices=["fetch", "run"])
    parser.add_argument("--nodes", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            print(kafka_libs())
            return 0
        stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        # the brokers die with this thread if it is killed outright
        with LocalKafka.start(nodes=args.nodes, die_with_parent=True) as cluster:
            print(cluster.bootstrap_servers, flush=True)
            # Blocked (after the brokers started: children inherit the mask), these signals wait
            # for sigwait instead of ending the process before the brokers are stopped.
            signal.pthread_sigmask(signal.SIG_BLOCK, stops)
            signal.sigwait(stops)
    except KafkaStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
