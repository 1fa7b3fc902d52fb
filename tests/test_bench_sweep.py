"""Benchmark helpers: the model-only budget sweep (repeated passes, the choice of budget) and
the latency analysis."""

from __future__ import annotations

from collections.abc import Sequence

from bench.modelonly import chosen_budget, sweep


def _points(rates: dict[int, float]) -> list[dict[str, float]]:
    return [{"token_budget": budget, "sentences_per_s": rate} for budget, rate in rates.items()]


def test_the_smallest_budget_within_the_tolerance_of_the_fastest_is_chosen() -> None:
    rates = {1024: 1_619.0, 2048: 1_860.0, 4096: 1_843.0, 8192: 1_782.0, 16384: 1_959.0}
    assert chosen_budget(_points(rates), tolerance=0.0) == 16384
    assert chosen_budget(_points(rates), tolerance=0.03) == 16384  # 2048 is 5.1% slower
    assert chosen_budget(_points(rates), tolerance=0.06) == 2048
    assert chosen_budget(_points(rates), tolerance=0.2) == 1024


def test_each_budget_runs_its_passes_in_alternating_order_and_counts_its_median() -> None:
    calls: list[int] = []

    def predict(batch: Sequence[Sequence[int]]) -> list[float]:
        calls.append(len(batch))
        return [0.5] * len(batch)

    rows = [[1, 2, 3, 4]] * 64
    points, best = sweep(predict, rows, (16, 64), pad_multiple=1, repeats=3)
    assert [p["token_budget"] for p in points] == [16, 64]
    for point in points:
        passes = point["passes_sentences_per_s"]
        assert len(passes) == 3
        assert point["sentences_per_s"] == sorted(passes)[1]
    assert best in (16, 64)
    # Batches of 4 rows at budget 16, 16 rows at 64; each pass starts with one warm-up batch.
    per_pass = {16: [4] * 17, 64: [16] * 5}
    expected = (
        per_pass[16] + per_pass[64] + per_pass[64] + per_pass[16] + per_pass[16] + per_pass[64]
    )
    assert calls == expected


def test_latency_beyond_own_work_takes_each_notes_sentences_at_the_saturation_rate_out() -> None:
    from bench.kafka_io import Delivery
    from bench.stats import latency_beyond_own_work

    # 100 sentences/s: a 50-sentence note's own work is 500 ms, a 2-sentence note's 20 ms.
    deliveries = [Delivery(b"big", 0, 700, 50)] + [
        Delivery(f"n{i}".encode(), 0, 120, 2) for i in range(99)
    ]
    beyond = latency_beyond_own_work(deliveries, sentences_per_s=100.0)
    assert beyond["own_work_p99_ms"] == 20.0
    assert beyond["p50_ms"] == 100.0
    assert beyond["p99_ms"] == 100.0  # the big note waited 200 ms, one in a hundred
    assert max(d.latency_ms for d in deliveries) == 700
