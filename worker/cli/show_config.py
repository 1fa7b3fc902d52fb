"""``biomarker-worker config``: print the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import sys

import yaml

from worker.cli.options import add_settings_options, settings_from_args
from worker.config import WorkerSettings
from worker.errors import UsageError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "config",
        help="validate and print the effective configuration (secrets masked)",
        description="Validate the configuration as run does at start-up and print the effective "
        "settings, secrets masked. Every problem is listed at once, one line each with its "
        "source; exit code 2 (see docs/CONFIGURATION.md).",
    )
    add_settings_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    check_runtime(settings)
    yaml.safe_dump(settings.masked(), sys.stdout, sort_keys=True)
    return 0


def check_runtime(settings: WorkerSettings) -> None:
    """The refusals ``run`` makes of valid settings before it loads a model, with its words: the
    faust runtime's; or the input decoders (a bad mapping file) and the Kafka clients (a client
    property the processing guarantee fixes, or one librdkafka refuses)."""
    from worker.inputs.decoding import decoders_for

    decoders_for(settings)  # UsageError for a mapping file that does not compile
    if settings.runtime == "faust":
        from worker.faust_runtime.agent import refusal

        problem = refusal(settings)
        if problem is not None:
            raise UsageError(f"faust runtime: {problem}")
        return
    from worker.kafka.ports import check_client_settings

    check_client_settings(settings)  # builds and closes the clients: nothing is produced
