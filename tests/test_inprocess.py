"""The benchmarks' in-process pipeline (no broker): what it hands back per note."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench.corpus import MAX_SENTENCE_TOKENS
from bench.inprocess import run_inprocess
from worker.batching import BatchingSettings
from worker.events import SourceRef
from worker.model.classifier import SequenceClassifier
from worker.notes import Record
from worker.prepare import Preparer

NOTES = [
    "BP 120/80. HER2 was negative. ER positive in 90% of cells.",
    "No acute distress. Ki-67 index 20%. Follow up in two weeks. Patient agrees.",
    "KRAS G12D mutation detected.",
]


def test_kept_scores_follow_the_events_and_match_scoring_each_note_alone(
    tiny_model_dir: Path,
) -> None:
    model = SequenceClassifier.load(tiny_model_dir, device="cpu", dtype="float32", threads=2)
    events = [
        orjson.dumps({"note_id": f"n{i}", "text": NOTES[i % len(NOTES)] + " x" * i})
        for i in range(24)
    ]
    events.insert(5, b"{not json")  # a failed note keeps its place, as None
    settings = BatchingSettings(token_budget=64, min_batch_rows=1, max_wait_s=0.001)
    result = run_inprocess(model, model, events, settings, chunk_notes=4, keep_scores=True)
    scores = result["note_scores"]
    assert len(scores) == len(events) and scores[5] is None
    preparer = Preparer(
        encoder=model, max_note_chars=1_000_000, max_sentence_tokens=MAX_SENTENCE_TOKENS
    )
    for value, got in zip(events, scores, strict=True):
        if got is None:
            continue
        record = Record(source=SourceRef(None, None, None, None), key=None, value=value)
        [note] = preparer.prepare([record])
        jobs = note.jobs
        alone = model.predict_ids([job.ids for job in jobs])
        assert len(got) == len(alone) > 0
        assert max(abs(a - b) for a, b in zip(alone, got, strict=True)) < 1e-4
    assert "note_scores" not in run_inprocess(model, model, events[:3], settings)
