"""``biomarker-worker chaos``: the fault-injection run (development only).

The run lives in ``devkit/``, which only a source checkout has; its options are parsed there
(``biomarker-worker chaos --help``). Every argument after ``chaos`` is handed on unchanged.
"""

from __future__ import annotations

import argparse

from worker.cli.checkout import checkout_only


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "chaos",
        help="fault-injection run on a local 3-node Kafka cluster (source checkout only)",
        add_help=False,  # --help goes to the run's own parser
        prefix_chars="+",  # so that "--notes" etc. reach the remainder untouched
    )
    parser.add_argument("args", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    with checkout_only():
        from devkit.chaos import main
    return main(list(args.args))
