"""Throughput of a Kinesis path per record format, against a fair ceiling from the same run.

For each format a 2-shard stream is filled while no path runs, with N items' records (``--items``):

* ``binlog``: one PutItem action per item (DynamoDB JSON), put by ``BinlogProducer``;
* ``dynamodb-cdc``: the items are written to the source table, and its DynamoDB stream's records are put
  on the stream as Kinesis Data Streams for DynamoDB would (``local.feeds``), keyed by item;
* ``keys-only``: the items are written to the source table, and one plain-JSON key record per item.

The FAIR CEILING reads that same stream, each shard on its own thread as KCL gives each shard its own
processor, with GetRecords (1,000 records a call), and writes the images with BatchWriteItem, as many
requests in flight per shard as the path's writer (``--write-concurrency``). For keys-only the images are
not in the stream, so the ceiling also reads them with BatchGetItem (100 keys, consistent), as the path
must. It skips KCL, the lease table, checkpoints, the MultiLang protocol and our processor: their cost is
what the ratio prices. For dynamodb-cdc the path writes one conditional PutItem per change (the fence the
format needs), and so does its ceiling. Both are timed by the same poller of the destination's ItemCount,
from the first item visible to the last. Printed: items/s of each and their ratio.

Run: `.venv/bin/python -m bench.kinesis [--items 5000] [--formats binlog,dynamodb-cdc,keys-only]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import print_summary, put_all, submit_batches
from bench.replication import alive, make_items, visible_span
from replicator.changes.binlog import BinlogProducer
from replicator.changes.codec import Change, decode_item, encode_item, key_id
from replicator.changes.formats import CDC_VERSION_ATTRIBUTE
from replicator.changes.versions import Versioning
from replicator.local.feeds import cdc_records, ship
from replicator.local.sandbox import Sandbox
from replicator.local.workload import create_table

CEILING_TABLE = "ceiling"
SCHEMA = (("pk", "S"), ("sk", "N"))
FORMATS = ("binlog", "dynamodb-cdc", "keys-only")


def fill(sandbox: Sandbox, fmt: str, items: list[dict[str, Any]]) -> int:
    """Put the format's records for ``items`` on the sandbox's stream; return how many records."""
    stream = sandbox.kinesis_stream
    assert stream is not None
    if fmt == "binlog":
        return BinlogProducer(sandbox.kinesis, stream, SCHEMA).put_actions(
            {"Action": "PutItem", "Data": encode_item(item)} for item in items)
    put_all(sandbox.source, sandbox.source_table, items)
    if fmt == "dynamodb-cdc":
        streams = sandbox.source_server.client(service="dynamodbstreams")
        arn = sandbox.source.describe_table(TableName=sandbox.source_table)["Table"]["LatestStreamArn"]
        records = cdc_records(streams, arn, sandbox.source_table)
        return ship(sandbox.kinesis, stream, records, lambda r: key_id(r["dynamodb"]["Keys"]))
    keys = [{"pk": item["pk"]["S"], "sk": int(item["sk"]["N"])} for item in items]
    return ship(sandbox.kinesis, stream, keys, lambda k: json.dumps(k))


def images(sandbox: Sandbox, fmt: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items a page of records asks to write, as cheaply as any replicator could get them."""
    payloads = [json.loads(r["Data"]) for r in records]
    if fmt == "binlog":
        return [decode_item(p["Data"]) for p in payloads]
    if fmt == "dynamodb-cdc":
        return [decode_item(p["dynamodb"]["NewImage"]) for p in payloads]
    found: list[dict[str, Any]] = []
    for start in range(0, len(payloads), 100):
        keys = [{"pk": {"S": p["pk"]}, "sk": {"N": str(p["sk"])}} for p in payloads[start:start + 100]]
        while keys:
            answer = sandbox.source.batch_get_item(
                RequestItems={sandbox.source_table: {"Keys": keys, "ConsistentRead": True}})
            found += answer["Responses"].get(sandbox.source_table, [])
            keys = answer.get("UnprocessedKeys", {}).get(sandbox.source_table, {}).get("Keys", [])
    return found


def read_and_write_shard(sandbox: Sandbox, fmt: str, shard: str, pool: ThreadPoolExecutor) -> int:
    kinesis = sandbox.source_server.client(service="kinesis")
    iterator = kinesis.get_shard_iterator(StreamName=sandbox.kinesis_stream, ShardId=shard,
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    versioning = Versioning.by_time(CDC_VERSION_ATTRIBUTE) if fmt == "dynamodb-cdc" else None
    futures: list[Future[Any]] = []
    read = 0
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        if not page["Records"]:
            break
        read += len(page["Records"])
        written = images(sandbox, fmt, page["Records"])
        if versioning is None:
            futures += submit_batches(pool, sandbox.destination, CEILING_TABLE, written)
        else:
            for item in written:
                change = Change("", {"pk": item["pk"], "sk": item["sk"]}, item, "1", None)
                futures.append(pool.submit(sandbox.destination.put_item,
                                           **versioning.put_item_request(CEILING_TABLE, change)))
        iterator = page["NextShardIterator"]
    for future in futures:
        future.result()
    return read


def ceiling(sandbox: Sandbox, fmt: str, expected: int) -> float:
    create_table(sandbox.destination, CEILING_TABLE, None)
    timer = ThreadPoolExecutor(1)
    span = timer.submit(visible_span, sandbox, CEILING_TABLE, expected)
    shards = [s["ShardId"] for s in sandbox.kinesis.list_shards(StreamName=sandbox.kinesis_stream)["Shards"]]
    pools = [ThreadPoolExecutor(sandbox.path.write_concurrency) for _ in shards]
    results: list[int] = []
    threads = [threading.Thread(target=lambda s=s, p=p: results.append(read_and_write_shard(sandbox, fmt, s, p)))
               for s, p in zip(shards, pools)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    first, last = span.result()
    timer.shutdown()
    return expected / max(last - first, 1e-9)


def run_format(fmt: str, count: int, workdir: Path) -> tuple[float, float, float]:
    """(path items/s, ceiling items/s, start-up s) for one format."""
    with Sandbox(workdir / fmt, kinesis_stream=f"bench-{fmt}", path_settings={"source_format": fmt}) as sandbox:
        items = make_items(count)
        fill(sandbox, fmt, items)
        top = ceiling(sandbox, fmt, count)
        started = time.monotonic()
        proc = sandbox.start_daemon()
        first, last = visible_span(sandbox, sandbox.destination_table, count, lambda: alive(proc))
        return count / max(last - first, 1e-9), top, first - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--formats", default=",".join(FORMATS))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-kinesis-") as tmp:
        for fmt in args.formats.split(","):
            path_rate, top, startup = run_format(fmt, args.items, Path(tmp))
            rows.append((f"{fmt}: items/s", f"{path_rate:.0f}", f"ceiling {top:.0f} (ratio {path_rate / top:.2f})"))
            rows.append((f"{fmt}: start-up, new path", f"{startup:.1f} s", "replicator run to first item"))
    print_summary(f"Kinesis paths, {args.items} items on a 2-shard stream (local server)", rows)


if __name__ == "__main__":
    main()
