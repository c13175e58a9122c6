"""Feeds for Kinesis paths on the local server: what producers would put on a Kinesis stream.

moto cannot stream a table's changes to Kinesis (Kinesis Data Streams for DynamoDB), so
:func:`cdc_records` builds those records from the table's own DynamoDB stream in AWS's documented shape.
moto dates records to the millisecond; AWS offers microseconds (``ApproximateCreationDateTimePrecision``
MICROSECOND), and the feed uses them, numbering the records of one millisecond in stream order, so that
two changes of one item never share a time. :func:`ship` then puts records on the stream the way AWS may
deliver them: shuffled within a window, some twice.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from replicator.changes.codec import encode_item


def _stream_records(streams: Any, stream_arn: str) -> Iterator[dict[str, Any]]:
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    for shard in shards:
        iterator = streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"],
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            yield from page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")


def cdc_records(streams: Any, stream_arn: str, table: str, region: str = "us-east-1",
                after_sequence: int = 0) -> list[dict[str, Any]]:
    """Every record of the table's DynamoDB stream (after ``after_sequence``) as Kinesis Data Streams for
    DynamoDB would put it, in stream order."""
    out = []
    last_ms, within = -1, 0
    for record in _stream_records(streams, stream_arn):
        if int(record["dynamodb"]["SequenceNumber"]) <= after_sequence:
            continue
        created: datetime = record["dynamodb"]["ApproximateCreationDateTime"]
        ms = int(created.timestamp() * 1000)
        within = within + 1 if ms == last_ms else 0
        last_ms = ms
        body: dict[str, Any] = {"ApproximateCreationDateTime": ms * 1000 + within,
                                "ApproximateCreationDateTimePrecision": "MICROSECOND",
                                "Keys": encode_item(record["dynamodb"]["Keys"]), "SizeBytes": record["dynamodb"].get("SizeBytes", 0)}
        for image in ("NewImage", "OldImage"):
            if image in record["dynamodb"]:
                body[image] = encode_item(record["dynamodb"][image])
        out.append({"awsRegion": region, "eventID": record["eventID"], "eventName": record["eventName"],
                    "userIdentity": None, "recordFormat": "application/json", "tableName": table,
                    "eventSource": "aws:dynamodb", "dynamodb": body,
                    "_sequence": int(record["dynamodb"]["SequenceNumber"])})
    return out


def shuffled(payloads: list[Any], window: int, duplicates: float, rng: random.Random) -> list[Any]:
    """``payloads`` with each one moved up to ``window`` places, and a fraction sent twice."""
    keyed = [(i + rng.uniform(0, window), p) for i, p in enumerate(payloads)]
    keyed += [(i + rng.uniform(0, window * 3), p) for i, p in enumerate(payloads) if rng.random() < duplicates]
    return [p for _, p in sorted(keyed, key=lambda pair: pair[0])]


def ship(kinesis: Any, stream: str, payloads: list[Any], partition_key: Callable[[Any], str]) -> int:
    """PutRecords, 500 at a time, each payload as JSON; retries the records a call failed."""
    sent = 0
    for start in range(0, len(payloads), 500):
        pending = [{"Data": json.dumps({k: v for k, v in p.items() if not k.startswith("_")}
                                       if isinstance(p, dict) else p).encode(), "PartitionKey": partition_key(p)}
                   for p in payloads[start:start + 500]]
        while pending:
            answer = kinesis.put_records(StreamName=stream, Records=pending)
            pending = [r for r, result in zip(pending, answer["Records"]) if "ErrorCode" in result]
        sent += min(500, len(payloads) - start)
    return sent
