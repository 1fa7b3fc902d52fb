"""Every input against the outputs and dead letters: lost, duplicated, late, misfiled.

*Lost* is an input offset with neither an output nor a dead letter. It is split into offsets
below the group's committed offset (the at-least-once promise broken) and offsets the group never
got past (a stuck partition, reported with the record that blocks it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from devkit.chaos.corpus import ANY_REASON
from devkit.chaos.faults import FaultWindow
from devkit.chaos.reader import Copy, InputInfo

BEFORE_FAULTS = "before-faults"


@dataclass(frozen=True, slots=True)
class AuditInput:
    inputs: dict[tuple[int, int], InputInfo]
    outputs: list[Copy]
    dead_letters: list[Copy]
    committed: dict[int, int]
    end: dict[int, int]
    windows: list[FaultWindow]


def _percentile(values: list[int], share: float) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def fault_at(windows: list[FaultWindow], at_ms: int) -> str:
    """The fault active, or the most recent one, at ``at_ms``."""
    name = BEFORE_FAULTS
    for window in sorted(windows, key=lambda w: w.start_ms):
        if window.start_ms <= at_ms:
            name = window.name
    return name


def _duplicates(copies: list[Copy], windows: list[FaultWindow]) -> tuple[int, Counter[str]]:
    """Extra copies per input (second and later, by timestamp) and the fault each falls in."""
    by_input: dict[tuple[int, int], list[int]] = {}
    for copy in copies:
        by_input.setdefault((copy.partition, copy.offset), []).append(copy.timestamp_ms)
    extra = 0
    causes: Counter[str] = Counter()
    for stamps in by_input.values():
        for stamp in sorted(stamps)[1:]:
            extra += 1
            causes[fault_at(windows, stamp)] += 1
    return extra, causes


def _first_stamps(copies: list[Copy]) -> dict[tuple[int, int], int]:
    first: dict[tuple[int, int], int] = {}
    for copy in copies:
        key = (copy.partition, copy.offset)
        first[key] = min(first.get(key, copy.timestamp_ms), copy.timestamp_ms)
    return first


def _accepted(
    expect: str, reasons: dict[tuple[int, int], str | None], key: tuple[int, int]
) -> set[str | None]:
    if expect == ANY_REASON:
        return {reasons[key]} if key in reasons else set()
    return {expect}


def _outcomes(
    inputs: dict[tuple[int, int], InputInfo],
    outputs: dict[tuple[int, int], int],
    reasons: dict[tuple[int, int], str | None],
) -> dict[str, dict[str, int]]:
    """What became of the records of the rare kinds (large, oversized): output or reason."""
    found: dict[str, Counter[str]] = {}
    for key, info in inputs.items():
        if info.kind in ("large", "oversized_output"):
            outcome = "output" if key in outputs else f"dead letter: {reasons.get(key)}"
            if key not in outputs and key not in reasons:
                outcome = "nothing"
            found.setdefault(info.kind, Counter())[outcome] += 1
    return {kind: dict(counts) for kind, counts in sorted(found.items())}


def audit(data: AuditInput) -> dict[str, Any]:
    inputs = data.inputs
    answered_out = _first_stamps(data.outputs)
    answered_dlq = _first_stamps(data.dead_letters)
    reasons = {(c.partition, c.offset): c.reason for c in data.dead_letters}
    lost_below: list[dict[str, Any]] = []
    unreached: list[dict[str, Any]] = []
    misfiled: Counter[str] = Counter()
    for key, info in sorted(inputs.items()):
        if key not in answered_out and key not in answered_dlq:
            entry = {"partition": key[0], "offset": key[1], "kind": info.kind}
            below = key[1] < data.committed.get(key[0], 0)
            (lost_below if below else unreached).append(entry)
        elif info.expect is not None and reasons.get(key) not in _accepted(
            info.expect, reasons, key
        ):
            misfiled[f"{info.kind}->{reasons.get(key) or 'output'}"] += 1
        elif info.expect is None and key in answered_dlq:
            misfiled[f"{info.kind}->{reasons.get(key)}"] += 1
    both = len(set(answered_out) & set(answered_dlq))
    out_extra, out_causes = _duplicates(data.outputs, data.windows)
    dlq_extra, dlq_causes = _duplicates(data.dead_letters, data.windows)
    latencies = [
        stamp - inputs[key].timestamp_ms for key, stamp in answered_out.items() if key in inputs
    ]
    partitions = sorted(data.end)
    offsets = [
        {
            "partition": p,
            "committed": data.committed.get(p),
            "log_end": data.end[p],
            "equal": data.committed.get(p) == data.end[p],
        }
        for p in partitions
    ]
    stuck = []
    for p in partitions:
        at = data.committed.get(p, 0)
        if at != data.end[p]:
            blocker = inputs.get((p, at))
            stuck.append(
                {
                    "partition": p,
                    "committed": at,
                    "log_end": data.end[p],
                    "records_behind": data.end[p] - at,
                    "blocked_at_kind": blocker.kind if blocker is not None else None,
                }
            )
    lost = len(lost_below) + len(unreached)
    total_extra = out_extra + dlq_extra
    return {
        "inputs": len(inputs),
        "inputs_by_kind": dict(sorted(Counter(i.kind for i in inputs.values()).items())),
        "outputs_distinct": len(answered_out),
        "output_records": len(data.outputs),
        "dead_letters_distinct": len(answered_dlq),
        "dead_letter_records": len(data.dead_letters),
        "dead_letters_by_reason": dict(sorted(Counter(reasons.values()).items())),
        "lost": lost,
        "lost_below_committed": len(lost_below),
        "lost_unreached": len(unreached),
        "lost_examples": (lost_below + unreached)[:20],
        "lost_by_kind": dict(Counter(e["kind"] for e in lost_below + unreached)),
        "answered_twice_output_and_dead_letter": both,
        "misfiled": dict(misfiled),
        "outcomes_of_rare_kinds": _outcomes(inputs, answered_out, reasons),
        "duplicates": total_extra,
        "duplicates_pct": round(100 * total_extra / max(1, len(inputs)), 3),
        "duplicate_outputs": out_extra,
        "duplicate_dead_letters": dlq_extra,
        "duplicates_by_fault": dict((out_causes + dlq_causes).most_common()),
        "latency_ms": {
            "max": max(latencies) if latencies else None,
            "p50": _percentile(latencies, 0.50),
            "p99": _percentile(latencies, 0.99),
        },
        "offsets": offsets,
        "committed_equals_log_end": all(row["equal"] for row in offsets),
        "stuck_partitions": stuck,
    }
