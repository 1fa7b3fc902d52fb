"""Per-partition bookkeeping: output order and the committable watermark.

Every read record is appended to its partition's ``waiting`` queue in offset order. Records leave
``waiting`` only from the head, once they are ready (scored, or marked for the dead-letter topic),
so outputs are produced in input offset order. They then wait in ``unacked`` until every output
they caused is delivered; the head of ``unacked`` advances the committable offset. The committable
offset therefore never passes a record whose outputs were not all delivered, whatever order
delivery reports arrive in (Arroyo's "offsets are data", without gap heuristics).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

from worker.notes import Record

PartitionKey = tuple[str, int]


class PartitionState:
    """What is in flight for one assigned partition."""

    __slots__ = (
        "active",
        "committable",
        "held",
        "partition",
        "started",
        "topic",
        "unacked",
        "waiting",
    )

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.waiting: deque[tuple[int, Record]] = deque()
        self.unacked: deque[tuple[int, Record]] = deque()
        self.committable: int | None = None  # next offset to commit
        self.active = True
        self.held = False  # paused while its one careful record runs (worker.kafka.crashes)
        #: The first offset fetched since the partition was assigned (kept across rewinds):
        #: where a rewind goes back to when the group has no committed offset for it.
        self.started: int | None = None

    def __repr__(self) -> str:
        return f"PartitionState({self.topic}[{self.partition}], inflight={self.inflight})"

    @property
    def key(self) -> PartitionKey:
        return (self.topic, self.partition)

    @property
    def inflight(self) -> int:
        return len(self.waiting) + len(self.unacked)

    def add(self, offset: int, record: Record) -> None:
        if self.waiting and offset <= self.waiting[-1][0]:
            raise ValueError("offsets must grow within a partition")
        self.waiting.append((offset, record))

    def take_ready(self) -> Iterator[Record]:
        """Records whose outputs can be produced now, in offset order; they move to ``unacked``."""
        while self.waiting and self.waiting[0][1].ready:
            entry = self.waiting.popleft()
            self.unacked.append(entry)
            yield entry[1]

    def acknowledge(self) -> int | None:
        """Advance past delivered records; return the new committable offset if it moved."""
        moved = False
        while self.unacked and self.unacked[0][1].delivered:
            self.committable = self.unacked.popleft()[0] + 1
            moved = True
        return self.committable if moved else None

    def abandon(self) -> int:
        """Forget undelivered work (revoked or lost partition); returns how many records.

        Every record is cancelled, also those already taken for output: one still being rendered
        (in a host process) is then never produced, and a late delivery report of one already
        produced is not counted again (:meth:`OffsetTracker.delivered`)."""
        self.active = False
        for _offset, record in (*self.waiting, *self.unacked):
            record.cancel()
        dropped = len(self.waiting) + len(self.unacked)
        self.waiting.clear()
        self.unacked.clear()
        return dropped


class OffsetTracker:
    """The assigned partitions' states, and which of them have new acknowledgements."""

    def __init__(self) -> None:
        self.partitions: dict[PartitionKey, PartitionState] = {}
        self._acked: set[PartitionState] = set()
        self.inflight_bytes = 0

    @property
    def inflight(self) -> int:
        return sum(state.inflight for state in self.partitions.values())

    def assign(self, keys: Iterable[PartitionKey]) -> list[PartitionState]:
        states = [PartitionState(*key) for key in keys]
        self.partitions.update((state.key, state) for state in states)
        return states

    def heads(self) -> list[str]:
        """``topic[partition]@offset`` of the oldest unfinished record of each partition."""
        heads = []
        for state in self.partitions.values():
            queue = state.unacked or state.waiting
            if queue:
                heads.append(f"{state.topic}[{state.partition}]@{queue[0][0]}")
        return heads

    def get(self, key: PartitionKey) -> PartitionState | None:
        return self.partitions.get(key)

    def add(self, state: PartitionState, offset: int, record: Record) -> None:
        state.add(offset, record)
        self.inflight_bytes += record.size

    def take_ready(self) -> Iterator[Record]:
        for state in list(self.partitions.values()):
            yield from state.take_ready()

    def delivered(self, record: Record) -> None:
        """Every output of ``record`` is acknowledged by the brokers."""
        record.delivered = True
        if record.cancelled:  # its partition was forgotten, and its bytes counted out, then
            record.value = None
            return
        self.inflight_bytes -= record.size
        record.value = None  # the original bytes are no longer needed
        state = self.partitions.get((record.source.topic or "", record.source.partition or 0))
        if state is not None:
            self._acked.add(state)

    def committable(self) -> dict[PartitionKey, int]:
        """Partitions whose committable offset moved since the last call, with that offset."""
        moved: dict[PartitionKey, int] = {}
        for state in self._acked:
            offset = state.acknowledge()
            if offset is not None and state.active:
                moved[state.key] = offset
        self._acked.clear()
        return moved

    def remove(self, keys: Iterable[PartitionKey]) -> int:
        """Forget these partitions and their unfinished records; returns how many records."""
        dropped = 0
        for key in keys:
            state = self.partitions.pop(key, None)
            if state is not None:
                dropped += self._forget(state)
        return dropped

    def reset(self) -> None:
        """Forget every unfinished record but keep the partitions (after a rewind)."""
        for state in self.partitions.values():
            self._forget(state)
        fresh = {key: PartitionState(*key) for key in self.partitions}
        for key, state in fresh.items():
            state.started = self.partitions[key].started
        self.partitions = fresh

    def _forget(self, state: PartitionState) -> int:
        self.inflight_bytes -= sum(
            record.size for _o, record in (*state.waiting, *state.unacked) if not record.delivered
        )
        self._acked.discard(state)
        return state.abandon()
