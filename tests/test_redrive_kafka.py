"""Re-driving dead letters against the real local broker.

Dead letters are made by the worker's own code: bad inputs are produced to the input topic, read
back, parsed by ``parse_note`` and sent through :class:`~worker.kafka.sink.KafkaSink` (one test
runs the whole pipeline), so their headers are exactly the worker's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from devkit.localkafka import create_topics
from tests.kafka_helpers import REPO, KafkaTestKit, note
from worker.config import WorkerSettings
from worker.errors import FatalError, InvalidEvent, UsageError
from worker.events import Headers, Provenance, SourceRef, parse_note
from worker.kafka.dead_letters import REDRIVE_HEADER, Filters
from worker.kafka.errors import KafkaErrors
from worker.kafka.redrive import RedriveOptions, Summary, redrive
from worker.kafka.sink import KafkaSink, SinkTopics
from worker.metrics import Metrics
from worker.notes import Record
from worker.render import outgoing

pytestmark = pytest.mark.kafka

_PROVENANCE = Provenance("tiny", "1", "0" * 64, 0.5, "test")
TRACE: Headers = [("trace-id", b"\x00\x01\xfe"), ("empty", None), ("trace-id", b"again")]


@dataclass(frozen=True)
class Sent:
    """One record as read from a topic, headers in order."""

    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers


def _headers(message: Message) -> Headers:
    raw = message.headers()
    return list(raw) if isinstance(raw, list) else []


def _sent(message: Message) -> Sent:
    return Sent(
        partition=message.partition() or 0,
        offset=message.offset() or 0,
        timestamp=message.timestamp()[1],
        key=message.key(),
        value=message.value(),
        headers=_headers(message),
    )


def _consume(kit: KafkaTestKit, topic: str, start: dict[int, int] | None = None) -> list[Sent]:
    """Every record of ``topic`` from ``start`` (per partition; default the beginning) to the
    end offsets as they are now."""
    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": "redrive-test-reader"})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: _watermarks(consumer, topic, p)[1] for p in partitions}
    begin = {p: (start or {}).get(p, 0) for p in partitions}
    todo = {p for p in partitions if begin[p] < ends[p]}
    records: list[Sent] = []
    if todo:
        consumer.assign([TopicPartition(topic, p, begin[p]) for p in todo])
    deadline = time.monotonic() + 30
    while todo and time.monotonic() < deadline:
        for message in consumer.consume(500, 0.2):
            if message.error() is None:
                records.append(_sent(message))
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    todo.discard(message.partition() or 0)
    consumer.close()
    assert not todo, f"could not read {topic} to its end"
    return sorted(records, key=lambda r: (r.partition, r.offset))


def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
    for _attempt in range(40):  # a new topic's leader may not be known yet
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)
            return low, high
        except KafkaException:
            time.sleep(0.25)
    raise AssertionError(f"no watermarks for {topic}/{partition}")


def _ends(kit: KafkaTestKit, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": "redrive-test-reader"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: _watermarks(consumer, topic, p)[1] for p in partitions}
    finally:
        consumer.close()


def _committed(kit: KafkaTestKit, group: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for attempt in range(20):
            try:
                found = consumer.committed([TopicPartition(topic, p) for p in partitions], 10)
                return {tp.partition: tp.offset for tp in found if tp.offset >= 0}
            except KafkaException:
                if attempt == 19:
                    raise
                time.sleep(0.25)
    finally:
        consumer.close()
    return {}


class _AtLeastOnce:
    """The sink's committer when offsets are stored after delivery: no transaction to ready,
    fail or watch."""

    refusals = None

    def before_produce(self) -> bool:
        return True

    def fail(self, reason: str) -> None:
        return None

    def abort_if_failed(self) -> None:
        return None

    def watch_transactions(self, callback: Any) -> None:
        return None


def dead_letter(
    kit: KafkaTestKit,
    inputs: list[tuple[int, bytes | None, bytes | None, Headers | None]],
    *,
    max_dead_letter_bytes: int | None = None,
    source_topics: dict[int, str] | None = None,
) -> list[Sent]:
    """Produce ``(partition, key, value, headers)`` inputs, then dead-letter each one the way
    the worker does (parse, render, the Kafka sink); the inputs as read back. ``source_topics``
    names another source topic for the dead letters of some inputs (by position)."""
    start = _ends(kit, kit.input)
    producer = Producer({"bootstrap.servers": kit.bootstrap, "enable.idempotence": True})
    for partition, key, value, headers in inputs:
        producer.produce(kit.input, value=value, key=key, partition=partition, headers=headers)
    assert producer.flush(30) == 0
    read = _consume(kit, kit.input, start)
    assert len(read) == len(inputs)
    errors = KafkaErrors()
    sink = KafkaSink(
        producer=Producer({"bootstrap.servers": kit.bootstrap, "enable.idempotence": True}),
        topics=SinkTopics(output=kit.output, dead_letter=kit.dlq),
        committer=_AtLeastOnce(),  # type: ignore[arg-type]
        errors=errors,
        metrics=Metrics(),
        on_delivered=lambda _record: None,
    )
    sink.max_dead_letter_bytes = max_dead_letter_bytes
    for index, sent in enumerate(read):
        topic = (source_topics or {}).get(index, kit.input)
        record = Record(
            source=SourceRef(topic, sent.partition, sent.offset, sent.timestamp),
            key=sent.key,
            value=sent.value,
            headers=sent.headers or None,
        )
        try:
            parse_note(sent.value, max_chars=1000)
        except InvalidEvent as exc:
            record.fail(exc)
        assert record.failure is not None, "every input of these tests is bad"
        record.prepared = True
        sink.send(record, outgoing(record, provenance=_PROVENANCE, include_text=False))
    assert sink.flush(30) == 0 and errors.fatal is None
    return read


def settings(kit: KafkaTestKit, **overrides: Any) -> WorkerSettings:
    return kit.settings(**overrides)


def run(kit: KafkaTestKit, **options: Any) -> Summary:
    defaults: dict[str, Any] = {"dlq_topic": kit.dlq, "group": f"{kit.group}-redrive"}
    return redrive(settings(kit), RedriveOptions(**{**defaults, **options}))


def marker(sent: Sent) -> dict[str, Any]:
    name, value = sent.headers[-1]
    assert name == REDRIVE_HEADER
    found: dict[str, Any] = orjson.loads(value or b"")
    return found


NOT_JSON = b"HISTORY: this is not json"
SCHEMA = orjson.dumps({"note_id": 5, "text": "Serum PSA 4.2."})
EMPTY = orjson.dumps({"note_id": "e", "text": " \n\t "})


def test_redrive_by_reason_reproduces_the_originals_exactly_and_resumes(
    kit: KafkaTestKit,
) -> None:
    kit.create(partitions=3)
    originals = dead_letter(
        kit,
        [
            (0, b"k0", NOT_JSON + b" 0", TRACE),
            (1, b"k1", SCHEMA, None),
            (2, None, NOT_JSON + b" 2", [("only", b"one")]),
            (2, b"k3", EMPTY, TRACE),
            (1, b"k4", NOT_JSON + b" 4", None),
        ],
    )
    inputs_end = _ends(kit, kit.input)

    summary = run(kit, filters=Filters(reasons=frozenset({"not_json"})))
    line = summary.as_dict()
    assert (line["read"], line["matched"], line["redriven"], line["skipped_filter"]) == (5, 3, 3, 2)
    assert line["by_reason"] == {"not_json": 3}
    assert line["by_source_partition"] == {
        f"{kit.input}:0": 1,
        f"{kit.input}:1": 1,
        f"{kit.input}:2": 1,
    }
    redriven = _consume(kit, kit.input, inputs_end)
    expected = [o for o in originals if o.value is not None and o.value.startswith(NOT_JSON)]
    assert len(redriven) == 3
    dead = {(d.partition, d.offset): d for d in _consume(kit, kit.dlq)}
    for original in expected:
        (again,) = [r for r in redriven if r.value == original.value]
        assert again.key == original.key and again.partition == original.partition
        assert again.headers[:-1] == original.headers  # every original header, in order
        mark = marker(again)
        assert mark["count"] == 1 and mark["reason"] == "not_json"
        letter = dead[(mark["dlq_partition"], mark["dlq_offset"])]
        assert mark["dlq_topic"] == kit.dlq and letter.value == original.value
    assert _committed(kit, f"{kit.group}-redrive", kit.dlq) == _ends(kit, kit.dlq)

    # A second run resumes at the end: nothing read, nothing produced.
    second = run(kit, filters=Filters(reasons=frozenset({"not_json"})))
    assert (second.read, second.redriven) == (0, 0)
    assert len(_consume(kit, kit.input, inputs_end)) == 3

    # New dead letters arrive: the next run reads only those.
    dead_letter(kit, [(0, b"k5", NOT_JSON + b" 5", None)])
    third = run(kit, filters=Filters(reasons=frozenset({"not_json"})))
    assert (third.read, third.redriven) == (1, 1)


def test_dry_run_counts_by_reason_and_partition_and_changes_nothing(kit: KafkaTestKit) -> None:
    kit.create(partitions=3)
    dead_letter(
        kit,
        [
            (0, b"a", NOT_JSON, None),
            (1, b"b", SCHEMA, None),
            (1, b"c", NOT_JSON, None),
            (2, b"d", EMPTY, None),
        ],
    )
    inputs_end = _ends(kit, kit.input)
    line = run(kit, dry_run=True).as_dict()
    assert line["dry_run"] is True
    assert (line["read"], line["would_redrive"], line["redriven"]) == (4, 4, 0)
    assert line["by_reason"] == {"empty_text": 1, "not_json": 2, "schema_violation": 1}
    assert line["by_source_partition"] == {
        f"{kit.input}:0": 1,
        f"{kit.input}:1": 2,
        f"{kit.input}:2": 1,
    }
    assert _ends(kit, kit.input) == inputs_end  # nothing produced
    assert _committed(kit, f"{kit.group}-redrive", kit.dlq) == {}  # nothing committed
    assert run(kit).redriven == 4  # so the real run still finds every dead letter


def _redriven_before(count: int) -> Headers:
    mark = {"count": count, "dlq_topic": "dlq", "dlq_partition": 0, "dlq_offset": 9}
    return [("trace-id", b"t"), (REDRIVE_HEADER, orjson.dumps(mark)), ("after", b"a")]


def test_loop_limit_skips_records_redriven_max_times_and_truncated_dead_letters(
    kit: KafkaTestKit,
) -> None:
    kit.create(partitions=1)
    dead_letter(
        kit,
        [
            (0, b"fresh", NOT_JSON, None),
            (0, b"twice", NOT_JSON, _redriven_before(2)),
            (0, b"thrice", NOT_JSON, _redriven_before(3)),
        ],
    )
    # Too large for the dead-letter budget: the worker keeps only its first bytes.
    dead_letter(kit, [(0, b"cut", NOT_JSON + b" " + b"x" * 500, None)], max_dead_letter_bytes=100)
    inputs_end = _ends(kit, kit.input)

    line = run(kit, max_redrives=3).as_dict()
    assert (line["read"], line["matched"], line["redriven"]) == (4, 4, 2)
    assert (line["skipped_max_redrives"], line["skipped_truncated"]) == (1, 1)
    again = {r.key: r for r in _consume(kit, kit.input, inputs_end)}
    assert set(again) == {b"fresh", b"twice"}
    assert marker(again[b"fresh"])["count"] == 1 and again[b"fresh"].headers[:-1] == []
    assert marker(again[b"twice"])["count"] == 3  # the earlier marker is replaced, not repeated
    assert again[b"twice"].headers[:-1] == [("trace-id", b"t"), ("after", b"a")]
    assert _committed(kit, f"{kit.group}-redrive", kit.dlq) == {0: 4}  # skipped ones too


def test_time_window_reads_only_dead_letters_written_inside_it(kit: KafkaTestKit) -> None:
    kit.create(partitions=1)
    dead_letter(kit, [(0, b"early", NOT_JSON, None)])
    time.sleep(0.3)
    since = int(time.time() * 1000)
    time.sleep(0.05)
    dead_letter(kit, [(0, b"inside", NOT_JSON, None), (0, b"inside-too", SCHEMA, None)])
    time.sleep(0.05)
    until = int(time.time() * 1000)
    time.sleep(0.3)
    dead_letter(kit, [(0, b"late", NOT_JSON, None)])
    inputs_end = _ends(kit, kit.input)

    line = run(kit, filters=Filters(since=since, until=until)).as_dict()
    assert (line["read"], line["redriven"], line["stopped"]) == (2, 2, "end")
    assert [r.key for r in _consume(kit, kit.input, inputs_end)] == [b"inside", b"inside-too"]
    # The run stopped at the window's end: a later run goes on from there.
    assert _committed(kit, f"{kit.group}-redrive", kit.dlq) == {0: 3}
    later = run(kit)
    assert (later.read, later.redriven) == (1, 1)


def test_source_partition_filter_to_another_topic(kit: KafkaTestKit) -> None:
    kit.create(partitions=3)
    fixed = f"{kit.input}-fixed"
    create_topics(kit.bootstrap, {fixed: 1})
    dead_letter(
        kit,
        [(p, f"k{p}-{i}".encode(), NOT_JSON, None) for i, p in enumerate((0, 1, 2, 0, 1))],
    )
    inputs_end = _ends(kit, kit.input)
    line = run(kit, filters=Filters(source_partitions=frozenset({0, 2})), to_topic=fixed).as_dict()
    assert (line["read"], line["redriven"], line["skipped_filter"]) == (5, 3, 2)
    assert sorted(r.key or b"" for r in _consume(kit, fixed)) == [b"k0-0", b"k0-3", b"k2-2"]
    assert _ends(kit, kit.input) == inputs_end
    # Missing topics are usage errors (exit 2), before anything is produced or committed.
    with pytest.raises(UsageError, match="does not exist"):
        run(kit, dlq_topic=f"{kit.dlq}-missing")
    with pytest.raises(UsageError, match="does not exist"):
        run(kit, group="another-redrive", to_topic=f"{kit.input}-missing")
    assert _committed(kit, "another-redrive", kit.dlq) == {}


def test_a_letter_that_cannot_be_routed_stops_the_run_after_committing_the_letters_before_it(
    kit: KafkaTestKit,
) -> None:
    kit.create(partitions=1)
    deleted = f"{kit.input}-deleted"
    dead_letter(
        kit, [(0, f"k{i}".encode(), NOT_JSON, None) for i in range(6)], source_topics={3: deleted}
    )
    inputs_end = _ends(kit, kit.input)[0]
    group = f"{kit.group}-redrive"
    with pytest.raises(UsageError, match="does not exist"):
        run(kit)
    assert _committed(kit, group, kit.dlq) == {0: 3}
    assert _ends(kit, kit.input)[0] == inputs_end + 3
    # A rerun (the command this time) re-drives none of the first three again, and says so.
    summary = _cli(kit, code=2)
    assert (summary["read"], summary["redriven"], summary["stopped"]) == (1, 0, "error")
    assert _committed(kit, group, kit.dlq) == {0: 3}
    assert _ends(kit, kit.input)[0] == inputs_end + 3


def test_max_records_then_a_failed_delivery_commits_only_what_was_delivered(
    kit: KafkaTestKit,
) -> None:
    kit.create(partitions=1)
    small = f"{kit.input}-small"
    create_topics(kit.bootstrap, {small: 1}, topic_config={"max.message.bytes": "2048"})
    big = b"\xff" + os.urandom(8000)  # not UTF-8, and too large for ``small`` (incompressible)
    dead_letter(
        kit,
        [(0, b"a", NOT_JSON, None), (0, b"b", NOT_JSON, None), (0, b"c", big, None)],
    )
    group = f"{kit.group}-redrive"
    first = run(kit, max_records=2, to_topic=small)
    assert (first.read, first.redriven, first.stopped) == (2, 2, "max_records")
    assert _committed(kit, group, kit.dlq) == {0: 2}
    with pytest.raises(FatalError, match="delivery failed"):
        run(kit, to_topic=small)
    assert _committed(kit, group, kit.dlq) == {0: 2}  # the refused record stays to re-drive
    assert [r.key for r in _consume(kit, small)] == [b"a", b"b"]


# --------------------------------------------------------------------------- with the worker
@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    from worker.model.classifier import SequenceClassifier

    return SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)


def _run_worker(kit: KafkaTestKit, model: Any, *, delivered: int) -> None:
    from worker.loading import provenance_for
    from worker.pipeline import Pipeline
    from worker.runs import run_until

    worker = settings(kit)
    pipeline = Pipeline(settings=worker, model=model, provenance=provenance_for(model, worker))
    assert run_until(pipeline, lambda: pipeline.delivered >= delivered) == 0


def _cli(kit: KafkaTestKit, *args: str, code: int = 0) -> dict[str, Any]:
    """The summary line of a ``redrive`` run (on stderr, before the error line, when the run
    failed with ``code``)."""
    env = {
        **os.environ,
        "BIOMARKER_BOOTSTRAP_SERVERS": kit.bootstrap,
        "BIOMARKER_INPUT_TOPIC": kit.input,
        "BIOMARKER_OUTPUT_TOPIC": kit.output,
        "BIOMARKER_DLQ_TOPIC": kit.dlq,
        "BIOMARKER_GROUP_ID": kit.group,
    }
    result = subprocess.run(
        [sys.executable, "-m", "worker", "redrive", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    if code:
        summary_line, error_line = result.stderr.strip().splitlines()[-2:]
        assert error_line.startswith("biomarker-worker redrive: error: "), error_line
        failed: dict[str, Any] = orjson.loads(summary_line)
        return failed
    (line,) = result.stdout.strip().splitlines()
    summary: dict[str, Any] = orjson.loads(line)
    return summary


def test_worker_keeps_the_redrive_count_when_a_redriven_record_fails_again(
    kit: KafkaTestKit, model: Any
) -> None:
    kit.create(partitions=1)
    kit.produce([SCHEMA, note(1)], keys=[b"bad", b"good"], headers=[("trace-id", b"t-1")])
    _run_worker(kit, model, delivered=2)  # one enriched event, one dead letter

    first = _cli(kit, "--reason", "schema_violation")
    assert (first["read"], first["redriven"], first["group"]) == (1, 1, f"{kit.group}-redrive")
    _run_worker(kit, model, delivered=1)  # the re-driven record fails the same way

    dead = _consume(kit, kit.dlq)
    assert [d.value for d in dead] == [SCHEMA, SCHEMA]
    names = [name for name, _ in dead[1].headers]
    # The input's headers, the marker, then the worker's own: the count survived the failure.
    assert names[:3] == ["trace-id", REDRIVE_HEADER, "x-biomarker-error-class"]
    assert orjson.loads(dead[1].headers[1][1] or b"")["count"] == 1

    inputs_end = _ends(kit, kit.input)
    second = _cli(kit, "--max-redrives", "1")
    assert (second["read"], second["redriven"], second["skipped_max_redrives"]) == (1, 0, 1)
    assert _ends(kit, kit.input) == inputs_end
