"""The faust runtime's producer is idempotent (faust enables that only inside transactions)."""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

import faust
import pytest

from worker.config import WorkerSettings
from worker.faust_runtime.agent import app_settings
from worker.faust_runtime.producer import IdempotentApp, IdempotentProducer

ROOT = Path(__file__).resolve().parent.parent


def _aiokafka_producer(app: faust.App) -> object:
    async def build() -> object:
        return app.producer._new_producer()

    return asyncio.run(build())


def test_the_runtime_app_produces_idempotently_with_acks_all() -> None:
    app = IdempotentApp("group", **app_settings(WorkerSettings()))
    assert isinstance(app.producer, IdempotentProducer)
    producer = _aiokafka_producer(app)
    assert producer._txn_manager is not None  # type: ignore[attr-defined]  # idempotence on
    assert app.producer._settings_extra()["acks"] == "all"


def test_a_plain_faust_app_is_not_idempotent_outside_transactions() -> None:
    """What the runtime's own app changes: faust's default producer has no idempotence."""
    app = faust.App("group", **app_settings(WorkerSettings()))
    producer = _aiokafka_producer(app)
    assert producer._txn_manager is None  # type: ignore[attr-defined]


def test_the_embedding_example_builds_its_app_and_agent(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """examples/faust_app.py as a team would run it (without connecting: no worker started)."""
    monkeypatch.setenv("BIOMARKER_MODEL_PATH", str(tiny_model_dir))
    example = runpy.run_path(str(ROOT / "examples" / "faust_app.py"), run_name="example")
    assert isinstance(example["app"], IdempotentApp)
    assert isinstance(example["classifier"], faust.types.AgentT)
    assert set(example["app"].agents) >= {example["classifier"].name}
