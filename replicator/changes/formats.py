"""Record formats: what one stream record says, as the changes it makes.

A path reads one format; each is a small decoder from a record's bytes (and its position in the shard)
to zero or more :class:`~replicator.changes.codec.Change`. Everything after decoding (squash, the
read-through, the writer, the fence) is the same for all of them. The formats differ in what they promise:

* ``dynamodb``: DynamoDB Streams records (through the adapter, or in a Lambda event). In order per key,
  exactly once per shard lineage: the last record of a key in a batch is its state.
* ``dynamodb-cdc``: Kinesis Data Streams for DynamoDB. The same images, but AWS promises neither order nor
  uniqueness, so a change is placed by its creation time (``in_order`` is False): squash keeps the newest
  per key, and the fence (on by default, keyed on that time) refuses an older change over a newer one.
* ``keys-only``: a record names a key; the item's present state is read from the source table. Order and
  duplicates cannot matter: every read sees the present.
* ``binlog``: write actions (PutItem, DeleteItem, BatchWrite) that a producer appends; applied in order per
  shard, as the producer keeps one item's actions on one shard.

Items in plain JSON (binlog, keys-only) become DynamoDB JSON exactly: numbers keep every digit (read as
``Decimal``, never float), and a binary key attribute is given as base64 text.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

import orjson

from replicator.changes.codec import (
    AttributeValue,
    Change,
    Item,
    RecordFormatError,
    change_from_record,
    decode_item,
    is_ttl_expiry,
    key_id,
)

KeySchema = tuple[tuple[str, str], ...]
"""A table's key attributes in order (partition key first), each with its type: S, N or B."""

CDC_VERSION_ATTRIBUTE = "replicator_version"
"""The fence's attribute for ``dynamodb-cdc`` paths when none is given: that format needs the fence."""

_TYPE_OF_TAG: dict[str, type | tuple[type, ...]] = {
    "S": str, "N": str, "B": str, "BOOL": bool, "NULL": bool, "M": dict, "L": list, "SS": list, "NS": list,
    "BS": list,
}


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """One record as a shell receives it: its bytes and its position in the shard (what a checkpoint or a
    Lambda batch item failure names)."""

    data: bytes
    sequence_number: str
    parsed: Any = None
    """The record as its runtime already parsed it, or None. A Lambda event's DynamoDB record arrives as an
    object; writing it back to bytes for the decoder to parse again cost 11 µs a record."""

    def shown(self) -> str:
        """The record's first 200 characters, for an error that names it."""
        return repr(self.data[:200]) if self.parsed is None else repr(self.parsed)[:200]


class RecordFormat(Protocol):
    name: str
    in_order: bool
    """True when a shard delivers one key's changes in the order they happened (squash keeps the last);
    False when only their creation times order them (squash keeps the newest)."""
    read_through: bool
    """True when records name keys only, so the applier needs a ``reader`` of the source table."""

    def decode(self, record: SourceRecord) -> list[Change]:
        """The record's changes, in the order they apply; raise RecordFormatError if it is not one."""
        ...


