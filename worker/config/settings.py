"""The worker's settings and their validation (:class:`WorkerSettings`).

Each value is checked on its own by its field, and together by ``_consistent``: topology,
security (SASL and TLS settings that fit the protocol, credentials that fit the mechanism) and,
while :func:`~worker.config.load_settings` validates, the files and directories settings name.
Where the values come from is :mod:`worker.config.loading`'s job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from worker.backend_choices import backend_problem
from worker.config.secrets import JWT_BEARER, JWT_BEARER_KEYS, OIDC_REQUIRED, is_secret_client_key
from worker.inputs import InputFormat

ENV_PREFIX = "BIOMARKER_"

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]

#: A Hugging Face hub id (``org/name``), as ``model_path`` may give instead of a directory.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")

_SASL_SETTINGS = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_oauthbearer_config")
_SSL_SETTINGS = (
    "ssl_ca_location",
    "ssl_certificate_location",
    "ssl_key_location",
    "ssl_key_password",
)
_PASSWORD_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

#: The devices ``device`` names: ``cuda:<index>`` is a CUDA device by its index (0, 1, ...).
DEVICE = re.compile(r"auto|cpu|cuda(:(0|[1-9][0-9]*))?")

#: Set by :func:`load_settings` while it validates: check that the files settings name exist.
CHECK_FILES: ContextVar[bool] = ContextVar("biomarker_check_files", default=False)


#: librdkafka's ``transaction.timeout.ms``: the worker raises it to fit its settings (exactly-once)
#: unless ``kafka_extra`` sets it.
TRANSACTION_TIMEOUT_MS = 60_000
#: The brokers' default ``transaction.max.timeout.ms``: a longer transaction timeout is refused.
TRANSACTION_MAX_TIMEOUT_MS = 900_000
#: What a transaction may still need after its open window: the producer flush and the
#: offset and commit calls (their timeout in :mod:`worker.kafka.commits`).
TRANSACTION_COMMIT_MS = 30_000


class InconsistentSettings(ValueError):
    """Settings that are valid one by one but not together: ``(setting, rule)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(rule for _, rule in problems))
        self.problems = tuple(problems)


#: librdkafka properties the worker sets from its own (validated) settings: ``kafka_extra``
#: may not set them, so it cannot bypass those settings' limits.
OWNED_CLIENT_KEYS = {
    "bootstrap.servers": "bootstrap_servers",
    "group.id": "group_id",
    "group.instance.id": "group_instance_id",
    "group.protocol": "group_protocol",
    "auto.offset.reset": "auto_offset_reset",
    "session.timeout.ms": "session_timeout_ms",
    "max.poll.interval.ms": "max_poll_interval_ms",
    "auto.commit.interval.ms": "commit_interval_ms",
    "client.id": "client_id",
    "transactional.id": "transactional_id",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "sasl.oauthbearer.config": "sasl_oauthbearer_config",
    "ssl.ca.location": "ssl_ca_location",
    "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location",
    "ssl.key.password": "ssl_key_password",
    "ssl.endpoint.identification.algorithm": "ssl_endpoint_identification_algorithm",
}


