"""Host processes (worker.host_pool) without a broker: the same outputs as the worker's own
threads, failures that stop the worker, order kept whatever order replies come back in."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.host_scaling import run_host
from bench.inprocess import NullScorer
from tests.hanging_host import serve_and_hang
from worker.completions import check_threads
from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.events import NoteEvent, Provenance, SourceRef
from worker.host_pool import (
    HostPool,
    HostPreparation,
    HostProcessFailed,
    HostRenderer,
    HostSettings,
    host_pool_for,
    host_processes_for,
)
from worker.inputs.decoding import DecoderSpec
from worker.model.classifier import SequenceClassifier
from worker.notes import Note, Record

PROVENANCE = Provenance("m", "1", "0" * 64, 0.5, "seg")


class IdScorer(NullScorer):
    """Scores that depend on every token id, so an id moved wrongly shows in the output."""

    def predict_ids(self, batch: Sequence[Sequence[int]]) -> list[float]:
        super().predict_ids(batch)
        return [
            (int(sum(int(i) * (k + 1) for k, i in enumerate(ids))) % 997) / 997 for ids in batch
        ]


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)


def _events() -> list[bytes]:
    texts = [
        "Serum PSA was 4.2 ng/mL. Hgb 12.3, creatinine 1.1. He denies chest pain.",
        "HISTORY:\r\nSeen today.\n\nLabs: K 4.1, Na 139.\n1. HER2 positive.\n2. ER negative.",
        "Café au lait spots, naïve T cells; \u03b1-fetoprotein 8 ng/mL — normal. " * 5,
        "word " * 600,  # one sentence over max_sentence_tokens: cut, flagged truncated
        # more sentences than the limit below: dead letter
        "Seen today. Pain is better. Eats well. Sleeps well. Walks daily. No fever. No cough.",
    ]
    events = [
        orjson.dumps({"note_id": f"n{i}", "text": texts[i % len(texts)], "seq": i})
        for i in range(60)
    ]
    events[7] = b"not json at all"
    events[11] = orjson.dumps({"note_id": "e", "text": " \n "})
    events[13] = b'{"note_id": "x", "text": "caf\xe9"}'
    events[17] = orjson.dumps({"note_id": "big", "text": "Hgb 12. " * 500})
    return events


def test_two_host_processes_give_the_outputs_of_the_worker_itself(
    model: SequenceClassifier,
) -> None:
    scorer = IdScorer(model)
    events = _events()
    kwargs: dict[str, Any] = {"keep_outputs": True, "max_note_chars": 3000, "chunk": 7}
    one = run_host(scorer, events, processes=1, max_note_sentences=6, **kwargs)
    two = run_host(scorer, events, processes=2, max_note_sentences=6, **kwargs)
    assert two["outputs"] == one["outputs"]
    assert two["sentences"] == one["sentences"] > 100
    reasons = {index: outs[0][1] for index, outs in enumerate(one["outputs"]) if outs[0][1]}
    assert reasons[7] == "not_json" and reasons[11] == "empty_text"
    assert reasons[13] == "not_utf8" and reasons[17] == "text_too_large"
    assert reasons[4] == "too_many_sentences"
    truncated = orjson.loads(one["outputs"][3][0][2])["biomarker"]["summary"]
    assert truncated["truncated_sentence_count"] >= 1
    # lexicon rules cross the process boundary: named, and labelled 1 whatever the score
    sentences = orjson.loads(two["outputs"][0][0][2])["biomarker"]["sentences"]
    assert [sentence.get("rule") for sentence in sentences] == ["psa", "hemoglobin", None]
    assert [sentence["label"] for sentence in sentences][:2] == [1, 1]


def _pool(model: SequenceClassifier, processes: int = 2, **options: Any) -> HostPool:
    spec = model.encoder_spec()
    assert spec is not None
    settings = HostSettings(spec, (DecoderSpec("in", "note"),), 10_000, 256, True)
    return HostPool(settings, processes, **options)


def _until_stopped(preparation: HostPreparation, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while preparation.alive() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_host_process_that_dies_stops_the_worker(model: SequenceClassifier) -> None:
    pool = _pool(model)
    prepared: list[Record] = []
    preparation = HostPreparation(pool=pool, score=lambda notes: None, on_prepared=prepared.append)
    preparation.start()
    try:
        assert pool.wait_ready(60)
        for process, _ in pool._processes:  # as the OOM killer would
            process.kill()
        for process, _ in pool._processes:  # gone before the send: the pipe is broken, not closed
            process.join(10)
        record = Record(source=SourceRef("in", 0, 0, None), key=None, value=b'{"text": "x"}')
        preparation.submit([record])
        _until_stopped(preparation, 30)
        assert isinstance(preparation.failure, HostProcessFailed)
        with pytest.raises(FatalError, match="preparation thread stopped: HostProcessFailed"):
            check_threads({"preparation": preparation})
        assert not prepared  # nothing was handed back, so nothing can be committed
    finally:
        preparation.stop()


def test_a_host_process_stuck_on_a_request_is_killed_and_stops_the_worker(
    model: SequenceClassifier,
) -> None:
    pool = _pool(model, 1, deadline_s=1.0, target=serve_and_hang)
    prepared: list[Record] = []
    preparation = HostPreparation(pool=pool, score=lambda notes: None, on_prepared=prepared.append)
    preparation.start()
    try:
        preparation.submit([Record(source=SourceRef("in", 0, 0, None), key=None, value=b"{}")])
        _until_stopped(preparation, 60)
        assert isinstance(preparation.failure, HostProcessFailed)
        assert "did not answer within 1 s" in str(preparation.failure)
        process = pool._processes[0][0]
        process.join(5)
        assert not process.is_alive()  # killed, not left running
        assert not prepared and preparation.pending == 1
    finally:
        preparation.stop()


def test_cancelled_records_are_not_prepared_and_stop_ends_the_processes(
    model: SequenceClassifier,
) -> None:
    pool = _pool(model, processes=1)
    prepared: list[Record] = []
    preparation = HostPreparation(pool=pool, score=lambda notes: None, on_prepared=prepared.append)
    records = [
        Record(
            source=SourceRef("in", 0, i, None),
            key=None,
            value=b'{"note_id": "a", "text": "PSA 4."}',
        )
        for i in range(3)
    ]
    records[1].cancelled = True
    preparation.start()
    preparation.submit(records)
    deadline = time.monotonic() + 60
    while preparation.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert preparation.pending == 0
    assert prepared == [records[0], records[2]]
    assert [len(record.notes[0].scores) for record in prepared] == [1, 1]
    preparation.stop()
    assert not any(process.is_alive() for process, _ in pool._processes)


class _HeldRequests:
    """A pool that holds requests until the test answers them."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def submit(self, request: Any) -> None:
        self.requests.append(request)