def _exact_json(data: bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


def _parse(record: SourceRecord, what: str, loads: Callable[[bytes], Any] = _exact_json) -> Any:
    """The record's JSON (numbers exact by default; orjson.JSONDecodeError is a ValueError too)."""
    if record.parsed is not None:
        return record.parsed
    try:
        return loads(record.data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordFormatError(
            f"record {record.sequence_number} is not {what} ({exc}): {record.shown()}"
        ) from None


def is_dynamodb_json(item: Any) -> bool:
    """True when every attribute is a one-tag DynamoDB JSON value (``{"S": "x"}``, ``{"N": "1"}``, ...).

    A plain item whose every attribute happens to be such an object reads as DynamoDB JSON; the README
    says to write those items in DynamoDB JSON."""
    if not isinstance(item, dict) or not item:
        return False
    for value in item.values():
        if not isinstance(value, dict) or len(value) != 1:
            return False
        (tag, inner), = value.items()
        if tag not in _TYPE_OF_TAG or not isinstance(inner, _TYPE_OF_TAG[tag]):
            return False
    return True


def plain_value(value: Any) -> AttributeValue:
    """A plain JSON value to DynamoDB JSON (boto3 form). Numbers keep their digits."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if value is None:
        return {"NULL": True}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, float):
        raise RecordFormatError(f"{value!r} is a float, which cannot hold every DynamoDB number exactly: give a "
                                "Decimal (or read JSON with parse_float=Decimal)")
    if isinstance(value, (int, Decimal)):
        return {"N": str(value)}
    if isinstance(value, list):
        return {"L": [plain_value(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): plain_value(v) for k, v in value.items()}}
    raise RecordFormatError(f"{value!r} is not a JSON value")


def to_item(data: Any, schema: KeySchema, where: str) -> Item:
    """An item (or a key) in DynamoDB JSON or plain JSON to boto3 form, its key attributes checked."""
    if not isinstance(data, dict) or not data:
        raise RecordFormatError(f"{where}: expected an item as a JSON object, got {str(data)[:200]}")
    if is_dynamodb_json(data):
        item = decode_item(data)
    else:
        item = {str(name): plain_value(value) for name, value in data.items()}
        for name, kind in schema:
            value = data.get(name)
            if kind == "B" and isinstance(value, str):
                try:
                    item[name] = {"B": base64.b64decode(value, validate=True)}
                except binascii.Error:
                    raise RecordFormatError(f"{where}: binary key attribute {name!r} is not base64") from None
    for name, kind in schema:
        value = item.get(name)
        if value is None:
            raise RecordFormatError(f"{where}: no key attribute {name!r} in {str(data)[:200]}")
        if kind not in value:
            raise RecordFormatError(f"{where}: key attribute {name!r} must be of type {kind}, got {value!r}")
    return item


def key_of(item: Item, schema: KeySchema) -> Item:
    return {name: item[name] for name, _ in schema}


def key_identity(keys: Item) -> str:
    """:func:`codec.key_id` of a boto3-form key (binary as bytes), the identity squash works by."""
    return key_id({
        name: {"B": base64.b64encode(value["B"]).decode("ascii")} if "B" in value else value
        for name, value in keys.items()
    })


def put(item: Item, schema: KeySchema, sequence_number: str) -> Change:
    keys = key_of(item, schema)
    return Change(key_identity(keys), keys, item, sequence_number, None)


def delete(keys: Item, schema: KeySchema, sequence_number: str, *, read_through: bool = False) -> Change:
    keys = key_of(keys, schema)
    return Change(key_identity(keys), keys, None, sequence_number, None, read_through=read_through)


@dataclass(frozen=True)
class DynamoDBStreamRecords:
    """DynamoDB Streams records. ``created_unit_ms`` is 1 for the adapter's epoch milliseconds and 1000 for
    a Lambda event's epoch seconds; ``read_through`` is for streams whose view carries no new image."""

    created_unit_ms: int = 1
    read_through: bool = False
    name: str = "dynamodb"
    in_order: bool = True

    def decode(self, record: SourceRecord) -> list[Change]:
        # orjson, not json: a third less CPU per record (bench/processor.py). A stream record's numbers are
        # DynamoDB JSON strings; its only JSON numbers (SizeBytes, ApproximateCreationDateTime) fit 64 bits.
        return [change_from_record(_parse(record, "a DynamoDB stream record", orjson.loads),
                                   created_unit_ms=self.created_unit_ms, read_through=self.read_through)]


@dataclass(frozen=True)
class KinesisCdcRecords:
    """Kinesis Data Streams for DynamoDB records: the images of DynamoDB Streams without a sequence number,
    placed by ApproximateCreationDateTime (milliseconds, or microseconds when its precision says so).

    The change's sequence number is that time in microseconds, so the fence orders by it. ``table`` keeps
    one table's records from a stream that carries several; another table's record makes no change (the
    applier counts it as skipped)."""

    table: str | None = None
    name: str = "dynamodb-cdc"
    in_order: bool = False
    read_through: bool = False

    def decode(self, record: SourceRecord) -> list[Change]:
        parsed = _parse(record, "a Kinesis Data Streams for DynamoDB record")
        if not isinstance(parsed, dict) or not isinstance(parsed.get("dynamodb"), dict):
            raise RecordFormatError(
                f"record {record.sequence_number} is not a Kinesis Data Streams for DynamoDB record (no "
                f"dynamodb object): {record.shown()}"
            )
        if self.table is not None and parsed.get("tableName") != self.table:
            return []
        body = parsed["dynamodb"]
        created = body.get("ApproximateCreationDateTime")
        if not isinstance(created, (int, Decimal)) or created < 0:
            raise RecordFormatError(
                f"record {record.sequence_number}: ApproximateCreationDateTime {created!r} is not an epoch "
                "time, and this format is ordered by it"
            )
        micro = str(body.get("ApproximateCreationDateTimePrecision", "MILLISECOND")).upper() == "MICROSECOND"
        created_us = int(created) if micro else int(created) * 1000
        change = change_from_record(
            {"eventName": parsed.get("eventName"), "userIdentity": parsed.get("userIdentity"),
             "dynamodb": {**body, "SequenceNumber": str(created_us), "ApproximateCreationDateTime": None}}
        )
        return [Change(change.key_id, change.keys, change.new_image, change.sequence_number, created_us // 1000,
                       ttl_expiry=change.ttl_expiry)]


@dataclass(frozen=True)
class KeysOnlyRecords:
    """A record names one item's key, as a DynamoDB record with ``Keys`` (a KEYS_ONLY view, or any record
    whose images we do not trust), or as a JSON object of the key attributes (DynamoDB or plain JSON)."""

    schema: KeySchema
    name: str = "keys-only"
    in_order: bool = True
    read_through: bool = True

    def decode(self, record: SourceRecord) -> list[Change]:
        parsed = _parse(record, "a key")
        where = f"keys-only record {record.sequence_number}"
        expiry = False
        if isinstance(parsed, dict) and isinstance(parsed.get("dynamodb"), dict):
            expiry = is_ttl_expiry(parsed)  # a whole stream record says who deleted; a bare key cannot
            parsed = parsed["dynamodb"].get("Keys")
        elif isinstance(parsed, dict) and set(parsed) == {"Keys"}:
            parsed = parsed["Keys"]
        keys = to_item(parsed, self.schema, where)
        extra = sorted(set(keys) - {name for name, _ in self.schema})
        if extra:
            raise RecordFormatError(f"{where}: {extra[0]!r} is not a key attribute of the table")
        return [replace(delete(keys, self.schema, record.sequence_number, read_through=True), ttl_expiry=expiry)]


BINLOG_ACTIONS = ("PutItem", "DeleteItem", "BatchWrite")


@dataclass(frozen=True)
class BinlogRecords:
    """Write actions as a producer appends them (``replicator binlog put``):

    ``{"Action": "PutItem", "Data": ITEM}``, ``{"Action": "DeleteItem", "Data": KEY}`` and
    ``{"Action": "BatchWrite", "Data": [ITEM or {"Delete": KEY}, ...]}``, items in DynamoDB or plain JSON."""

    schema: KeySchema
    name: str = "binlog"
    in_order: bool = True
    read_through: bool = False

    def decode(self, record: SourceRecord) -> list[Change]:
        return binlog_changes(_parse(record, "a binlog action"), self.schema, record.sequence_number)


def binlog_changes(action: Any, schema: KeySchema, sequence_number: str) -> list[Change]:
    where = f"binlog record {sequence_number}"
    if not isinstance(action, dict) or action.get("Action") not in BINLOG_ACTIONS or "Data" not in action:
        raise RecordFormatError(
            f"{where}: expected {{\"Action\": {' | '.join(BINLOG_ACTIONS)}, \"Data\": ...}}, got {str(action)[:200]}"
        )
    data = action["Data"]
    if action["Action"] == "PutItem":
        return [put(to_item(data, schema, where), schema, sequence_number)]
    if action["Action"] == "DeleteItem":
        return [delete(to_item(data, schema, where), schema, sequence_number)]
    if not isinstance(data, list) or not data:
        raise RecordFormatError(f"{where}: BatchWrite's Data must be a non-empty list of items and deletes")
    changes = []
    for index, entry in enumerate(data):
        at = f"{where} entry {index}"
        if isinstance(entry, dict) and set(entry) == {"Delete"} and isinstance(entry["Delete"], dict):
            changes.append(delete(to_item(entry["Delete"], schema, at), schema, sequence_number))
        else:
            changes.append(put(to_item(entry, schema, at), schema, sequence_number))
    return changes


FORMAT_NAMES = ("dynamodb-cdc", "keys-only", "binlog")
"""The formats a Kinesis stream can carry."""


def kinesis_format(name: str, schema: KeySchema, table: str | None = None) -> RecordFormat:
    """The decoder of a Kinesis path's ``--source-format``."""
    if name == "dynamodb-cdc":
        return KinesisCdcRecords(table=table)
    if name == "keys-only":
        return KeysOnlyRecords(schema)
    if name == "binlog":
        return BinlogRecords(schema)
    raise ValueError(f"unknown format {name!r}: choose one of {', '.join(FORMAT_NAMES)}")


def key_schema_of(description: dict[str, Any]) -> KeySchema:
    """A DescribeTable answer's key schema, partition key first."""
    types = {d["AttributeName"]: d["AttributeType"] for d in description["AttributeDefinitions"]}
    ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return tuple((k["AttributeName"], types[k["AttributeName"]]) for k in ordered)