class InputTopic(BaseModel):
    """One input topic and the format of its records (``mapping``: the mapping file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    format: InputFormat = "note"
    mapping: str | None = None

    @field_validator("topic")
    @classmethod
    def _topic_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @model_validator(mode="after")
    def _mapping_given(self) -> InputTopic:
        if (self.format == "mapping") != (self.mapping is not None):
            raise ValueError("a mapping file is given exactly when the format is mapping")
        return self


class WorkerSettings(BaseSettings):
    """All settings of the worker. Field names map to ``BIOMARKER_<NAME>`` variables.

    :func:`load_settings` reads the file, the environment and flags; constructing the class
    directly validates the given values only (the environment is not read, files not checked).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="forbid",
        validate_default=True,
        frozen=True,
        allow_inf_nan=False,  # a timeout of inf overflows thread joins and pipe polls
    )

    # --- Kafka topology
    bootstrap_servers: str = "127.0.0.1:9092"
    input_topic: str = "clinical-notes"
    input_format: InputFormat = Field(
        default="note",
        description="Format of input_topic's records: note (the project's JSON event), hl7v2, "
        "fhir, cda, mapping (with input_mapping) or auto.",
    )
    input_mapping: str | None = Field(
        default=None, description="Mapping file (YAML/JSON) of input_format mapping."
    )
    inputs: tuple[InputTopic, ...] = Field(
        default=(),
        description="Several input topics, each with its format (replaces input_topic, "
        "input_format and input_mapping), e.g. one HL7 v2 feed and one FHIR feed.",
    )
    output_topic: str = "clinical-notes-enriched"
    dlq_topic: str = "clinical-notes-dlq"
    group_id: str = "biomarker-worker"
    group_instance_id: str | None = Field(
        default=None, description="Static membership id (e.g. the pod name of a StatefulSet)."
    )
    group_protocol: Literal["classic", "consumer"] = "classic"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # The upper bounds of the client settings are librdkafka's own ranges: a value beyond would
    # be refused when the clients are built (or cut to 32 bits on the way to librdkafka).
    session_timeout_ms: int = Field(
        default=15_000,
        ge=1_000,
        le=3_600_000,
        description="How long the group waits for a silent member before moving its partitions. "
        "Heartbeats run on librdkafka's own thread, never blocked by note processing, so a "
        "short timeout only shortens the stall after a crash. At most max_poll_interval_ms "
        "(group_protocol classic).",
    )
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000, le=86_400_000)
    commit_interval_ms: int = Field(default=1_000, ge=100, le=86_400_000)
    client_id: str = "biomarker-worker"
    runtime: Literal["confluent", "faust"] = Field(
        default="confluent",
        description="Streaming runtime of `run`: confluent (confluent-kafka, the default) or "
        "faust (faust-streaming; at-least-once only, see docs/FAUST.md).",
    )
    processing_guarantee: Literal["at-least-once", "exactly-once"] = Field(
        default="at-least-once",
        description="exactly-once: outputs and input offsets commit in one producer transaction "
        "(downstream consumers must read with isolation.level=read_committed).",
    )
    transactional_id: str | None = Field(
        default=None,
        description="exactly-once only; default <group_id>-<group_instance_id or random>. Keep "
        "it stable per replica (StatefulSet) so a restart fences its predecessor at once.",
    )

    # --- Kafka security (passed through to librdkafka)
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauthbearer_config: SecretStr | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: SecretStr | None = None
    ssl_endpoint_identification_algorithm: Literal["https", "none"] = "https"
    kafka_extra: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka properties for consumer and producer (JSON object in env).",
    )

    # --- Model and inference
    model_path: str | None = Field(
        default=None, description="Checkpoint directory or hub id; unset = embedded default model."
    )
    model_sha256: str | None = Field(
        default=None,
        pattern=r"^\s*[0-9a-fA-F]{12,64}\s*$",
        description="Expected content hash of the model: its full sha256, or the first 12 or more "
        "hex digits (the start-up log and biomarker_build_info show it); start-up refuses a model "
        "whose hash differs.",
    )
    backend: str = Field(
        default="torch",
        description="Inference engine: torch (int8 and ONNX Runtime were measured and rejected).",
    )
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    lexicon_rules: bool = Field(
        default=True,
        description="A sentence a curated lexicon rule names a biomarker in is labelled 1 "
        "whatever the model's score; its output names the rule (docs/MODEL_CARD.md). False: "
        "the model alone.",
    )
    max_sentence_tokens: int = Field(default=256, ge=8, le=8192)
    torch_threads: int | None = Field(default=None, ge=1)
    host_processes: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description="Processes that decode, segment, tokenise and render (1: the worker's own "
        "threads); unset: 1 on CPU, on a GPU the usable cores less 2, at most 4 (runtime "
        "confluent; faust keeps 1).",
    )
    token_budget: int | None = Field(
        default=None,
        ge=64,
        description="Max padded tokens per model batch; unset: 8,192 on CPU, 16,384 on a GPU.",
    )
    max_batch_sentences: int | None = Field(
        default=None,
        ge=1,
        description="Max sentences per model batch; unset: 256 on CPU, 4,096 on a GPU.",
    )
    max_wait_ms: float = Field(
        default=20.0,
        ge=0.0,
        le=60_000.0,
        description="How long waiting sentences may gather for the next batch while every model "
        "lane is busy (on a GPU, also while one is idle); an idle CPU lane takes them at once.",
    )
    score_cache_size: int = Field(
        default=32_768,
        ge=0,
        le=1_000_000,
        description="Sentences whose scores are kept by token ids, so a repeat (a template line, "
        "an amended or replayed note) skips the model; least recently used out first. About "
        "230 bytes per entry at 20 wordpieces, 1.2 KB at 256. 0: off.",
    )
    pack_sentences: bool = Field(
        default=True,
        description="Several sentences per row of a batch (BERT models): no padding waste, "
        "batches in arrival order; false: one padded row per sentence, batches sorted by length.",
    )
    include_sentence_text: bool = False
    include_note_text: bool = Field(
        default=True,
        description="Outputs of notes extracted from EHR formats carry the extracted text the "
        "sentence offsets index (the note format's own fields always pass through).",
    )

    # --- Input limits and flow control
    max_note_chars: int = Field(default=200_000, ge=1)
    max_note_sentences: int | None = Field(
        default=None,
        ge=1,
        description="A note that splits into more sentences goes to the dead-letter topic; "
        "unset: max_output_bytes / 100 (an output carries ~85 bytes per sentence).",
    )
    max_output_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="An enriched event larger than this goes to the dead-letter topic "
        "(output_too_large); unset: the output topic's max.message.bytes as the brokers report "
        "it at start-up. Set above that limit, the worker refuses to start.",
    )
    max_inflight_notes: int = Field(default=2_000, ge=1)
    poison_after_crashes: int = Field(
        default=3,
        ge=0,
        description="A record that crashed the worker this many times is dead-lettered as "
        "poison on the next attempt (counted in the committed offsets' metadata; at-least-once "
        "only); 0 turns the count off.",
    )
    max_inflight_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Pause fetching while this many bytes of input records are in flight.",
    )
    max_inflight_sentences: int = Field(
        default=50_000,
        ge=1,
        description="Pause fetching while this many prepared sentences wait for the model "
        "(bounds memory and time-to-drain when notes are long, whatever their count).",
    )
    consume_batch_size: int = Field(
        default=500, ge=1, le=1_000_000, description="Max records per consume call."
    )
    # Timeouts in seconds: finite (no inf) and at most a day, within what thread joins and
    # pipe polls take.
    drain_timeout_s: float = Field(default=25.0, ge=0.0, le=86_400.0)
    revoke_timeout_s: float = Field(default=10.0, ge=0.0, le=86_400.0)

    # --- Operations
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of /metrics, /livez, /readyz; unset = off."
    )
    metrics_host: str = Field(
        default="0.0.0.0",
        description="Address the probe/metrics server binds to; all interfaces by default, as the "
        "kubelet and Prometheus reach a pod on its IP. 127.0.0.1 = local only; :: = IPv6.",
    )
    liveness_timeout_s: float = Field(default=60.0, gt=0.0, le=86_400.0)

    @field_validator("bootstrap_servers", "input_topic", "output_topic", "dlq_topic", "group_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not DEVICE.fullmatch(value):
            raise ValueError("must be auto, cpu, cuda or cuda:<index>")
        return value

    @field_validator("backend")
    @classmethod
    def _supported_backend(cls, value: str) -> str:
        problem = backend_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("kafka_extra")
    @classmethod
    def _extra_not_owned(cls, value: dict[str, str]) -> dict[str, str]:
        owned = sorted(set(value) & set(OWNED_CLIENT_KEYS))
        if owned:
            setting = OWNED_CLIENT_KEYS[owned[0]]
            raise ValueError(
                f"{owned[0]!r} is set by the worker from its own validated setting; "
                f"use {ENV_PREFIX}{setting.upper()} instead"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WorkerSettings:
        problems = [
            *self._topology_problems(),
            *self._client_problems(),
            *self._security_problems(),
        ]
        if CHECK_FILES.get():
            problems += self._file_problems()
        if problems:
            raise InconsistentSettings(problems)
        return self

    def _topology_problems(self) -> Iterator[tuple[str, str]]:
        if not self.inputs and (self.input_format == "mapping") != bool(self.input_mapping):
            where = "input_mapping" if self.input_mapping else "input_format"
            yield where, "input_mapping is set exactly when input_format is mapping"
        topics = [item.topic for item in self.inputs] or [self.input_topic]
        where = "inputs" if self.inputs else "input_topic"
        if set(topics) & {self.output_topic, self.dlq_topic}:
            yield where, "input topics must differ from output_topic and dlq_topic"
        if len(set(topics)) != len(topics):
            yield where, "an input topic is listed twice in inputs"
        if self.runtime == "faust" and (self.host_processes or 1) > 1:
            yield "host_processes", "runtime faust prepares notes in its own process only"
        if self.runtime == "faust" and self.processing_guarantee == "exactly-once":
            yield (
                "runtime",
                "runtime faust supports at-least-once only (exactly-once is not proven on "
                "faust-streaming; see docs/FAUST.md)",
            )

    def _client_problems(self) -> Iterator[tuple[str, str]]:
        """Combinations librdkafka refuses when the clients are built, or the brokers later."""
        yield from self._transaction_problems()
        classic = self.group_protocol == "classic"  # session_timeout_ms is classic's only
        if classic and self.max_poll_interval_ms < self.session_timeout_ms:
            given = self.model_fields_set
            session_only = "session_timeout_ms" in given and "max_poll_interval_ms" not in given
            yield (
                "session_timeout_ms" if session_only else "max_poll_interval_ms",
                "max_poll_interval_ms must be at least session_timeout_ms",
            )

    def _transaction_problems(self) -> Iterator[tuple[str, str]]:
        """Exactly-once: a transaction stays open for commit_interval_ms, and through a drain
        or a revoke, and must commit within transaction.timeout.ms: past it the coordinator
        aborts it and fences the producer (exit 1, again after every restart). Unset, the
        timeout is raised to fit (:attr:`transaction_timeout_ms`) up to the brokers' default
        maximum; set in kafka_extra, it must fit."""
        if self.processing_guarantee != "exactly-once":
            return
        configured = self.kafka_extra.get("transaction.timeout.ms")
        window = self.transaction_window_ms
        if configured is None:
            if window <= TRANSACTION_MAX_TIMEOUT_MS:
                return
            limit = (
                f"the brokers' default transaction.max.timeout.ms ({TRANSACTION_MAX_TIMEOUT_MS} "
                "ms): lower them, or set transaction.timeout.ms in kafka_extra if the brokers "
                "allow more"
            )
        else:
            try:
                timeout = int(configured)
            except ValueError:
                return  # librdkafka refuses the value when the clients are built
            if window <= timeout:
                return
            limit = (
                f"transaction.timeout.ms ({timeout} ms, from kafka_extra): lower them, or raise "
                "transaction.timeout.ms (at most the brokers' transaction.max.timeout.ms, "
                f"{TRANSACTION_MAX_TIMEOUT_MS} by default)"
            )
        held = (
            "drain_timeout_s"
            if self.drain_timeout_s >= self.revoke_timeout_s
            else "revoke_timeout_s"
        )
        candidates = ("commit_interval_ms", held, "kafka_extra", "processing_guarantee")
        where = next((n for n in candidates if n in self.model_fields_set), "processing_guarantee")
        yield (
            where,
            "exactly-once keeps a transaction open up to commit_interval_ms + "
            f"max(drain_timeout_s, revoke_timeout_s) + {TRANSACTION_COMMIT_MS // 1000} s "
            f"({window} ms), more than {limit}",
        )

    @property
    def transaction_window_ms(self) -> int:
        """How long an exactly-once transaction may stay open: ``commit_interval_ms``, the
        longer of the drain and revoke deadlines, and the commit's own allowance."""
        held_ms = math.ceil(max(self.drain_timeout_s, self.revoke_timeout_s) * 1000)
        return self.commit_interval_ms + held_ms + TRANSACTION_COMMIT_MS

    @property
    def transaction_timeout_ms(self) -> int:
        """The producer's ``transaction.timeout.ms`` when kafka_extra does not set it:
        librdkafka's default, raised to :attr:`transaction_window_ms` when that is longer."""
        return max(TRANSACTION_TIMEOUT_MS, self.transaction_window_ms)

    def _security_problems(self) -> Iterator[tuple[str, str]]:
        protocol = self.security_protocol
        if not protocol.startswith("SASL"):
            for name in _SASL_SETTINGS:
                if self._has(name):
                    yield name, f"{name} is set but security_protocol {protocol} has no SASL"
        elif self.sasl_mechanism is None:
            yield "security_protocol", "sasl_mechanism is required when security_protocol is SASL_*"
        elif self.sasl_mechanism in _PASSWORD_MECHANISMS:
            missing = [name for name in ("sasl_username", "sasl_password") if not self._has(name)]
            if missing:
                needs = " and ".join(missing)
                yield "sasl_mechanism", f"sasl_mechanism {self.sasl_mechanism} needs {needs}"
        elif (oauth := self._oauthbearer_problem()) is not None:
            yield "sasl_mechanism", oauth
        if protocol not in ("SSL", "SASL_SSL"):
            for name in _SSL_SETTINGS:
                if self._has(name):
                    yield name, f"{name} is set but security_protocol {protocol} has no SSL"
        extra = self.kafka_extra
        has_cert = bool(self.ssl_certificate_location or extra.get("ssl.certificate.pem"))
        has_key = bool(self.ssl_key_location or extra.get("ssl.key.pem"))
        if self.ssl_certificate_location and not has_key:
            yield "ssl_certificate_location", "ssl_certificate_location needs ssl_key_location"
        if self.ssl_key_location and not has_cert:
            yield "ssl_key_location", "ssl_key_location needs ssl_certificate_location"

    def _has(self, name: str) -> bool:
        """Whether a setting is given a non-empty value."""
        value = getattr(self, name)
        return bool(value.get_secret_value() if isinstance(value, SecretStr) else value)

    def _oauthbearer_problem(self) -> str | None:
        """Why OAUTHBEARER cannot get a token: no config, and OIDC in kafka_extra incomplete."""
        extra = self.kafka_extra
        if self._has("sasl_oauthbearer_config") or extra.get("sasl.oauthbearer.config"):
            return None
        needs = "sasl_mechanism OAUTHBEARER needs sasl_oauthbearer_config"
        # Without a config the worker selects OIDC itself (worker/kafka/clients.py).
        if extra.get("sasl.oauthbearer.method", "oidc") != "oidc":
            return needs
        required = list(OIDC_REQUIRED)
        if extra.get("sasl.oauthbearer.grant.type") == JWT_BEARER:
            required = [OIDC_REQUIRED[0], JWT_BEARER_KEYS]
        missing = [" or ".join(keys) for keys in required if not any(extra.get(k) for k in keys)]
        if not missing:
            return None
        return f"{needs} or OIDC in kafka_extra (missing {', '.join(missing)})"

    def _file_problems(self) -> Iterator[tuple[str, str]]:
        """Files and directories the settings name that do not exist (where the worker runs)."""
        ca = self.ssl_ca_location
        if ca and ca != "probe" and not Path(ca).exists():  # a file or a directory of CAs
            yield "ssl_ca_location", f"ssl_ca_location {ca} does not exist"
        for name in ("ssl_certificate_location", "ssl_key_location"):
            location = getattr(self, name)
            if location and not Path(location).is_file():
                yield name, f"{name} {location} is not an existing file"
        model = self.model_path
        if model and not Path(model).is_dir() and not HUB_ID.fullmatch(model):
            yield (
                "model_path",
                f"model_path {model} is neither an existing directory nor a hub id (org/name)",
            )
        for number, item in enumerate(self.inputs):
            if item.mapping and not Path(item.mapping).is_file():
                yield "inputs", f"inputs[{number}].mapping {item.mapping} is not an existing file"
        mapping = self.input_mapping
        used = not self.inputs and self.input_format == "mapping"
        if used and mapping and not Path(mapping).is_file():
            yield "input_mapping", f"input_mapping {mapping} is not an existing file"

    @property
    def input_topics(self) -> tuple[InputTopic, ...]:
        """Every input topic with its format: ``inputs``, else the single ``input_topic``."""
        if self.inputs:
            return self.inputs
        only = InputTopic(
            topic=self.input_topic, format=self.input_format, mapping=self.input_mapping
        )
        return (only,)

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets replaced by ``***`` (for ``config`` and logs)."""
        shown: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(getattr(self, name), SecretStr):
                shown[name] = "***"
            elif name == "kafka_extra":
                shown[name] = {
                    key: ("***" if is_secret_client_key(key) else val) for key, val in value.items()
                }
            else:
                shown[name] = value
        return shown

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment and the file are read by load_settings, which knows every value's
        # source; constructing WorkerSettings directly takes the given values only.
        return (init_settings,)
