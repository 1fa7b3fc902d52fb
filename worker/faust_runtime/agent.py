"""The classifier as a faust agent: :func:`add_classifier_agent` adds it to any ``faust.App``.

Why faust's own acks are switched off for the input topics (``acks=False``): in faust-streaming
0.15.3 a stream acks an event when iteration moves past it, also when the agent raised; events
of an old generation or read while flow control is suspended are acked without being processed;
and the committed offset is computed from a list of acked offsets with gap heuristics that can
pass an offset not yet acked (docs/FAUST.md names the lines). Here offsets are the worker's own
data (:class:`~worker.kafka.offsets.OffsetTracker`) and are committed through faust's consumer
only once every output and dead letter of every earlier record is delivered.
"""

from __future__ import annotations

from typing import Any

import structlog

from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.events import Headers
from worker.faust_runtime.credentials import broker_credentials, unsupported
from worker.faust_runtime.engine import Engine, Incoming
from worker.kafka.offsets import PartitionKey
from worker.kafka.topics import Budgets, budgets_for
from worker.metrics import Metrics
from worker.pipeline import Model

log = structlog.get_logger(__name__)


def refusal(settings: WorkerSettings, app: Any | None = None) -> str | None:
    """Why this configuration cannot be run safely on faust, or None."""
    if settings.processing_guarantee == "exactly-once":
        return "exactly-once is not supported on faust (not proven); use the confluent runtime"
    if settings.group_protocol != "classic":
        return "group_protocol consumer (KIP-848) is not supported by aiokafka"
    security = unsupported(settings)
    if security is not None:
        return security
    if settings.kafka_extra:
        return "kafka_extra holds librdkafka properties, which the faust runtime cannot apply"
    guarantee = getattr(app.conf.processing_guarantee, "value", None) if app else "at_least_once"
    if guarantee != "at_least_once":
        return (
            "the faust app must use processing_guarantee at_least_once (exactly_once: not proven)"
        )
    return None


def app_settings(settings: WorkerSettings) -> dict[str, Any]:
    """faust.App keyword arguments the runtime pins (docs/FAUST.md says why)."""
    servers = ";".join(f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(","))
    session_s = settings.session_timeout_ms / 1000
    return {
        "broker": servers,
        "store": "memory://",
        "web_enabled": False,
        "autodiscover": False,
        "topic_allow_declare": False,
        "topic_disable_leader": True,
        "processing_guarantee": "at_least_once",
        "producer_acks": -1,
        "producer_max_request_size": 8_388_608,
        "consumer_auto_offset_reset": settings.auto_offset_reset,
        "consumer_group_instance_id": settings.group_instance_id or None,  # "": none, as librdkafka
        "broker_client_id": settings.client_id,
        "broker_session_timeout": session_s,
        "broker_heartbeat_interval": max(0.5, session_s / 5),
        "broker_request_timeout": max(40.0, session_s + 5),
        "broker_max_poll_interval": settings.max_poll_interval_ms / 1000,
        "broker_commit_interval": settings.commit_interval_ms / 1000,
        "stream_wait_empty": False,
        "broker_credentials": broker_credentials(settings),
    }


def add_classifier_agent(
    app: Any,
    settings: WorkerSettings,
    model: Model | None = None,
    *,
    metrics: Metrics | None = None,
    budgets: Budgets | None = None,
) -> Any:
    """Register the classifier on ``app`` (a ``faust.App``) and return its ``faust.Agent``.

    Reads ``settings.input_topics`` (faust acks off: offsets are committed by the agent once
    outputs are delivered), writes ``settings.output_topic`` and ``settings.dlq_topic``.
    ``model`` defaults to the configured one (:func:`worker.loading.load_classifier`). The
    agent drains in-flight work and commits in ``app.on_before_shutdown`` (SIGTERM).
    ``budgets`` (per note; ``biomarker-worker run --runtime faust`` reads the topics' limits)
    default to the settings' ``max_output_bytes`` and ``max_note_sentences``, else those of
    Kafka's default message size.
    """
    problem = refusal(settings, app)
    if problem is not None:
        raise UsageError(f"faust runtime: {problem}")
    if model is None:
        from worker.loading import load_classifier

        model = load_classifier(settings)
        model.predict(["warm-up sentence"])
    from worker.loading import provenance_for

    provenance = provenance_for(model, settings)  # type: ignore[arg-type]
    engine = Engine(
        settings=settings,
        model=model,
        provenance=provenance,
        send=_sender(app),
        commit=_committer(app),
        metrics=metrics,
        on_fatal=lambda exc: _crash(app, exc),
    )
    engine.apply_budgets(budgets or budgets_for(settings, {}, output_topic=settings.output_topic))
    inputs = [item.topic for item in settings.input_topics]
    topic = app.topic(*inputs, value_serializer="raw", key_serializer="raw", acks=False)
    _connect_signals(app, engine, set(inputs))

    async def biomarker_classifier(stream: Any) -> None:
        engine.start()
        async for event in stream.events():
            message = event.message
            await engine.accept(
                Incoming(
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    timestamp_ms=_millis(message.timestamp),
                    key=message.key,
                    value=message.value,
                    headers=_headers(message.headers),
                )
            )

    agent = app.agent(topic, name="biomarker-classifier", concurrency=1)(biomarker_classifier)
    agent.biomarker_engine = engine
    return agent


def engine_of(agent: Any) -> Engine:
    """The :class:`Engine` behind an agent from :func:`add_classifier_agent`."""
    engine: Engine = agent.biomarker_engine
    return engine


def _connect_signals(app: Any, engine: Engine, inputs: set[str]) -> None:
    async def revoked(_sender: Any, revoked: Any, **_kw: Any) -> None:
        keys: set[PartitionKey] = {(tp.topic, tp.partition) for tp in revoked if tp.topic in inputs}
        await engine.revoke(keys)

    async def assigned(_sender: Any, assigned: Any, **_kw: Any) -> None:
        mine: set[PartitionKey] = {
            (tp.topic, tp.partition) for tp in assigned if tp.topic in inputs
        }
        engine.assigned(mine)
        log.info("partitions_assigned", partitions=sorted(map(list, mine)))
        acking = set(app.topics.acking_topics) & inputs
        if acking:  # another agent acks these topics: faust would commit past our work
            _crash(app, FatalError(f"another agent reads {sorted(acking)} with acks on"))

    async def before_shutdown(_sender: Any, **_kw: Any) -> None:
        await engine.drain()

    app.on_partitions_revoked.connect(revoked, weak=False)
    app.on_partitions_assigned.connect(assigned, weak=False)
    app.on_before_shutdown.connect(before_shutdown, weak=False)


def _sender(app: Any) -> Any:
    async def send(
        topic: str, key: bytes | None, value: bytes | None, headers: Headers | None
    ) -> Any:
        # The producer directly: Topic.send inside an agent would attach the message to the
        # current event and publish it only when faust commits that offset (never, acks off).
        return await app.producer.send(topic, key, value, None, None, headers)

    return send


def _committer(app: Any) -> Any:
    from faust.types import TP

    async def commit(offsets: dict[PartitionKey, int]) -> bool:
        tps = {TP(topic, partition): offset for (topic, partition), offset in offsets.items()}
        return bool(await app.consumer._commit(tps))

    return commit


def _crash(app: Any, exc: FatalError) -> None:
    app.biomarker_failure = exc
    app.loop.create_task(app.crash(exc))


def _millis(timestamp: float | None) -> int | None:
    return int(timestamp * 1000) if timestamp else None


def _headers(raw: Any) -> Headers | None:
    if not raw:
        return None
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(name), value) for name, value in items]
