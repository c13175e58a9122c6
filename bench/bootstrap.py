"""Benchmark of bootstrap's two loads on the local server (moto), against a baseline from the same run.

bootstrap loads a table with one PutItem per item, conditional on the key's absence in the replica
(``tables.load``): BatchWriteItem takes no conditions. This times the two loads over the same N items:

* ``--load scan``: copy-table's parallel Scan (4 segments) feeding the conditional writer (8 in flight);
* ``--load export``: the local server's ExportTableToPointInTime (asked for and waited for), then its data
  files read by restore-table's reader into the same conditional writer;

against the baseline, a plain loop: the same items, already in memory, each one PutItem with the same
condition, on a pool of the same 8 threads. Before each load a tenth of the keys are already in its
destination (as a path that started first would have written them), so every load skips the same keys.
The ratios are the price of what the loads add (reading the source or the export, state file, progress,
retries, rate meter); a plain parallel Scan of the source, writing nothing, is timed too, since on the
one-core local server reading the source competes with the writes. Only the loads are timed: the path they run beside is the same for both.

Run: `.venv/bin/python -m bench.bootstrap [--items 5000]`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from bench.common import print_summary, put_all
from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table
from replicator.tables import export as ex
from replicator.tables.copy import copy_table
from replicator.tables.load import CONDITION, absent_key_put
from replicator.tables.restore import restore_table
from replicator.tables.spec import open_table

SOURCE_REGION, DESTINATION_REGION = "us-east-1", "eu-west-1"
VERSION = "replicator_version"
BUCKET = "bench-exports"
IN_FLIGHT = 8


def items(count: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"p{i % 1000}"}, "sk": {"N": str(i)}, "v": {"S": "x" * 200}, "n": {"N": str(i * 7)},
             "ns": {"NS": ["1", str(i)]}, "b": {"B": bytes([i % 256]) * 8}} for i in range(count)]


def destination(server: LocalServer, name: str, already: list[dict[str, Any]]) -> None:
    client = server.client(DESTINATION_REGION)
    create_table(client, name, None)
    put_all(client, name, already)


def baseline(server: LocalServer, name: str, source_items: list[dict[str, Any]]) -> tuple[float, int]:
    """(seconds, skipped) of a plain conditional PutItem loop over the items, 8 in flight."""
    client = server.client(DESTINATION_REGION)
    skipped = [0]
    lock = threading.Lock()

    def put(item: dict[str, Any]) -> None:
        try:
            client.put_item(TableName=name, Item=item, ConditionExpression=CONDITION,
                            ExpressionAttributeNames={"#key": "pk"})
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            with lock:
                skipped[0] += 1

    started = time.monotonic()
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        list(pool.map(put, source_items))
    return time.monotonic() - started, skipped[0]


def scan_alone(server: LocalServer, segments: int) -> float:
    """Seconds of a plain parallel Scan of the source (copy-table's pages), writing nothing: what reading
    the source costs the one-core server, which the scan load pays on top of its writes."""
    client = server.client(SOURCE_REGION)

    def run(segment: int) -> None:
        kwargs: dict[str, Any] = {"TableName": "source", "ConsistentRead": True, "Limit": 250, "Segment": segment,
                                  "TotalSegments": segments}
        while True:
            page = client.scan(**kwargs)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    started = time.monotonic()
    with ThreadPoolExecutor(segments) as pool:
        list(pool.map(run, range(segments)))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=5_000)
    args = parser.parse_args()
    from replicator import log
    log.configure(level=30)
    use_local_credentials()
    source_items = items(args.items)
    already = source_items[:: 10]
    put_request = absent_key_put("pk", VERSION)
    with tempfile.TemporaryDirectory() as tmp, LocalServer() as server:
        client = server.client(SOURCE_REGION)
        create_table(client, "source", None)
        put_all(client, "source", source_items)
        client.update_continuous_backups(TableName="source",
                                         PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        server.client(service="s3").create_bucket(Bucket=BUCKET)
        src = open_table(f"{SOURCE_REGION}/source", server.endpoint)

        destination(server, "baseline", already)
        base_s, base_skipped = baseline(server, "baseline", source_items)
        read_s = scan_alone(server, 4)

        destination(server, "scan", already)
        started = time.monotonic()
        scanned = copy_table(src, open_table(f"{DESTINATION_REGION}/scan", server.endpoint), segments=4,
                             max_in_flight=IN_FLIGHT, state_path=Path(tmp) / "scan.json", progress=False,
                             put_request=put_request)
        scan_s = time.monotonic() - started

        destination(server, "export", already)
        started = time.monotonic()
        description = ex.request_export(src, BUCKET, "bench")
        description = ex.wait_for_export(src, description["ExportArn"], poll_s=0.2)
        exported_s = time.monotonic() - started
        restored = restore_table(ex.export_url(description), open_table(f"{DESTINATION_REGION}/export", server.endpoint),
                                 s3_endpoint=server.endpoint, max_in_flight=IN_FLIGHT, force=True,
                                 state_path=Path(tmp) / "export.json", progress=False, put_request=put_request)
        export_s = time.monotonic() - started
    assert scanned.skipped == restored.present == base_skipped == len(already), (scanned.skipped, restored.present)
    n = args.items
    print(f"baseline conditional PutItem loop: {n / base_s:,.0f} items/s ({base_s:.1f} s)")
    print(f"--load scan: {n / scan_s:,.0f} items/s ({scan_s:.1f} s), ratio {base_s / scan_s:.2f}; "
          f"a plain parallel Scan of the source alone takes {read_s:.1f} s")
    print(f"--load export: {n / export_s:,.0f} items/s ({export_s:.1f} s, export {exported_s:.1f} s), "
          f"ratio {base_s / export_s:.2f}")
    print_summary(f"bootstrap's loads on the local server ({n:,} items, a tenth already in the replica, "
                  f"{IN_FLIGHT} in flight)", [
        ("baseline conditional PutItem loop", f"{n / base_s:,.0f} items/s", f"{base_s:.1f} s, items in memory"),
        ("--load scan (4 segments)", f"{n / scan_s:,.0f} items/s", f"ratio {base_s / scan_s:.2f} of the baseline"),
        ("  of which: the Scan alone", f"{read_s:.1f} s", "a plain parallel Scan, no writes"),
        ("--load export", f"{n / export_s:,.0f} items/s",
         f"ratio {base_s / export_s:.2f}; export itself {exported_s:.1f} s"),
        ("skipped (key already present)", f"{len(already):,}", "the same in all three"),
    ])


if __name__ == "__main__":
    main()
