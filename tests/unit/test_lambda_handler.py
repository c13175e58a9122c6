"""The Lambda handler on events in AWS's documented shapes, against moto in-process."""

from __future__ import annotations

import base64
import json
from typing import Any

import boto3
import pytest
from moto import mock_aws
from structlog.testing import capture_logs

from replicator.changes.codec import encode_item
from replicator.lambda_handler import function, handler
from replicator.lambda_handler.config import ConfigError, FunctionConfig

STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-30T10:00:00.000"
KINESIS_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/changes"


class Context:
    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", "replica")
        monkeypatch.setenv("REPLICATOR_DESTINATION_REGION", "eu-west-1")
        for name in ("SOURCE_FORMAT", "SOURCE_TABLE", "VERSION_ATTRIBUTE"):
            monkeypatch.delenv(f"REPLICATOR_{name}", raising=False)
        function.reset()
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(TableName="replica", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        yield client
        function.reset()


def items(client: Any, table: str = "replica") -> dict[str, dict]:
    return {i["pk"]["S"]: i for i in client.scan(TableName=table, ConsistentRead=True)["Items"]}


def ddb_record(seq: int, event: str, pk: str, new: dict | None = None, view: str = "NEW_AND_OLD_IMAGES") -> dict:
    """A record as Lambda delivers it from a DynamoDB stream: seconds, base64 binary, eventSourceARN."""
    body: dict = {"ApproximateCreationDateTime": 1764496800, "Keys": {"pk": {"S": pk}},
                  "SequenceNumber": str(seq).zfill(21), "SizeBytes": 26, "StreamViewType": view}
    if new is not None and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        body["NewImage"] = encode_item({"pk": {"S": pk}, **new})
    return {"eventID": f"e{seq}", "eventName": event, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "dynamodb": body, "eventSourceARN": STREAM_ARN}


def kinesis_record(seq: int, data: Any) -> dict:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "k", "sequenceNumber": str(seq).zfill(56),
                        "data": base64.b64encode(raw).decode(), "approximateArrivalTimestamp": 1764496800.5},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000000:{seq}",
            "eventName": "aws:kinesis:record", "awsRegion": "us-east-1", "eventSourceARN": KINESIS_ARN}


def test_a_dynamodb_streams_event_is_replicated_and_nothing_is_reported(aws):
    event = {"Records": [ddb_record(1, "INSERT", "a", {"v": {"N": "1"}, "b": {"B": b"\x00\x01"}}),
                         ddb_record(2, "INSERT", "b", {"v": {"N": "1"}}),
                         ddb_record(3, "MODIFY", "a", {"v": {"N": "2"}, "b": {"B": b"\x00\x01"}}),
                         ddb_record(4, "REMOVE", "b")]}
    with capture_logs() as logs:
        assert handler(event, Context()) == {"batchItemFailures": []}
    assert items(aws) == {"a": {"pk": {"S": "a"}, "v": {"N": "2"}, "b": {"B": b"\x00\x01"}}}
    [line] = [entry for entry in logs if entry["event"] == "batch_applied"]
    assert (line["records"], line["puts"], line["deletes"]) == (4, 1, 1)
    assert line["lag_ms_max"] > 0


def test_a_write_refused_half_way_reports_the_first_record_not_durable(aws):
    records = [ddb_record(i, "INSERT", f"k{i:02}", {"v": {"N": str(i)}}) for i in range(60)]
    records[30] = ddb_record(30, "INSERT", "k30", {"big": {"S": "x" * 500_000}})  # over DynamoDB's 400 KB
    with capture_logs() as logs:
        answer = handler({"Records": records}, Context())
    # BatchWriteItem takes 25 at a time: the second request (records 25 to 49) was refused as a whole.
    assert answer == {"batchItemFailures": [{"itemIdentifier": records[25]["dynamodb"]["SequenceNumber"]}]}
    assert {f"k{i:02}" for i in range(25)} <= set(items(aws))
    assert [e["failed_record"] for e in logs if e["event"] == "destination_refused"] == [str(25).zfill(21)]


def test_an_undecodable_record_is_reported_once_and_nothing_after_it_is_skipped(aws):
    records = [ddb_record(i, "INSERT", f"k{i}", {"v": {"N": "1"}}) for i in range(8)]
    del records[5]["dynamodb"]["NewImage"]
    with capture_logs() as logs:
        answer = handler({"Records": records}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(5).zfill(21)}]}
    assert set(items(aws)) == {"k0", "k1", "k2", "k3", "k4"}
    undecodable = [e for e in logs if e["event"] == "record_undecodable"]
    assert len(undecodable) == 1 and undecodable[0]["sequence_number"] == str(5).zfill(21)


