"""A mixed workload for the demo, the end-to-end tests and the benchmarks.

Inserts, updates and deletes over a fixed set of keys, with every attribute type DynamoDB has: strings
(empty ones too), 38-digit and negative and fractional numbers, binary, booleans, null, the three set
types, and lists and maps nested several levels deep, empty ones included.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from replicator.changes.codec import Item

KEY_SCHEMA = [
    {"AttributeName": "pk", "KeyType": "HASH"},
    {"AttributeName": "sk", "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS = [
    {"AttributeName": "pk", "AttributeType": "S"},
    {"AttributeName": "sk", "AttributeType": "N"},
]


def create_table(client: Any, table: str, stream_view: str | None = "NEW_AND_OLD_IMAGES") -> None:
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeySchema": KEY_SCHEMA,
        "AttributeDefinitions": ATTRIBUTE_DEFINITIONS,
        "BillingMode": "PAY_PER_REQUEST",
    }
    if stream_view:
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream_view}
    client.create_table(**kwargs)
    client.get_waiter("table_exists").wait(TableName=table)


def big_number(rng: random.Random) -> str:
    digits = "".join(rng.choice("0123456789") for _ in range(38)).lstrip("0") or "0"
    return rng.choice(["", "-"]) + digits if digits != "0" else "0"


def random_value(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"] + (["L", "M"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "S":
        return {"S": rng.choice(["", "héllo ✓", "x" * rng.randint(1, 200)])}
    if kind == "N":
        return {"N": rng.choice([big_number(rng), "-0.000000000000000000000000000000000001", "3.14159", str(rng.randint(-10**6, 10**6))])}
    if kind == "B":
        return {"B": rng.randbytes(rng.randint(0, 64))}
    if kind == "BOOL":
        return {"BOOL": rng.random() < 0.5}
    if kind == "NULL":
        return {"NULL": True}
    if kind == "SS":
        values = {f"s{rng.randint(0, 99)}" for _ in range(rng.randint(1, 5))}
        if rng.random() < 0.2:
            values.add("")
        return {"SS": sorted(values)}
    if kind == "NS":
        return {"NS": sorted({big_number(rng) for _ in range(rng.randint(1, 4))})}
    if kind == "BS":
        return {"BS": list({rng.randbytes(rng.randint(1, 16)) for _ in range(rng.randint(1, 4))})}
    if kind == "L":
        return {"L": [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]}
    return {"M": {f"m{i}": random_value(rng, depth + 1) for i in range(rng.randint(0, 4))}}


def every_type_item(pk: str, sk: int, rng: random.Random, rev: int) -> Item:
    """An item with one attribute of each type, plus random extras."""
    item: Item = {
        "pk": {"S": pk},
        "sk": {"N": str(sk)},
        "rev": {"N": str(rev)},
        "s": {"S": "text"},
        "empty_s": {"S": ""},
        "n38": {"N": big_number(rng)},
        "b": {"B": rng.randbytes(16)},
        "empty_b": {"B": b""},
        "bool": {"BOOL": True},
        "null": {"NULL": True},
        "ss": {"SS": ["a", "b", ""]},
        "ns": {"NS": ["1", "-99999999999999999999999999999999999999", "0.5"]},
        "bs": {"BS": [b"\x00", b"\xff\xfe"]},
        "l": {"L": [{"S": "x"}, {"N": "1"}, {"L": []}, {"M": {}}]},
        "m": {"M": {"deep": {"M": {"deeper": {"L": [{"B": b"\x01"}, {"NULL": True}]}}}}},
    }
    for i in range(rng.randint(0, 3)):
        item[f"extra{i}"] = random_value(rng)
    return item


def key_of(index: int) -> Item:
    return {"pk": {"S": f"key-{index % 97:02d}"}, "sk": {"N": str(index)}}


@dataclass
class WorkloadStats:
    puts: int = 0
    updates: int = 0
    deletes: int = 0
    write_times_ms: dict[int, int] = field(default_factory=dict)
    """Client time (ms) at which each revision's write returned: the start of its replication lag."""

    @property
    def operations(self) -> int:
        return self.puts + self.updates + self.deletes


