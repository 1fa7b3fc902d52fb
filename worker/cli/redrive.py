"""``biomarker-worker redrive``: send dead letters back to their input topic after a fix."""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

import orjson
import structlog

from worker.cli.options import add_settings_options, settings_from_args
from worker.errors import FatalError, UsageError
from worker.kafka.dead_letters import (
    DEFAULT_MAX_REDRIVES,
    Filters,
    parse_reason,
    parse_time,
    unknown_reasons,
)
from worker.kafka.redrive import GROUP_SUFFIX, RedriveOptions, Redriver, Summary, redrive
from worker.logs import configure_logging

EXIT_FATAL = 1
EXIT_INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "redrive",
        help="re-produce dead letters to their input topic (after a fix), then exit",
        description="Reads the dead-letter topic up to its end offsets at start, from this "
        "command's own group, and re-produces the original key, value and headers of the dead "
        "letters that match every filter. Offsets are committed after delivery; a second run "
        "resumes. Prints a one-line JSON summary.",
    )
    which = parser.add_argument_group("which dead letters")
    which.add_argument(
        "--reason",
        action="append",
        default=[],
        metavar="REASON",
        help="dead-letter reason (x-biomarker-error-class), e.g. schema_violation (repeatable)",
    )
    which.add_argument(
        "--since",
        metavar="TIME",
        help="dead letters written at or after TIME (ISO-8601, "
        "epoch ms, or an age like 30m, 2h, 7d)",
    )
    which.add_argument("--until", metavar="TIME", help="dead letters written before TIME")
    which.add_argument(
        "--source-partition",
        action="append",
        default=[],
        type=_partition,
        metavar="N",
        help="partition of the input topic the record was read from (repeatable)",
    )
    which.add_argument(
        "--source-topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="input topic the record was read from (repeatable)",
    )
    how = parser.add_argument_group("re-drive")
    how.add_argument(
        "--to-topic", metavar="TOPIC", help="produce here instead of each record's source topic"
    )
    how.add_argument(
        "--max-redrives",
        type=_positive,
        default=DEFAULT_MAX_REDRIVES,
        metavar="N",
        help="skip records already re-driven N times (default %(default)s)",
    )
    how.add_argument(
        "--max-records", type=_positive, metavar="N", help="stop after reading N dead letters"
    )
    how.add_argument(
        "--group", metavar="GROUP", help=f"consumer group (default <group_id>{GROUP_SUFFIX})"
    )
    how.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would be re-driven (by reason and source partition); "
        "produce and commit nothing",
    )
    add_settings_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if since is not None and until is not None and since >= until:
        raise UsageError("--since must be before --until")
    group = args.group if args.group is not None else f"{settings.group_id}{GROUP_SUFFIX}"
    if not group.strip():
        raise UsageError("--group must not be empty")
    if group == settings.group_id:
        raise UsageError("--group must differ from the worker's group_id")
    if args.to_topic is not None and not args.to_topic.strip():
        raise UsageError("--to-topic must not be empty")
    if args.to_topic == settings.dlq_topic:
        raise UsageError("--to-topic must not be the dead-letter topic")
    reasons = frozenset(parse_reason(value) for value in args.reason)
    options = RedriveOptions(
        dlq_topic=settings.dlq_topic,
        group=group,
        filters=Filters(
            reasons=reasons,
            source_topics=frozenset(args.source_topic),
            source_partitions=frozenset(args.source_partition),
            since=since,
            until=until,
        ),
        to_topic=args.to_topic,
        max_redrives=args.max_redrives,
        max_records=args.max_records,
        dry_run=args.dry_run,
    )
    configure_logging(settings.log_level)
    log = structlog.get_logger("worker.redrive")
    unknown = unknown_reasons(reasons)
    if unknown:
        log.warning("reason_not_in_schema", reasons=unknown)
    started: list[Redriver] = []
    try:
        summary = redrive(settings, options, on_start=lambda r: _stop_on_signals(r, started))
    except FatalError as exc:
        log.error("redrive_failed", error=str(exc))
        _print(started[0].summary if started else None, error=str(exc))
        return EXIT_FATAL
    except UsageError as exc:  # e.g. a letter naming a deleted topic: say what was done first
        if started:
            _print(started[0].summary, error=str(exc))
        raise
    _print(summary)
    return EXIT_INTERRUPTED if summary.stopped == "signal" else 0


def _stop_on_signals(redriver: Redriver, started: list[Redriver]) -> None:
    """SIGTERM and SIGINT finish the batch in flight (delivered, committed), then stop."""
    started.append(redriver)

    def handler(_signum: int, _frame: FrameType | None) -> None:
        redriver.request_stop()  # assigns a flag only: a handler that logged could deadlock

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _print(summary: Summary | None, *, error: str | None = None) -> None:
    """The one-line JSON summary: on stdout, or on stderr when the run failed."""
    line = summary.as_dict() if summary is not None else {"stopped": "error", "error": error}
    stream = sys.stdout if error is None else sys.stderr
    stream.write(orjson.dumps(line).decode() + "\n")


def _partition(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"not a partition number: {value!r}")
    return int(value)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1: {value!r}")
    return int(value)
