"""The chaos run's CI subset: every fault against a 3-node cluster, shortened, with a tiny model.

1,000 inputs (1% poison of every kind, two ~196,000-character notes, one note whose output would
be too large for a Kafka message: it must be dead-lettered), 2 worker processes, faults in
sequence: 2 SIGKILLs, a rolling SIGTERM restart, the group coordinator's broker SIGKILLed for
5 s, a 5 s output outage, a slow model for 8 s, the oversized output. The audit must find
nothing lost and every partition committed to its log end. The full run and its figures:
docs/RELIABILITY.md.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from devkit.chaos import ChaosOptions, run
from devkit.chaos.options import CI_PRESET, FAULTS

pytestmark = pytest.mark.kafka


def test_chaos_subset_loses_nothing_and_commits_to_the_log_end(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "chaos-ci.json"
    options = ChaosOptions(
        **CI_PRESET, model_path=str(tiny_model_dir), out=out, workdir=tmp_path / "run"
    )
    code, result = run(options, quiet=False)

    written = orjson.loads(out.read_bytes())
    found = written["audit"]
    assert found["lost"] == 0, found["lost_examples"]
    assert found["committed_equals_log_end"], found["stuck_partitions"]
    assert found["misfiled"] == {}
    assert code == 0 and written["verdict"] == "pass", written["problems"]
    assert found["inputs"] == options.notes
    assert found["outputs_distinct"] + found["dead_letters_distinct"] == options.notes
    poison = {"not_utf8", "not_json", "schema_violation", "empty_text", "text_too_large"}
    assert poison | {"null_value"} <= set(found["dead_letters_by_reason"])
    rare = found["outcomes_of_rare_kinds"]
    assert rare["large"] == {"output": 2}
    assert list(rare["oversized_output"]) in (
        ["dead letter: output_too_large"],
        ["dead letter: too_many_sentences"],
    )
    for key in ("duplicates", "duplicates_pct", "duplicates_by_fault", "latency_ms", "offsets"):
        assert key in found
    assert found["latency_ms"]["max"] is not None
    assert [f["fault"] for f in written["faults"]] == list(FAULTS)
    for fault in written["faults"]:
        assert "error" not in fault["details"], fault
        for key in ("commits_resumed_s", "lag_recovered_s", "longest_stall_s", "max_lag"):
            assert key in fault
    assert written["workers"]["peak_hwm_mib"] > 0
    assert written == orjson.loads(orjson.dumps(result))
