"""``biomarker-worker demo``: local broker, sample notes in, enriched events out, summary."""

from __future__ import annotations

import argparse
import functools
import gc
import time
from typing import TYPE_CHECKING, Any

import orjson

from worker.cli.checkout import checkout_only
from worker.cli.options import add_settings_options, settings_from_args
from worker.errors import FatalError, UsageError
from worker.logs import configure_logging

if TYPE_CHECKING:
    from worker.pipeline import Pipeline

_TOPICS = {"input": "demo-notes", "output": "demo-notes-enriched", "dlq": "demo-notes-dlq"}
_PARTITIONS = 3
_EXCERPT = 110


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo", help="start a local Kafka, stream sample notes through the worker, show results"
    )
    parser.add_argument("--notes", type=int, default=200, help="how many sample notes (max)")
    parser.add_argument("--show", type=int, default=8, help="notes to print in the summary")
    add_settings_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.notes < 1:
        raise UsageError("--notes must be at least 1")
    with checkout_only():
        from devkit.localkafka import KafkaStartError, LocalKafka, create_topics

    from confluent_kafka import Consumer, Producer

    from worker.demo.notes import demo_notes
    from worker.loading import load_classifier, provenance_for
    from worker.pipeline import Pipeline
    from worker.runs import run_until

    configure_logging(args.log_level or "error")
    source, notes = demo_notes(args.notes)
    print(f"notes: {len(notes)} from {source}")
    print("starting a local Apache Kafka broker (KRaft, 127.0.0.1) ...", flush=True)
    try:
        cluster = LocalKafka.start(die_with_parent=True)  # no orphan broker if killed
    except KafkaStartError as exc:
        raise UsageError(str(exc)) from exc
    with cluster:
        bootstrap = cluster.bootstrap_servers
        create_topics(
            bootstrap,
            {_TOPICS["input"]: _PARTITIONS, _TOPICS["output"]: _PARTITIONS, _TOPICS["dlq"]: 1},
        )
        settings = settings_from_args(
            args,
            bootstrap_servers=bootstrap,
            input_topic=_TOPICS["input"],
            inputs=(),  # the demo's own topic and format, whatever BIOMARKER_INPUTS says
            input_format="note",
            output_topic=_TOPICS["output"],
            dlq_topic=_TOPICS["dlq"],
            group_id="demo-worker",
            log_level=args.log_level or "error",
        )
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        for note in notes:
            producer.produce(
                _TOPICS["input"], key=note["note_id"].encode(), value=orjson.dumps(note)
            )
        producer.flush(30)
        del producer  # destroy the client now, not after the broker is gone
        print(f"produced {len(notes)} notes to {_TOPICS['input']} at {bootstrap}")
        print("loading the model ...", flush=True)
        try:
            model = load_classifier(settings)
        except FatalError as exc:
            raise UsageError(str(exc)) from exc
        print(f"model: {model.info.name} {model.info.version} on {model.info.device}")
        pipeline = Pipeline(
            settings=settings,
            model=model,
            provenance=provenance_for(model, settings),
        )
        started = time.perf_counter()
        code = run_until(pipeline, functools.partial(_delivered_all, pipeline, len(notes)))
        del pipeline  # release its Kafka clients (a reference cycle) before the broker stops
        gc.collect()
        elapsed = time.perf_counter() - started
        if code != 0:
            return code
        outputs = _read_outputs(Consumer, bootstrap, len(notes))
    _print_summary(notes, outputs, elapsed, args.show)
    return 0


def _delivered_all(pipeline: Pipeline, expected: int) -> bool:
    return pipeline.delivered >= expected


def _read_outputs(consumer_class: Any, bootstrap: str, expected: int) -> list[dict[str, Any]]:
    consumer = consumer_class(
        {"bootstrap.servers": bootstrap, "group.id": "demo-reader", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([_TOPICS["output"]])
    outputs: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(outputs) < expected and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.5):
            if message.error() is None:
                outputs.append(orjson.loads(message.value()))
    consumer.close()
    return outputs


def _print_summary(
    notes: list[dict[str, Any]], outputs: list[dict[str, Any]], elapsed: float, show: int
) -> None:
    texts = {note["note_id"]: note["text"] for note in notes}
    sentences = sum(out["biomarker"]["summary"]["sentence_count"] for out in outputs)
    flagged = [out for out in outputs if out["biomarker"]["summary"]["has_biomarker"]]
    print()
    print(
        f"enriched events: {len(outputs)} of {len(notes)} notes; {sentences} sentences; "
        f"{len(flagged)} notes with a biomarker sentence"
    )
    print(
        f"throughput: {len(outputs) / elapsed:.1f} notes/s, {sentences / elapsed:.1f} "
        f"sentences/s ({elapsed:.1f} s end to end)"
    )
    for out in flagged[:show]:
        result = out["biomarker"]
        text = texts.get(out["note_id"], "")
        print(
            f"\n{out['note_id']}: {result['summary']['biomarker_sentence_count']} of "
            f"{result['summary']['sentence_count']} sentences flagged"
        )
        for sentence in [s for s in result["sentences"] if s["label"] == 1][:3]:
            excerpt = " ".join(text[sentence["start"] : sentence["end"]].split())
            if len(excerpt) > _EXCERPT:
                excerpt = excerpt[: _EXCERPT - 3] + "..."
            print(f"  [{sentence['score']:.2f}] {excerpt}")
