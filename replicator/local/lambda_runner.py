"""An event source mapping, locally: a stream's shards read into Lambda events for the handler, in-process.

It keeps the mapping's rules that the handler's correctness stands on, so that the demo of the Lambda and
its end-to-end tests exercise them on ``replicator local``:

* each shard is read in order, one batch in flight per shard, shards in parallel; a child shard waits for
  its parent to end;
* events have AWS's shapes (DynamoDB Streams images in DynamoDB JSON with base64 binary and
  ``ApproximateCreationDateTime`` in seconds; Kinesis data in base64);
* a batch whose answer names a failed record is read again from that record, after a capped backoff, until
  it succeeds (the mapping's default for streams: retry until the records expire); a handler that raises
  retries its whole batch.

What it does not keep: its position lives in memory, so a restart begins again at the starting position
(the handler's writes are idempotent, so that replays, not loses), and it stops on no retry limit.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from replicator import log
from replicator.changes.codec import encode_item
from replicator.errors import ReplicatorError
from replicator.kcl.streams import stream_shards

Handler = Callable[[dict[str, Any], Any], Any]

_log = log.get("replicator.local.lambda")

BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 10.0
SHARD_DISCOVERY_S = 10.0


class StreamSource(Protocol):
    def shards(self) -> list[tuple[str, str | None]]:
        """Every shard, with its parent (or None)."""
        ...

    def iterator(self, shard_id: str, position: str, sequence_number: str | None = None) -> str: ...

    def read(self, shard_id: str, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        """Event records in Lambda's shape, and the next iterator (None once the shard is closed and read)."""
        ...


def _epoch_s(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else value


@dataclass
class DynamoDBStreamSource:
    client: Any
    stream_arn: str
    region: str

    def shards(self) -> list[tuple[str, str | None]]:
        return [(s["ShardId"], s.get("ParentShardId")) for s in stream_shards(self.client, self.stream_arn)]

    def iterator(self, shard_id: str, position: str, sequence_number: str | None = None) -> str:
        kwargs = {"SequenceNumber": sequence_number} if sequence_number else {}
        return self.client.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard_id,
                                              ShardIteratorType=position, **kwargs)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = self.client.get_records(ShardIterator=iterator, Limit=limit)
        return [self._event_record(r) for r in page["Records"]], page.get("NextShardIterator")

    def _event_record(self, record: dict[str, Any]) -> dict[str, Any]:
        body = dict(record["dynamodb"])
        for image in ("Keys", "NewImage", "OldImage"):
            if image in body:
                body[image] = encode_item(body[image])
        if "ApproximateCreationDateTime" in body:
            body["ApproximateCreationDateTime"] = _epoch_s(body["ApproximateCreationDateTime"])
        return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": body,
                "eventSource": "aws:dynamodb", "awsRegion": self.region, "eventSourceARN": self.stream_arn}


@dataclass
class KinesisStreamSource:
    client: Any
    stream_name: str
    stream_arn: str
    region: str

    def shards(self) -> list[tuple[str, str | None]]:
        shards, token = [], None
        while True:
            page = self.client.list_shards(**({"NextToken": token} if token else {"StreamName": self.stream_name}))
            shards += [(s["ShardId"], s.get("ParentShardId")) for s in page["Shards"]]
            token = page.get("NextToken")
            if not token:
                return shards

    def iterator(self, shard_id: str, position: str, sequence_number: str | None = None) -> str:
        kwargs = {"StartingSequenceNumber": sequence_number} if sequence_number else {}
        return self.client.get_shard_iterator(StreamName=self.stream_name, ShardId=shard_id,
                                              ShardIteratorType=position, **kwargs)["ShardIterator"]

    def read(self, shard_id: str, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        page = self.client.get_records(ShardIterator=iterator, Limit=limit)
        return [self._event_record(r, shard_id) for r in page["Records"]], page.get("NextShardIterator")

    def _event_record(self, record: dict[str, Any], shard: str) -> dict[str, Any]:
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode("ascii"),
                "approximateArrivalTimestamp": _epoch_s(record.get("ApproximateArrivalTimestamp")),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "awsRegion": self.region,
            "eventSourceARN": self.stream_arn,
        }


@dataclass
class _Context:
    """The part of Lambda's context object the handler uses: the time left before the function's timeout."""

    timeout_s: float
    started: float = field(default_factory=time.monotonic)
    function_name: str = "replicator-local"

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self.started + self.timeout_s - time.monotonic()) * 1000), 0)


@dataclass
class MappingStats:
    invocations: int = 0
    records: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, records: int, retried: bool) -> None:
        with self._lock:
            self.invocations += 1
            self.records += 0 if retried else records
            self.retries += 1 if retried else 0