def test_a_missing_destination_fails_the_batch_from_its_first_record_with_one_line(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", "no-such-table")
    function.reset()
    records = [ddb_record(i, "INSERT", f"k{i}", {}) for i in range(3)]
    with capture_logs() as logs:
        answer = handler({"Records": records}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(0).zfill(21)}]}
    [line] = [e for e in logs if e["log_level"] == "error"]
    assert line["event"] == "destination_refused" and "ResourceNotFoundException" in line["error"]


def test_keys_only_stream_records_are_read_through_from_the_source(aws):
    source = boto3.client("dynamodb", region_name="us-east-1")
    source.create_table(TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    source.put_item(TableName="orders", Item={"pk": {"S": "a"}, "v": {"S": "present"}})
    aws.put_item(TableName="replica", Item={"pk": {"S": "gone"}})
    event = {"Records": [ddb_record(1, "MODIFY", "a", view="KEYS_ONLY"), ddb_record(2, "REMOVE", "gone", view="KEYS_ONLY"),
                         ddb_record(3, "INSERT", "a", view="KEYS_ONLY")]}
    assert handler(event, Context()) == {"batchItemFailures": []}
    assert items(aws) == {"a": {"pk": {"S": "a"}, "v": {"S": "present"}}}


def test_kinesis_cdc_records_out_of_order_and_repeated_never_move_an_item_back(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_SOURCE_FORMAT", "dynamodb-cdc")

    def cdc(event: str, pk: str, created: int, new: dict | None = None) -> dict:
        body: dict = {"ApproximateCreationDateTime": created, "Keys": {"pk": {"S": pk}}, "SizeBytes": 1}
        if new is not None:
            body["NewImage"] = {"pk": {"S": pk}, **new}
        return {"awsRegion": "us-east-1", "eventID": "x", "eventName": event, "recordFormat": "application/json",
                "tableName": "orders", "eventSource": "aws:dynamodb", "dynamodb": body}

    first = {"Records": [kinesis_record(1, cdc("INSERT", "a", 1000, {"v": {"N": "1"}})),
                         kinesis_record(2, cdc("MODIFY", "a", 3000, {"v": {"N": "3"}})),
                         kinesis_record(3, cdc("REMOVE", "b", 5000))]}
    late = {"Records": [kinesis_record(4, cdc("MODIFY", "a", 2000, {"v": {"N": "2"}})),  # older, arrives later
                        kinesis_record(5, cdc("INSERT", "b", 4000, {"v": {"N": "4"}})),  # older than b's delete
                        kinesis_record(6, cdc("MODIFY", "a", 3000, {"v": {"N": "3"}}))]}  # a duplicate
    assert handler(first, Context()) == {"batchItemFailures": []}
    with capture_logs() as logs:
        assert handler(late, Context()) == {"batchItemFailures": []}
    replica = items(aws)
    assert replica["a"]["v"] == {"N": "3"}
    assert "replicator_version_tombstone" in replica["b"]  # b stays deleted: a tombstone, not an item
    assert [e["stale"] for e in logs if e["event"] == "batch_applied"] == [1]


def test_kinesis_keys_only_and_binlog_records(aws, monkeypatch):
    source = boto3.client("dynamodb", region_name="us-east-1")
    source.create_table(TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    source.put_item(TableName="orders", Item={"pk": {"S": "k"}, "n": {"N": "5"}})
    monkeypatch.setenv("REPLICATOR_SOURCE_FORMAT", "keys-only")
    monkeypatch.setenv("REPLICATOR_SOURCE_TABLE", "orders")
    function.reset()
    assert handler({"Records": [kinesis_record(1, {"pk": "k"}), kinesis_record(2, {"pk": "absent"})]}, Context()) == {
        "batchItemFailures": []}
    assert items(aws) == {"k": {"pk": {"S": "k"}, "n": {"N": "5"}}}

    monkeypatch.setenv("REPLICATOR_SOURCE_FORMAT", "binlog")
    monkeypatch.delenv("REPLICATOR_SOURCE_TABLE")
    function.reset()
    event = {"Records": [kinesis_record(3, {"Action": "PutItem", "Data": {"pk": "p", "n": 1.50}}),
                         kinesis_record(4, {"Action": "BatchWrite", "Data": [{"pk": "q"}, {"Delete": {"pk": "k"}}]}),
                         kinesis_record(5, b"not json"),
                         kinesis_record(6, {"Action": "PutItem", "Data": {"pk": "after"}})]}
    answer = handler(event, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(5).zfill(56)}]}
    assert set(items(aws)) == {"p", "q"} and items(aws)["p"]["n"] == {"N": "1.5"}


@pytest.mark.parametrize("env, variable", [
    ({}, "REPLICATOR_DESTINATION_TABLE"),
    ({"REPLICATOR_DESTINATION_TABLE": "replica"}, "REPLICATOR_DESTINATION_REGION"),
    ({"REPLICATOR_DESTINATION_TABLE": "replica", "AWS_REGION": "us-east-1", "REPLICATOR_SOURCE_FORMAT": "json"},
     "REPLICATOR_SOURCE_FORMAT"),
    ({"REPLICATOR_DESTINATION_TABLE": "replica", "AWS_REGION": "us-east-1", "REPLICATOR_SOURCE_FORMAT": "keys-only"},
     "REPLICATOR_SOURCE_TABLE"),
    ({"REPLICATOR_DESTINATION_TABLE": "replica", "AWS_REGION": "us-east-1", "REPLICATOR_DESTINATION_ENDPOINT": "localhost"},
     "REPLICATOR_DESTINATION_ENDPOINT"),
])
def test_a_bad_configuration_names_its_variable(env, variable):
    with pytest.raises(ConfigError, match=variable):
        FunctionConfig.from_environment(env)


def test_a_bad_configuration_fails_every_invocation_and_is_logged_once(monkeypatch):
    monkeypatch.delenv("REPLICATOR_DESTINATION_TABLE", raising=False)
    function.reset()
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ConfigError, match="REPLICATOR_DESTINATION_TABLE"):
                handler({"Records": [ddb_record(1, "INSERT", "a", {})]}, Context())
    assert [e["event"] for e in logs] == ["configuration_invalid"]
    function.reset()


