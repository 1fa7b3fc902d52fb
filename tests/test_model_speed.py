"""The A/B model speed benchmark on a tiny model: both models measured each round, a ratio."""

from __future__ import annotations

from pathlib import Path

import orjson

from bench import model_speed


def test_both_models_are_measured_every_round_and_the_report_is_written(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "speed.json"
    model = str(tiny_model_dir)
    code = model_speed.main([model, model, "--sentences", "40", "--rounds", "2", "--out", str(out)])
    assert code == 0
    report = orjson.loads(out.read_bytes())
    for threads in (1, 2):
        block = report[f"threads_{threads}"]
        assert block["sentences"] == 40
        assert len(block["old_sentences_per_s"]) == len(block["new_sentences_per_s"]) == 2
        assert all(rate > 0 for rate in block["old_sentences_per_s"] + block["new_sentences_per_s"])
        assert block["median_ratio_new_over_old"] > 0
