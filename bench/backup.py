"""Benchmark of backup-table and restore-table on the local server (moto), against baselines from the same run.

One local server serves the tables and the bucket (its S3). Items are small but for 2 KB of random binary
each, so the gzip lines barely compress (about 2 KB an item) and each of the 4 segments of the 20,000-item
table is about 10 MB: more than one 8 MiB part, so both the tool and its baseline upload by multipart (the
run prints the parts of segment 0, from its ETag).

1. Backup throughput: backup-table (``backup_table``, timed around the whole call: the jobid check, the
   segments, the markers and the manifest) backs a table of N items up with ``--segments`` (default 4).
   The baseline is a plain loop in the same process against the same server, exactly as parallel: one
   thread per segment, each Scanning pages of 250 items with consistent reads (the tool's page size and
   consistency), writing each page as ``{"Item": ...}`` lines (``json.dumps``, binary as base64) through
   gzip level 6 (the tool's level) into an in-memory buffer, and uploading that buffer as a part of a
   multipart upload each time it reaches 8 MiB (the tool's part size; a segment that never fills one is a
   single PutObject, as the tool does), then completing the upload. So both send the same Scans and the
   same uploads with the same concurrency and compress the same bytes; the baseline skips what the tool
   adds (its own item encoder, spooling parts to a temporary file rather than memory, MD5 and byte counts,
   rate meters, progress, markers, manifest), which is what the ratio prices. Target: >= 0.9.
2. Restore throughput: restore-table (``restore_table``, the whole call: manifest, size checks, key checks,
   the empty-table check, the segments, the state file) writes that backup into an empty table with 8
   BatchWriteItem requests in flight (``--in-flight``, its default). The baseline reads the same segment
   objects the same way (one thread per segment, GetObject streamed through gunzip line by line, each line
   decoded by the codec restore-table uses, so both hand boto3 the same values) and sends each 250 lines
   as BatchWriteItem requests of 25 on a shared pool of as many threads as the tool has requests in
   flight, the batch durable before the segment reads on, as the tool's writer does. It skips manifest and
   checksum checks, per-item key checks and the state file. Target: >= 0.9.
   Both throughputs run each side twice, in the order baseline, tool, tool, baseline, and compare the
   better run of each: the order cancels a drift of the server's state, the better run a burst of load
   from other processes on the machine (with a CI run sharing the 2 cores, single runs gave restore
   ratios of 0.88 at 20,000 items and 1.11 at 3,000).
3. Memory: Python's peak allocation (tracemalloc; the server is a child process) of a backup and of a
   restore of a ``--small`` and a ``--large`` table. Target: flat. The rule it checks: a backup holds a scan
   page and the gzip stream's buffer per segment, and spools S3 parts to disk, never a segment; a restore
   holds a batch of 250 items per segment. About 12 MiB of each peak is fixed: botocore's S3 model and
   endpoint rules, which the S3 client each run makes loads. 50,000 items stays the large size although
   moto makes it slow (its Scan walks the table for every page: a minute or two for that table's
   backup here); lower ``--large`` for a quicker look.

Run: `.venv/bin/python -m bench.backup [--items 20000] [--small 1000] [--large 50000]`.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import random
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.common import print_summary, put_all, submit_batches
from replicator.changes.codec import decode_item
from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table
from replicator.tables.backup import COMPRESS_LEVEL, backup_table
from replicator.tables.copy import DEFAULT_PAGE_SIZE
from replicator.tables.restore import restore_table
from replicator.tables.spec import open_table
from replicator.tables.store import PART_BYTES

REGION = "us-east-1"
BUCKET = "bench"
BINARY_BYTES = 2048
FILL_CHUNK = 5000
ABBA = ("baseline", "tool", "tool", "baseline")


def fill(server: LocalServer, table: str, count: int) -> None:
    """``count`` items, made and written 5,000 at a time (the bench process never holds a big table)."""
    client = server.client(REGION)
    create_table(client, table, None)
    rng = random.Random(count)
    for start in range(0, count, FILL_CHUNK):
        put_all(client, table, [
            {"pk": {"S": f"p{i % 1000}"}, "sk": {"N": str(i)}, "v": {"S": "x" * 100}, "n": {"N": str(i * 7)},
             "b": {"B": rng.randbytes(BINARY_BYTES)}}
            for i in range(start, min(count, start + FILL_CHUNK))
        ])


def _binary(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON: {type(value)}")


def baseline_backup(server: LocalServer, table: str, segments: int, prefix: str) -> tuple[float, int]:
    """(items/s, items) of a plain parallel Scan + gzip + multipart upload loop, as parallel as backup-table."""
    dynamodb, s3 = server.client(REGION), server.client(REGION, "s3")
    counts = [0] * segments

    def run_segment(segment: int) -> None:
        key = f"{prefix}/{segment}"
        buffer = io.BytesIO()
        upload: str | None = None
        parts: list[dict[str, Any]] = []

        def upload_part() -> None:
            nonlocal upload
            if upload is None:
                upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            etag = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=len(parts) + 1,
                                  Body=buffer.getvalue())["ETag"]
            parts.append({"PartNumber": len(parts) + 1, "ETag": etag})
            buffer.seek(0)
            buffer.truncate()

        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True, "Limit": DEFAULT_PAGE_SIZE,
                                  "Segment": segment, "TotalSegments": segments}
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as stream:
            while True:
                page = dynamodb.scan(**kwargs)
                stream.write("".join(json.dumps({"Item": item}, separators=(",", ":"), default=_binary) + "\n"
                                     for item in page["Items"]).encode("utf-8"))
                counts[segment] += len(page["Items"])
                if buffer.tell() >= PART_BYTES:
                    upload_part()
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if upload is None:
            s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
        else:
            if buffer.tell():
                upload_part()
            s3.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})

    started = time.monotonic()
    with ThreadPoolExecutor(segments) as pool:
        for future in [pool.submit(run_segment, s) for s in range(segments)]:
            future.result()
    return sum(counts) / (time.monotonic() - started), sum(counts)


def tool_backup(server: LocalServer, table: str, segments: int, *, memory: bool) -> tuple[float, int, str, int]:
    """(items/s, peak Python bytes or 0, the backup's URL, its gzip bytes) of backup_table, timed whole."""
    source = open_table(f"{REGION}/{table}", server.endpoint)
    if memory:
        tracemalloc.start()
    started = time.monotonic()
    result = backup_table(source, f"s3://{BUCKET}/tool", segments=segments, s3_endpoint=server.endpoint,
                          progress=False)
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    tracemalloc.stop()
    assert result.complete and result.items == source.item_count, result
    return result.items / seconds, peak, result.url, result.bytes


def baseline_restore(server: LocalServer, backup_prefix: str, segments: int, table: str,
                     in_flight: int) -> float:
    """Items/s of a plain loop: the backup's segments read in parallel, BatchWriteItem with ``in_flight`` requests."""
    s3, dynamodb = server.client(REGION, "s3"), server.client(REGION)
    create_table(dynamodb, table, None)
    written = [0] * segments

    def run_segment(segment: int, pool: ThreadPoolExecutor) -> None:
        body = s3.get_object(Bucket=BUCKET, Key=f"{backup_prefix}/{segment}")["Body"]
        batch: list[dict[str, Any]] = []

        def flush() -> None:
            for future in submit_batches(pool, dynamodb, table, batch):
                future.result()
            written[segment] += len(batch)
            batch.clear()

        with gzip.GzipFile(fileobj=body, mode="rb") as lines:
            for line in lines:
                batch.append(decode_item(json.loads(line)["Item"]))
                if len(batch) >= DEFAULT_PAGE_SIZE:
                    flush()
        flush()

    started = time.monotonic()
    with ThreadPoolExecutor(in_flight) as pool, ThreadPoolExecutor(segments) as readers:
        for future in [readers.submit(run_segment, s, pool) for s in range(segments)]:
            future.result()
    return sum(written) / (time.monotonic() - started)


def tool_restore(server: LocalServer, url: str, table: str, state_dir: Path, *, in_flight: int,
                 memory: bool) -> tuple[float, int]:
    """(items/s, peak Python bytes or 0) of restore_table into a new empty table, timed whole."""
    create_table(server.client(REGION), table, None)
    destination = open_table(f"{REGION}/{table}", server.endpoint)
    if memory:
        tracemalloc.start()
    started = time.monotonic()
    result = restore_table(url, destination, s3_endpoint=server.endpoint, max_in_flight=in_flight,
                           state_path=state_dir / f"{table}.json", progress=False)
    seconds = time.monotonic() - started
    peak = tracemalloc.get_traced_memory()[1] if memory else 0
    tracemalloc.stop()
    return result.restored / seconds, peak


def drop(server: LocalServer, *tables: str) -> None:
    """Delete tables the run is done with: the server keeps everything in memory."""
    client = server.client(REGION)
    for table in tables:
        client.delete_table(TableName=table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000, help="items of the throughput table")
    parser.add_argument("--small", type=int, default=1_000, help="items of the small memory table")
    parser.add_argument("--large", type=int, default=50_000, help="items of the large memory table")
    parser.add_argument("--segments", type=int, default=4, help="scan segments of the backups and baseline")
    parser.add_argument("--in-flight", type=int, default=8, help="BatchWriteItem requests in flight, both restores")
    args = parser.parse_args()
    from replicator import log
    log.configure(level=30)
    use_local_credentials()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, LocalServer() as server:
        state = Path(tmp)
        server.client(REGION, "s3").create_bucket(Bucket=BUCKET)
        fill(server, "throughput", args.items)

        # Each side twice, in the order baseline, tool, tool, baseline, and the better run of each: the
        # order cancels a drift of the server's state, the better run a burst of load from other processes.
        backups: dict[str, list[float]] = {"baseline": [], "tool": []}
        for i, kind in enumerate(ABBA):
            if kind == "baseline":
                rate, items = baseline_backup(server, "throughput", args.segments, f"baseline-{i}")
                assert items == args.items, items
            else:
                rate, _, url, size = tool_backup(server, "throughput", args.segments, memory=False)
            backups[kind].append(rate)
            print(f"backup {i + 1}/4, {kind}: {rate:,.0f} items/s", flush=True)
        base_backup, mine_backup = max(backups["baseline"]), max(backups["tool"])
        print(f"backup: backup-table {mine_backup:,.0f} items/s ({size / 2**20:.1f} MiB gzip), baseline "
              f"{base_backup:,.0f} items/s, ratio {mine_backup / base_backup:.2f} (target >= 0.9)", flush=True)

        jobid = url.rsplit("/", 1)[1]
        etag = server.client(REGION, "s3").head_object(Bucket=BUCKET, Key=f"tool/{jobid}/0")["ETag"].strip('"')
        parts = int(etag.split("-")[1]) if "-" in etag else 1
        print(f"backup: segment 0 of the tool's backup was uploaded in {parts} part(s)", flush=True)
        restores: dict[str, list[float]] = {"baseline": [], "tool": []}
        for i, kind in enumerate(ABBA):
            table = f"{kind}-restore-{i}"
            if kind == "baseline":
                rate = baseline_restore(server, f"tool/{jobid}", args.segments, table, args.in_flight)
            else:
                rate, _ = tool_restore(server, url, table, state, in_flight=args.in_flight, memory=False)
            restores[kind].append(rate)
            drop(server, table)
            print(f"restore {i + 1}/4, {kind}: {rate:,.0f} items/s", flush=True)
        base_restore, mine_restore = max(restores["baseline"]), max(restores["tool"])
        print(f"restore: restore-table {mine_restore:,.0f} items/s, baseline {base_restore:,.0f} items/s, "
              f"ratio {mine_restore / base_restore:.2f} (target >= 0.9)", flush=True)
        drop(server, "throughput")

        backup_peak, restore_peak = {}, {}
        for count in (args.small, args.large):
            fill(server, f"mem-{count}", count)
            _, backup_peak[count], url, _ = tool_backup(server, f"mem-{count}", args.segments, memory=True)
            _, restore_peak[count] = tool_restore(server, url, f"mem-{count}-restored", state,
                                                  in_flight=args.in_flight, memory=True)
            drop(server, f"mem-{count}", f"mem-{count}-restored")
            print(f"memory at {count:,} items: backup peak {backup_peak[count] / 2**20:.1f} MiB, restore peak "
                  f"{restore_peak[count] / 2**20:.1f} MiB", flush=True)
    small, large = args.small, args.large
    mib = lambda n: f"{n / 2**20:.1f} MiB"  # noqa: E731
    runs = lambda rates: "runs " + " and ".join(f"{r:,.0f}" for r in rates)  # noqa: E731
    print_summary(f"backup-table and restore-table on the local server ({args.segments} segments, "
                  f"{args.in_flight} in flight; {time.monotonic() - started:.0f} s in all)", [
        ("backup-table, better of 2", f"{mine_backup:,.0f} items/s",
         f"{args.items:,} items, {size / 2**20:.1f} MiB gzip, {parts} parts a segment; "
         f"{runs(backups['tool'])}"),
        ("baseline Scan+gzip+multipart upload", f"{base_backup:,.0f} items/s",
         f"same segments, pages, parts; {runs(backups['baseline'])}"),
        ("backup ratio", f"{mine_backup / base_backup:.2f}", "target >= 0.9"),
        ("restore-table, better of 2", f"{mine_restore:,.0f} items/s", f"{args.items:,} items; {runs(restores['tool'])}"),
        ("baseline read+BatchWriteItem", f"{base_restore:,.0f} items/s",
         f"same segments, in flight; {runs(restores['baseline'])}"),
        ("restore ratio", f"{mine_restore / base_restore:.2f}", "target >= 0.9"),
        (f"backup peak memory, {small:,} / {large:,} items", f"{mib(backup_peak[small])} / {mib(backup_peak[large])}",
         f"ratio {backup_peak[large] / backup_peak[small]:.2f}, target: flat"),
        (f"restore peak memory, {small:,} / {large:,} items",
         f"{mib(restore_peak[small])} / {mib(restore_peak[large])}",
         f"ratio {restore_peak[large] / restore_peak[small]:.2f}, target: flat"),
    ])


if __name__ == "__main__":
    main()
