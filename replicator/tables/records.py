"""diff-record and replicate-record: one item, by its key, in the primary and the replica.

Both read with consistent GetItem. replicate-record makes the replica's item what the primary's is now:
puts the primary's item, or deletes the replica's when the primary has none. The two items compare by
value, as DynamoDB does (``tables.compare.normalise``): numbers whatever their spelling, sets in any order.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from replicator import log
from replicator.changes.codec import Item, encode_item
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.tables.compare import normalise
from replicator.tables.spec import Table, check_same_keys
from replicator.changes.versions import replica_view

_log = log.get("replicator.tables.records")


@dataclass
class RecordDiff:
    key: Item
    primary_item: Item | None
    replica_item: Item | None

    @property
    def status(self) -> str:
        """equal (both alike, or both absent), missing, extraneous or different."""
        if self.primary_item is None and self.replica_item is None:
            return "equal"
        if self.replica_item is None:
            return "missing"
        if self.primary_item is None:
            return "extraneous"
        return "equal" if normalise(self.primary_item) == normalise(self.replica_item) else "different"

    def as_json(self) -> dict[str, Any]:
        def show(item: Item | None) -> Any:
            return None if item is None else encode_item(item)

        return {"status": self.status, "key": show(self.key), "primary": show(self.primary_item),
                "replica": show(self.replica_item)}


@dataclass
class ReplicateResult:
    key: Item
    action: str
    """put (the primary's item was written to the replica) or delete (the primary has none)."""
    before: RecordDiff

    def as_json(self) -> dict[str, Any]:
        return {"action": self.action, "status_before": self.before.status, "key": encode_item(self.key)}


def _get(table: Table, key: Item) -> Item | None:
    return table.client.get_item(TableName=table.name, Key=key, ConsistentRead=True).get("Item")


def diff_record(primary: Table, replica: Table, key: Item, version_attribute: str | None = None,
                shape: ReplicaShape = KEEP_ALL) -> RecordDiff:
    """``version_attribute``: the replica is versioned; compare it as its readers see it. ``shape``: the
    primary's item is compared as the replica keeps it (``changes.shape``); filtered out, it is absent."""
    check_same_keys(primary, replica)
    shape.check_keys(primary.key_names, version_attribute)
    now_s = time.time()
    replica_item = replica_view(_get(replica, key), version_attribute)
    if replica_item is not None and shape.is_expired(replica_item, now_s):
        replica_item = None  # an expired item counts on neither side (a replica that kept it: ttlDeletes skip)
    return RecordDiff(key=key, primary_item=shape.view(_get(primary, key), primary.key_names, now_s),
                      replica_item=replica_item)


def replicate_record(primary: Table, replica: Table, key: Item, version_attribute: str | None = None,
                     shape: ReplicaShape = KEEP_ALL) -> ReplicateResult:
    before = diff_record(primary, replica, key, version_attribute, shape)
    if before.primary_item is not None:
        replica.client.put_item(TableName=replica.name, Item=before.primary_item)
        action = "put"
    else:
        replica.client.delete_item(TableName=replica.name, Key=key)
        action = "delete"
    _log.info("record_replicated", action=action, key=encode_item(key), status_before=before.status,
              replica=str(replica.spec))
    return ReplicateResult(key=key, action=action, before=before)
