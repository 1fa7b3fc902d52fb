"""Prometheus metrics of the worker. Labels carry topics and outcomes, never note content.

docs/METRICS.md lists every family exported here (tests/test_metrics_docs.py keeps them equal).
"""

from __future__ import annotations

import weakref
from typing import Protocol

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

from worker import __version__

_BATCH_SENTENCES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_BATCH_TOKENS = (64, 256, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
#: End-to-end latency reaches hours when a backfill or a backlog is read.
_LATENCY_SECONDS = (*_SECONDS, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)

#: Registries that already collect process_*, python_info and python_gc_* (the global registry
#: does from import time).
_WITH_RUNTIME_COLLECTORS: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet([REGISTRY])


class ModelDescription(Protocol):
    """What :func:`set_build_info` reads of a model's ``info``."""

    @property
    def name(self) -> str: ...

    @property
    def sha256(self) -> str: ...

    @property
    def device(self) -> str: ...

    @property
    def dtype(self) -> str: ...


class Metrics:
    """All metrics of one worker process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        _add_runtime_collectors(r)
        self.events_in = Counter("biomarker_events_in", "Input records read.", registry=r)
        self.events_out = Counter("biomarker_events_out", "Enriched events delivered.", registry=r)
        self.dead_letters = Counter(
            "biomarker_dead_letters",
            "Records sent to the dead-letter topic.",
            ["reason"],
            registry=r,
        )
        self.skipped = Counter(
            "biomarker_skipped",
            "Parts of input records with no note text to score (counted, not dead-lettered).",
            ["reason"],
            registry=r,
        )
        self.sentences_in = Counter(
            "biomarker_sentences_in", "Sentences submitted for scoring.", registry=r
        )
        self.sentences_out = Counter(
            "biomarker_sentences_out",
            "Sentences scored (by the model or the score cache).",
            registry=r,
        )
        self.score_cache_hits = Counter(
            "biomarker_score_cache_hits",
            "Sentences answered by the score cache (repeats of recent ones), not the model.",
            registry=r,
        )
        self.batch_sentences = Histogram(
            "biomarker_batch_sentences",
            "Sentences per micro-batch.",
            buckets=_BATCH_SENTENCES,
            registry=r,
        )
        self.batch_tokens = Histogram(
            "biomarker_batch_tokens",
            "Padded tokens per micro-batch.",
            buckets=_BATCH_TOKENS,
            registry=r,
        )
        self.padding_ratio = Gauge(
            "biomarker_padding_ratio", "Padding share of the last micro-batch.", registry=r
        )
        self.inference_seconds = Histogram(
            "biomarker_inference_seconds",
            "Model time per micro-batch.",
            buckets=_SECONDS,
            registry=r,
        )
        self.latency_seconds = Histogram(
            "biomarker_end_to_end_seconds",
            "From the input record's timestamp to the output's delivery.",
            buckets=_LATENCY_SECONDS,
            registry=r,
        )
        self.queue_sentences = Gauge(
            "biomarker_queue_sentences", "Sentences waiting for the model.", registry=r
        )
        self.inflight_notes = Gauge(
            "biomarker_inflight_notes", "Notes read but not yet delivered.", registry=r
        )
        self.inflight_bytes = Gauge(
            "biomarker_inflight_bytes",
            "Bytes of input records read but not yet delivered.",
            registry=r,
        )
        self.paused = Gauge("biomarker_paused", "1 while fetching is paused.", registry=r)
        self.pauses = Counter(
            "biomarker_pauses", "Times fetching was paused for backpressure.", registry=r
        )
        self.commits = Counter("biomarker_commits", "Offset commits.", ["outcome"], registry=r)
        self.rebalances = Counter(
            "biomarker_rebalances", "Partition assignment changes.", ["kind"], registry=r
        )
        self.assigned_partitions = Gauge(
            "biomarker_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.consumer_lag = Gauge(
            "biomarker_consumer_lag",
            "High watermark minus position, for the partitions this worker owns.",
            ["topic", "partition"],
            registry=r,
        )
        self.sentences_flagged = Counter(
            "biomarker_sentences_flagged",
            "Scored sentences labelled as biomarker mentions (ratio to sentences_out: drift).",
            registry=r,
        )
        self.sentences_flagged_by_rule = Counter(
            "biomarker_sentences_flagged_by_rule",
            "Sentences labelled as biomarker mentions by a lexicon rule alone (model score "
            "below the threshold); part of sentences_flagged.",
            registry=r,
        )
        self.delivery_errors = Counter(
            "biomarker_delivery_errors",
            "Outputs and dead letters that could not be produced: refused by the client or "
            "failed after the producer's retries; by topic kind (output, dlq) and error code.",
            ["topic", "code"],
            registry=r,
        )
        self.kafka_errors = Counter(
            "biomarker_kafka_errors",
            "Client-wide errors librdkafka reported, by Kafka error code.",
            ["code"],
            registry=r,
        )
        self.group_lag = Gauge(
            "biomarker_group_lag",
            "Log end offset minus the group's committed offset, for every partition of the "
            "input topics (owned by any member or by none).",
            ["topic", "partition"],
            registry=r,
        )
        self.build_info = Gauge(
            "biomarker_build_info",
            "Always 1; labels name the worker version, runtime, model and device.",
            ["version", "runtime", "model", "model_sha256", "device", "dtype"],
            registry=r,
        )
        self.device_memory = Gauge(
            "biomarker_device_memory_bytes",
            "Accelerator memory allocated by the model.",
            registry=r,
        )

    def batch_done(
        self, *, sentences: int, tokens: int, padded_tokens: int, seconds: float
    ) -> None:
        self.batch_sentences.observe(sentences)
        self.batch_tokens.observe(padded_tokens)
        self.padding_ratio.set(1.0 - tokens / padded_tokens if padded_tokens else 0.0)
        self.inference_seconds.observe(seconds)
        self.sentences_out.inc(sentences)

    def cache_answered(self, *, sentences: int, tokens: int) -> None:
        self.score_cache_hits.inc(sentences)
        self.sentences_out.inc(sentences)


def set_build_info(metrics: Metrics, *, runtime: str, model: ModelDescription) -> None:
    """``biomarker_build_info`` = 1 with this process's version, runtime and model."""
    metrics.build_info.labels(
        version=__version__,
        runtime=runtime,
        model=model.name,
        model_sha256=model.sha256,
        device=model.device,
        dtype=model.dtype,
    ).set(1)


def _add_runtime_collectors(registry: CollectorRegistry) -> None:
    """Process (CPU, memory, file descriptors), platform and garbage-collector metrics, once per
    registry."""
    if registry in _WITH_RUNTIME_COLLECTORS:
        return
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    _WITH_RUNTIME_COLLECTORS.add(registry)
