"""What the workers' JSON logs say about a chaos run: fatal errors and lost partitions.

Only the event names and the ``error`` field (Kafka and worker messages, never note text) are
read.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from devkit.chaos.fleet import Fleet

_ERROR_CHARS = 200


def _events(path: Path) -> list[dict[str, Any]]:
    events = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return []
    for line in lines:
        if line.startswith(b"{"):
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict):
                events.append(event)
    return events


def summarise(fleet: Fleet) -> dict[str, Any]:
    fatal: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for path in fleet.log_paths():
        for event in _events(path):
            name = str(event.get("event", ""))
            if name in ("fatal_error", "partitions_lost", "rewound_to_committed", "drained"):
                events[name] += 1
            if name == "fatal_error":
                fatal[str(event.get("error", ""))[:_ERROR_CHARS]] += 1
    unexpected = [exit for exit in fleet.stats.exits if not exit.expected]
    return {
        "count": len(fleet.slots),
        "starts": fleet.stats.starts,
        "unexpected_exits": len(unexpected),
        "unexpected_exit_codes": dict(Counter(str(e.code) for e in unexpected)),
        "fatal_errors": dict(fatal.most_common()),
        "log_events": dict(events),
        **fleet.peak_memory_mib(),
    }
