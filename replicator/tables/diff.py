"""diff-tables: is the replica equal to the primary, and if not, make it so.

Each primary page is checked against the replica with consistent BatchGetItem (100 keys a request), so
memory holds one page, never a table. Then the replica is scanned (keys only) and its keys are looked up
in the primary, which finds the extraneous items. ``--repair`` puts missing and different items and
deletes extraneous ones as it finds them, through the daemon's writer (BatchWriteItem, several requests
in flight, retried until durable); ``--backfill`` only puts every primary item, without comparing.
``--segments N`` splits both scans into N parallel segments; ``--segment I`` runs one, so N machines can
share a large table. With ``version_attribute`` (a replica kept by a versioned path), the replica is read
as its readers see it: tombstones are absent, and the version attribute is not part of an item.
Items and keys compare by value, as DynamoDB does (``tables.compare.normalise``, ``codec.key_id``): a
number the replica holds as ``1.0`` and the primary as ``1`` is no discrepancy, which ``--repair`` could
never clear.

With a :class:`~replicator.changes.shape.ReplicaShape` (the options of the path that keeps the replica),
the primary is seen through it: each primary item is compared as the replica keeps it (projected), an item
the filter leaves out or that has expired is one the replica must not hold, and ``--repair`` and
``--backfill`` write those views. So a filtered replica is equal to its source run with the same options. With ``skip_expired``
an expired item counts on neither side, so a replica that kept its expired items (ttlDeletes skip) is equal too.
Finding extraneous items then reads whole primary items, not keys, to see whether each passes the filter.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from replicator import log
from replicator.changes.codec import Change, Item, encode_item
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.tables.compare import normalise
from replicator.tables.spec import Table, batch_get, check_same_keys, check_segments, scan_pages
from replicator.changes.versions import TOMBSTONE_SUFFIX, replica_view
from replicator.changes.writer import TableWriter
from replicator.errors import NonRetryableWriteError, ReplicatorError

SAMPLE = 10
"""Keys of each kind kept for the summary (all of them are logged up to LOGGED)."""
LOGGED = 1000

_log = log.get("replicator.tables.diff")


@dataclass
class DiffResult:
    scanned: int = 0
    replica_scanned: int = 0
    missing: int = 0
    different: int = 0
    extraneous: int = 0
    written: int = 0
    deleted: int = 0
    repair: bool = False
    backfill: bool = False
    samples: dict[str, list[Item]] = field(default_factory=lambda: {"missing": [], "different": [], "extraneous": []})

    @property
    def discrepancies(self) -> int:
        return self.missing + self.different + self.extraneous

    @property
    def unrepaired(self) -> int:
        return 0 if self.repair else self.discrepancies

    def merge(self, other: "DiffResult") -> None:
        for name in ("scanned", "replica_scanned", "missing", "different", "extraneous", "written", "deleted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, keys in other.samples.items():
            self.samples[kind].extend(keys[: SAMPLE - len(self.samples[kind])])

    def as_json(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "replica_scanned": self.replica_scanned,
            "missing": self.missing,
            "different": self.different,
            "extraneous": self.extraneous,
            "written": self.written,
            "deleted": self.deleted,
            "unrepaired": self.unrepaired,
            "repair": self.repair,
            "backfill": self.backfill,
        }


def _put(table: Table, item: Item) -> Change:
    return Change(key_id=table.key_id(item), keys=table.key_of(item), new_image=item, sequence_number="", created_ms=None)


def _delete(table: Table, keys: Item) -> Change:
    return Change(key_id=table.key_id(keys), keys=table.key_of(keys), new_image=None, sequence_number="", created_ms=None)


class _Run:
    def __init__(self, primary: Table, replica: Table, *, repair: bool, backfill: bool, page_size: int | None,
                 writer: TableWriter | None, version_attribute: str | None, shape: ReplicaShape = KEEP_ALL) -> None:
        self.primary, self.replica = primary, replica
        self.repair, self.backfill, self.page_size = repair, backfill, page_size
        self.writer = writer
        self.version_attribute = version_attribute
        self.tombstone = [version_attribute + TOMBSTONE_SUFFIX] if version_attribute else []
        self.shape = shape
        self.now_s = time.time()  # "expired" is decided against one moment, the run's start
        self.expiry = [shape.skip_expired] if shape.skip_expired else []
        """An expired item counts on neither side: a replica that kept its expired items (ttlDeletes skip)
        holds no extraneous item for them."""
        self._logged = 0
        self._lock = threading.Lock()

    def _found(self, result: DiffResult, kind: str, keys: Item) -> None:
        setattr(result, kind, getattr(result, kind) + 1)
        if len(result.samples[kind]) < SAMPLE:
            result.samples[kind].append(keys)
        with self._lock:
            self._logged += 1
            if self._logged > LOGGED:
                return
        _log.info("discrepancy", kind=kind, key=encode_item(keys), table=str(self.replica.spec))

    def segment(self, segment: int, segments: int) -> DiffResult:
        result = DiffResult(repair=self.repair, backfill=self.backfill)
        for items, _ in scan_pages(self.primary, segment=segment, segments=segments, limit=self.page_size):
            result.scanned += len(items)
            items = self.shape.views(items, self.primary.key_names, self.now_s)  # what the replica should hold
            if self.backfill:
                self._write([_put(self.replica, item) for item in items], result)
                continue
            present = {self.replica.key_id(seen): seen for item in batch_get(self.replica, [self.primary.key_of(i) for i in items])
                       if (seen := replica_view(item, self.version_attribute)) is not None
                       and not self.shape.is_expired(seen, self.now_s)}
            fixes = []
            for item in items:
                other = present.get(self.replica.key_id(item))
                if other is None:
                    self._found(result, "missing", self.primary.key_of(item))
                elif normalise(other) != normalise(item):
                    self._found(result, "different", self.primary.key_of(item))
                else:
                    continue
                fixes.append(_put(self.replica, item))
            if self.repair and fixes:
                self._write(fixes, result)
        if self.backfill:
            return result
        for keys, _ in scan_pages(self.replica, segment=segment, segments=segments, limit=self.page_size, keys_only=True,
                                  also=self.tombstone + self.expiry):
            keys = [self.replica.key_of(k) for k in keys if replica_view(k, self.version_attribute) is not None
                    and not self.shape.is_expired(k, self.now_s)]
            result.replica_scanned += len(keys)
            if self.shape.selects_items:
                known = {self.primary.key_id(k) for k in self.shape.views(batch_get(self.primary, keys),
                                                                          self.primary.key_names, self.now_s)}
            else:
                known = {self.primary.key_id(k) for k in batch_get(self.primary, keys, keys_only=True)}
            extra = [k for k in keys if self.primary.key_id(k) not in known]
            for k in extra:
                self._found(result, "extraneous", k)
            if self.repair and extra:
                self._write([_delete(self.replica, k) for k in extra], result)
        return result

    def _write(self, changes: list[Change], result: DiffResult) -> None:
        assert self.writer is not None
        try:
            stats = self.writer.write(changes)
        except NonRetryableWriteError as exc:
            raise ReplicatorError(f"{self.replica.spec} refused a write: {exc}; fix the cause (table, permissions), "
                                  "then run the command again") from None
        result.written += stats.puts
        result.deleted += stats.deletes


def diff_tables(
    primary: Table,
    replica: Table,
    *,
    repair: bool = False,
    backfill: bool = False,
    segment: int | None = None,
    segments: int | None = None,
    page_size: int | None = None,
    max_in_flight: int = 8,
    version_attribute: str | None = None,
    shape: ReplicaShape = KEEP_ALL,
) -> DiffResult:
    """Compare (and with ``repair`` or ``backfill``, write) one segment, or all ``segments`` in parallel."""
    check_segments(segment, segments)
    check_same_keys(primary, replica)
    shape.check_keys(primary.key_names, version_attribute)
    total = segments or 1
    writer = TableWriter(replica.client, replica.name, max_in_flight=max_in_flight) if (repair or backfill) else None
    run = _Run(primary, replica, repair=repair, backfill=backfill, page_size=page_size, writer=writer,
               version_attribute=version_attribute, shape=shape)
    result = DiffResult(repair=repair, backfill=backfill)
    _log.info("diff_started", primary=str(primary.spec), replica=str(replica.spec), segment=segment,
              segments=total, repair=repair, backfill=backfill)
    try:
        mine = [segment] if segment is not None else list(range(total))
        with ThreadPoolExecutor(max_workers=min(len(mine), 8), thread_name_prefix="diff-segment") as pool:
            for part in pool.map(lambda s: run.segment(s, total), mine):
                result.merge(part)
    finally:
        if writer is not None:
            writer.close()
    _log.info("diff_finished", **result.as_json())
    return result


def summary(result: DiffResult, primary: Table, replica: Table) -> str:
    if result.backfill:
        return f"Backfill: {result.scanned} items scanned in {primary.spec}, {result.written} written to {replica.spec}"
    line = (
        f"Scanned {result.scanned} items in {primary.spec} and {result.replica_scanned} in {replica.spec}: "
        f"{result.missing} missing, {result.different} different, {result.extraneous} extraneous"
    )
    if result.repair and result.discrepancies:
        line += f"; repaired: {result.written} written, {result.deleted} deleted"
    elif result.discrepancies:
        line += "; run again with --repair to make the replica match"
    return line


def sample_lines(result: DiffResult) -> list[str]:
    import json

    lines = []
    for kind, keys in result.samples.items():
        for keys_item in keys:
            lines.append(f"  {kind}: {json.dumps(encode_item(keys_item), sort_keys=True)}")
    return lines
