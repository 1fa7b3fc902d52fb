"""Worker settings: what they are (:mod:`~worker.config.settings`), where they come from
(:mod:`~worker.config.loading`) and which client properties are secret
(:mod:`~worker.config.secrets`). docs/CONFIGURATION.md has the rules.
"""

from worker.config.loading import FILE_SUFFIX, NOT_SETTINGS, load_settings
from worker.config.secrets import SECRET_CLIENT_KEYS, SECRET_KEY_WORDS, is_secret_client_key
from worker.config.settings import (
    ENV_PREFIX,
    OWNED_CLIENT_KEYS,
    InputTopic,
    SaslMechanism,
    SecurityProtocol,
    WorkerSettings,
)

__all__ = [
    "ENV_PREFIX",
    "FILE_SUFFIX",
    "NOT_SETTINGS",
    "OWNED_CLIENT_KEYS",
    "SECRET_CLIENT_KEYS",
    "SECRET_KEY_WORDS",
    "InputTopic",
    "SaslMechanism",
    "SecurityProtocol",
    "WorkerSettings",
    "is_secret_client_key",
    "load_settings",
]
