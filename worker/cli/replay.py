"""``biomarker-worker replay``: process a bounded range of the input topic, then exit."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from types import FrameType

import structlog
from confluent_kafka import Consumer, KafkaException

from worker.cli.options import add_settings_options, settings_from_args
from worker.cli.redrive import EXIT_INTERRUPTED
from worker.cli.run import exit_now_if_hung
from worker.cli.show_config import check_runtime
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.kafka.clients import consumer_config
from worker.kafka.ports import client_error
from worker.kafka.replay import (
    ReplayPlan,
    Window,
    parse_offsets,
    parse_timestamp,
    plan_replay,
    replay_group,
)
from worker.logs import configure_logging, kafka_logger
from worker.pipeline import EXIT_FATAL, EXIT_OK, Pipeline


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="backfill: process a time or offset range of the input topic, then exit",
        description="Ranges are fixed at start: [from, to) per partition. Without --to-* the "
        "end offsets at start are used; without --from-* the log start.",
    )
    window = parser.add_argument_group("window")
    window.add_argument("--from-timestamp", help="ISO-8601 time or epoch ms (inclusive)")
    window.add_argument("--to-timestamp", help="ISO-8601 time or epoch ms (exclusive)")
    window.add_argument("--from-offsets", help="per partition, e.g. 0:100,1:250 (inclusive)")
    window.add_argument("--to-offsets", help="per partition, e.g. 0:900,1:975 (exclusive)")
    parser.add_argument(
        "--rate-limit", type=float, metavar="NOTES_PER_S", help="cap on notes read per second"
    )
    add_settings_options(parser)
    # The shared flag, with what it means for a replay (its progress lives in that group).
    parser._option_string_actions["--group-id"].help = (
        "the replay's own consumer group (default: <group_id>-replay-<hash of the window, the "
        "input and the output topic>: a retry of the same replay resumes from its commits; to "
        "run the same window again from its start, give a new group)"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.from_timestamp and args.from_offsets:
        raise UsageError("give --from-timestamp or --from-offsets, not both")
    if args.to_timestamp and args.to_offsets:
        raise UsageError("give --to-timestamp or --to-offsets, not both")
    if args.rate_limit is not None and not (math.isfinite(args.rate_limit) and args.rate_limit > 0):
        raise UsageError("--rate-limit must be a positive number")
    settings = _one_input(settings_from_args(args, selects_input=True), args.input_topic)
    window = Window(
        from_timestamp=parse_timestamp(args.from_timestamp) if args.from_timestamp else None,
        to_timestamp=parse_timestamp(args.to_timestamp) if args.to_timestamp else None,
        from_offsets=parse_offsets(args.from_offsets) if args.from_offsets else None,
        to_offsets=parse_offsets(args.to_offsets) if args.to_offsets else None,
    )
    if not args.group_id:  # own group per window, stable across Job retries so a retry resumes
        group = replay_group(settings.group_id, settings.input_topic, settings.output_topic, window)
        settings = settings.model_copy(update={"group_id": group})
    configure_logging(settings.log_level)
    log = structlog.get_logger("worker.replay")
    check_runtime(settings)  # a bad mapping file or client property: one line, before any work
    try:
        probe = Consumer({**consumer_config(settings), "logger": kafka_logger()})
    except KafkaException as exc:  # refused only by this client (a safety net)
        raise UsageError(f"the Kafka client refused its settings: {client_error(exc)}") from None
    try:
        plan = plan_replay(
            probe,
            settings.input_topic,
            from_timestamp=window.from_timestamp,
            to_timestamp=window.to_timestamp,
            from_offsets=window.from_offsets,
            to_offsets=window.to_offsets,
        )
    except KafkaException as exc:  # brokers unreachable, or the topic unreadable
        log.error("replay_planning_failed", error=client_error(exc))
        print(f"replay: could not plan the range: {client_error(exc)}", file=sys.stderr)
        return EXIT_FATAL
    finally:
        probe.close()
    log.info(
        "replay_planned",
        topic=plan.topic,
        group_id=settings.group_id,
        notes=plan.total,
        ranges={str(p): list(r) for p, r in plan.ranges.items()},
    )
    try:
        from worker.loading import load_classifier, provenance_for

        model = load_classifier(settings)
    except FatalError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_FATAL
    pipeline = Pipeline(
        settings=settings,
        model=model,
        provenance=provenance_for(model, settings),
        replay=plan,
        rate_limit=args.rate_limit,
    )
    return run_replay(pipeline, plan, settings)


def run_replay(pipeline: Pipeline, plan: ReplayPlan, settings: WorkerSettings) -> int:
    """Run the replay and print its summary. Exit 0 only when the whole range is done (and, with
    exactly-once, committed); stopped before that, by a signal (exit 130, as ``redrive``) or by
    an aborted last transaction (exit 1), it exits non-zero so a Job retries and resumes from
    the group's commits."""
    signals: list[str] = []
    _stop_on_signals(pipeline, signals)
    started = time.monotonic()
    code = pipeline.run()
    elapsed = time.monotonic() - started
    finished = pipeline.source.replay_finished
    if code == EXIT_OK and not finished:
        code = EXIT_INTERRUPTED if signals else EXIT_FATAL
        structlog.get_logger("worker.replay").warning(
            "replay_unfinished",
            stopped_by=signals[0] if signals else "aborted transaction",
            group_id=settings.group_id,
        )
    summary = (
        f"replay of {plan.topic}: {plan.total} records in range, {pipeline.delivered} delivered "
        f"to {settings.output_topic} / {settings.dlq_topic} in {elapsed:.1f}s "
        f"(group {settings.group_id})"
    )
    if code == EXIT_OK:
        print(summary, file=sys.stdout)
    else:
        unfinished = "" if finished else "; stopped before the end of its range"
        print(summary + unfinished, file=sys.stderr)
    exit_now_if_hung(pipeline, code)
    return code


def _stop_on_signals(pipeline: Pipeline, received: list[str]) -> None:
    """SIGTERM and SIGINT drain the pipeline and stop it (see ``worker.cli.run``); ``received``
    records which came, so that a replay they cut short does not exit 0."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        received.append(name)  # assignments only: a handler that logged could deadlock
        pipeline.signalled(name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _one_input(settings: WorkerSettings, named: str | None) -> WorkerSettings:
    """A replay reads one topic: with several ``inputs``, the one ``--input-topic`` names
    (read with that input's format), or the only one."""
    if not settings.inputs:
        return settings
    topics = {item.topic: item for item in settings.inputs}
    if named is None and len(topics) > 1:
        raise UsageError(
            f"name the topic to replay with --input-topic (one of: {', '.join(topics)})"
        )
    chosen = topics.get(named) if named else settings.inputs[0]
    if chosen is None:
        raise UsageError(f"--input-topic {named!r} is not one of the inputs: {', '.join(topics)}")
    return settings.model_copy(update={"inputs": (chosen,), "input_topic": chosen.topic})
