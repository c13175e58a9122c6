"""The bootstrap loader's rule: write a loaded item only where the replica has neither it nor its tombstone.

bootstrap loads a table (a Scan, or a point-in-time export) while the path already replicates its stream
into the replica. A loaded image is a snapshot: by the time it is written, the path may have applied a
newer change of the same key (a put, an update, or a delete, which a versioned path writes as a
tombstone: the key, the version and ``<attribute>_tombstone``). Writing the snapshot over it would take
the item back in time, or undo the delete, and no later stream record would repair it. So each loaded
item is one PutItem conditional on ``attribute_not_exists(<partition key>)``: the key is absent only when
the path has applied no change of it since it started, and then the snapshot is the item's latest state
(or an older one that a stream record still to come replaces). A ConditionalCheckFailed is therefore a
skip, counted, not an error.

A loaded item carries no version: the path's fence (``changes.versions``) writes any versioned change over
an item that has none, so a stream record newer than the snapshot still lands after it. An item of the
source holding the version attribute or its tombstone attribute is refused, as the path refuses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replicator.changes.codec import Change
from replicator.changes.versions import TOMBSTONE_SUFFIX
from replicator.errors import NonRetryableWriteError

CONDITION = "attribute_not_exists(#key)"


def absent_key_put(partition_key: str, version_attribute: str) -> Callable[[str, Change], dict[str, Any]]:
    """The PutItem request builder of the loader (``TableWriter(put_request=...)``): the item, written only
    where the replica has no item (nor tombstone) of its key."""
    reserved = {version_attribute, version_attribute + TOMBSTONE_SUFFIX}

    def request(table: str, change: Change) -> dict[str, Any]:
        assert change.new_image is not None, "the loader only puts"
        clash = reserved & change.new_image.keys()
        if clash:
            raise NonRetryableWriteError(
                "ReservedAttribute",
                f"source item has attribute {sorted(clash)[0]!r}, which --version-attribute {version_attribute} "
                "reserves for replication versions: choose a --version-attribute the source never uses",
            )
        return {"TableName": table, "Item": change.new_image, "ConditionExpression": CONDITION,
                "ExpressionAttributeNames": {"#key": partition_key}}

    return request
