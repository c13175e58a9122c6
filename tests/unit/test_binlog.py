"""The binlog producer against moto's Kinesis: what lands on the stream, shard by shard, is what a binlog
path replays, so every check here reads the stream back."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from replicator.changes.binlog import BinlogLineError, BinlogProducer, ShardMap
from replicator.changes.codec import encode_item, key_id
from replicator.changes.formats import BinlogRecords, SourceRecord, binlog_changes, is_dynamodb_json
from unit_helpers import VENV_BIN

REPLICATOR = str(VENV_BIN / "replicator")
STREAM = "binlog"
SCHEMA = (("pk", "S"), ("sk", "N"))


class SpyKinesis:
    """The Kinesis client, with every PutRecords call's entries kept."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.put_calls: list[list[dict[str, Any]]] = []

    def put_records(self, **kwargs: Any) -> Any:
        self.put_calls.append(kwargs["Records"])
        return self._client.put_records(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def kinesis():
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName=STREAM, ShardCount=4)
        yield client


@pytest.fixture
def producer(kinesis):
    return BinlogProducer(SpyKinesis(kinesis), STREAM, SCHEMA, sleep=lambda s: None)


def shard_map(client: Any, stream: str = STREAM) -> ShardMap:
    return ShardMap(client.list_shards(StreamName=stream)["Shards"])


def read_stream(client: Any, stream: str = STREAM) -> dict[str, list[dict[str, Any]]]:
    """Every record on every shard, in shard order."""
    shards = {}
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records: list[dict[str, Any]] = []
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            records += page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        shards[shard["ShardId"]] = records
    return shards


def count_records(client: Any, stream: str = STREAM) -> int:
    return sum(len(records) for records in read_stream(client, stream).values())


def md5_int(partition_key: str) -> int:
    return int(hashlib.md5(partition_key.encode("utf-8")).hexdigest(), 16)


def summary(change: Any) -> tuple[str, Any]:
    """A change as what it does to its item, comparable whatever JSON it came in."""
    if change.new_image is None:
        return ("delete", json.dumps(encode_item(change.keys), sort_keys=True))
    return ("put", json.dumps(encode_item(change.new_image), sort_keys=True))


def line(action: str, data: Any) -> str:
    return json.dumps({"Action": action, "Data": data})


def batch(tag: str, count: int) -> list[dict[str, Any]]:
    return [{"pk": f"{tag}-{i}", "sk": i, "batch": tag} for i in range(count)]


LINES = [
    line("PutItem", {"pk": "a", "sk": 1, "v": "one", "n": 1.5, "tags": ["x", 2], "m": {"deep": None, "ok": True}}),
    line("PutItem", {"pk": {"S": "b"}, "sk": {"N": "2"}, "v": {"S": "two"}, "bin": {"B": "AAEC"}}),
    line("DeleteItem", {"pk": "a", "sk": 1}),
    line("BatchWrite", [*batch("plain", 12), {"Delete": {"pk": "b", "sk": 2}}]),
    "",
    line("PutItem", {"pk": "a", "sk": "1.0", "v": "again"}).replace('"1.0"', "1.0"),  # sk 1.0 is item a/1
    line("BatchWrite", [{"pk": {"S": f"ddb-{i}"}, "sk": {"N": str(i)}, "batch": {"S": "ddb"}} for i in range(10)]
         + [{"Delete": {"pk": {"S": "a"}, "sk": {"N": "1"}}}]),
    line("DeleteItem", {"pk": {"S": "b"}, "sk": {"N": "2"}}),
    line("PutItem", {"pk": "b", "sk": 2, "v": "three"}),
]


