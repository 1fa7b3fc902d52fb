"""A throwaway certificate authority and broker certificate for the local Kafka's TLS listener.

Made with the JDK's ``keytool`` (the broker needs Java anyway): a CA, a broker key pair whose
certificate the CA signs for ``127.0.0.1`` and ``localhost`` (so clients can verify the host),
both in one PKCS12 store the broker uses as key store and trust store, and the CA as PEM for
librdkafka's ``ssl.ca.location``. Valid for two days; nothing here is meant for production.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SAN = "SAN=ip:127.0.0.1,dns:localhost"


class TlsSetupError(RuntimeError):
    """keytool failed to make the local certificates."""


@dataclass(frozen=True, slots=True)
class BrokerTls:
    """The files a TLS listener and its clients need."""

    ca_pem: Path
    store: Path  # PKCS12: the broker's key and CA-signed certificate, and the CA as trusted
    password: str


def make_broker_tls(directory: Path, keytool: str) -> BrokerTls:
    """Create the CA and the broker certificate in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    ca_store, store = directory / "ca.p12", directory / "broker.p12"
    ca_pem, request = directory / "ca.pem", directory / "broker.csr"
    signed = directory / "broker.pem"
    common = ["-storetype", "PKCS12", "-storepass", password, "-keypass", password]
    steps = [
        ["-genkeypair", "-alias", "ca", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
         "-dname", "CN=biomarker-worker local test CA", "-ext", "bc:c", "-keystore", str(ca_store),
         *common],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-file", str(ca_pem),
         "-storepass", password],
        ["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity",
         "2", "-dname", "CN=localhost", "-ext", _SAN, "-keystore", str(store), *common],
        ["-certreq", "-alias", "broker", "-keystore", str(store), "-file", str(request),
         "-storepass", password],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", str(ca_store), "-infile", str(request),
         "-outfile", str(signed), "-ext", _SAN, "-validity", "2", "-storepass", password],
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(ca_pem), "-keystore",
         str(store), "-storepass", password],
        ["-importcert", "-alias", "broker", "-file", str(signed), "-keystore", str(store),
         "-storepass", password],
    ]  # fmt: skip
    for step in steps:
        result = subprocess.run([keytool, *step], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip()[-300:]
            raise TlsSetupError(f"keytool {step[0]} failed: {detail}")
    return BrokerTls(ca_pem=ca_pem, store=store, password=password)
