"""Squash a batch to the last change per primary key.

Within a shard, records arrive in the order they were written, and DynamoDB Streams keeps every change
to one key in one shard (KCL finishes a parent shard before its children). So the last record of a batch
for a key is that key's state at the end of the batch, and the earlier ones need not be written at all.
This also keeps one BatchWriteItem request from naming a key twice, which DynamoDB rejects.
"""

from __future__ import annotations

from collections.abc import Iterable

from replicator.changes.codec import Change


def squash(changes: Iterable[Change]) -> list[Change]:
    """Return the last change for each key, in the order those last changes occurred."""
    last: dict[str, Change] = {}
    for change in changes:
        last.pop(change.key_id, None)
        last[change.key_id] = change
    return list(last.values())
