"""The naive peer: one message at a time, classify, produce, wait for delivery, commit.

What a first Kafka + transformers consumer usually looks like, with the same segmentation, model
and output format as the worker. ``per_sentence`` classifies each sentence alone (as the
Hugging Face ``pipeline`` does by default, ``batch_size=1``); otherwise a note's sentences form
one batch. Both commit synchronously after every delivered output (at-least-once). The runner
gives them the model as transformers alone runs it (one padded row per sentence) and, for
comparison, the worker's packed rows.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.corpus import MAX_SENTENCE_CHARS, Corpus
from bench.kafka_io import Topics, collect, produce_backlog
from bench.stats import summarise
from worker.errors import InvalidEvent
from worker.events import Provenance, SourceRef, build_output, parse_note
from worker.model.classifier import SequenceClassifier
from worker.segmentation import split_sentences


def _classify(model: SequenceClassifier, texts: list[str], per_sentence: bool) -> list[float]:
    rows = [item.ids for item in model.encode(texts)]
    if per_sentence:
        return [model.predict_ids([row])[0] for row in rows]
    return model.predict_ids(rows)


def run_naive(
    bootstrap: str,
    model: SequenceClassifier,
    corpus: Corpus,
    provenance: Provenance,
    *,
    per_sentence: bool,
    partitions: int,
) -> dict[str, Any]:
    topics = Topics.fresh(bootstrap, "naive", partitions)
    produce_backlog(topics, corpus)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": topics.group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    consumer.subscribe([topics.input])
    done = 0
    started_ms = 0
    try:
        while done < corpus.notes:
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            started_ms = started_ms or int(time.time() * 1000)
            try:
                event = parse_note(message.value(), max_chars=1_000_000)
            except InvalidEvent:
                continue
            text = event.text
            spans = split_sentences(text, max_chars=MAX_SENTENCE_CHARS)
            scores = _classify(model, [text[s:e] for s, e in spans], per_sentence)
            source = SourceRef(
                message.topic(), message.partition(), message.offset(), message.timestamp()[1]
            )
            value = build_output(
                event,
                spans=spans,
                scores=scores,
                truncated=[False] * len(spans),
                source=source,
                provenance=provenance,
                include_text=False,
            )
            producer.produce(topics.output, value=value, key=message.key())
            producer.flush(30)
            consumer.commit(message=message, asynchronous=False)
            done += 1
    finally:
        consumer.close()
    mode = "naive per sentence" if per_sentence else "naive per note"
    return summarise(collect(topics, corpus), started_ms, mode=mode)
