"""``biomarker-worker run``: the consumer-group worker."""

from __future__ import annotations

import argparse

import structlog

from worker.cli.options import add_settings_options, settings_from_args
from worker.errors import FatalError
from worker.logs import configure_logging
from worker.pipeline import EXIT_FATAL, Pipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="consume notes from Kafka and publish enriched events (until SIGTERM)"
    )
    add_settings_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    configure_logging(settings.log_level)
    log = structlog.get_logger("worker.run")
    try:
        from worker.model.loader import load_classifier, provenance_for

        model = load_classifier(settings)
        pipeline = Pipeline(
            settings=settings, model=model, provenance=provenance_for(model, settings)
        )
    except FatalError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_FATAL
    log.info(
        "model_loaded",
        model=model.info.name,
        version=model.info.version,
        sha256=model.info.sha256[:12],
        device=model.info.device,
        dtype=model.info.dtype,
    )
    pipeline.install_signal_handlers()
    return pipeline.run()
