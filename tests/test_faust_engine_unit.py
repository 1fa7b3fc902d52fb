"""The faust runtime against in-memory fakes: a message held across a rebalance, TLS settings,
the embedded agent's budgets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes import WordModel
from worker.config import WorkerSettings, load_settings
from worker.errors import UsageError
from worker.events import Provenance
from worker.faust_runtime.credentials import tls_context
from worker.faust_runtime.engine import Engine, Incoming

IN, OUT, DLQ = "notes", "enriched", "dlq"
PROVENANCE = Provenance("word", "1", "0" * 64, 0.5, "rules")


def _message(offset: int) -> Incoming:
    value = orjson.dumps({"note_id": str(offset), "text": "PSA was 4.2 ng/mL."})
    return Incoming(IN, 0, offset, None, None, value, None)


def test_a_message_held_for_room_across_a_revoke_is_read_again_not_taken() -> None:
    """The agent waits for room holding the next message; a revoke that runs out of time drops
    the work in flight and commits nothing. Taking the held message into the partition's next
    state would skip the offsets before it when faust reads them again, and commit past them."""
    produced: list[int] = []
    commits: list[dict[Any, int]] = []

    async def send(topic: str, key: Any, value: Any, headers: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        if topic == OUT:
            produced.append(int(orjson.loads(value)["note_id"]))
        future.set_result(None)
        return future

    async def commit(offsets: dict[Any, int]) -> bool:
        commits.append(dict(offsets))
        return True

    settings = load_settings(
        overrides={
            "input_topic": IN,
            "output_topic": OUT,
            "dlq_topic": DLQ,
            "max_inflight_notes": 4,
            "revoke_timeout_s": 0.0,  # the deadline passes with work in flight
            "commit_interval_ms": 100,
        }
    )
    engine = Engine(
        settings=settings,
        model=WordModel(delay_s=0.3),
        provenance=PROVENANCE,
        send=send,
        commit=commit,
    )

    async def scenario() -> None:
        engine.start()
        engine.assigned({(IN, 0)})
        for offset in range(4):
            await engine.accept(_message(offset))  # the room is full after the fourth
        held = asyncio.create_task(engine.accept(_message(4)))
        await asyncio.sleep(0.01)
        await engine.revoke({(IN, 0)})  # faust's rebalances are eager
        await asyncio.sleep(0.01)
        assert held.done()
        engine.assigned({(IN, 0)})  # back to this worker: faust reads from the committed offset
        for offset in range(8):
            await engine.accept(_message(offset))
        await asyncio.sleep(2)
        await engine.drain()

    asyncio.run(scenario())
    assert sorted(produced) == list(range(8))
    assert commits and commits[-1] == {(IN, 0): 8}


def test_the_faust_tls_context_takes_a_ca_directory_or_probe_and_names_a_bad_file(
    tmp_path: Path,
) -> None:
    for ca in (str(tmp_path), "probe"):
        settings = WorkerSettings(security_protocol="SSL", ssl_ca_location=ca)
        assert tls_context(settings).verify_mode == ssl.CERT_REQUIRED
    missing = WorkerSettings(security_protocol="SSL", ssl_ca_location=str(tmp_path / "none.pem"))
    with pytest.raises(UsageError, match="TLS settings: FileNotFoundError"):
        tls_context(missing)


def test_an_embedded_agent_applies_the_note_budgets_of_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.faust_runtime.agent import add_classifier_agent, app_settings, engine_of
    from worker.faust_runtime.producer import IdempotentApp

    monkeypatch.setattr("worker.loading.provenance_for", lambda model, settings: PROVENANCE)
    settings = load_settings(
        overrides={"runtime": "faust", "max_note_sentences": 2, "max_output_bytes": 2048}
    )
    app = IdempotentApp(settings.group_id, **app_settings(settings))
    engine = engine_of(add_classifier_agent(app, settings, model=WordModel()))
    assert engine.outputs.max_output_bytes == 2048
    assert engine._preparation.preparer.max_note_sentences == 2


def test_a_model_call_still_running_after_the_drain_is_reported() -> None:
    """A model call that never returns would keep the process alive after the drain (the
    interpreter joins its thread): the runner exits through os._exit when the engine says so."""

    async def delivered(topic: str, key: Any, value: Any, headers: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def committed(offsets: dict[Any, int]) -> bool:
        return True

    overrides = {"input_topic": IN, "output_topic": OUT, "dlq_topic": DLQ, "drain_timeout_s": 0.1}
    stuck = WordModel(delay_s=1.0)
    settings = load_settings(overrides=overrides)
    parts = {"provenance": PROVENANCE, "send": delivered, "commit": committed}
    engine = Engine(settings=settings, model=stuck, **parts)

    async def scenario() -> None:
        engine.start()
        engine.assigned({(IN, 0)})
        await engine.accept(_message(0))
        await asyncio.sleep(0.3)  # the model call is running
        await engine.drain()

    asyncio.run(scenario())
    assert engine.model_calls_unfinished() == 1