class EventSourceMapping:
    """Reads every shard of ``source`` and calls ``handler`` with its batches until ``stop`` is set."""

    def __init__(self, source: StreamSource, handler: Handler, *, batch_size: int = 100,
                 starting_position: str = "TRIM_HORIZON", timeout_s: float = 60.0, poll_s: float = 0.25,
                 stop: threading.Event | None = None) -> None:
        self._source = source
        self._handler = handler
        self._batch_size = batch_size
        self._position = starting_position
        self._timeout_s = timeout_s
        self._poll_s = poll_s
        self.stop = stop or threading.Event()
        self.stats = MappingStats()
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Until stopped: a thread per shard whose parent is done (or gone), new shards found as they come."""
        threads: dict[str, threading.Thread] = {}
        while not self.stop.is_set():
            shards = self._source.shards()
            known = {shard for shard, _ in shards}
            for shard, parent in shards:
                with self._lock:
                    parent_done = parent is None or parent not in known or parent in self._done
                if shard not in threads and parent_done:
                    threads[shard] = threading.Thread(target=self._read_shard, args=(shard,), daemon=True,
                                                      name=f"shard-{shard}")
                    threads[shard].start()
            self.stop.wait(SHARD_DISCOVERY_S)
        for thread in threads.values():
            thread.join()

    def _read_shard(self, shard: str) -> None:
        iterator: str | None = self._source.iterator(shard, self._position)
        failures = 0
        while iterator is not None and not self.stop.is_set():
            events, following = self._source.read(shard, iterator, self._batch_size)
            if not events:
                iterator = following
                self.stop.wait(self._poll_s)
                continue
            failed = self._invoke(events, retried=failures > 0)
            if failed is None:
                iterator, failures = following, 0
                continue
            failures += 1
            backoff = min(BACKOFF_START_S * 2 ** (failures - 1), BACKOFF_CAP_S)
            _log.warning("batch_retrying", shard=shard, from_sequence_number=failed, attempt=failures,
                         backoff_s=backoff)
            self.stop.wait(backoff)
            iterator = self._source.iterator(shard, "AT_SEQUENCE_NUMBER", failed)
        if iterator is None:
            with self._lock:
                self._done.add(shard)

    def _invoke(self, events: list[dict[str, Any]], retried: bool) -> str | None:
        """The sequence number to read again from, or None when the whole batch is done."""
        first = _sequence_number(events[0])
        self.stats.count(len(events), retried)
        try:
            answer = self._handler({"Records": events}, _Context(self._timeout_s))
        except Exception as exc:  # noqa: BLE001 - a function error: Lambda retries the whole batch
            _log.error("function_error", error=str(exc), error_type=type(exc).__name__)
            return first
        failures = (answer or {}).get("batchItemFailures") or []
        if not failures:
            return None
        named = {_sequence_number(e) for e in events}
        identifiers = [f.get("itemIdentifier") for f in failures]
        if any(not i or i not in named for i in identifiers):
            return first  # as Lambda: an empty or unknown identifier fails the whole batch
        return min(identifiers, key=int)


def _sequence_number(event: dict[str, Any]) -> str:
    if event.get("eventSource") == "aws:kinesis":
        return str(event["kinesis"]["sequenceNumber"])
    return str(event["dynamodb"]["SequenceNumber"])


def stream_source(region: str, endpoint: str | None, *, table: str | None = None,
                  kinesis_stream: str | None = None) -> StreamSource:
    """The source to read: a table's DynamoDB stream, or a Kinesis stream; one clear line if it has none."""
    from botocore.exceptions import ClientError

    from replicator import clients

    if (table is None) == (kinesis_stream is None):
        raise ReplicatorError("give the stream to read: --source-table (its DynamoDB stream) or --source-kinesis-stream")
    try:
        if kinesis_stream is not None:
            client = clients.kinesis(region, endpoint)
            summary = client.describe_stream_summary(StreamName=kinesis_stream)["StreamDescriptionSummary"]
            return KinesisStreamSource(client, kinesis_stream, summary["StreamARN"], region)
        assert table is not None
        description = clients.dynamodb(region, endpoint).describe_table(TableName=table)["Table"]
    except ClientError as exc:
        what = f"Kinesis stream {region}/{kinesis_stream}" if kinesis_stream else f"source table {region}/{table}"
        raise ReplicatorError(f"cannot read {what}: {exc.response.get('Error', {}).get('Message', exc)}; "
                              "check the name, --source-region and --source-endpoint") from None
    arn = description.get("LatestStreamArn")
    if not arn or not description.get("StreamSpecification", {}).get("StreamEnabled"):
        raise ReplicatorError(f"source table {region}/{table} has no stream: enable one "
                              "(aws dynamodb update-table --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES)")
    return DynamoDBStreamSource(clients.streams(region, endpoint), arn, region)


def run_until_signalled(mapping: EventSourceMapping) -> None:
    """Run the mapping in the foreground; SIGTERM or Ctrl-C lets each shard finish its batch, then stops."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        mapping.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    mapping.run()
    _log.info("mapping_stopped", invocations=mapping.stats.invocations, records=mapping.stats.records,
              retries=mapping.stats.retries)
