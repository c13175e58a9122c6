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
class BatchResult:
    records: int
    writes: WriteStats
    last_sequence_number: str | None
    lag_ms_max: int | None
    """Age of the oldest record when its change became durable: source write to destination visibility."""


class Applier:
    def __init__(self, writer: TableWriter, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._writer = writer
        self._clock_ms = clock_ms

    def apply(self, records: Sequence[bytes]) -> BatchResult:
        """Make the batch's final state durable in the destination; raise if it cannot be."""
        changes = [decode_record(data) for data in records]
        stats = self._writer.write(squash(changes))
        created = [c.created_ms for c in changes if c.created_ms is not None]
        lag = self._clock_ms() - min(created) if created else None
        return BatchResult(
            records=len(changes),
            writes=stats,
            last_sequence_number=changes[-1].sequence_number if changes else None,
            lag_ms_max=lag,
        )
