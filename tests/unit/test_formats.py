"""Record formats: each decodes to the changes a user expects, and refuses what it cannot apply."""

from __future__ import annotations

import base64
import json

import pytest

from replicator.changes.codec import RecordFormatError
from replicator.changes.formats import (
    BinlogRecords,
    DynamoDBStreamRecords,
    KeysOnlyRecords,
    KinesisCdcRecords,
    SourceRecord,
    key_schema_of,
)
from replicator.changes.applier import Applier
from replicator.changes.squash import squash
from replicator.changes.writer import WriteStats

SCHEMA = (("pk", "S"), ("sk", "N"))


def record(payload: object, seq: str = "100") -> SourceRecord:
    return SourceRecord(json.dumps(payload).encode(), seq)


def cdc(event: str, pk: str, created: int, new: dict | None = None, table: str = "orders", precision: str | None = None) -> SourceRecord:
    body: dict = {"ApproximateCreationDateTime": created, "Keys": {"pk": {"S": pk}}, "SizeBytes": 10}
    if precision:
        body["ApproximateCreationDateTimePrecision"] = precision
    if new is not None:
        body["NewImage"] = {"pk": {"S": pk}, **new}
    return record({"awsRegion": "us-east-1", "eventID": "e", "eventName": event, "userIdentity": None,
                   "recordFormat": "application/json", "tableName": table, "eventSource": "aws:dynamodb",
                   "dynamodb": body}, seq=str(created))


def test_cdc_records_are_placed_by_creation_time_so_a_late_older_change_loses():
    fmt = KinesisCdcRecords()
    newer = fmt.decode(cdc("MODIFY", "a", 1_700_000_000_500, {"v": {"N": "2"}}))
    older = fmt.decode(cdc("MODIFY", "a", 1_700_000_000_100, {"v": {"N": "1"}}))
    duplicate = fmt.decode(cdc("MODIFY", "a", 1_700_000_000_500, {"v": {"N": "2"}}))
    kept = squash(newer + older + duplicate, in_order=fmt.in_order)
    assert len(kept) == 1 and kept[0].new_image["v"] == {"N": "2"}
    assert kept[0].sequence_number == str(1_700_000_000_500 * 1000)  # microseconds, the fence's version
    assert kept[0].created_ms == 1_700_000_000_500


def test_cdc_microsecond_precision_is_honoured_and_a_delete_is_not_undone_by_an_older_put():
    fmt = KinesisCdcRecords()
    delete = fmt.decode(cdc("REMOVE", "a", 1_700_000_000_000_002, precision="MICROSECOND"))
    put = fmt.decode(cdc("INSERT", "a", 1_700_000_000_000_001, {"v": {"S": "x"}}, precision="MICROSECOND"))
    kept = squash(delete + put, in_order=False)
    assert kept[0].is_delete and kept[0].created_ms == 1_700_000_000_000


def test_cdc_keeps_one_table_of_a_shared_stream_and_the_applier_counts_the_others():
    fmt = KinesisCdcRecords(table="orders")
    assert fmt.decode(cdc("INSERT", "a", 1, {}, table="customers")) == []
    assert len(fmt.decode(cdc("INSERT", "a", 1, {}, table="orders"))) == 1

    class Writer:
        def write(self, changes):
            return WriteStats(puts=len(changes))

    result = Applier(Writer(), fmt).apply([cdc("INSERT", "a", 1, {}, table="customers"), cdc("INSERT", "b", 2, {})])
    assert (result.records, result.skipped, result.writes.puts) == (2, 1, 1)