@pytest.mark.parametrize("extra", [
    {},
    {"REPLICATOR_DESTINATION_TABLE": "arn:aws:dynamodb:us-east-1:123456789012:table/orders"},
    {"REPLICATOR_SOURCE_ENDPOINT": "http://127.0.0.1:8000", "REPLICATOR_DESTINATION_ENDPOINT": "http://127.0.0.1:8000/"},
    {"REPLICATOR_SOURCE_FORMAT": "keys-only"},
], ids=["names", "arn", "same-endpoint", "keys-only"])
def test_a_source_table_that_is_the_destination_is_a_configuration_error(extra):
    env = {"REPLICATOR_DESTINATION_TABLE": "orders", "REPLICATOR_SOURCE_TABLE": "orders", "AWS_REGION": "us-east-1",
           **extra}
    with pytest.raises(ConfigError, match="REPLICATOR_SOURCE_TABLE and REPLICATOR_DESTINATION_TABLE: source and "
                                          "destination are the same table us-east-1/orders"):
        FunctionConfig.from_environment(env)
    elsewhere = {**env, "REPLICATOR_DESTINATION_TABLE": "replica"}
    assert FunctionConfig.from_environment(elsewhere).destination_table == "replica"


def test_a_function_mapped_to_its_destinations_own_stream_writes_nothing(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_DESTINATION_REGION", "us-east-1")
    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", "orders")  # the table of STREAM_ARN
    function.reset()
    source = boto3.client("dynamodb", region_name="us-east-1")
    source.create_table(TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
    with capture_logs() as logs:
        answer = handler({"Records": [ddb_record(1, "INSERT", "a", {"v": {"N": "1"}})]}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(1).zfill(21)}]}
    assert items(source, "orders") == {}
    [line] = [e for e in logs if e["event"] == "batch_not_applied"]
    assert "same table us-east-1/orders" in line["error"]


