"""The single ``biomarker-worker`` entry point.

Each sub-command lives in its own module exposing ``register(subparsers)``, which adds a parser and
sets ``handler`` to a function ``(argparse.Namespace) -> int``. Errors a user can fix (bad flags,
bad configuration, unreadable files) print one line and exit 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from worker import __version__
from worker.errors import FatalError, UsageError

#: Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "worker.cli.run",
    "worker.cli.classify",
    "worker.cli.extract",
    "worker.cli.demo",
    "worker.cli.replay",
    "worker.cli.redrive",
    "worker.cli.show_config",
    "worker.cli.build_dataset",
    "worker.cli.train",
    "worker.cli.soup",
    "worker.cli.evaluate",
    "worker.cli.bench",
    "worker.cli.chaos",
)

EXIT_USAGE = 2
EXIT_FATAL = 1


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments in one line (no usage dump) and exits 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="biomarker-worker",
        description="Flag biomarker mentions in clinical-note sentences, from Kafka or files.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
    except UsageError as exc:
        for line in str(exc).splitlines() or [""]:  # a ConfigError has one line per problem
            sys.stderr.write(f"biomarker-worker {args.command}: error: {line}\n")
        return EXIT_USAGE
    except FatalError as exc:  # a command that gave up (the run loops report their own)
        sys.stderr.write(f"biomarker-worker {args.command}: error: {exc}\n")
        return EXIT_FATAL
    except KeyboardInterrupt:
        return 130
    return result
