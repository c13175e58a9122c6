"""Benchmarks of the replication daemon on DynamoDB Local, each against a baseline from the same run.

1. Throughput: N items are written to the source while no daemon runs; the daemon then starts and
   drains the stream. Replicated items per second (first item visible in the destination to the last)
   are compared with the ceiling on this machine: a plain loop of BatchWriteItem (25 items a request)
   putting the same items into a fresh table on the same destination DynamoDB Local. Target: >= 0.5.
   With --version-attribute the path writes one conditional PutItem per change, and so does the baseline,
   from --write-concurrency threads.
2. Lag: a mixed workload at a steady rate (default 500 writes/s) while a probe times each probe item
   from its source write to its consistent visibility in the destination. Target: p99 <= 1.5 s.

Run: `make bench` (or `.venv/bin/python -m bench.replication --items 20000 --rate 500`).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from replicator.changes.codec import Change
from replicator.local.sandbox import Sandbox
from replicator.changes.versions import Versioning
from replicator.local.workload import LagProbe, MixedWorkload, create_table, every_type_item, percentile


def make_items(count: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [every_type_item(f"bench-{i % 1000:04d}", i, rng, rev=i) for i in range(count)]


def batch_put(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        pending = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while pending:
            response = client.batch_write_item(RequestItems={table: pending})
            pending = response.get("UnprocessedItems", {}).get(table, [])


def count(client: Any, table: str) -> int:
    total, kwargs = 0, {"TableName": table, "Select": "COUNT", "ConsistentRead": True}
    while True:
        page = client.scan(**kwargs)
        total += page["Count"]
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def conditional_put(client: Any, table: str, items: list[dict[str, Any]], attribute: str, threads: int) -> None:
    """What a versioned path's writer asks of the destination: one conditional PutItem per item, in parallel,
    each built by the writer's own ``Versioning``."""
    versioning = Versioning(attribute, label="bench")

    def put(numbered: tuple[int, dict[str, Any]]) -> None:
        n, item = numbered
        change = Change(key_id=str(n), keys={"pk": item["pk"], "sk": item["sk"]}, new_image=item,
                        sequence_number=str(n), created_ms=None)
        try:
            client.put_item(**versioning.put_item_request(table, change))
        except client.exceptions.ConditionalCheckFailedException:
            pass

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(put, enumerate(items)))


def throughput(sandbox: Sandbox, items: list[dict[str, Any]]) -> tuple[float, float]:
    """(replicated items/s, baseline items/s): the baseline writes as the path does, batched or versioned."""
    create_table(sandbox.destination, "baseline", None)
    started = time.monotonic()
    if sandbox.path.version_attribute:
        conditional_put(sandbox.destination, "baseline", items, sandbox.path.version_attribute,
                        sandbox.path.write_concurrency)
    else:
        batch_put(sandbox.destination, "baseline", items)
    baseline = len(items) / (time.monotonic() - started)

    batch_put(sandbox.source, sandbox.source_table, items)
    sandbox.start_daemon()
    while count(sandbox.destination, sandbox.destination_table) == 0:
        time.sleep(0.05)
    first = time.monotonic()
    while count(sandbox.destination, sandbox.destination_table) < len(items):
        time.sleep(0.2)
    replicated = len(items) / (time.monotonic() - first)
    return replicated, baseline


def lag(sandbox: Sandbox, rate: int, seconds: int) -> tuple[list[float], int]:
    probe = LagProbe(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table)
    probe.measure_once()  # the daemon is up (the throughput run started it) and has caught up
    probe.start()
    workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=2000, seed=9, first_rev=10**7)
    stats = workload.run(rate * seconds, rate, threads=8)
    samples = probe.stop()
    return samples, stats.operations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--write-concurrency", type=int, default=8, help="the path's --write-concurrency")
    parser.add_argument("--version-attribute", help="the path's --version-attribute (conditional PutItem per change)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="replicator-bench-"))
    settings = {"write_concurrency": args.write_concurrency, "version_attribute": args.version_attribute}
    with Sandbox(workdir, path_settings=settings) as sandbox:
        replicated, baseline = throughput(sandbox, make_items(args.items))
        samples, operations = lag(sandbox, args.rate, args.seconds)
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    print(f"workdir: {workdir}")
    loop = "conditional PutItem threads" if args.version_attribute else "BatchWriteItem loop"
    print(f"throughput: {replicated:,.0f} items/s replicated vs {baseline:,.0f} items/s plain {loop} "
          f"({args.items:,} items): ratio {replicated / baseline:.2f} (target >= 0.50)")
    print(f"lag at {args.rate} writes/s ({operations:,} mixed operations, {len(samples)} probes): "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(samples):.0f} ms (target p99 <= 1500 ms)")


if __name__ == "__main__":
    main()
