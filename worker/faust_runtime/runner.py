"""``biomarker-worker run --runtime faust``: the same job as the confluent worker, on faust.

Start-up as :mod:`worker.cli.run` does it: load and warm the model (SIGTERM meanwhile exits
cleanly), check the topics and derive the per-note budgets from their limits, start the probe
and metrics server, then run a ``faust.Worker``. SIGTERM: faust stops fetching, the agent
drains in-flight work within ``drain_timeout_s``, commits what was delivered and leaves the group.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
from typing import TYPE_CHECKING, Any

import structlog

from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.faust_runtime.agent import add_classifier_agent, app_settings, engine_of, refusal
from worker.faust_runtime.engine import Engine
from worker.faust_runtime.logbridge import bridge_library_logs
from worker.health import serve_probes
from worker.kafka.errors import KafkaErrors
from worker.kafka.group_lag import GroupLagCollector
from worker.kafka.topics import Budgets, budgets_for, check_topics
from worker.logs import kafka_logger
from worker.metrics import Metrics, set_build_info

if TYPE_CHECKING:
    from worker.model.classifier import SequenceClassifier

log = structlog.get_logger("worker.run")

EXIT_OK = 0
EXIT_FATAL = 1


def require_faust() -> None:
    """One clear line (exit 2) when faust-streaming is not installed."""
    try:
        import faust  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            "--runtime faust needs faust-streaming: pip install faust-streaming"
        ) from exc


def startup_budgets(settings: WorkerSettings) -> Budgets:
    """The project's start-up checks: topics exist, budgets from their ``max.message.bytes``."""
    from confluent_kafka import Producer

    from worker.kafka.clients import common_config
    from worker.kafka.ports import _described_limits
    from worker.logs import kafka_logger

    config = {**common_config(settings), "logger": kafka_logger()}
    producer = Producer(config)
    topics = [item.topic for item in settings.input_topics]
    wanted = [*topics, settings.output_topic, settings.dlq_topic]
    check_topics(producer, wanted, errors=KafkaErrors(), bootstrap=settings.bootstrap_servers)
    limits = _described_limits(config, [settings.output_topic, settings.dlq_topic])
    return budgets_for(settings, limits, output_topic=settings.output_topic)


def run(settings: WorkerSettings) -> int:
    """Run the faust worker until SIGTERM; return the exit code."""
    require_faust()
    problem = refusal(settings)
    if problem is not None:
        raise UsageError(f"faust runtime: {problem}")
    import faust

    bridge_library_logs(logging.DEBUG if settings.log_level == "debug" else logging.WARNING)
    stop_early = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_early.set())
    metrics = Metrics()
    try:
        from worker.loading import load_classifier

        model = load_classifier(settings)
        model.predict(["warm-up sentence"])
        budgets = startup_budgets(settings)
    except FatalError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_FATAL
    log.info("model_loaded", model=model.info.name, sha256=model.info.sha256[:12], runtime="faust")
    set_build_info(metrics, runtime="faust", model=model.info)
    if stop_early.is_set():
        log.info("stopped_before_start")
        return EXIT_OK
    from worker.faust_runtime.producer import IdempotentApp

    # faust creates ``<datadir>/v1/tables`` even with the memory store; by default in the working
    # directory, which is read-only in the chart's pods. A private temporary directory instead.
    with tempfile.TemporaryDirectory(prefix="biomarker-faust-") as datadir:
        app = IdempotentApp(settings.group_id, datadir=datadir, **app_settings(settings))
        return _serve(
            faust,
            app,
            settings=settings,
            model=model,
            metrics=metrics,
            budgets=budgets,
            stop_early=stop_early,
        )


def _serve(
    faust: Any,
    app: Any,
    *,
    settings: WorkerSettings,
    model: SequenceClassifier,
    metrics: Metrics,
    budgets: Budgets,
    stop_early: threading.Event,
) -> int:
    agent = add_classifier_agent(app, settings, model, metrics=metrics, budgets=budgets)
    engine = engine_of(agent)
    server = _health_server(settings, engine, metrics)
    # The group's lag as aiokafka reads: uncommitted records too (faust runs no transactions).
    group_lag = GroupLagCollector(
        settings, metrics, read_committed=False, hooks={"logger": kafka_logger()}
    )
    group_lag.start()
    try:
        # a signal while the app was built: faust's own handlers are not installed yet
        code = EXIT_OK if stop_early.is_set() else _run_worker(faust, app)
    finally:
        group_lag.stop()
        if server is not None:
            server.stop()
    failure = getattr(app, "biomarker_failure", None) or engine.failure
    if failure is not None:
        code = EXIT_FATAL
    if unfinished := engine.model_calls_unfinished():
        # a model call that never returns: the interpreter would wait for its thread for good
        log.warning("model_calls_unfinished", batches=unfinished)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if failure is not None:
        return code
    log.info("worker_stopped")
    return code


def _run_worker(faust: Any, app: Any) -> int:
    worker = faust.Worker(
        app, loglevel="WARNING", quiet=True, override_logging=False, redirect_stdouts=False
    )
    worker.spinner = None  # it writes terminal escapes into the JSON log
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return EXIT_OK


def _health_server(settings: WorkerSettings, engine: Engine, metrics: Metrics) -> Any:
    return serve_probes(
        host=settings.metrics_host,
        port=settings.metrics_port,
        heartbeats=engine.heartbeats,
        liveness_timeout_s=settings.liveness_timeout_s,
        readiness=engine.readiness,
        registry=metrics.registry,
    )
