"""The chaos run's report: a table on stdout and a JSON file. Counts and offsets only; never
note text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _rows(title: str, rows: list[tuple[str, Any]]) -> list[str]:
    width = max(len(name) for name, _ in rows)
    return [f"\n{title}", *(f"  {name.ljust(width)}  {_fmt(value)}" for name, value in rows)]


def render(result: dict[str, Any]) -> str:
    audit = result["audit"]
    lines = [
        f"chaos run: {result['verdict'].upper()} ({'; '.join(result['problems']) or 'no problems'})"
    ]
    lines += [f"warning: {warning}" for warning in result["warnings"]]
    lines += _rows(
        "records",
        [
            ("inputs", audit["inputs"]),
            ("outputs (distinct source offsets)", audit["outputs_distinct"]),
            ("dead letters (distinct)", audit["dead_letters_distinct"]),
            ("lost", audit["lost"]),
            ("  below the committed offset", audit["lost_below_committed"]),
            ("  never reached (stuck)", audit["lost_unreached"]),
            ("duplicates", f"{audit['duplicates']} ({audit['duplicates_pct']}%)"),
            ("misfiled", sum(audit["misfiled"].values())),
            ("committed == log end", audit["committed_equals_log_end"]),
            ("max end-to-end latency (s)", _seconds(audit["latency_ms"]["max"])),
            (
                "p50 / p99 latency (s)",
                f"{_seconds(audit['latency_ms']['p50'])} / {_seconds(audit['latency_ms']['p99'])}",
            ),
            ("peak worker RSS (MiB)", result["workers"]["peak_hwm_mib"]),
            ("worker exits (unexpected)", result["workers"]["unexpected_exits"]),
            ("workers hung after a signal", result["workers"]["hung_after_signal"]),
            ("input rate achieved (records/s)", result["input_rate"]),
            ("run time (s)", result["run_s"]),
        ],
    )
    lines += _rows("inputs by kind", list(audit["inputs_by_kind"].items()))
    if audit["dead_letters_by_reason"]:
        lines += _rows("dead letters by reason", list(audit["dead_letters_by_reason"].items()))
    rare = audit["outcomes_of_rare_kinds"]
    if rare:
        outcomes = [(k, ", ".join(f"{o} x{n}" for o, n in v.items())) for k, v in rare.items()]
        lines += _rows("what became of the large and oversized notes", outcomes)
    if audit["duplicates_by_fault"]:
        lines += _rows("duplicates by fault", list(audit["duplicates_by_fault"].items()))
    lines.append("\nfaults (seconds; resumed/recovered: after the fault was cleared)")
    header = ("fault", "lasted", "resumed", "recovered", "longest stall", "max lag")
    lines.append("  " + "  ".join(h.ljust(16) for h in header))
    for row in result["faults"]:
        cells = (
            row["fault"],
            row["fault_s"],
            row["commits_resumed_s"],
            row["lag_recovered_s"],
            row["longest_stall_s"],
            row["max_lag"],
        )
        lines.append("  " + "  ".join(_fmt(c).ljust(16) for c in cells))
    for row in audit["stuck_partitions"]:
        lines.append(
            f"\nSTUCK partition {row['partition']}: committed {row['committed']}, log end "
            f"{row['log_end']} ({row['records_behind']} records behind), blocked at a "
            f"{row['blocked_at_kind']} record"
        )
    for error, count in result["workers"]["fatal_errors"].items():
        lines.append(f"worker fatal error x{count}: {error}")
    return "\n".join(lines)


def _seconds(ms: int | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.1f}"


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )
