"""A path's source stream as status and metrics read it: from a checkpoint on, page by page.

Both kinds of source answer the same three questions: where a worker resuming from a checkpoint would
read next, the page of records there, and when each record was written. A DynamoDB stream is addressed by
its ARN and dates a record by ApproximateCreationDateTime; a Kinesis stream by its name, dating a record by
ApproximateArrivalTimestamp.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from replicator import clients
from replicator.errors import ReplicatorError
from replicator.kcl.config import ReplicationPath

START_CHECKPOINTS = ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP")
"""What a lease holds before its first checkpoint: where KCL starts it."""


class SourceStream(Protocol):
    def iterator_after(self, shard_id: str, checkpoint: str) -> str: ...

    def page(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]: ...

    def written_at(self, record: dict[str, Any]) -> datetime | None: ...


def latest_stream_arn(streams: Any, table: str) -> str:
    found = streams.list_streams(TableName=table).get("Streams", [])
    if not found:
        raise ReplicatorError(f"table {table} has no stream: there is nothing to replicate")
    return max(found, key=lambda s: s["StreamLabel"])["StreamArn"]


def stream_shards(client: Any, stream_arn: str) -> list[dict[str, Any]]:
    """Every shard of a DynamoDB stream, DescribeStream page by page: each with its ShardId, ParentShardId
    and SequenceNumberRange (which has an EndingSequenceNumber once the shard is closed)."""
    shards: list[dict[str, Any]] = []
    start: str | None = None
    while True:
        kwargs = {"StreamArn": stream_arn, **({"ExclusiveStartShardId": start} if start else {})}
        description = client.describe_stream(**kwargs)["StreamDescription"]
        shards += description.get("Shards", [])
        start = description.get("LastEvaluatedShardId")
        if not start:
            return shards


class DynamoDBStream:
    def __init__(self, client: Any, stream_arn: str | None, table: str) -> None:
        self._client = client
        self._arn = stream_arn
        self._table = table

    @property
    def arn(self) -> str:
        if self._arn is None:
            self._arn = latest_stream_arn(self._client, self._table)
        return self._arn

    def iterator_after(self, shard_id: str, checkpoint: str) -> str:
        """A shard iterator at the first record a worker resuming from ``checkpoint`` would read."""
        if checkpoint in START_CHECKPOINTS:
            kwargs = {"ShardIteratorType": checkpoint}
        else:
            kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": checkpoint}
        return self._client.get_shard_iterator(StreamArn=self.arn, ShardId=shard_id, **kwargs)["ShardIterator"]

    def page(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = self._client.get_records(ShardIterator=iterator, Limit=limit)
        return page["Records"], page.get("NextShardIterator")

    def written_at(self, record: dict[str, Any]) -> datetime | None:
        return record["dynamodb"].get("ApproximateCreationDateTime")


class KinesisStream:
    def __init__(self, client: Any, name: str, initial_timestamp: datetime | None = None) -> None:
        self._client = client
        self._name = name
        self._initial_timestamp = initial_timestamp

    def iterator_after(self, shard_id: str, checkpoint: str) -> str:
        if checkpoint == "AT_TIMESTAMP" and self._initial_timestamp is not None:
            kwargs: dict[str, Any] = {"ShardIteratorType": "AT_TIMESTAMP", "Timestamp": self._initial_timestamp}
        elif checkpoint in START_CHECKPOINTS:
            kwargs = {"ShardIteratorType": "TRIM_HORIZON" if checkpoint == "AT_TIMESTAMP" else checkpoint}
        else:
            kwargs = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
        return self._client.get_shard_iterator(StreamName=self._name, ShardId=shard_id, **kwargs)["ShardIterator"]

    def page(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = self._client.get_records(ShardIterator=iterator, Limit=limit)
        return page["Records"], page.get("NextShardIterator")

    def written_at(self, record: dict[str, Any]) -> datetime | None:
        return record.get("ApproximateArrivalTimestamp")


def source_stream(path: ReplicationPath, stream_arn: str | None = None) -> SourceStream:
    """The path's source stream (its clients made now: call it on the thread that will use it)."""
    if path.source_kinesis_stream is not None:
        return KinesisStream(clients.kinesis(path.source_region, path.source_endpoint, side="source",
                                             credentials=path.source_credentials),
                             path.source_kinesis_stream, path.initial_timestamp)
    assert path.source_table is not None
    side = "source-streams" if path.source_streams_endpoint else "source"
    streams = clients.streams(path.source_region, path.source_streams_endpoint or path.source_endpoint, side=side,
                              credentials=path.source_credentials)
    return DynamoDBStream(streams, stream_arn, path.source_table)
