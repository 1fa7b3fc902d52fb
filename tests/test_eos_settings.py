"""Exactly-once transactions must be able to commit in time: the worker raises the producer's
transaction.timeout.ms to cover the longest a transaction stays open, and refuses settings a
timeout from kafka_extra (or the brokers' default maximum) cannot cover."""

from __future__ import annotations

import os

import pytest
from confluent_kafka import Producer

from worker.config import load_settings
from worker.errors import ConfigError
from worker.kafka.clients import producer_config


@pytest.fixture(autouse=True)
def _no_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith("BIOMARKER_"):
            monkeypatch.delenv(key)


def _eos(**values: object) -> dict[str, object]:
    return {"processing_guarantee": "exactly-once", **values}


def _problems(**values: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        load_settings(overrides=_eos(**values))
    return caught.value.problems


def test_a_commit_interval_past_librdkafkas_default_raises_the_transaction_timeout() -> None:
    settings = load_settings(overrides=_eos(commit_interval_ms=120_000))
    config = producer_config(settings)
    assert config["transaction.timeout.ms"] == 120_000 + 25_000 + 30_000
    Producer(config).flush(0)  # librdkafka takes it (its message timeout follows)


def test_the_defaults_keep_librdkafkas_transaction_timeout() -> None:
    assert "transaction.timeout.ms" not in producer_config(load_settings(overrides=_eos()))
    at_least_once = load_settings(overrides={"commit_interval_ms": 120_000})
    assert "transaction.timeout.ms" not in producer_config(at_least_once)


def test_a_drain_longer_than_the_transaction_timeout_in_kafka_extra_is_refused() -> None:
    [line] = _problems(drain_timeout_s=60, kafka_extra={"transaction.timeout.ms": "60000"})
    assert line.endswith(
        "drain_timeout_s: exactly-once keeps a transaction open up to commit_interval_ms + "
        "max(drain_timeout_s, revoke_timeout_s) + 30 s (91000 ms), more than "
        "transaction.timeout.ms (60000 ms, from kafka_extra): lower them, or raise "
        "transaction.timeout.ms (at most the brokers' transaction.max.timeout.ms, 900000 by "
        "default)"
    )


def test_a_short_transaction_timeout_in_kafka_extra_is_refused_and_a_long_one_kept() -> None:
    [line] = _problems(commit_interval_ms=8_000, kafka_extra={"transaction.timeout.ms": "5000"})
    assert "commit_interval_ms: " in line and "(5000 ms, from kafka_extra)" in line
    extra = {"transaction.timeout.ms": "300000"}
    settings = load_settings(overrides=_eos(commit_interval_ms=120_000, kafka_extra=extra))
    assert producer_config(settings)["transaction.timeout.ms"] == "300000"


def test_a_window_past_the_brokers_default_maximum_is_refused() -> None:
    [line] = _problems(commit_interval_ms=900_000)
    assert "more than the brokers' default transaction.max.timeout.ms (900000 ms)" in line
