"""The binlog's producer: applications append write actions to a Kinesis stream that paths replay.

The record format is ``formats.BinlogRecords``'s (PutItem, DeleteItem, BatchWrite). The rule kept here is
the one the consumer's correctness stands on: **one item's actions stay in order on one shard**. So

* a record's partition key is its item's key (canonical JSON: ``1`` and ``1.0`` are one key);
* a BatchWrite whose items fall on several shards is sent as one BatchWrite per shard, each routed with an
  explicit hash key to the shard of its items (Kinesis places a partition key by its MD5; we do the same);
* a PutRecords call never carries two records of one partition key, so that retrying the records it
  failed cannot reorder an item's actions.

Every action is validated (decoded as the consumer will) and sent in DynamoDB JSON, so a plain-JSON number
keeps every digit on the way. It is also checked against what DynamoDB refuses to write (an empty string or
binary key, a number beyond its range: ``codec.check_number``): the consumer cannot skip such a record
without losing a change, so it would stop its shard on every restart. A bad line stops the producer with its
line number and attribute, after everything before it was sent and nothing from it on.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from replicator.changes.codec import AttributeValue, Change, RecordFormatError, check_number, encode_item
from replicator.changes.formats import KeySchema, binlog_changes
from replicator.errors import ReplicatorError

PUT_RECORDS_LIMIT = 500
PUT_RECORDS_BYTES = 5 * 1024 * 1024
RECORD_BYTES = 1024 * 1024
RETRY_SLEEP_S = 0.2


class BinlogLineError(ReplicatorError):
    """A line that is not a binlog action; names the line and what is wrong."""


@dataclass(frozen=True)
class BinlogRecord:
    data: bytes
    partition_key: str
    explicit_hash_key: str | None = None


def _hash(partition_key: str) -> int:
    return int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _entry(change: Change) -> dict[str, Any]:
    """A change as a BatchWrite entry in DynamoDB JSON: exact whatever JSON it was given in."""
    if change.new_image is None:
        return {"Delete": encode_item(change.keys)}
    return encode_item(change.new_image)


class ShardMap:
    """Which open shard holds a hash key; read once from ListShards."""

    def __init__(self, shards: list[dict[str, Any]]) -> None:
        open_shards = [s for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})]
        self._ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]),
                               s["ShardId"]) for s in open_shards)

    def shard_of(self, hash_key: int) -> str:
        for start, end, shard in self._ranges:
            if start <= hash_key <= end:
                return shard
        return self._ranges[-1][2] if self._ranges else "?"


def records_of(action: str, changes: list[Change], shards: ShardMap) -> list[BinlogRecord]:
    """The records that carry one validated action, in DynamoDB JSON (more than one for a BatchWrite whose
    items fall on several shards)."""
    if action == "PutItem":
        return [BinlogRecord(_json({"Action": action, "Data": _entry(changes[0])}), changes[0].key_id)]
    if action == "DeleteItem":
        return [BinlogRecord(_json({"Action": action, "Data": encode_item(changes[0].keys)}), changes[0].key_id)]
    groups: dict[str, tuple[str, list[Any]]] = {}
    for change in changes:
        shard = shards.shard_of(_hash(change.key_id))
        groups.setdefault(shard, (change.key_id, []))[1].append(_entry(change))
    return [
        BinlogRecord(_json({"Action": "BatchWrite", "Data": entries}), key, str(_hash(key)))
        for key, entries in groups.values()
    ]


def check_writable(action: str, changes: list[Change], schema: KeySchema) -> None:
    """Raise RecordFormatError naming the entry and attribute if DynamoDB would refuse a change: an empty S or
    B key attribute, or a number (N, NS, at any depth) outside DynamoDB's range."""
    for index, change in enumerate(changes):
        at = f"BatchWrite entry {index}, " if action == "BatchWrite" else ""
        for name, kind in schema:
            if kind != "N" and not change.keys[name][kind]:
                raise RecordFormatError(f"{at}key attribute {name!r} is empty, and DynamoDB refuses an empty "
                                        f"{'string' if kind == 'S' else 'binary'} key: give it a value")
        for name, value in (change.new_image or change.keys).items():
            try:
                _check_numbers(value, name)
            except RecordFormatError as exc:
                raise RecordFormatError(f"{at}{exc}") from None


def _check_numbers(value: AttributeValue, path: str) -> None:
    (tag, inner), = value.items()
    if tag in ("N", "NS"):
        for number in [inner] if tag == "N" else inner:
            try:
                check_number(number)
            except RecordFormatError as exc:
                raise RecordFormatError(f"attribute {path!r}: {exc}") from None
    elif tag == "M":
        for name, item in inner.items():
            _check_numbers(item, f"{path}.{name}")
    elif tag == "L":
        for index, item in enumerate(inner):
            _check_numbers(item, f"{path}[{index}]")


