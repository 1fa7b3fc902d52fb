"""``biomarker-worker run``: the consumer-group worker."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from types import FrameType

import structlog
from confluent_kafka import KafkaException

from worker.cli.options import add_settings_options, settings_from_args
from worker.cli.show_config import check_runtime
from worker.errors import FatalError, UsageError
from worker.health import serve_probes
from worker.kafka.ports import client_error
from worker.logs import configure_logging
from worker.metrics import set_build_info
from worker.pipeline import EXIT_FATAL, EXIT_OK, Pipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="consume notes from Kafka and publish enriched events (until SIGTERM)"
    )
    add_settings_options(parser)
    parser.add_argument(
        "--runtime",
        choices=["confluent", "faust"],
        help="streaming runtime (default: BIOMARKER_RUNTIME, else confluent); see docs/FAUST.md",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args, runtime=getattr(args, "runtime", None))
    configure_logging(settings.log_level)
    check_runtime(settings)  # a bad mapping file or client property: one line, before the model
    if settings.runtime == "faust":
        from worker.faust_runtime.runner import run as run_faust

        return run_faust(settings)
    log = structlog.get_logger("worker.run")
    stop_early = threading.Event()  # SIGTERM while the model loads: exit cleanly, join nothing
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop_early.set())
    try:
        from worker.loading import load_classifier, provenance_for

        model = load_classifier(settings)
        model.predict(["warm-up sentence"])
        pipeline = Pipeline(
            settings=settings, model=model, provenance=provenance_for(model, settings)
        )
    except FatalError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_FATAL
    except KafkaException as exc:  # a property refused only in use (kept as a safety net)
        raise UsageError(f"the Kafka client refused its settings: {client_error(exc)}") from None
    log.info(
        "model_loaded",
        model=model.info.name,
        version=model.info.version,
        sha256=model.info.sha256[:12],
        device=model.info.device,
        dtype=model.info.dtype,
    )
    set_build_info(pipeline.metrics, runtime="confluent", model=model.info)
    stop_on_signals(pipeline)
    if stop_early.is_set():
        log.info("stopped_before_start")
        return EXIT_OK
    server = serve_probes(
        host=settings.metrics_host,
        port=settings.metrics_port,
        heartbeats=pipeline.heartbeats,
        liveness_timeout_s=settings.liveness_timeout_s,
        readiness=pipeline.readiness,
        registry=pipeline.metrics.registry,
    )
    try:
        code = pipeline.run()
    finally:
        if server is not None:
            server.stop()
    exit_now_if_hung(pipeline, code)
    return code


def exit_now_if_hung(pipeline: Pipeline, code: int) -> None:
    """Exit at once with ``code`` when a client call or a model call is still stuck: tearing
    it down, or the interpreter's join of its thread, would block on that call for good."""
    if pipeline.hung:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def stop_on_signals(pipeline: Pipeline) -> None:
    """SIGTERM and SIGINT ask the pipeline to drain and exit (it logs ``stop_requested`` with
    the signal's name: the handler itself must not log, see :meth:`Pipeline.signalled`)."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        pipeline.signalled(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
