"""Per-partition bookkeeping: output order and the committable watermark.

Every read record becomes a :class:`PendingNote` appended to its partition's ``waiting`` queue in
offset order. Notes leave ``waiting`` only from the head, once their result (or dead-letter
reason) is known, so outputs are produced in input offset order. They then wait in ``unacked``
until the producer's delivery report; the head of ``unacked`` advances the committable offset.
The committable offset therefore never passes a record whose output was not delivered, whatever
order delivery reports arrive in (arroyo's "offsets are data", without gap heuristics).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from worker.events import Headers
from worker.processing import NoteSlot


@dataclass(slots=True, eq=False, kw_only=True)
class PendingNote(NoteSlot):
    """One input record from read until its output is delivered."""

    state: PartitionState
    offset: int
    timestamp: int | None
    key: bytes | None
    headers: Headers | None
    delivered: bool = False


class PartitionState:
    """What is in flight for one assigned partition."""

    __slots__ = ("active", "committable", "partition", "topic", "unacked", "waiting")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.waiting: deque[PendingNote] = deque()
        self.unacked: deque[PendingNote] = deque()
        self.committable: int | None = None  # next offset to commit
        self.active = True

    def __repr__(self) -> str:
        return f"PartitionState({self.topic}[{self.partition}], inflight={self.inflight})"

    @property
    def inflight(self) -> int:
        return len(self.waiting) + len(self.unacked)

    def add(self, note: PendingNote) -> None:
        if self.waiting and note.offset <= self.waiting[-1].offset:
            raise ValueError("offsets must grow within a partition")
        self.waiting.append(note)

    def take_ready(self) -> Iterator[PendingNote]:
        """Notes whose output can be produced now, in offset order; they move to ``unacked``."""
        while self.waiting and self.waiting[0].ready:
            note = self.waiting.popleft()
            self.unacked.append(note)
            yield note

    def acknowledge(self) -> int | None:
        """Advance past delivered notes; return the new committable offset if it moved."""
        moved = False
        while self.unacked and self.unacked[0].delivered:
            self.committable = self.unacked.popleft().offset + 1
            moved = True
        return self.committable if moved else None

    def abandon(self) -> int:
        """Forget undelivered work (revoked or lost partition); returns how many notes."""
        self.active = False
        dropped = 0
        for note in self.waiting:
            if note.work is not None:
                note.work.cancelled = True
            dropped += 1
        dropped += len(self.unacked)
        self.waiting.clear()
        self.unacked.clear()
        return dropped