def expected_by_item(lines: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """Each item's changes in the order the lines give them."""
    expected: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for number, text in enumerate(lines, start=1):
        if text.strip():
            for change in binlog_changes(json.loads(text, parse_float=Decimal), SCHEMA, str(number)):
                expected[change.key_id].append(summary(change))
    return dict(expected)


def test_every_record_is_dynamodb_json_keyed_by_its_item_and_in_order_on_its_items_shard(kinesis, producer):
    sent = producer.put_lines(LINES)
    shards = shard_map(kinesis)
    stream = read_stream(kinesis)
    decoder = BinlogRecords(SCHEMA)

    seen_by_item: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    shard_of_item: dict[str, set[str]] = defaultdict(set)
    batch_records: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)  # batch tag -> (shard, key ids)
    total = 0
    for shard_id, records in stream.items():
        for record in records:
            total += 1
            action = json.loads(record["Data"])
            # DynamoDB JSON, whatever the line was written in
            assert set(action) == {"Action", "Data"}
            if action["Action"] == "BatchWrite":
                for entry in action["Data"]:
                    assert is_dynamodb_json(entry["Delete"] if set(entry) == {"Delete"} else entry), entry
            else:
                assert is_dynamodb_json(action["Data"]), action
            changes = decoder.decode(SourceRecord(record["Data"], record["SequenceNumber"]))
            ids = [change.key_id for change in changes]
            # keyed by its item (a BatchWrite: by one of its items), and all its items are on its shard
            assert record["PartitionKey"] in ids
            if action["Action"] != "BatchWrite":
                assert record["PartitionKey"] == key_id(action["Data"] if action["Action"] == "DeleteItem" else
                                                        {name: action["Data"][name] for name, _ in SCHEMA})
            for change in changes:
                assert shards.shard_of(md5_int(change.key_id)) == shard_id, (change.key_id, shard_id)
                seen_by_item[change.key_id].append(summary(change))
                shard_of_item[change.key_id].add(shard_id)
            if action["Action"] == "BatchWrite":
                tags = {entry.get("batch", {}).get("S") for entry in action["Data"]} - {None}
                assert len(tags) == 1
                batch_records[tags.pop()].append((shard_id, ids))

    # every action arrived once, each item's in the order sent, each item on one shard
    assert seen_by_item == expected_by_item(LINES)
    assert all(len(found) == 1 for found in shard_of_item.values())
    assert total == sent
    # a BatchWrite over several shards is one record per shard it touches
    for tag, count in (("plain", 12), ("ddb", 10)):
        item_shards = {shards.shard_of(md5_int(key_id({"pk": {"S": f"{tag}-{i}"}, "sk": {"N": str(i)}})))
                       for i in range(count)}
        assert len(item_shards) > 1  # the data does span shards
        record_shards = [shard for shard, _ in batch_records[tag]]
        assert sorted(record_shards) == sorted(item_shards)
    assert sent == 6 + len(batch_records["plain"]) + len(batch_records["ddb"])


def test_one_item_in_two_spellings_is_one_partition_key_and_one_put_records_call_never_repeats_a_key(kinesis, producer):
    producer.put_lines(LINES)
    keys_of_a = {record["PartitionKey"] for records in read_stream(kinesis).values() for record in records
                 if record["PartitionKey"] == key_id({"pk": {"S": "a"}, "sk": {"N": "1"}})}
    assert len(keys_of_a) == 1
    calls = producer._client.put_calls
    assert calls
    for entries in calls:
        keys = [entry["PartitionKey"] for entry in entries]
        assert len(keys) == len(set(keys))


@pytest.mark.parametrize("number", [
    "12345678901234567890123456789012345678E+88",  # 38 digits and the largest exponent
    "1234567890123456789012345678901234567.8",
    "99999999999999999999999999999999999999",
    "-0.00000000000000000000000000000000000012345678901234567890123456789012345678",
])
def test_a_long_plain_json_number_arrives_exactly(kinesis, producer, number):
    text = '{"Action": "PutItem", "Data": {"pk": "n", "sk": %s, "big": %s, "list": [%s]}}' % (number, number, number)
    assert producer.put_lines([text]) == 1
    [record] = [r for records in read_stream(kinesis).values() for r in records]
    [change] = BinlogRecords(SCHEMA).decode(SourceRecord(record["Data"], record["SequenceNumber"]))
    image = change.new_image
    for sent in (image["big"]["N"], image["sk"]["N"], image["list"]["L"][0]["N"]):
        assert Decimal(sent) == Decimal(number)  # Decimal compares exactly: no digit lost or rounded
    if "E" not in str(Decimal(number)):  # a spelling Decimal keeps arrives as written
        assert f'"big":{{"N":"{number}"}}' in record["Data"].decode()
    assert record["PartitionKey"] == key_id({"pk": {"S": "n"}, "sk": {"N": number}})


