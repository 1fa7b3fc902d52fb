"""Samples the group's committed offsets and the input's log end offsets once a second.

A sample the cluster cannot answer (a broker or the coordinator is down) is skipped, not waited
for; the recovery figures are computed from the samples afterwards (:mod:`.recovery`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from devkit.kafka_admin import AdminUnavailable, GroupOffsets


@dataclass(frozen=True, slots=True)
class OffsetSample:
    at_ms: int
    committed: dict[int, int]
    end: dict[int, int]

    @property
    def lag(self) -> int:
        return sum(max(0, end - self.committed.get(p, 0)) for p, end in self.end.items())

    def lag_of(self, partition: int) -> int:
        return max(0, self.end.get(partition, 0) - self.committed.get(partition, 0))


class OffsetMonitor:
    """A background thread appending :class:`OffsetSample` to :attr:`samples` (one consumer,
    used by that thread only while it runs)."""

    def __init__(
        self,
        client_config: dict[str, str],
        *,
        group: str,
        topic: str,
        partitions: list[int],
        interval_s: float = 1.0,
    ) -> None:
        self._offsets = GroupOffsets(client_config, group, topic, partitions)
        self._interval = interval_s
        self.samples: list[OffsetSample] = []
        self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="offset-monitor", daemon=True)

    def start(self) -> OffsetMonitor:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling; then :meth:`sample` may be called from the caller's thread."""
        self._stop.set()
        self._thread.join(timeout=15)

    def sample(self) -> OffsetSample | None:
        """One sample now (``None`` when the cluster does not answer)."""
        try:
            end = self._offsets.end_offsets()
            committed = self._offsets.committed()
        except AdminUnavailable:
            self.failed += 1
            return None
        return OffsetSample(at_ms=int(time.time() * 1000), committed=committed, end=end)

    def latest(self) -> OffsetSample | None:
        return self.samples[-1] if self.samples else None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            found = self.sample()
            if found is not None:
                self.samples.append(found)
            self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))
