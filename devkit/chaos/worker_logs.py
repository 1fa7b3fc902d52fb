"""What the workers' JSON logs say about a chaos run: fatal errors and lost partitions.

Only the event names and the ``error`` field (Kafka and worker messages, never note text) are
read, plus the code locations of the thread dump a hung worker writes when the run sends it
SIGABRT (Python's faulthandler).
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


def hang_dump(path: Path, limit: int = 80) -> list[str]:
    """The faulthandler thread dump in a worker's log: thread headers and code locations."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    start = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if start is None:
        return []
    kept = [
        line.strip()
        for line in lines[start:]
        if line.startswith(("Fatal Python error", "Thread 0x", "Current thread 0x", '  File "'))
    ]
    return kept[:limit]


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
    dumps = {path.name: hang_dump(path) for path in fleet.log_paths()}
    return {
        "count": len(fleet.slots),
        "starts": fleet.stats.starts,
        "unexpected_exits": len(unexpected),
        "unexpected_exit_codes": dict(Counter(str(e.code) for e in unexpected)),
        "fatal_errors": dict(fatal.most_common()),
        "log_events": dict(events),
        "hung_after_signal": fleet.stats.hung,
        "hang_dumps": {name: dump for name, dump in dumps.items() if dump},
        **fleet.peak_memory_mib(),
    }