GOOD = [line("PutItem", {"pk": "g1", "sk": 1}), "", line("BatchWrite", batch("before", 8)),
        line("DeleteItem", {"pk": "g2", "sk": 2})]
AFTER = [line("PutItem", {"pk": "after", "sk": 1}), line("DeleteItem", {"pk": "g1", "sk": 1})]


@pytest.mark.parametrize("bad", [
    '{"Action": "PutItem", "Data": {"pk": "x", "sk": 1}',
    "PutItem x 1",
    line("UpdateItem", {"pk": "x", "sk": 1}),
    json.dumps({"Data": {"pk": "x", "sk": 1}}),
    line("PutItem", {"pk": "x", "v": 1}),
    line("PutItem", {"sk": 1}),
    line("DeleteItem", {"pk": "x", "sk": "not-a-number-type"}),
    line("BatchWrite", [{"pk": "y", "sk": 1}, {"pk": "z"}]),
    line("BatchWrite", []),
], ids=["truncated-json", "not-json", "unknown-action", "no-action", "put-without-sort-key",
        "put-without-partition-key", "key-of-the-wrong-type", "batch-entry-without-key", "empty-batch"])
def test_a_bad_line_is_named_and_exactly_the_lines_before_it_are_sent(kinesis, producer, bad):
    lines = [*GOOD, bad, *AFTER]
    bad_number = len(GOOD) + 1
    expected_before = expected_by_item(GOOD)
    with pytest.raises(BinlogLineError) as info:
        producer.put_lines(lines)
    message = str(info.value)
    assert message.startswith(f"line {bad_number}:"), message
    assert "\n" not in message
    seen: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    records = [r for rs in read_stream(kinesis).values() for r in rs]
    for record in records:
        for change in BinlogRecords(SCHEMA).decode(SourceRecord(record["Data"], record["SequenceNumber"])):
            seen[change.key_id].append(summary(change))
    assert dict(seen) == expected_before
    assert len(records) == producer.sent
    assert producer.sent >= 3  # a PutItem, a DeleteItem, and at least one record of the BatchWrite


def sent_changes(client: Any, schema: Any = SCHEMA) -> dict[str, list[tuple[str, Any]]]:
    seen: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for record in [r for rs in read_stream(client).values() for r in rs]:
        for change in BinlogRecords(schema).decode(SourceRecord(record["Data"], record["SequenceNumber"])):
            seen[change.key_id].append(summary(change))
    return dict(seen)


