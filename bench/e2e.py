"""End-to-end runs of the real :class:`~worker.pipeline.Pipeline` through the local broker."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from bench.corpus import Corpus
from bench.kafka_io import Topics, collect, produce_backlog, produce_paced
from bench.stats import latency_beyond_own_work, summarise
from worker.config import WorkerSettings, load_settings
from worker.loading import provenance_for
from worker.metrics import Metrics
from worker.model.classifier import SequenceClassifier
from worker.pipeline import Pipeline
from worker.runs import run_until


class RecordingMetrics(Metrics):
    """The worker's metrics plus every micro-batch's size and model time."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, int, int, float]] = []
        self.cached_sentences = 0
        self.cached_tokens = 0

    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None:
        super().batch_done(
            sentences=sentences, tokens=tokens, padded_tokens=padded_tokens, seconds=seconds
        )
        self.batches.append((sentences, tokens, padded_tokens, seconds))

    def cache_answered(self, *, sentences: int, tokens: int) -> None:
        super().cache_answered(sentences=sentences, tokens=tokens)
        self.cached_sentences += sentences
        self.cached_tokens += tokens

    def describe(self) -> dict[str, Any]:
        if not self.batches:
            return {"batches": 0}
        tokens = sum(b[1] for b in self.batches)
        padded = sum(b[2] for b in self.batches)
        return {
            "batches": len(self.batches),
            "median_batch_sentences": statistics.median(b[0] for b in self.batches),
            "median_batch_padded_tokens": statistics.median(b[2] for b in self.batches),
            "median_batch_s": round(statistics.median(b[3] for b in self.batches), 4),
            "padding_ratio": round(1 - tokens / padded, 4) if padded else 0.0,
            "model_busy_s": round(sum(b[3] for b in self.batches), 2),
            "cache_answered_sentences": self.cached_sentences,
            "cache_answered_tokens": self.cached_tokens,
        }


@dataclass(frozen=True, slots=True)
class PipelineRun:
    """How the benchmark configures the worker for its end-to-end runs."""

    bootstrap: str
    partitions: int
    overrides: dict[str, Any]

    def settings(self, topics: Topics) -> WorkerSettings:
        return load_settings(
            overrides={
                "bootstrap_servers": topics.bootstrap,
                "input_topic": topics.input,
                "output_topic": topics.output,
                "dlq_topic": topics.dlq,
                "group_id": topics.group,
                "log_level": "warning",
                **self.overrides,
            }
        )


class _Watch:
    """Stop condition that also notes when the worker got its partitions (ms since epoch)."""

    def __init__(self, notes: int) -> None:
        self.notes = notes
        self.started_ms: int | None = None

    def __call__(self, pipeline: Pipeline) -> bool:
        if self.started_ms is None and pipeline.readiness()[0]:
            self.started_ms = int(time.time() * 1000)
        return pipeline.delivered >= self.notes


def _pipeline(
    run: PipelineRun, topics: Topics, model: SequenceClassifier, notes: int
) -> tuple[Pipeline, RecordingMetrics, _Watch]:
    settings = run.settings(topics)
    metrics = RecordingMetrics()
    watch = _Watch(notes)
    pipeline = Pipeline(
        settings=settings,
        model=model,
        provenance=provenance_for(model, settings),
        metrics=metrics,
    )
    return pipeline, metrics, watch


def saturation(run: PipelineRun, model: SequenceClassifier, corpus: Corpus) -> dict[str, Any]:
    """All notes are in the topic before the worker starts: the backlog case."""
    topics = Topics.fresh(run.bootstrap, "sat", run.partitions)
    produce_backlog(topics, corpus)
    pipeline, metrics, watch = _pipeline(run, topics, model, corpus.notes)
    if run_until(pipeline, lambda: watch(pipeline)) != 0 or watch.started_ms is None:
        raise RuntimeError("pipeline failed during the saturation run")
    result = summarise(collect(topics, corpus), watch.started_ms, mode="saturation")
    result["batches"] = metrics.describe()
    return result


def paced(
    run: PipelineRun,
    model: SequenceClassifier,
    corpus: Corpus,
    rate: float,
    *,
    warmup_notes: int = 0,
    saturation_sentences_per_s: float | None = None,
) -> dict[str, Any]:
    """A producer writes notes at ``rate`` notes/s while the worker runs (open loop).

    The first ``warmup_notes`` of ``corpus`` lead in at the same rate and are left out of the
    latency percentiles: they carry the clients' start-up (connections, partition metadata, the
    idempotent producer's id, fetch sessions on new partitions), not the service's steady state.
    Their worst latency is reported as ``warmup_max_ms``. Given the saturation rate, latency
    less each note's own work at that rate is reported too (``latency_beyond_own_work``).
    """
    topics = Topics.fresh(run.bootstrap, "paced", run.partitions)
    pipeline, metrics, watch = _pipeline(run, topics, model, corpus.notes)
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(run_until(pipeline, lambda: watch(pipeline))), name="pipeline"
    )
    worker.start()
    producer = produce_paced(topics, corpus, rate, start=lambda: pipeline.readiness()[0])
    worker.join()
    producer.join(10)
    if codes != [0]:
        raise RuntimeError("pipeline failed during the paced run")
    deliveries = collect(topics, corpus)
    warmup = set(corpus.keys[:warmup_notes])
    measured = [d for d in deliveries if d.key not in warmup]
    first_sent = min(d.sent_ms for d in measured)
    result = summarise(measured, first_sent, mode="paced", offered_notes_per_s=round(rate, 2))
    result["warmup_notes"] = len(warmup)
    result["warmup_max_ms"] = max((d.latency_ms for d in deliveries if d.key in warmup), default=0)
    result["batches"] = metrics.describe()
    if saturation_sentences_per_s:
        result["latency_beyond_own_work"] = latency_beyond_own_work(
            measured, saturation_sentences_per_s
        )
    return result


def pass_summary(paced_run: dict[str, Any]) -> dict[str, Any]:
    """One paced pass in brief: its latency percentiles and its batches' median size and time."""
    batches = paced_run["batches"]
    return {
        **paced_run["latency"],
        "sentences_per_s": paced_run["sentences_per_s"],
        "median_batch_sentences": batches.get("median_batch_sentences"),
        "median_batch_s": batches.get("median_batch_s"),
    }