def ttl_expiry(seq: int, pk: str, old: dict) -> dict:
    """A TTL expiry as AWS documents it ("DynamoDB Streams and Time to Live"): a REMOVE whose userIdentity is
    DynamoDB's service principal, with the expired item's OldImage."""
    record = ddb_record(seq, "REMOVE", pk)
    record["dynamodb"]["OldImage"] = encode_item({"pk": {"S": pk}, **old})
    record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def test_ttl_expiries_are_skipped_and_counted_and_user_deletes_replicated(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_TTL_DELETES", "skip")
    function.reset()
    handler({"Records": [ddb_record(i, "INSERT", pk, {"exp": {"N": "1"}}) for i, pk in enumerate("abc", 1)]}, Context())
    event = {"Records": [ttl_expiry(4, "a", {"exp": {"N": "1"}}), ddb_record(5, "REMOVE", "b"),
                         ttl_expiry(6, "c", {"exp": {"N": "1"}})]}
    with capture_logs() as logs:
        assert handler(event, Context()) == {"batchItemFailures": []}
    assert sorted(items(aws)) == ["a", "c"]  # the expired items stay; the user's delete of b is replicated
    [line] = [entry for entry in logs if entry["event"] == "batch_applied"]
    assert (line["ttl_skipped"], line["deletes"]) == (2, 1)


def test_ttl_expiries_are_replicated_by_default(aws):
    handler({"Records": [ddb_record(1, "INSERT", "a", {})]}, Context())
    handler({"Records": [ttl_expiry(2, "a", {})]}, Context())
    assert items(aws) == {}


def test_the_function_filters_and_projects_as_the_daemon_does(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_FILTER", "tenant == 'eu'")
    monkeypatch.setenv("REPLICATOR_EXCLUDE_ATTRIBUTES", "email")
    function.reset()
    handler({"Records": [ddb_record(1, "INSERT", "a", {"tenant": {"S": "eu"}, "email": {"S": "x"}}),
                         ddb_record(2, "INSERT", "b", {"tenant": {"S": "us"}, "email": {"S": "y"}})]}, Context())
    assert items(aws) == {"a": {"pk": {"S": "a"}, "tenant": {"S": "eu"}}}
    handler({"Records": [ddb_record(3, "MODIFY", "a", {"tenant": {"S": "us"}}),
                         ddb_record(4, "MODIFY", "b", {"tenant": {"S": "eu"}, "email": {"S": "y"}})]}, Context())
    assert items(aws) == {"b": {"pk": {"S": "b"}, "tenant": {"S": "eu"}}}


@pytest.mark.parametrize("env, message", [
    ({"REPLICATOR_FILTER": "tenant =="}, "REPLICATOR_FILTER 'tenant ==' is not a JMESPath expression"),
    ({"REPLICATOR_TTL_DELETES": "sometimes"}, "REPLICATOR_TTL_DELETES is 'sometimes': choose replicate or skip"),
    ({"REPLICATOR_INCLUDE_ATTRIBUTES": "a", "REPLICATOR_EXCLUDE_ATTRIBUTES": "b"},
     "REPLICATOR_INCLUDE_ATTRIBUTES and REPLICATOR_EXCLUDE_ATTRIBUTES: give one of them"),
    ({"REPLICATOR_SOURCE_FORMAT": "binlog", "REPLICATOR_TTL_DELETES": "skip"}, "binlog records are a producer's own"),
])
def test_a_bad_shape_setting_is_one_configuration_line(env, message):
    base = {"REPLICATOR_DESTINATION_TABLE": "replica", "AWS_REGION": "us-east-1"}
    with pytest.raises(ConfigError, match=message) as exc:
        FunctionConfig.from_environment({**base, **env})
    assert "\n" not in str(exc.value)


def test_excluding_a_key_attribute_fails_the_batch_unwritten_with_one_line(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_EXCLUDE_ATTRIBUTES", "pk")
    function.reset()
    with capture_logs() as logs:
        answer = handler({"Records": [ddb_record(1, "INSERT", "a", {})]}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": str(1).zfill(21)}]}
    assert items(aws) == {}
    [line] = [e for e in logs if e["log_level"] == "error"]
    assert "REPLICATOR_EXCLUDE_ATTRIBUTES names 'pk', a key attribute" in line["error"]


def test_a_keys_only_stream_says_once_what_skipping_ttl_expiries_can_do(aws, monkeypatch):
    monkeypatch.setenv("REPLICATOR_TTL_DELETES", "skip")
    function.reset()
    source = boto3.client("dynamodb", region_name="us-east-1")
    source.create_table(TableName="orders", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    with capture_logs() as logs:
        for seq in (1, 2):
            handler({"Records": [ttl_expiry(seq, "a", {}) | {"dynamodb": {**ttl_expiry(seq, "a", {})["dynamodb"],
                                                                          "StreamViewType": "KEYS_ONLY"}}]}, Context())
    notes = [e for e in logs if e["event"] == "ttl_deletes_limited"]
    assert len(notes) == 1 and "finds the item gone" in notes[0]["note"]
    assert [e["ttl_skipped"] for e in logs if e["event"] == "batch_applied"] == [1, 1]