@pytest.mark.parametrize("bad, problem", [
    (line("PutItem", {"pk": "", "sk": 1}), "key attribute 'pk' is empty"),
    (line("PutItem", {"pk": {"S": ""}, "sk": {"N": "1"}}), "key attribute 'pk' is empty"),
    (line("BatchWrite", [{"pk": "y", "sk": 1}, {"Delete": {"pk": "", "sk": 2}}]),
     "BatchWrite entry 1, key attribute 'pk' is empty"),
    ('{"Action": "PutItem", "Data": {"pk": "x", "sk": 1, "m": {"l": [1, 1.5e999]}}}',
     "attribute 'm.l[1]': 1.5E+999 is beyond DynamoDB's largest magnitude"),
    ('{"Action": "DeleteItem", "Data": {"pk": "x", "sk": 123456789012345678901234567890123456789}}',
     "attribute 'sk': 123456789012345678901234567890123456789 has 39 significant digits"),
    ('{"Action": "PutItem", "Data": {"pk": "x", "sk": 1, "v": NaN}}', "attribute 'v': NaN is not a DynamoDB number"),
    ('{"Action": "PutItem", "Data": {"pk": "x", "sk": -Infinity}}',
     "key attribute 'sk': '-Infinity' is not a DynamoDB number"),
    (line("PutItem", {"pk": {"S": "x"}, "sk": {"N": "1"}, "v": {"NS": ["1", "1E-131"]}}),
     "attribute 'v': 1E-131 is below DynamoDB's smallest magnitude"),
    (line("DeleteItem", {"pk": {"S": "x"}, "sk": {"N": "abc"}}), "key attribute 'sk': 'abc' is not a DynamoDB number"),
    (line("BatchWrite", [{"pk": {"S": "x"}, "sk": {"N": "1"}, "v": {"L": [{"N": "1e126"}]}}]),
     "BatchWrite entry 0, attribute 'v[0]': 1e126 is beyond"),
], ids=["empty-key", "empty-key-dynamodb-json", "empty-key-in-a-batch-delete", "huge-number-deep-in-a-map",
        "39-digit-key", "nan", "infinite-key", "tiny-number-in-a-set", "not-a-number-key", "huge-number-in-a-batch"])
def test_a_line_dynamodb_would_refuse_is_named_with_its_attribute_and_only_the_lines_before_it_are_sent(
        kinesis, producer, bad, problem):
    with pytest.raises(BinlogLineError) as info:
        producer.put_lines([*GOOD, bad, *AFTER])
    assert str(info.value).startswith(f"line {len(GOOD) + 1}: {problem}"), str(info.value)
    assert sent_changes(kinesis) == expected_by_item(GOOD)


def test_an_empty_binary_key_is_refused_in_either_json(kinesis):
    schema = (("pk", "B"),)
    producer = BinlogProducer(kinesis, STREAM, schema, sleep=lambda s: None)
    for bad in (line("PutItem", {"pk": "", "v": 1}), line("DeleteItem", {"pk": {"B": ""}})):
        with pytest.raises(BinlogLineError, match=r"^line 2: key attribute 'pk' is empty.*empty binary key"):
            producer.put_lines([line("PutItem", {"pk": "AAE=", "v": 1}), bad])
    assert count_records(kinesis) == 2  # the good line, once per attempt


def test_put_actions_refuses_numbers_dynamodb_cannot_store(kinesis, producer):
    for number in (Decimal("NaN"), Decimal("1E+999"), Decimal("1" * 39)):
        with pytest.raises(BinlogLineError, match=r"^action 0: attribute 'v': "):
            producer.put_actions([{"Action": "PutItem", "Data": {"pk": "x", "sk": 1, "v": number}}])
    assert count_records(kinesis) == 0


def test_a_bad_first_line_sends_nothing(kinesis, producer):
    with pytest.raises(BinlogLineError, match=r"^line 1: "):
        producer.put_lines(["{", *GOOD])
    assert count_records(kinesis) == 0


def test_put_actions_refuses_a_float_naming_decimal(kinesis, producer):
    good = {"Action": "PutItem", "Data": {"pk": "ok", "sk": 1, "exact": Decimal("0.1"), "n": 7}}
    with pytest.raises(BinlogLineError) as info:
        producer.put_actions([good, {"Action": "PutItem", "Data": {"pk": "f", "sk": 1, "v": 0.1}}])
    message = str(info.value)
    assert message.startswith("action 1:"), message
    assert "float" in message and "Decimal" in message
    records = [r for rs in read_stream(kinesis).values() for r in rs]
    assert len(records) == 1
    [change] = BinlogRecords(SCHEMA).decode(SourceRecord(records[0]["Data"], records[0]["SequenceNumber"]))
    assert change.new_image["exact"] == {"N": "0.1"} and change.new_image["n"] == {"N": "7"}


