"""Which librdkafka properties carry credentials, and what OAUTHBEARER without a config needs."""

from __future__ import annotations

#: Parts of a ``kafka_extra`` key that mark it as credential-bearing (masked by ``masked()``).
SECRET_KEY_WORDS = (
    "password",
    "passphrase",
    "secret",
    "token",
    "key",
    "credential",
    "oauthbearer.config",
    "jaas",
)
#: librdkafka properties that carry credentials, masked whatever :data:`SECRET_KEY_WORDS` says.
SECRET_CLIENT_KEYS = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.assertion.private.key.pem",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "sasl.jaas.config",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl.keystore.password",
        "ssl_key",
    }
)

#: OIDC client credentials in ``kafka_extra`` (librdkafka property and its alias), used when
#: OAUTHBEARER has no ``sasl_oauthbearer_config``; librdkafka requires all of them.
OIDC_REQUIRED = (
    ("sasl.oauthbearer.token.endpoint.url",),
    ("sasl.oauthbearer.client.id", "sasl.oauthbearer.client.credentials.client.id"),
    ("sasl.oauthbearer.client.secret", "sasl.oauthbearer.client.credentials.client.secret"),
)
#: With the JWT-bearer grant, a signing key replaces the client id and secret.
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_BEARER_KEYS = (
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.file",
)


def is_secret_client_key(key: str) -> bool:
    """Whether a librdkafka property may carry a credential (its value is never shown)."""
    lowered = key.lower()
    return lowered in SECRET_CLIENT_KEYS or any(word in lowered for word in SECRET_KEY_WORDS)
