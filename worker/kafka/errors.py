"""Which Kafka errors stop the worker, and the one place they are recorded.

librdkafka reports client-wide errors through ``error_cb`` (on the polling thread) and failed
deliveries through delivery reports; both land in :class:`KafkaErrors`. The loop calls
:meth:`KafkaErrors.check` every iteration and exits non-zero on a fatal one.
"""

from __future__ import annotations

import structlog
from confluent_kafka import KafkaError

from worker.errors import FatalError

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


class KafkaErrors:
    """Collects the first fatal Kafka error; logs the others as one-line warnings."""

    def __init__(self) -> None:
        self.fatal: FatalError | None = None
        self.connected = False  # the brokers answered the start-up metadata request

    def on_error(self, error: KafkaError) -> None:
        """librdkafka's ``error_cb``."""
        code = error.code()
        configuration = not self.connected and code in _FATAL_BEFORE_CONNECTED
        if error.fatal() or code in _FATAL_CODES or configuration:
            self.stop(FatalError(f"kafka: {error.str()}"))
        else:
            log.warning(
                "kafka_error", code=error.name(), error=error.str(), retriable=error.retriable()
            )

    def stop(self, error: FatalError) -> None:
        """Record a reason to exit (the first one wins)."""
        if self.fatal is None:
            self.fatal = error

    def check(self) -> None:
        if self.fatal is not None:
            raise self.fatal