class MixedWorkload:
    """Writes ``operations`` changes over ``keys`` keys, at most ``rate`` per second."""

    def __init__(self, client: Any, table: str, *, keys: int, seed: int = 7, first_rev: int = 1) -> None:
        self.client = client
        self.table = table
        self.keys = keys
        self.rng = random.Random(seed)
        self.rev = first_rev
        self.stats = WorkloadStats()
        self._lock = threading.Lock()

    def one(self) -> None:
        with self._lock:
            index = self.rng.randrange(self.keys)
            roll = self.rng.random()
            rev = self.rev
            self.rev += 1
            item = every_type_item(key_of(index)["pk"]["S"], index, self.rng, rev) if roll < 0.55 else None
            rng_value = random_value(self.rng)
        key = key_of(index)
        if item is not None:
            self.client.put_item(TableName=self.table, Item=item)
            kind = "puts"
        elif roll < 0.85:
            self.client.update_item(
                TableName=self.table,
                Key=key,
                UpdateExpression="SET rev = :rev, upd = :v, s = :s REMOVE extra0",
                ExpressionAttributeValues={":rev": {"N": str(rev)}, ":v": rng_value, ":s": {"S": f"u{rev}"}},
            )
            kind = "updates"
        else:
            self.client.delete_item(TableName=self.table, Key=key)
            kind = "deletes"
        done_ms = int(time.time() * 1000)
        with self._lock:
            setattr(self.stats, kind, getattr(self.stats, kind) + 1)
            if kind != "deletes":
                self.stats.write_times_ms[rev] = done_ms

    def run(self, operations: int, rate: float, threads: int = 4, on_progress: Callable[[int], None] | None = None) -> WorkloadStats:
        """Issue the operations from ``threads`` writers, paced to ``rate`` per second overall."""
        interval = 1.0 / rate
        start = time.monotonic()
        counter = iter(range(operations))
        counter_lock = threading.Lock()

        def writer() -> None:
            while True:
                with counter_lock:
                    n = next(counter, None)
                if n is None:
                    return
                delay = start + n * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.one()
                if on_progress and n % 500 == 0:
                    on_progress(n)

        workers = [threading.Thread(target=writer, daemon=True) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return self.stats


FIRST_REPLICATION_TIMEOUT_S = 180.0
"""How long a new path may take to replicate its first item: seconds with the local trial's timings, but a
generous bound for a loaded machine (a leader must be elected and assign the leases)."""


class LagProbe:
    """Measures replication lag: writes a probe item to the source, times until the destination shows it.

    One probe at a time, every ``interval_s``; each probe is polled with consistent GetItem every few
    milliseconds, so a sample is the source write's acknowledgement to the item's visibility in the
    destination, within a few milliseconds.
    """

    def __init__(self, source: Any, source_table: str, destination: Any, destination_table: str,
                 interval_s: float = 0.1, poll_s: float = 0.005, timeout_s: float = 60.0,
                 name: str = "probe") -> None:
        self.source, self.source_table = source, source_table
        self.name = name
        """The probe items' partition key: probes of one table need names of their own to stay apart."""
        self.destination, self.destination_table = destination, destination_table
        self.interval_s, self.poll_s, self.timeout_s = interval_s, poll_s, timeout_s
        self.samples_ms: list[float] = []
        self.sampled_at: list[float] = []
        """Wall-clock time (epoch seconds) of each sample's source write, beside ``samples_ms``."""
        self.timeouts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="lag-probe")
        self._n = 0

    def start(self) -> "LagProbe":
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.samples_ms

    def measure_once(self, timeout_s: float | None = None) -> float | None:
        """One probe: its lag in milliseconds, or None if it was not visible within the timeout."""
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        self._n += 1
        key = {"pk": {"S": self.name}, "sk": {"N": str(self._n)}}
        self.source.put_item(TableName=self.source_table, Item={**key, "probe": {"BOOL": True}})
        written = time.monotonic()
        while time.monotonic() - written < timeout_s:
            found = self.destination.get_item(TableName=self.destination_table, Key=key, ConsistentRead=True)
            if "Item" in found:
                return (time.monotonic() - written) * 1000
            time.sleep(self.poll_s)
        return None

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            written_at = time.time()
            lag = self.measure_once()
            if lag is None:
                self.timeouts += 1
            else:
                self.samples_ms.append(lag)
                self.sampled_at.append(written_at)
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