def test_put_actions_refuses_a_float_key(kinesis, producer):
    with pytest.raises(BinlogLineError, match="float.*Decimal"):
        producer.put_actions([{"Action": "DeleteItem", "Data": {"pk": "f", "sk": 1.0}}])
    assert count_records(kinesis) == 0


# --- the command line ------------------------------------------------------------------------------------


def cli_stream(endpoint: str) -> tuple[Any, str]:
    client = boto3.client("kinesis", region_name="us-east-1", endpoint_url=endpoint,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    name = f"binlog-{uuid.uuid4().hex[:12]}"
    client.create_stream(StreamName=name, ShardCount=4)
    client.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return client, name


def binlog_put(endpoint: str, stream: str, file, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([REPLICATOR, "binlog", "put", "--stream", stream, "--key", "pk:S", "--key", "sk:N",
                           "--region", "us-east-1", "--endpoint", endpoint, str(file)],
                          cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=60)


def test_binlog_put_with_a_bad_line_exits_2_with_one_line_naming_it(tmp_path, moto_endpoint):
    client, stream = cli_stream(moto_endpoint)
    file = tmp_path / "actions.jsonl"
    file.write_text("\n".join([line("PutItem", {"pk": "a", "sk": 1}), line("DeleteItem", {"pk": "b", "sk": 2}),
                               "", line("PutItem", {"pk": "c"}), line("PutItem", {"pk": "d", "sk": 4})]) + "\n")
    result = binlog_put(moto_endpoint, stream, file, tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("replicator: error: line 4"), lines[0]
    assert "2 records before it were sent" in lines[0]
    assert count_records(client, stream) == 2


def test_binlog_put_of_a_file_that_is_not_utf8_exits_2_with_one_line_naming_the_file_and_line(tmp_path,
                                                                                               moto_endpoint):
    client, stream = cli_stream(moto_endpoint)
    file = tmp_path / "latin1.jsonl"
    latin1 = b'{"Action": "PutItem", "Data": {"pk": "caf\xe9", "sk": 2}}\n'
    file.write_bytes(line("PutItem", {"pk": "a", "sk": 1}).encode() + b"\n" + latin1)
    result = binlog_put(moto_endpoint, stream, file, tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith(f"replicator: error: line 2: {file} is not UTF-8 text"), lines[0]
    assert "convert it to UTF-8" in lines[0] and "1 records before it were sent" in lines[0], lines[0]
    assert count_records(client, stream) == 1


def test_binlog_put_refuses_a_number_dynamodb_cannot_store_naming_line_and_attribute(tmp_path, moto_endpoint):
    client, stream = cli_stream(moto_endpoint)
    file = tmp_path / "actions.jsonl"
    file.write_text(line("PutItem", {"pk": "a", "sk": 1}) + "\n"
                    + '{"Action": "PutItem", "Data": {"pk": "b", "sk": 2, "price": 1.5e999}}\n')
    result = binlog_put(moto_endpoint, stream, file, tmp_path)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.strip().splitlines() == [
        "replicator: error: line 2: attribute 'price': 1.5E+999 is beyond DynamoDB's largest magnitude, "
        "9.9999999999999999999999999999999999999E+125: store it as a string (1 records before it were sent)"]
    assert count_records(client, stream) == 1


def test_binlog_put_sends_a_file_and_says_how_many_records(tmp_path, moto_endpoint):
    client, stream = cli_stream(moto_endpoint)
    file = tmp_path / "actions.jsonl"
    file.write_text("\n".join([line("PutItem", {"pk": "a", "sk": 1}), line("DeleteItem", {"pk": "a", "sk": 1}),
                               line("PutItem", {"pk": "b", "sk": 12345678901234567890123456789012345678})]))
    result = binlog_put(moto_endpoint, stream, file, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"sent 3 records to us-east-1/{stream}"
    assert count_records(client, stream) == 3
