"""The pipeline for one batch of stream records: decode, squash, write.

Plain Python with no KCL in it, so it is tested without Java; the record processor calls
:meth:`Applier.apply` and checkpoints only after it returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from replicator.changes.codec import decode_record
from replicator.changes.squash import squash
from replicator.changes.writer import TableWriter, WriteStats


@dataclass(frozen=True)
class Latency:
    """A statistic set of one batch's replication latency: for each record that carries a creation time,
    the milliseconds from its source write (ApproximateCreationDateTime) to the moment its batch was durable
    in the destination. A record squashed away counts too: by then a later change of its key is durable."""

    count: int
    sum_ms: int
    min_ms: int
    max_ms: int

    @classmethod
    def of(cls, created_ms: Sequence[int], durable_ms: int) -> "Latency | None":
        if not created_ms:
            return None
        oldest, newest = min(created_ms), max(created_ms)
        return cls(len(created_ms), durable_ms * len(created_ms) - sum(created_ms), durable_ms - newest,
                   durable_ms - oldest)


@dataclass(frozen=True)
class BatchResult:
    records: int
    writes: WriteStats
    last_sequence_number: str | None
    latency: Latency | None = None
    """Per-record replication latency of the batch (None when no record carries a creation time)."""

    @property
    def lag_ms_max(self) -> int | None:
        """Age of the oldest record when its change became durable: source write to destination visibility."""
        return self.latency.max_ms if self.latency else None


class Applier:
    def __init__(self, writer: TableWriter, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._writer = writer
        self._clock_ms = clock_ms

    def apply(self, records: Sequence[bytes]) -> BatchResult:
        """Make the batch's final state durable in the destination; raise if it cannot be."""
        changes = [decode_record(data) for data in records]
        stats = self._writer.write(squash(changes))
        durable_ms = self._clock_ms()
        return BatchResult(
            records=len(changes),
            writes=stats,
            last_sequence_number=changes[-1].sequence_number if changes else None,
            latency=Latency.of([c.created_ms for c in changes if c.created_ms is not None], durable_ms),
        )