def test_cdc_refuses_a_record_without_a_creation_time():
    with pytest.raises(RecordFormatError, match="ApproximateCreationDateTime"):
        KinesisCdcRecords().decode(record({"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}}}))


def test_keys_only_reads_a_stream_record_or_a_plain_key_and_asks_for_a_read_through():
    fmt = KeysOnlyRecords(SCHEMA)
    from_stream = fmt.decode(record({"eventName": "MODIFY", "dynamodb": {"Keys": {"pk": {"S": "a"}, "sk": {"N": "1"}}}}))
    plain = fmt.decode(record({"pk": "a", "sk": 1.0}))
    assert from_stream[0].read_through and plain[0].read_through
    assert from_stream[0].key_id == plain[0].key_id  # 1 and 1.0 are one key
    assert plain[0].keys == {"pk": {"S": "a"}, "sk": {"N": "1.0"}}


def test_keys_only_names_the_missing_or_unknown_key_attribute():
    with pytest.raises(RecordFormatError, match="no key attribute 'sk'"):
        KeysOnlyRecords(SCHEMA).decode(record({"pk": "a"}))
    with pytest.raises(RecordFormatError, match="'colour' is not a key attribute"):
        KeysOnlyRecords(SCHEMA).decode(record({"pk": "a", "sk": 1, "colour": "red"}))


def test_binlog_actions_in_plain_json_keep_every_digit_and_binary_keys():
    fmt = BinlogRecords((("id", "B"),))
    key = base64.b64encode(b"\x00\xff").decode()
    [change] = fmt.decode(record({"Action": "PutItem", "Data": {"id": key, "ok": True, "tags": ["a", None],
                                                                  "m": {"x": 1}}}))
    [exact] = fmt.decode(SourceRecord(b'{"Action": "PutItem", "Data": {"id": "%s", "n": 1.2345678901234567890123456789012345678E+30}}'
                                      % key.encode(), "1"))
    assert exact.new_image["n"] == {"N": "1234567890123456789012345678901.2345678"}  # 38 digits, none lost
    assert change.keys == {"id": {"B": b"\x00\xff"}}
    assert change.new_image["ok"] == {"BOOL": True}
    assert change.new_image["tags"] == {"L": [{"S": "a"}, {"NULL": True}]}
    assert change.new_image["m"] == {"M": {"x": {"N": "1"}}}


def test_binlog_batch_write_puts_and_deletes_in_order_in_dynamodb_json():
    fmt = BinlogRecords((("pk", "S"),))
    changes = fmt.decode(record({"Action": "BatchWrite", "Data": [
        {"pk": {"S": "a"}, "v": {"N": "1"}}, {"Delete": {"pk": {"S": "b"}}}, {"pk": {"S": "a"}, "v": {"N": "2"}}]}))
    assert [c.is_delete for c in changes] == [False, True, False]
    kept = squash(changes)
    assert {c.key_id: c.new_image for c in kept}['{"pk":{"S":"a"}}']["v"] == {"N": "2"}
    [delete] = fmt.decode(record({"Action": "DeleteItem", "Data": {"pk": "b"}}))
    assert delete.is_delete and delete.keys == {"pk": {"S": "b"}}


@pytest.mark.parametrize("payload, message", [
    ({"Action": "UpdateItem", "Data": {}}, "expected"),
    ({"Action": "BatchWrite", "Data": []}, "non-empty list"),
    ({"Action": "PutItem", "Data": {"v": "no key"}}, "no key attribute 'pk'"),
    ({"Action": "PutItem", "Data": {"pk": {"N": "1"}}}, "must be of type S"),
])
def test_binlog_refuses_what_it_cannot_apply_naming_the_record(payload, message):
    with pytest.raises(RecordFormatError, match=message) as info:
        BinlogRecords((("pk", "S"),)).decode(record(payload, seq="4242"))
    assert "4242" in str(info.value)


def test_a_lambda_dynamodb_record_has_its_creation_time_in_seconds():
    payload = {"eventName": "INSERT", "dynamodb": {"ApproximateCreationDateTime": 1700000000.25, "Keys": {"pk": {"S": "a"}},
                                                    "NewImage": {"pk": {"S": "a"}}, "SequenceNumber": "7"}}
    [change] = DynamoDBStreamRecords(created_unit_ms=1000).decode(record(payload))
    assert change.created_ms == 1_700_000_000_250


def test_key_schema_puts_the_partition_key_first():
    description = {"KeySchema": [{"AttributeName": "sk", "KeyType": "RANGE"}, {"AttributeName": "pk", "KeyType": "HASH"}],
                   "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                            {"AttributeName": "sk", "AttributeType": "N"}]}
    assert key_schema_of(description) == (("pk", "S"), ("sk", "N"))