def _ready_record(offset: int) -> Record:
    record = Record(source=SourceRef("in", 0, offset, None), key=None, value=b"{}")
    note = Note(record=record, event=NoteEvent({}, body=""), payload=b"opaque")
    note.expect(2)
    record.notes = [note]
    return record


def test_renderer_hands_outputs_out_in_submission_order() -> None:
    held = _HeldRequests()
    renderer = HostRenderer(pool=held, provenance=PROVENANCE, include_text=False, chunk=1)  # type: ignore[arg-type]
    first, second = _ready_record(0), _ready_record(1)
    renderer.submit([first, second])
    assert len(held.requests) == 2
    for request in held.requests:
        assert request.message()[0] == "render"
    held.requests[1].done(("rendered", [[b"second"]]))
    assert list(renderer.take()) == []  # the first is not back yet: nothing may overtake it
    held.requests[0].done(("rendered", [[b"first"]]))
    taken = [(record, [out.value for out in outs]) for record, outs in renderer.take()]
    assert taken == [(first, [b"first"]), (second, [b"second"])]


def test_renderer_dead_letters_inline_and_drops_records_revoked_meanwhile() -> None:
    held = _HeldRequests()
    renderer = HostRenderer(pool=held, provenance=PROVENANCE, include_text=False)  # type: ignore[arg-type]
    revoked, failed = _ready_record(0), _ready_record(1)
    from worker.errors import InvalidEvent
    from worker.kafka.offsets import OffsetTracker

    failed.fail(InvalidEvent("inference_failed", "batch failed"))
    tracker = OffsetTracker()
    [state] = tracker.assign([("in", 0)])
    revoked.prepared = True
    tracker.add(state, 0, revoked)
    renderer.submit(tracker.take_ready())  # taken for output: rendering in a host process
    renderer.submit([failed])
    assert len(held.requests) == 1  # only the record with notes to render went out
    tracker.remove([("in", 0)])  # its partition is revoked (or lost) meanwhile
    held.requests[0].done(("rendered", [[b"late"]]))
    taken = list(renderer.take())
    assert [(record, outs[0].destination) for record, outs in taken] == [(failed, "dead_letter")]


def test_host_processes_default_to_one_on_cpu_and_follow_the_cores_on_a_gpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = WorkerSettings()
    assert host_processes_for(settings, "cpu") == 1
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert host_processes_for(settings, "cuda") == 4
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(3)))
    assert host_processes_for(settings, "cuda") == 1
    assert host_processes_for(WorkerSettings(host_processes=3), "cpu") == 3
    assert host_pool_for(WorkerSettings(), device="cpu", encoder=None) is None
    with pytest.raises(FatalError, match="fast"):
        host_pool_for(WorkerSettings(host_processes=2), device="cpu", encoder=None)
    with pytest.raises(FatalError, match="fast"):  # a pool of one, as the benchmark asks
        host_pool_for(WorkerSettings(), device="cpu", encoder=None, smallest_pool=1)


def test_the_faust_runtime_refuses_host_processes() -> None:
    with pytest.raises(ValueError, match="faust prepares notes in its own process"):
        WorkerSettings(runtime="faust", host_processes=2)
    assert host_processes_for(WorkerSettings(runtime="faust"), "cuda:0") == 1
