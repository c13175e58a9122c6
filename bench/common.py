"""What both benchmarks share: BatchWriteItem with requests in flight, the live item count, the summary table.

The local server (moto) spends about 5 ms of CPU per single-item request and scans slowly (a COUNT scan of
10,000 items takes seconds, all of it on the one core the server has), so progress is polled with
DescribeTable's ItemCount, which moto keeps live and answers cheaply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from replicator.changes.codec import Item

BATCH = 25
"""BatchWriteItem's limit, and what every writer here sends: the cheapest way to put items."""


def chunks(items: Sequence[Item], size: int = BATCH) -> list[Sequence[Item]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def write_batch(client: Any, table: str, items: Sequence[Item]) -> None:
    """One BatchWriteItem of at most 25 items, UnprocessedItems resent until none is left."""
    pending = [{"PutRequest": {"Item": item}} for item in items]
    while pending:
        response = client.batch_write_item(RequestItems={table: pending})
        pending = response.get("UnprocessedItems", {}).get(table, [])


def submit_batches(pool: ThreadPoolExecutor, client: Any, table: str, items: Sequence[Item]) -> list[Future[None]]:
    """Every 25 items one BatchWriteItem on ``pool``: as many requests in flight as the pool has threads."""
    return [pool.submit(write_batch, client, table, chunk) for chunk in chunks(items)]


def put_all(client: Any, table: str, items: Sequence[Item], in_flight: int = 8) -> None:
    """Put ``items`` with ``in_flight`` BatchWriteItem requests at a time (filling tables fast)."""
    with ThreadPoolExecutor(in_flight) as pool:
        for future in submit_batches(pool, client, table, items):
            future.result()


def item_count(client: Any, table: str) -> int:
    """DescribeTable's ItemCount: live on the local server (AWS updates it every few hours)."""
    return int(client.describe_table(TableName=table)["Table"]["ItemCount"])


def wait_for_count(client: Any, table: str, at_least: int, *, poll_s: float, timeout_s: float,
                   alive: Callable[[], bool] = lambda: True) -> float:
    """The monotonic time at which ``table`` was first seen holding ``at_least`` items.

    Stamped when the answer arrives, not when the request left: the server runs one DynamoDB request at a
    time, so a poll can wait seconds behind a GetRecords or a batch, and its answer describes the table at
    the end of that wait. ``alive`` is asked between polls, so a dead daemon fails the run at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        count = item_count(client, table)
        now = time.monotonic()
        if count >= at_least:
            return now
        if now > deadline:
            raise TimeoutError(f"{table} held fewer than {at_least} items after {timeout_s:.0f} s")
        if not alive():
            raise RuntimeError(f"the daemon died while {table} held fewer than {at_least} items")
        time.sleep(poll_s)


def print_summary(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """A plain three-column table (measure, value, against): readable in a terminal and in a CI log."""
    header = ("measure", "value", "against")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}\n{line}")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if row is header:
            print(line)
    print(line)
