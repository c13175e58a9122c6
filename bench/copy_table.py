"""Benchmark of copy-table on the local server (moto), against a baseline from the same run.

One local server holds both regions: the source tables in us-east-1, the copies in eu-west-1.

1. Throughput: copy-table copies a table of N small items into an empty table, with ``--segments`` scan
   segments (default 4) and ``--in-flight`` BatchWriteItem requests at a time (default 8, its default).
   The baseline is a plain loop in the same process against the same server, exactly as parallel: the
   same segments each Scan pages of 250 items with consistent reads (copy-table's page size and
   consistency), and every page goes out as BatchWriteItem requests of 25 on a shared pool of the same
   number of threads, the page durable before the segment reads on, as copy-table's writer does. So the
   two do the same requests with the same concurrency, and the ratio is the price of what copy-table adds
   (state file after each page, retries, rate meters, progress). Target: copy-table items/s >= 0.9 x the
   baseline.
2. Memory: Python's peak allocation (tracemalloc, copy-table's own process; the server is a child process)
   while copying a ``--small`` and a ``--large`` table. Target: flat (the copy holds a page per segment,
   never the table). 50,000 items stays the large size although moto makes it slow: its Scan walks the
   table from the start for every page and hashes each item to find its segment, so a page costs more
   the larger the table (measured here: about 80 ms a page at 2,000 items, 165 ms at 16,000), and the
   50,000-item copy should take one to two minutes of the server's single core. Lower ``--large`` for a
   quicker look; 20 times the small table still shows whether memory grows with the table.

Run: `.venv/bin/python -m bench.copy_table [--items 20000] [--small 1000] [--large 50000]`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import print_summary, put_all, submit_batches
from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table
from replicator.tables.copy import DEFAULT_PAGE_SIZE, copy_table
from replicator.tables.spec import open_table

SOURCE_REGION = "us-east-1"
DESTINATION_REGION = "eu-west-1"


def small_items(count: int) -> list[dict[str, Any]]:
    return [{"pk": {"S": f"p{i % 1000}"}, "sk": {"N": str(i)}, "v": {"S": "x" * 200}, "n": {"N": str(i * 7)}}
            for i in range(count)]


def fill(server: LocalServer, table: str, count: int) -> None:
    client = server.client(SOURCE_REGION)
    create_table(client, table, None)
    put_all(client, table, small_items(count))


def baseline(server: LocalServer, source: str, destination: str, segments: int, in_flight: int) -> float:
    """Items/s of a plain parallel Scan + BatchWriteItem loop, as parallel as copy-table."""
    reader, writer = server.client(SOURCE_REGION), server.client(DESTINATION_REGION)
    create_table(writer, destination, None)
    copied = [0]
    lock = threading.Lock()

    def run_segment(segment: int, pool: ThreadPoolExecutor) -> None:
        kwargs: dict[str, Any] = {"TableName": source, "ConsistentRead": True, "Limit": DEFAULT_PAGE_SIZE,
                                  "Segment": segment, "TotalSegments": segments}
        while True:
            page = reader.scan(**kwargs)
            for future in submit_batches(pool, writer, destination, page["Items"]):
                future.result()
            with lock:
                copied[0] += len(page["Items"])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    started = time.monotonic()
    with ThreadPoolExecutor(in_flight) as pool, ThreadPoolExecutor(segments) as scanners:
        for future in [scanners.submit(run_segment, s, pool) for s in range(segments)]:
            future.result()
    return copied[0] / (time.monotonic() - started)


def tool(server: LocalServer, source: str, destination: str, state_dir: Path, *, segments: int, in_flight: int,
         memory: bool) -> tuple[float, int]:
    """(items/s, peak Python bytes or 0) of copy_table; tracemalloc slows it, so throughput runs without."""
    create_table(server.client(DESTINATION_REGION), destination, None)
    src = open_table(f"{SOURCE_REGION}/{source}", server.endpoint)
    dst = open_table(f"{DESTINATION_REGION}/{destination}", server.endpoint)
    if memory:
        tracemalloc.start()
    result = copy_table(src, dst, segments=segments, max_in_flight=in_flight,
                        state_path=state_dir / f"{destination}.json", progress=False)
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    tracemalloc.stop()
    return result.items_per_s, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="items of the throughput table")
    parser.add_argument("--small", type=int, default=1_000, help="items of the small memory table")
    parser.add_argument("--large", type=int, default=50_000, help="items of the large memory table")
    parser.add_argument("--segments", type=int, default=4, help="scan segments, copy-table's and the baseline's")
    parser.add_argument("--in-flight", type=int, default=8, help="BatchWriteItem requests in flight, both")
    args = parser.parse_args()
    from replicator import log
    log.configure(level=30)
    use_local_credentials()
    with tempfile.TemporaryDirectory() as tmp, LocalServer() as server:
        state = Path(tmp)
        fill(server, "throughput", args.items)
        base = baseline(server, "throughput", "baseline-copy", args.segments, args.in_flight)
        mine, _ = tool(server, "throughput", "tool-copy", state, segments=args.segments, in_flight=args.in_flight,
                       memory=False)
        print(f"throughput: copy-table {mine:,.0f} items/s, baseline {base:,.0f} items/s, "
              f"ratio {mine / base:.2f} (target >= 0.9)")
        peaks = {}
        for count in (args.small, args.large):
            fill(server, f"mem-{count}", count)
            _, peaks[count] = tool(server, f"mem-{count}", f"mem-{count}-copy", state, segments=args.segments,
                                   in_flight=args.in_flight, memory=True)
        small, large = peaks[args.small], peaks[args.large]
        print(f"memory: peak {small / 2**20:.1f} MiB copying {args.small:,} items, {large / 2**20:.1f} MiB copying "
              f"{args.large:,} items, ratio {large / small:.2f} (target: flat)")
    print_summary(f"copy-table on the local server ({args.segments} segments, {args.in_flight} in flight)", [
        ("copy-table", f"{mine:,.0f} items/s", f"{args.items:,} items"),
        ("baseline Scan+BatchWriteItem", f"{base:,.0f} items/s", "same segments and in-flight"),
        ("throughput ratio", f"{mine / base:.2f}", "target >= 0.9"),
        (f"peak memory, {args.small:,} items", f"{small / 2**20:.1f} MiB", ""),
        (f"peak memory, {args.large:,} items", f"{large / 2**20:.1f} MiB", ""),
        ("memory ratio", f"{large / small:.2f}", "target: flat (~1)"),
    ])


if __name__ == "__main__":
    main()
