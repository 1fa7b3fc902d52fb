"""``biomarker-worker config``: print the effective settings, secrets masked."""

from __future__ import annotations

import argparse
import sys

import yaml

from worker.cli.options import add_settings_options, settings_from_args


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
    yaml.safe_dump(settings.masked(), sys.stdout, sort_keys=True)
    return 0
