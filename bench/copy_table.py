"""Benchmark of copy-table on DynamoDB Local, against a baseline from the same run.

1. Throughput: copy-table (4 segments) copies a table of N small items into an empty table; the baseline is
   a plain loop in the same process on the same DynamoDB Local: Scan pages, each put with BatchWriteItem
   (25 a request, UnprocessedItems resent). Target: copy-table items/s >= 0.9 x the baseline.
2. Memory: Python's peak allocation (tracemalloc) while copying a 1,000-item and a 50,000-item table.
   Target: flat (the copy holds a page per segment, never the table).

Run: `.venv/bin/python -m bench.copy_table [--items 20000] [--small 1000] [--large 50000]`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from replicator.tables.copy import copy_table
from replicator.local.server import DynamoDBLocal
from replicator.tables.spec import open_table
from replicator.local.workload import create_table

REGION = "us-east-1"


def fill(client: Any, table: str, count: int) -> None:
    create_table(client, table, None)
    batch: list[dict[str, Any]] = []
    for i in range(count):
        batch.append({"PutRequest": {"Item": {"pk": {"S": f"p{i % 1000}"}, "sk": {"N": str(i)},
                                              "v": {"S": "x" * 200}, "n": {"N": str(i * 7)}}}})
        if len(batch) == 25 or i == count - 1:
            while batch:
                batch = client.batch_write_item(RequestItems={table: batch}).get("UnprocessedItems", {}).get(table, [])


def baseline(client: Any, source: str, destination: str) -> float:
    """Items/s of a plain Scan + BatchWriteItem loop."""
    create_table(client, destination, None)
    started, copied = time.monotonic(), 0
    for page in client.get_paginator("scan").paginate(TableName=source):
        items = page["Items"]
        for i in range(0, len(items), 25):
            pending = [{"PutRequest": {"Item": item}} for item in items[i : i + 25]]
            while pending:
                pending = client.batch_write_item(RequestItems={destination: pending}).get("UnprocessedItems", {}).get(destination, [])
        copied += len(items)
    return copied / (time.monotonic() - started)


def tool(db: DynamoDBLocal, source: str, destination: str, state_dir: Path, *, memory: bool, segments: int = 4) -> tuple[float, int]:
    """(items/s, peak Python bytes or 0) of copy_table; tracemalloc slows it, so throughput runs without."""
    create_table(db.client(REGION), destination, None)
    src, dst = open_table(f"{REGION}/{source}", db.endpoint), open_table(f"{REGION}/{destination}", db.endpoint)
    if memory:
        tracemalloc.start()
    result = copy_table(src, dst, segments=segments, state_path=state_dir / f"{destination}.json", progress=False)
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    tracemalloc.stop()
    return result.items_per_s, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=50_000)
    args = parser.parse_args()
    from replicator import log
    log.configure(level=30)
    with tempfile.TemporaryDirectory() as tmp, DynamoDBLocal() as db:
        client, state = db.client(REGION), Path(tmp)
        fill(client, "throughput", args.items)
        base = baseline(client, "throughput", "baseline-copy")
        mine, _ = tool(db, "throughput", "tool-copy", state, memory=False)
        print(f"throughput: copy-table {mine:,.0f} items/s, baseline {base:,.0f} items/s, ratio {mine / base:.2f} (target >= 0.9)")
        peaks = {}
        for count in (args.small, args.large):
            fill(client, f"mem-{count}", count)
            _, peaks[count] = tool(db, f"mem-{count}", f"mem-{count}-copy", state, memory=True)
        small, large = peaks[args.small], peaks[args.large]
        print(f"memory: peak {small / 2**20:.1f} MiB copying {args.small} items, {large / 2**20:.1f} MiB copying "
              f"{args.large} items, ratio {large / small:.2f} (target: flat)")


if __name__ == "__main__":
    main()
