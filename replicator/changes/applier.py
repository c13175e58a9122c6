"""The pipeline for one batch of stream records: decode, squash, read through, write.

Plain Python with no KCL in it, so it is tested without Java. The record processor calls
:meth:`Applier.apply` and checkpoints only after it returns; the Lambda handler calls
:meth:`Applier.apply_partial`, which says from which record on the batch is not durable, so that the
event source mapping retries from there and nothing after it is skipped.

A record is durable when its key's last change in the batch is: a squashed-away change's successor
carries its state. So the first record not durable is the earliest record of any key whose write
failed, or the first record that cannot be decoded, whichever comes first.

A path's :class:`~replicator.changes.shape.ReplicaShape` acts at two points: TTL expiries it leaves out
are dropped before squash (as if their records were not there), and its filter and projection act on each
key's final state after squash and the read-through (the state, not a record, is what is filtered).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from replicator.changes.codec import Change, RecordFormatError
from replicator.changes.formats import DynamoDBStreamRecords, RecordFormat, SourceRecord
from replicator.changes.reader import SourceReader
from replicator.changes.shape import KEEP_ALL, ReplicaShape
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
    skipped: int = 0
    """Records that made no change (another table's, in a stream that carries several)."""
    ttl_skipped: int = 0
    """TTL expiries left out (``ttlDeletes`` skip): not applied to the replica."""

    @property
    def lag_ms_max(self) -> int | None:
        """Age of the oldest record when its change became durable: source write to destination visibility."""
        return self.latency.max_ms if self.latency else None

    def log_fields(self) -> dict[str, int | None]:
        """What every shell's one ``batch_applied`` line says of a batch, under the same names."""
        return {"records": self.records, "puts": self.writes.puts, "deletes": self.writes.deletes,
                "requests": self.writes.requests, "retries": self.writes.retries, "stale": self.writes.stale,
                "skipped": self.skipped, "ttl_skipped": self.ttl_skipped, "lag_ms_max": self.lag_ms_max}


@dataclass(frozen=True)
class PartialResult:
    """What :meth:`Applier.apply_partial` made durable: every record before ``first_not_durable``."""

    result: BatchResult
    first_not_durable: int | None
    """Index of the first record whose change is not durable (None: all are)."""
    failure: BaseException | None


class Applier:
    def __init__(
        self,
        writer: TableWriter,
        record_format: RecordFormat = DynamoDBStreamRecords(),
        reader: SourceReader | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        shape: ReplicaShape = KEEP_ALL,
    ) -> None:
        if reader is None and record_format.read_through:
            raise ValueError(f"{record_format.name} records name keys only: they need a SourceReader")
        self._writer = writer
        self._format = record_format
        self._reader = reader
        self._clock_ms = clock_ms
        self._shape = shape

    def apply(self, records: Sequence[SourceRecord]) -> BatchResult:
        """Make the batch's final state durable in the destination; raise if it cannot be."""
        per_record = [self._format.decode(record) for record in records]
        kept, ttl_skipped = self._shape.drop_ttl_expiries([c for cs in per_record for c in cs])
        changes = self._shape.apply(self._resolve(squash(kept, in_order=self._format.in_order), None))
        stats = self._writer.write(changes)
        return self._result(records, per_record, stats, ttl_skipped)

    def apply_partial(self, records: Sequence[SourceRecord], deadline: float | None = None) -> PartialResult:
        """Make as much of the batch durable as can be by ``deadline`` (the writer's clock); say from which
        record on it is not. Never raises for a record or a write: a failure is in the result."""
        per_record: list[list[Change]] = []
        failure: BaseException | None = None
        first_not_durable: int | None = None
        for index, record in enumerate(records):
            try:
                per_record.append(self._format.decode(record))
            except RecordFormatError as exc:
                failure, first_not_durable = exc, index
                break
        first_index: dict[str, int] = {}
        for index, changes in enumerate(per_record):
            for change in changes:
                first_index.setdefault(change.key_id, index)
        stats = WriteStats()
        kept, ttl_skipped = self._shape.drop_ttl_expiries([c for cs in per_record for c in cs])
        try:
            squashed = squash(kept, in_order=self._format.in_order)
            outcome = self._writer.write_all(self._shape.apply(self._resolve(squashed, deadline)), deadline)
            stats = outcome.stats
            if outcome.failures:
                earliest = min(first_index[key] for key in outcome.failures)
                if first_not_durable is None or earliest < first_not_durable:
                    first_not_durable = earliest
                    failure = next(iter(outcome.failures.values()))
        except Exception as exc:  # noqa: BLE001 - a read-through or fence refusal fails the whole batch
            first_not_durable, failure = 0, exc
        durable = records[:first_not_durable] if first_not_durable is not None else records
        durable_ttl = sum(1 for cs in per_record[: len(durable)] for c in cs if c.ttl_expiry) if ttl_skipped else 0
        result = self._result(durable, per_record[: len(durable)], stats, durable_ttl)
        return PartialResult(result, first_not_durable, failure)

    def _resolve(self, changes: list[Change], deadline: float | None) -> list[Change]:
        if self._reader is None:
            return changes
        return self._reader.resolve(changes, deadline)

    def _result(self, records: Sequence[SourceRecord], per_record: list[list[Change]], stats: WriteStats,
                ttl_skipped: int = 0) -> BatchResult:
        durable_ms = self._clock_ms()
        created = [c.created_ms for cs in per_record for c in cs if c.created_ms is not None]
        return BatchResult(
            records=len(records),
            writes=stats,
            last_sequence_number=records[-1].sequence_number if records else None,
            latency=Latency.of(created, durable_ms),
            skipped=sum(1 for cs in per_record if not cs),
            ttl_skipped=ttl_skipped,
        )
