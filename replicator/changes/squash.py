"""Squash a batch to the last change per primary key.

Within a shard, records arrive in the order they were written, and DynamoDB Streams keeps every change
to one key in one shard (KCL finishes a parent shard before its children). So the last record of a batch
for a key is that key's state at the end of the batch, and the earlier ones need not be written at all.
This also keeps one BatchWriteItem request from naming a key twice, which DynamoDB rejects.

A format whose records may come out of order (Kinesis Data Streams for DynamoDB) places each change by
its creation time instead, carried in its sequence number: the newest change per key is kept, and of two
with the same time the later in the batch, as the fence does (``versions``).
"""

from __future__ import annotations

from collections.abc import Iterable

from replicator.changes.codec import Change


def squash(changes: Iterable[Change], *, in_order: bool = True) -> list[Change]:
    """Return the last (or, not ``in_order``, the newest) change for each key, in the order those kept
    changes occurred in the batch."""
    last: dict[str, Change] = {}
    for change in changes:
        kept = last.pop(change.key_id, None)
        if not in_order and kept is not None and int(kept.sequence_number) > int(change.sequence_number):
            change = kept
        last[change.key_id] = change
    return list(last.values())
