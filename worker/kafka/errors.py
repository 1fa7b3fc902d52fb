"""Which Kafka errors stop the worker, whether the brokers answer, and where both are recorded.

librdkafka reports client-wide errors through ``error_cb`` (on the polling thread) and failed
deliveries through delivery reports; both land in :class:`KafkaErrors`. The loop calls
:meth:`KafkaErrors.check` every iteration and exits non-zero on a fatal one.

Broker reachability (for readiness): ``_ALL_BROKERS_DOWN`` or ``_TRANSPORT`` from ``error_cb``
marks the brokers unreachable; librdkafka retries by itself and reports no "up again" event, so
the mark is cleared by the next sign of life: a statistics report (``stats_cb``, every
:data:`STATS_INTERVAL_MS`, from both clients whether or not records flow, which matters for an
idle member) that shows a broker connection in state ``UP``, or the start-up metadata answer.
Each client serves its own errors and statistics in order, so a client's report of an outage
always comes after its last report of an ``UP`` connection from before it.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from confluent_kafka import KafkaError

from worker.errors import FatalError
from worker.metrics import Metrics

log = structlog.get_logger("worker.kafka")

_FATAL_CODES = {
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
}
#: Fatal only until the brokers first answered: a TLS handshake that fails then (an untrusted
#: broker certificate, a client certificate the broker wants) is configuration; once connected,
#: librdkafka also reports some connection drops during a handshake this way, and retries.
_FATAL_BEFORE_CONNECTED = {KafkaError._SSL}
#: Connections lost: the brokers count as unreachable until the next sign of life.
_LINK_DOWN = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT}
#: How often librdkafka reports statistics; a recovery is seen at most this late.
STATS_INTERVAL_MS = 5_000


class KafkaErrors:
    """Collects the first fatal Kafka error; logs the others as one-line warnings and counts
    every one (``biomarker_kafka_errors_total{code}``) when given ``metrics``."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.fatal: FatalError | None = None
        self._metrics = metrics
        self._connected = False
        #: The error that marked the brokers unreachable, until the next sign of life.
        self.unreachable: str | None = None

    @property
    def connected(self) -> bool:
        """The brokers answered at least once (the start-up metadata request)."""
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value:
            self.alive()
        else:
            self._connected = False

    def hooks(self) -> dict[str, Any]:
        """librdkafka properties that route its errors and statistics here."""
        return {
            "error_cb": self.on_error,
            "stats_cb": self.on_stats,
            "statistics.interval.ms": STATS_INTERVAL_MS,
        }

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``."""
        if self._metrics is not None:
            self._metrics.kafka_errors.labels(code=error.name()).inc()
        code = error.code()
        configuration = not self._connected and code in _FATAL_BEFORE_CONNECTED
        if error.fatal() or code in _FATAL_CODES or configuration:
            self.stop(FatalError(f"kafka: {error.str()}"))
            return
        if code in _LINK_DOWN:
            self.unreachable = error.name()
        log.warning(
            "kafka_error", code=error.name(), error=error.str(), retriable=error.retriable()
        )

    def on_stats(self, stats: str) -> None:
        """librdkafka's ``stats_cb``: a broker connection in state ``UP`` is a sign of life.
        Read only while the brokers are marked unreachable (otherwise it costs nothing)."""
        if self.unreachable is None:
            return
        try:
            brokers = json.loads(stats).get("brokers") or {}
        except (ValueError, AttributeError):
            return
        if any(isinstance(b, dict) and b.get("state") == "UP" for b in brokers.values()):
            self.alive()

    def alive(self) -> None:
        """The brokers answered: they are reachable again (or for the first time)."""
        self._connected = True
        if self.unreachable is not None:
            log.info("kafka_brokers_reachable", after=self.unreachable)
            self.unreachable = None

    def brokers_problem(self) -> str | None:
        """Why the brokers cannot be used now, or None when they can."""
        if not self._connected:
            return "brokers not reached yet"
        if self.unreachable is not None:
            return f"brokers unreachable ({self.unreachable})"
        return None

    def stop(self, error: FatalError) -> None:
        """Record a reason to exit (the first one wins)."""
        if self.fatal is None:
            self.fatal = error

    def check(self) -> None:
        if self.fatal is not None:
            raise self.fatal
