"""The local server's DynamoDB streams are as trustworthy as DynamoDB's under concurrent writers.

Stock moto numbers a record ``len(records) + start`` and appends it after the table write without a lock: with
8 writer threads a stream got duplicated sequence numbers and steps backwards, and a consumer checkpointing
past a duplicate dropped a change. DynamoDB promises unique, increasing sequence numbers within a shard,
each write's record, and records that follow each key's writes; this test holds our server to that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from replicator.local.server import LocalServer
from replicator.local.workload import create_table

pytestmark = pytest.mark.integration

THREADS = 8
BATCHES_PER_THREAD = 40
KEYS = 300  # every thread writes every key, so each key's writes race


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    with LocalServer() as local:
        yield local


def stream_records(client: Any, streams: Any, table: str) -> list[dict[str, Any]]:
    arn = client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records: list[dict[str, Any]] = []
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        records += page["Records"]
        if not page["Records"]:
            return records
        iterator = page["NextShardIterator"]


def test_concurrent_writers_get_unique_increasing_sequence_numbers_and_every_record(server: LocalServer) -> None:
    client = server.client()
    create_table(client, "raced", "NEW_AND_OLD_IMAGES")
    errors: list[BaseException] = []

    def writer(thread: int) -> None:
        own = server.client()
        try:
            for batch in range(BATCHES_PER_THREAD):
                start = (batch * 25 + thread * 7) % KEYS
                items = [{"pk": {"S": f"k{(start + i) % KEYS}"}, "sk": {"N": "0"},
                          "by": {"S": f"{thread}/{batch}/{i}"}} for i in range(25)]
                pending = [{"PutRequest": {"Item": item}} for item in items]
                while pending:
                    result = own.batch_write_item(RequestItems={"raced": pending})
                    pending = result.get("UnprocessedItems", {}).get("raced", [])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []

    records = stream_records(client, server.client(service="dynamodbstreams"), "raced")
    numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    writes = THREADS * BATCHES_PER_THREAD * 25
    assert len(set(numbers)) == len(numbers), f"{len(numbers) - len(set(numbers))} duplicated sequence numbers"
    backwards = sum(1 for a, b in zip(numbers, numbers[1:]) if b <= a)
    assert backwards == 0, f"{backwards} steps backwards"
    written = {r["dynamodb"]["NewImage"]["by"]["S"] for r in records}
    assert len(records) == writes and len(written) == writes, "a write has no record of its own"

    # Each key's last record is the item the table holds: the stream follows each key's writes.
    last = {r["dynamodb"]["Keys"]["pk"]["S"]: r["dynamodb"]["NewImage"] for r in records}
    table = {i["pk"]["S"]: i for i in client.scan(TableName="raced", ConsistentRead=True)["Items"]}
    assert last == table
