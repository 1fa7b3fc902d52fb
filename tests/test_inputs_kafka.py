"""EHR input formats against the real broker: one worker on an HL7 v2 topic and a FHIR topic at
once, several notes per record, retractions, and a SIGKILL mid-stream with multi-note records."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from devkit.localkafka import create_topics
from tests.ehr_messages import body, bundle, document_reference, mdm
from tests.kafka_helpers import KafkaTestKit, Record, start_worker
from tests.test_pipeline_kafka import run_until
from tests.test_resilience_kafka import stop, wait_for
from worker.model.classifier import SequenceClassifier
from worker.schemas import DEAD_LETTER_SCHEMA, EXTRACTED_OUTPUT_SCHEMA, RETRACTION_SCHEMA, validator

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for value in values:
        producer.produce(topic, value=value)
    assert producer.flush(30) == 0


def _by_kind(records: list[Record]) -> tuple[list[Record], list[Record]]:
    notes = [r for r in records if r.headers.get("x-biomarker-event") == b"note"]
    retractions = [r for r in records if r.headers.get("x-biomarker-event") == b"retraction"]
    assert len(notes) + len(retractions) == len(records)
    return notes, retractions


def test_one_worker_reads_an_hl7_topic_and_a_fhir_topic_at_once(
    kit: KafkaTestKit, model: SequenceClassifier
) -> None:
    hl7_topic, fhir_topic = f"{kit.input}-hl7", f"{kit.input}-fhir"
    create_topics(kit.bootstrap, {hl7_topic: 2, fhir_topic: 2, kit.output: 3, kit.dlq: 1})
    hl7 = [
        mdm("T02", "DOC-A", lines=body(1), control_id="M1"),
        mdm("T02", "DOC-B", lines=body(2), control_id="M2"),
        mdm("T10", "DOC-A2", parent="DOC-A", lines=body(3), control_id="M3"),  # replaces A
        mdm("T11", "DOC-B", control_id="M4"),  # cancels B
        b"this is not an HL7 message",
    ]
    fhir = [
        bundle(*(document_reference(f"d{i}", " ".join(body(10 + i))) for i in range(3))),
        bundle(
            document_reference("d0", " ".join(body(20)), version="2"),  # a new version of d0
            document_reference("d9", "x", status="entered-in-error"),
            document_reference("d5", " ".join(body(21)), replaces="d1"),
        ),
        b'{"resourceType": "Patient", "id": "only-a-patient"}',  # no note: counted, skipped
        b"{not json",
    ]
    _produce(kit.bootstrap, hl7_topic, hl7)
    _produce(kit.bootstrap, fhir_topic, fhir)
    inputs = [
        {"topic": hl7_topic, "format": "hl7v2"},
        {"topic": fhir_topic, "format": "fhir"},
    ]
    pipeline = run_until(
        kit, model, lambda p: p.delivered >= 14, inputs=inputs, commit_interval_ms=200
    )

    outputs = kit.read(kit.output, 12)
    notes, retractions = _by_kind(outputs)
    note_keys = Counter(r.key for r in notes)
    fhir_keys = [f"DocumentReference/d{i}".encode() for i in (0, 1, 2, 0, 5)]
    assert note_keys == Counter([b"DOC-A", b"DOC-B", b"DOC-A2", *fhir_keys])
    assert sorted((r.key, r.json()["retraction"]["reason"]) for r in retractions) == [
        (b"DOC-A", "superseded"),
        (b"DOC-B", "cancelled"),
        (b"DocumentReference/d1", "superseded"),
        (b"DocumentReference/d9", "entered-in-error"),
    ]
    for record in notes:
        event = record.json()
        validator(EXTRACTED_OUTPUT_SCHEMA).validate(event)
        assert event["note_id"] == record.key.decode()  # type: ignore[union-attr]
        text = event["text"]
        for sentence in event["biomarker"]["sentences"]:  # offsets index the extracted text
            assert text[sentence["start"] : sentence["end"]].strip()
    for record in retractions:
        validator(RETRACTION_SCHEMA).validate(record.json())
    d0_versions = [r.json()["note_version"] for r in notes if r.key == b"DocumentReference/d0"]
    assert sorted(d0_versions) == ["1", "2"]
    # several notes of one record: distinct output ids, all from the same source offset
    first_bundle = [r.json()["biomarker"] for r in notes if r.json()["origin"].get("bundle_type")]
    assert len({b["output_id"] for b in first_bundle}) == len(first_bundle)

    letters = kit.read(kit.dlq, 2)
    assert sorted(r.headers["x-biomarker-error-class"] for r in letters) == [
        b"not_fhir",
        b"not_hl7",
    ]
    assert {r.value for r in letters} == {b"this is not an HL7 message", b"{not json"}
    for letter in letters:
        validator(DEAD_LETTER_SCHEMA).validate({k: v.decode() for k, v in letter.headers.items()})
    skipped = pipeline.metrics.registry.get_sample_value(
        "biomarker_skipped_total", {"reason": "no_note_text"}
    )
    assert skipped == 1
    committed = _committed(kit, [hl7_topic, fhir_topic])
    assert committed == {(hl7_topic, p): n for p, n in _log_ends(kit, hl7_topic).items()} | {
        (fhir_topic, p): n for p, n in _log_ends(kit, fhir_topic).items()
    }


def test_sigkill_with_multi_note_records_never_commits_past_an_undelivered_note(
    kit: KafkaTestKit, tiny_model_dir: Path, tmp_path: Path
) -> None:
    kit.create(partitions=2)
    count, per_record = 600, 3
    records = [
        bundle(
            *(
                document_reference(f"r{i}-n{n}", " ".join(body(i * per_record + n, lines=6)))
                for n in range(per_record)
            )
        )
        for i in range(count)
    ]
    _produce(kit.bootstrap, kit.input, records)
    env = kit.env(tiny_model_dir, input_format="fhir", max_inflight_notes="100")
    worker = start_worker(env, tmp_path / "worker-1.log")
    samples: list[dict[int, int]] = []

    def progressed() -> bool:
        samples.append(kit.committed())
        return sum(samples[-1].values()) >= 60

    wait_for(progressed, 120, "first commits")
    worker.kill()  # SIGKILL with records half-delivered
    worker.wait(timeout=30)
    at_kill = kit.committed()
    assert sum(at_kill.values()) < count, "the kill must land mid-stream"
    delivered = _notes_by_source(kit.read(kit.output, count * per_record, timeout=5))
    for sample in [*samples, at_kill]:
        for partition, offset in sample.items():
            short = [o for o in range(offset) if len(delivered[(partition, o)]) < per_record]
            assert not short, f"p{partition} committed {offset} with notes missing at {short[:5]}"

    worker = start_worker(env, tmp_path / "worker-2.log")
    wait_for(lambda: sum(kit.committed().values()) == count, 240, "all inputs committed")
    assert stop(worker) == 0
    final = _notes_by_source(kit.read(kit.output, count * per_record))
    assert len(final) == count
    assert all(len(ids) == per_record for ids in final.values())


def _notes_by_source(records: list[Record]) -> dict[tuple[int, int], set[str]]:
    found: dict[tuple[int, int], set[str]] = {}
    for record in records:
        event = record.json()
        source = event["biomarker"]["provenance"]["source"]
        found.setdefault((source["partition"], source["offset"]), set()).add(event["note_id"])
    return found


def _log_ends(kit: KafkaTestKit, topic: str) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": f"ends-{time.time()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends = {}
        for partition in metadata.topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends[partition] = high
        return ends
    finally:
        consumer.close()


def _committed(kit: KafkaTestKit, topics: list[str]) -> dict[tuple[str, int], int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": kit.bootstrap, "group.id": kit.group})
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ]
        result = consumer.committed(partitions, timeout=10)
        return {(tp.topic, tp.partition): tp.offset for tp in result if tp.offset >= 0}
    finally:
        consumer.close()
