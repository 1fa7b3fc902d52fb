"""``bench --quick`` end to end on the real broker with the tiny model (fails, never skips)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog

from bench import cache_ab
from devkit.localkafka import LocalKafka
from worker.cli import bench
from worker.demo.notes import demo_notes
from worker.model.classifier import SequenceClassifier

pytestmark = pytest.mark.kafka


@pytest.fixture(autouse=True)
def _keep_logging_config() -> Iterator[None]:
    """The command configures structlog onto pytest's captured stderr: restore it after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_quick_bench_measures_every_pass_and_writes_results(
    kafka: LocalKafka, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    bench.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "bench",
            "--quick",
            "--name",
            "smoke",
            "--model",
            str(tiny_model_dir),
            "--bootstrap",
            kafka.bootstrap_servers,
            "--out",
            str(tmp_path),
            "--threads",
            "1",
        ]
    )
    assert args.handler(args) == 0

    results = orjson.loads((tmp_path / "smoke.json").read_bytes())
    assert (tmp_path / "smoke-throughput.png").stat().st_size > 1000
    assert (tmp_path / "smoke-latency.png").stat().st_size > 1000
    notes = results["corpus"]["notes"]
    # MTSamples when the shared data is next to the checkout, else the 12 bundled notes.
    assert notes == len(demo_notes(24)[1]) and results["corpus"]["sentences"] > notes
    sweep = results["model_only"]["sweep"]
    assert [p["token_budget"] for p in sweep] == [1024, 4096]
    assert results["model_only"]["best_budget"] in (1024, 4096)
    assert results["model_only"]["all_notes"]["sentences"] == results["corpus"]["sentences"]
    e2e = results["end_to_end"]
    runs = {"saturation": e2e["saturation"], "paced": e2e["paced"], **results["peers"]}
    assert set(runs) == {
        "saturation",
        "paced",
        "naive_per_sentence",
        "naive_per_note",
        "naive_per_note_packed",
        "faust",
    }
    for name, run in runs.items():
        assert run["sentences_per_s"] > 0, name
        assert len(run["latencies_ms"]) == run["notes"], name
        assert 0 <= run["latency"]["p50_ms"] <= run["latency"]["p99_ms"], name
    # Every runtime saw the same notes: each note's sentences counted once.
    assert runs["saturation"]["sentences"] == results["corpus"]["sentences"]
    assert runs["faust"]["notes"] == notes
    assert results["end_to_end"]["saturation"]["batches"]["batches"] >= 1
    cpu = results["end_to_end"]["saturation"]["cpu"]
    assert cpu["process_cpu_s"] > 0 and cpu["broker_cpu_s"] == 0  # an outside broker
    paced = results["end_to_end"]["paced"]
    assert paced["notes"] == min(16, notes)  # the lead-in (up to 8 notes) is not measured
    assert 0 <= paced["warmup_notes"] <= max(0, notes - 16)
    round_ = _check_the_round(results, runs)
    ratios = results["ratios"]
    assert ratios["end_to_end_over_model_only"] == round_["ratio"]
    assert ratios["end_to_end_over_bracketing_model_only"] == round_["bracketed_ratio"]
    assert ratios["end_to_end_with_cache_over_model_only"] == round_["ratio_with_cache"]
    assert ratios["cache_speedup"] == round_["cache_speedup"]
    for key in (
        "end_to_end_over_model_only",
        "end_to_end_over_bracketing_model_only",
        "end_to_end_over_best_model_only",
        "ours_over_naive_per_sentence",
        "ours_over_faust",
    ):
        assert ratios[key] > 0 and not math.isnan(ratios[key]), key
    assert ratios["paced_p99_target_ms"] > 20
    # --quick: two paced passes; the one with the median (here the lower) p99 is reported
    passes = results["paced_passes"]
    assert [p["p99_ms"] for p in passes] == ratios["paced_p99_passes_ms"]
    assert len(passes) == 2 and ratios["paced_p99_ms"] == min(ratios["paced_p99_passes_ms"])
    assert 0 <= ratios["paced_passes_within_own_batches_target"] <= 2
    backends = {row["backend"]: row for row in results["backends"]}
    assert set(backends) == {"torch", "onnx"}
    assert backends["onnx"]["label_agreement"] >= 0.995
    assert backends["onnx"]["max_abs_diff"] < 1e-4
    assert results["machine"]["usable_cores"] >= 1 and len(results["load_at_start"]) == 3
    printed = capsys.readouterr().out
    assert "end_to_end_over_model_only" in printed and "smoke.json" in printed


def _check_the_round(results: dict[str, Any], runs: dict[str, Any]) -> dict[str, Any]:
    """The one round of ``--quick``: its ratios, with the cache and without, as reported."""
    (round_,) = results["rounds"]  # --quick: one model-only + backlog round
    assert round_["saturation_sentences_per_s"] == runs["saturation"]["sentences_per_s"]
    assert round_["ratio"] == pytest.approx(
        round_["saturation_sentences_per_s"] / round_["model_only_sentences_per_s"], abs=1e-3
    )
    # the closing model-only pass brackets the backlog pass with the one before it
    assert "closing_model_only" in results["pass_seconds"]
    bracket = (round_["model_only_sentences_per_s"] + round_["next_model_only_sentences_per_s"]) / 2
    assert round_["bracketed_ratio"] == pytest.approx(
        round_["saturation_sentences_per_s"] / bracket, abs=1e-3
    )
    # every sentence scored in the reported pass; the same worker with its score cache beside it
    assert results["settings"]["score_cache_size"] == 0
    assert round_["cache_answered_without_cache"] == 0
    assert "round_0_with_cache" in results["pass_seconds"] and not round_["with_cache_first"]
    assert round_["ratio_with_cache"] == pytest.approx(
        round_["with_cache_sentences_per_s"] / round_["model_only_sentences_per_s"], abs=1e-3
    )
    assert round_["cache_speedup"] == pytest.approx(
        round_["with_cache_sentences_per_s"] / round_["saturation_sentences_per_s"], abs=1e-3
    )
    assert 0 < round_["cache_answered_token_share"] < 1  # (the tiny vocabulary: many alike)
    return round_


def test_cache_ab_pairs_passes_with_and_without_the_cache(
    kafka: LocalKafka, tiny_model_dir: Path
) -> None:
    """``python -m bench.cache_ab`` on the real broker: ABBA pairs, the cache answering
    repeats only in the passes where it is on."""
    model = SequenceClassifier.load(tiny_model_dir, device="cpu")
    report = cache_ab.measure(
        model, kafka.bootstrap_servers, notes=24, pairs=2, token_budget=1024, warmup_notes=4
    )
    assert [(p["pair"], p["cache"]) for p in report["passes"]] == [
        (0, "on"),
        (0, "off"),
        (1, "off"),
        (1, "on"),
    ]
    for p in report["passes"]:
        assert (p["cache_answered_sentences"] > 0) == (p["cache"] == "on"), p
    rate = {(p["pair"], p["cache"]): p["sentences_per_s"] for p in report["passes"]}
    assert report["on_over_off_per_pair"] == [
        pytest.approx(rate[(n, "on")] / rate[(n, "off")], abs=1e-3) for n in (0, 1)
    ]
    assert 0 < report["cache_answered_token_share"] < 1
