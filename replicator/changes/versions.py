"""Replication versions: the optional fence against a worker that wakes up holding a stale batch.

Why it exists. KCL gives a shard to one worker at a time, but a worker can be frozen in the middle of a
batch (a VM pause, SIGSTOP, a network partition from the lease table) long enough to lose its lease. The
worker that takes the shard over replays it from the last checkpoint and writes newer images. When the
frozen one wakes up, its checkpoint is refused, but the writes it still had in flight land: older images
over newer ones. DynamoDB cannot fence a request by lease, and the lease table and the replica live in
different regions, so no transaction can join them. Instead each replica item carries the version of the
stream record it was written from, and every write is conditional on being newer than what is there.

The version is the stream's label (the time the stream was created, the last part of its ARN), then the
record's sequence number padded to 40 digits, the most DynamoDB Streams uses. Sequence numbers reflect
the order in which records were published to a stream, across its shards, so these strings compare in
the order the changes happened, across shard splits; a stream enabled later (after the table's stream
was disabled and enabled again) sorts after every record of the earlier one.

A deleted item keeps no version, so a stale put arriving after a plain delete would bring the item back.
A delete therefore writes a tombstone: the key, the version, and ``<attribute>_tombstone`` holding the
epoch second after which it may be reaped. Readers of the replica skip items that have that attribute;
DynamoDB's TTL on it, if enabled, removes tombstones at no cost once ``TOMBSTONE_RETENTION_S`` is over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from replicator.changes.codec import Change, Item, RecordFormatError
from replicator.errors import NonRetryableWriteError, ReplicatorError

SEQUENCE_DIGITS = 40
TOMBSTONE_SUFFIX = "_tombstone"
TOMBSTONE_RETENTION_S = 24 * 3600
"""A stream keeps a record 24 hours; a tombstone outlives every record that could still be replayed over it."""

CONDITION = "attribute_not_exists(#version) OR #version < :version"
CONDITION_TIES_APPLY = "attribute_not_exists(#version) OR #version <= :version"
"""For versions that are times (Kinesis Data Streams for DynamoDB): two changes of one item in the same
millisecond have one version, and the one applied later wins, as it most often is the later one."""

CDC_LABEL = "kinesis-cdc"
"""The label of versions made from creation times (``formats.KinesisCdcRecords``), not stream positions."""


def stream_label(stream_arn: str) -> str:
    """The stream's label from its ARN, normalised to one fixed-width form so that labels compare as text."""
    _, sep, label = stream_arn.rpartition("/stream/")
    try:
        if not sep:
            raise ValueError("no /stream/ part")
        created = datetime.fromisoformat(label)
    except ValueError:
        raise ReplicatorError(
            f"{stream_arn!r} is not a DynamoDB stream ARN (…/table/NAME/stream/LABEL): start the processor "
            "through `replicator run`, which passes the source's stream ARN"
        ) from None
    return created.strftime("%Y-%m-%dT%H:%M:%S.%f")


def version_of(label: str, sequence_number: str) -> str:
    if not sequence_number.isdigit() or len(sequence_number) > SEQUENCE_DIGITS:
        raise RecordFormatError(
            f"sequence number {sequence_number!r} is not a number of at most {SEQUENCE_DIGITS} digits, so it "
            "cannot be versioned: run without versionAttribute"
        )
    return f"{label}/{sequence_number.zfill(SEQUENCE_DIGITS)}"


@dataclass(frozen=True)
class Versioning:
    """How one path versions its replica: the attribute's name, and the label of the stream it reads."""

    attribute: str
    label: str
    ties_apply: bool = False
    """True when a version is a time (``CDC_LABEL``): an equal version is written over, not refused."""

    @classmethod
    def by_time(cls, attribute: str) -> "Versioning":
        """Versions from creation times (Kinesis Data Streams for DynamoDB records carry no sequence)."""
        return cls(attribute, CDC_LABEL, ties_apply=True)

    @property
    def tombstone_attribute(self) -> str:
        return self.attribute + TOMBSTONE_SUFFIX

    def put_item_request(self, table: str, change: Change) -> dict[str, Any]:
        """PutItem arguments that write ``change`` only over an older version (or none)."""
        version = {"S": version_of(self.label, change.sequence_number)}
        if change.new_image is None:
            created_s = (change.created_ms // 1000) if change.created_ms is not None else int(time.time())
            item = {**change.keys, self.attribute: version,
                    self.tombstone_attribute: {"N": str(created_s + TOMBSTONE_RETENTION_S)}}
        else:
            clash = {self.attribute, self.tombstone_attribute} & change.new_image.keys()
            if clash:
                raise NonRetryableWriteError(
                    "ReservedAttribute",
                    f"source item has attribute {sorted(clash)[0]!r}, which versionAttribute={self.attribute} "
                    "reserves for replication versions: choose a versionAttribute the source never uses",
                )
            item = {**change.new_image, self.attribute: version}
        return {
            "TableName": table,
            "Item": item,
            "ConditionExpression": CONDITION_TIES_APPLY if self.ties_apply else CONDITION,
            "ExpressionAttributeNames": {"#version": self.attribute},
            "ExpressionAttributeValues": {":version": version},
        }


def replica_view(item: Item | None, attribute: str | None) -> Item | None:
    """What a reader of a versioned replica sees: no tombstones, and no version attribute."""
    if item is None or attribute is None:
        return item
    if attribute + TOMBSTONE_SUFFIX in item:
        return None
    return {name: value for name, value in item.items() if name != attribute}
