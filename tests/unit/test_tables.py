"""Table specs, key parsing and segment checks of the table tools (moto, fast)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from replicator.errors import ReplicatorError
from replicator.tables.spec import batch_get, check_segments, open_table, parse_key, parse_spec


@pytest.fixture
def tables():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="orders",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}, {"AttributeName": "n", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}, {"AttributeName": "n", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.create_table(
            TableName="blobs",
            KeySchema=[{"AttributeName": "b", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "b", "AttributeType": "B"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client


@pytest.mark.parametrize("text,region,table", [
    ("us-east-1/orders", "us-east-1", "orders"),
    ("eu-west-1/orders-replica.v2_x", "eu-west-1", "orders-replica.v2_x"),
    ("us-gov-west-1/abc", "us-gov-west-1", "abc"),
])
def test_parse_spec(text, region, table):
    spec = parse_spec(text)
    assert (spec.region, spec.table) == (region, table)
    assert str(spec) == f"{region}/{table}"


@pytest.mark.parametrize("text", ["orders", "us-east-1/", "/orders", "us-east-1/or", "us-east-1/a/b",
                                  "US-EAST-1/orders", "us-east-1/bad name", ""])
def test_parse_spec_rejects_malformed(text):
    with pytest.raises(ReplicatorError, match="region/table"):
        parse_spec(text)


def test_open_table_unknown_names_the_table(tables):
    with pytest.raises(ReplicatorError, match="us-east-1/nope does not exist"):
        open_table("us-east-1/nope", None)


def test_key_schema_partition_first(tables):
    assert open_table("us-east-1/orders", None).key_schema == [("id", "S"), ("n", "N")]


@pytest.mark.parametrize("text", [
    '{"id": "abc", "n": 3}',
    '{"n": 3, "id": "abc"}',
    '{"id": {"S": "abc"}, "n": {"N": "3"}}',
    '{"id": "abc", "n": {"N": "3"}}',
])
def test_parse_key_plain_and_dynamodb_json(tables, text):
    assert parse_key(text, open_table("us-east-1/orders", None)) == {"id": {"S": "abc"}, "n": {"N": "3"}}


def test_parse_key_keeps_38_digit_numbers_exact(tables):
    digits = "12345678901234567890123456789012345678"
    key = parse_key(f'{{"id": "a", "n": {digits}}}', open_table("us-east-1/orders", None))
    assert key["n"] == {"N": digits}
    key = parse_key('{"id": "a", "n": -0.5e-3}', open_table("us-east-1/orders", None))
    assert key["n"] == {"N": "-0.5e-3"}


def test_parse_key_binary_from_base64(tables):
    table = open_table("us-east-1/blobs", None)
    assert parse_key('{"b": "AAH/"}', table) == {"b": {"B": b"\x00\x01\xff"}}
    assert parse_key('{"b": {"B": "AAH/"}}', table) == {"b": {"B": b"\x00\x01\xff"}}
    with pytest.raises(ReplicatorError, match="base64"):
        parse_key('{"b": "not base64!"}', table)


@pytest.mark.parametrize("text,match", [
    ('{"id": "abc"', "not valid JSON"),
    ('["abc", 3]', "JSON object"),
    ('{"id": "abc"}', r"key of us-east-1/orders is \[id \(S\), n \(N\)\]"),
    ('{"id": "abc", "n": 3, "x": 1}', "KEY has attributes"),
    ('{"id": "abc", "n": "3"}', "is a number"),
    ('{"id": 5, "n": 3}', "not the number"),
    ('{"id": {"N": "5"}, "n": 3}', "must be of type S"),
    ('{"id": {"S": 5}, "n": 3}', "must be of type S"),
    ('{"id": true, "n": 3}', "must be of type S"),
    ('{"id": ["a"], "n": 3}', "must be of type S"),
    ('{"id": "", "n": 3}', "empty"),
    ('{"id": "a", "n": {"N": "abc"}}', "not a number"),
    ('{"id": "a", "n": {"N": "Infinity"}}', "not a finite number"),
])
def test_parse_key_rejects_with_the_reason(tables, text, match):
    with pytest.raises(ReplicatorError, match=match):
        parse_key(text, open_table("us-east-1/orders", None))


@pytest.mark.parametrize("segment,segments,match", [
    (0, None, "needs --segments"),
    (4, 4, "out of range"),
    (-1, 4, "out of range"),
    (None, 0, "out of range"),
])
def test_check_segments_rejects(segment, segments, match):
    with pytest.raises(ReplicatorError, match=match):
        check_segments(segment, segments)


def test_check_segments_accepts():
    check_segments(None, None)
    check_segments(None, 8)
    check_segments(7, 8)


class _Unprocessing:
    """Answers BatchGetItem with the first key processed and the rest unprocessed, every time."""

    def __init__(self) -> None:
        self.calls = 0

    def batch_get_item(self, RequestItems):  # noqa: N803 - boto3's spelling
        self.calls += 1
        (name, request), = RequestItems.items()
        first, *rest = request["Keys"]
        response = {"Responses": {name: [dict(first, v={"S": "x"})]}}
        if rest:
            response["UnprocessedKeys"] = {name: {**request, "Keys": rest}}
        return response


def test_batch_get_retries_unprocessed_keys_until_all_are_read(tables):
    table = open_table("us-east-1/orders", None)
    fake = _Unprocessing()
    table.client = fake
    keys = [{"id": {"S": f"k{i}"}, "n": {"N": "1"}} for i in range(5)]
    sleeps: list[float] = []
    found = batch_get(table, keys, sleep=sleeps.append)
    assert [f["id"] for f in found] == [k["id"] for k in keys]
    assert fake.calls == 5 and len(sleeps) == 4
