"""The worker's Kafka security settings as faust broker credentials (aiokafka underneath).

SSL: a TLS context from ``ssl_ca_location`` (else the system's CAs), the client certificate and
key when given, host-name checks unless ``ssl_endpoint_identification_algorithm=none``. SASL:
PLAIN and SCRAM-SHA-256/512 over PLAINTEXT or SSL. OAUTHBEARER needs a token provider that
aiokafka takes as code, so the faust runtime refuses it (:func:`unsupported`).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from worker.config import WorkerSettings
from worker.errors import UsageError


def unsupported(settings: WorkerSettings) -> str | None:
    """Why these security settings cannot be given to aiokafka, or None."""
    if settings.sasl_mechanism == "OAUTHBEARER":
        return "SASL OAUTHBEARER is not supported on the faust runtime; use the confluent runtime"
    return None


def tls_context(settings: WorkerSettings) -> ssl.SSLContext:
    """The client's TLS context from the ``ssl_*`` settings; :class:`UsageError` (one line)
    when a file cannot be read. ``ssl_ca_location`` may be a file, a directory of hashed CA
    certificates, or ``probe`` (librdkafka's word for the system's CAs)."""
    ca = settings.ssl_ca_location
    try:
        if ca is None or ca == "probe":
            context = ssl.create_default_context()
        elif Path(ca).is_dir():
            context = ssl.create_default_context(capath=ca)
        else:
            context = ssl.create_default_context(cafile=ca)
        if settings.ssl_certificate_location:
            password = settings.ssl_key_password
            context.load_cert_chain(
                settings.ssl_certificate_location,
                settings.ssl_key_location,
                password.get_secret_value() if password is not None else None,
            )
    except (OSError, ssl.SSLError) as exc:  # ssl.SSLError is an OSError; named for the reader
        raise UsageError(f"TLS settings: {type(exc).__name__}: {exc.strerror or exc}") from None
    if settings.ssl_endpoint_identification_algorithm == "none":
        context.check_hostname = False
    return context


def broker_credentials(settings: WorkerSettings) -> Any | None:
    """faust ``broker_credentials`` for ``settings`` (None for PLAINTEXT)."""
    import faust

    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = tls_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.sasl_password
    return faust.SASLCredentials(
        username=settings.sasl_username,
        password=password.get_secret_value() if password is not None else None,
        ssl_context=context,
        mechanism=settings.sasl_mechanism,
    )
