"""``biomarker-worker replay``: process a bounded range of the input topic, then exit."""

from __future__ import annotations

import argparse
import sys
import time

import structlog
from confluent_kafka import Consumer, KafkaException

from worker.cli.options import add_settings_options, settings_from_args
from worker.cli.run import stop_on_signals
from worker.config import WorkerSettings
from worker.errors import FatalError, UsageError
from worker.kafka.clients import consumer_config
from worker.kafka.replay import parse_offsets, parse_timestamp, plan_replay
from worker.logs import configure_logging
from worker.pipeline import EXIT_FATAL, Pipeline


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
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.from_timestamp and args.from_offsets:
        raise UsageError("give --from-timestamp or --from-offsets, not both")
    if args.to_timestamp and args.to_offsets:
        raise UsageError("give --to-timestamp or --to-offsets, not both")
    if args.rate_limit is not None and args.rate_limit <= 0:
        raise UsageError("--rate-limit must be positive")
    settings = _one_input(settings_from_args(args), args.input_topic)
    if not args.group_id:  # own group, stable across Job retries so a retry resumes
        settings = settings.model_copy(update={"group_id": f"{settings.group_id}-replay"})
    configure_logging(settings.log_level)
    log = structlog.get_logger("worker.replay")
    try:
        probe = Consumer(consumer_config(settings))
    except KafkaException as exc:  # a client property librdkafka refuses (kafka_extra)
        raise UsageError(f"the Kafka client refused its settings: {_reason(exc)}") from None
    try:
        plan = plan_replay(
            probe,
            settings.input_topic,
            from_timestamp=parse_timestamp(args.from_timestamp) if args.from_timestamp else None,
            to_timestamp=parse_timestamp(args.to_timestamp) if args.to_timestamp else None,
            from_offsets=parse_offsets(args.from_offsets) if args.from_offsets else None,
            to_offsets=parse_offsets(args.to_offsets) if args.to_offsets else None,
        )
    except KafkaException as exc:  # brokers unreachable, or the topic unreadable
        log.error("replay_planning_failed", error=_reason(exc))
        print(f"replay: could not plan the range: {_reason(exc)}", file=sys.stderr)
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
    stop_on_signals(pipeline)
    started = time.monotonic()
    code = pipeline.run()
    elapsed = time.monotonic() - started
    summary = (
        f"replay of {plan.topic}: {plan.total} records in range, {pipeline.delivered} delivered "
        f"to {settings.output_topic} / {settings.dlq_topic} in {elapsed:.1f}s "
        f"(group {settings.group_id})"
    )
    print(summary, file=sys.stderr if code else sys.stdout)
    return code


def _reason(exc: KafkaException) -> str:
    """librdkafka's words for a client error (its ``KafkaError``), else the exception's."""
    error = exc.args[0] if exc.args else exc
    return str(error.str()) if hasattr(error, "str") else str(error)


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