def parse_lines(lines: Iterable[str | bytes], schema: KeySchema,
                source: str = "the input") -> Iterator[tuple[str, str, list[Change]]]:
    """Each non-blank line as (where, action, its changes); raises BinlogLineError at the first bad one.

    Lines given as bytes (a file opened in binary) are decoded here, so text that is not UTF-8 is named by
    its line in ``source`` rather than failing the whole read."""
    for number, line in enumerate(lines, start=1):
        where = f"line {number}"
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BinlogLineError(f"{where}: {source} is not UTF-8 text (byte {exc.start + 1} of the line is "
                                      f"{line[exc.start:exc.start + 1]!r}): convert it to UTF-8") from None
        if not line.strip():
            continue
        try:
            # NaN and Infinity become numbers here so that check_writable names them (not as floats)
            action = json.loads(line, parse_float=Decimal, parse_constant=Decimal)
            changes = binlog_changes(action, schema, where)
            check_writable(action["Action"], changes, schema)
        except ValueError as exc:  # RecordFormatError is one; so is bad JSON
            message = str(exc) if isinstance(exc, RecordFormatError) else f"not JSON ({exc})"
            raise BinlogLineError(f"{where}: {message.removeprefix(f'binlog record {where}: ')}") from None
        yield where, action["Action"], changes


def parse_actions(actions: Iterable[dict[str, Any]], schema: KeySchema) -> Iterator[tuple[str, str, list[Change]]]:
    """Actions given as dicts (numbers as int, Decimal or str in DynamoDB JSON; never float)."""
    for index, action in enumerate(actions):
        where = f"action {index}"
        try:
            changes = binlog_changes(action, schema, where)
            check_writable(action["Action"], changes, schema)
        except RecordFormatError as exc:
            raise BinlogLineError(f"{where}: {str(exc).removeprefix(f'binlog record {where}: ')}") from None
        yield where, action["Action"], changes


class BinlogProducer:
    """Appends actions to a Kinesis stream with PutRecords, keeping each item's actions in order."""

    def __init__(self, client: Any, stream: str, schema: KeySchema, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._stream = stream
        self._schema = schema
        self._sleep = sleep
        self._shards: ShardMap | None = None
        self.sent = 0

    def shards(self) -> ShardMap:
        if self._shards is None:
            shards, token = [], None
            while True:
                page = self._client.list_shards(**({"NextToken": token} if token else {"StreamName": self._stream}))
                shards += page["Shards"]
                token = page.get("NextToken")
                if not token:
                    break
            self._shards = ShardMap(shards)
        return self._shards

    def put_actions(self, actions: Iterable[dict[str, Any]]) -> int:
        """Send actions given as dicts (the Python API); return how many records were sent in all."""
        return self._put(parse_actions(actions, self._schema))

    def put_lines(self, lines: Iterable[str | bytes], source: str = "the input") -> int:
        """Send JSON lines of actions (str, or UTF-8 bytes) read from ``source`` (a file's name, for errors);
        stop at a bad line with BinlogLineError after sending all before it."""
        return self._put(parse_lines(lines, self._schema, source))

    def _put(self, parsed: Iterator[tuple[str, str, list[Change]]]) -> int:
        batch: list[BinlogRecord] = []
        size = 0
        keys: set[str] = set()
        try:
            for where, action, changes in parsed:
                for record in records_of(action, changes, self.shards()):
                    record_size = len(record.data) + len(record.partition_key)
                    if record_size > RECORD_BYTES:
                        raise BinlogLineError(f"{where}: the action is {record_size} bytes, over Kinesis's "
                                              "1 MiB record: split it")
                    full = len(batch) == PUT_RECORDS_LIMIT or size + record_size > PUT_RECORDS_BYTES
                    if full or record.partition_key in keys:
                        self._send(batch)
                        batch, size, keys = [], 0, set()
                    batch.append(record)
                    size += record_size
                    keys.add(record.partition_key)
        finally:
            self._send(batch)  # what came before a bad line is sent; nothing from it on
        return self.sent

    def _send(self, batch: list[BinlogRecord]) -> None:
        pending = batch
        attempt = 0
        while pending:
            entries = [{"Data": r.data, "PartitionKey": r.partition_key,
                        **({"ExplicitHashKey": r.explicit_hash_key} if r.explicit_hash_key else {})} for r in pending]
            answer = self._client.put_records(StreamName=self._stream, Records=entries)
            failed = [r for r, result in zip(pending, answer["Records"]) if "ErrorCode" in result]
            self.sent += len(pending) - len(failed)
            pending = failed
            if pending:
                attempt += 1
                self._sleep(min(RETRY_SLEEP_S * 2 ** attempt, 5.0))
