"""copy-table: copy every item of a table into another, fast, resumably and within set capacity.

A parallel Scan (``--segments N``, one thread a segment; ``--segment I`` runs one segment, e.g. one per
machine) feeds the daemon's writer: BatchWriteItem, 25 items a request and several requests in flight,
throttling and UnprocessedItems retried until durable. ``--read-units``/``--write-units`` cap the units
consumed per second with token buckets fed by each response's ConsumedCapacity.

After each page is durable in the destination, the segment's LastEvaluatedKey goes to a state file
(written whole and renamed, so a crash leaves the old one or the new one). ``--resume`` starts each
segment after its last saved key, so a crash or Ctrl-C re-copies at most the page each segment was
writing; puts are idempotent, so that page is written again harmlessly. The state file is created 0600:
its keys are the table's data. SIGTERM is handled as Ctrl-C (the CLI), so a stopped copy can be resumed.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from replicator import log
from replicator.changes.codec import Change, Item, decode_item, encode_item
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.files import check_writable, private_file
from replicator.tables.spec import Table, check_same_keys, check_segments, scan_pages
from replicator.changes.writer import TableWriter

STREAM_RETENTION_S = 24 * 3600
ON_DEMAND_INITIAL_WRITE_UNITS = 4000
"""A new on-demand table serves up to 4,000 write request units per second before it scales."""
SEGMENT_BYTES = 512 * 1024 * 1024
MIN_SEGMENTS, MAX_SEGMENTS = 4, 1000
PROGRESS_LOG_INTERVAL_S = 10.0
DEFAULT_PAGE_SIZE = 250
"""Scan's Limit: a page is at most 250 items (and 1 MB), so memory holds 250 items per segment whatever
the table's size, and --resume re-copies at most 250 items per segment."""

_log = log.get("replicator.tables.copy")


def default_segments(table: Table) -> int:
    """One segment per 512 MiB, at least 4 (a small table copies at once), at most 1,000."""
    return max(MIN_SEGMENTS, min(MAX_SEGMENTS, math.ceil(table.size_bytes / SEGMENT_BYTES)))


# --- rate limiting ---------------------------------------------------------------------------------


class TokenBucket:
    """At most ``rate`` units per second on average, with a burst of one second's worth.

    The cost of a request is known only from its answer (ConsumedCapacity), so a request waits until the
    bucket is not in debt, and its answer then takes its units out, possibly into debt: the next request
    waits until the refill has paid that back.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self._tokens = rate
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = threading.Lock()
        self.consumed = 0.0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def wait(self) -> None:
        while True:
            with self._lock:
                self._refill()
                if self._tokens > 0:
                    return
                shortfall = -self._tokens
            self._sleep(shortfall / self.rate + 0.001)

    def consume(self, units: float) -> None:
        with self._lock:
            self._refill()
            self._tokens -= units
            self.consumed += units


class _Meter:
    """Counts consumed units when no limit is set, so the result reports them either way."""

    def __init__(self) -> None:
        self.consumed = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        return None

    def consume(self, units: float) -> None:
        with self._lock:
            self.consumed += units


def rate_limit(units: float | None) -> TokenBucket | _Meter:
    """A token bucket of ``units`` per second, or only a meter when no limit is set (``None``)."""
    return TokenBucket(units) if units else _Meter()


# --- the estimate --------------------------------------------------------------------------------


@dataclass
class Estimate:
    items: int
    item_kb: int
    write_units: float
    units_source: str

    @property
    def seconds(self) -> float:
        return self.items * self.item_kb / self.write_units

    @property
    def exceeds_retention(self) -> bool:
        return self.seconds > STREAM_RETENTION_S

    def lines(self) -> list[str]:
        out = [
            f"Estimate: {self.items} items x {self.item_kb} KB / {self.write_units:g} write units/s "
            f"({self.units_source}) = {_duration(self.seconds)}"
        ]
        if self.exceeds_retention:
            out.append(
                f"warning: the copy would take {_duration(self.seconds)}, longer than the 24 hours a DynamoDB "
                "stream keeps its records, so changes made at its start would be gone before replication "
                "reads them: raise the destination's write capacity (or --write-units), or split the copy "
                "across machines with --segment"
            )
        return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(source: Table, destination: Table, write_units: float | None) -> Estimate:
    """items x ceil(average item size in KB) / the destination's write capacity."""
    items = source.item_count
    item_kb = max(1, math.ceil(source.size_bytes / items / 1024)) if items else 1
    if write_units:
        return Estimate(items, item_kb, write_units, "--write-units")
    provisioned = destination.description.get("ProvisionedThroughput", {}).get("WriteCapacityUnits", 0)
    billing = destination.description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing != "PAY_PER_REQUEST" and provisioned:
        return Estimate(items, item_kb, provisioned, "the destination's provisioned write capacity")
    return Estimate(items, item_kb, ON_DEMAND_INITIAL_WRITE_UNITS, "a new on-demand table's initial peak")


# --- the state file ------------------------------------------------------------------------------


@dataclass
class SegmentState:
    last_key: Item | None = None
    done: bool = False
    copied: int = 0


@dataclass
class CopyState:
    """Each segment's position, kept in a file between runs (``--resume``)."""

    path: Path
    source: str
    destination: str
    segments: int
    positions: dict[int, SegmentState]
    identity: str = ""
    """What exactly is being read, where the source can be replaced under the same name (a backup's
    manifest): a resume against other content is refused. Empty for a table."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    tool: ClassVar[str] = "copy-table"
    work: ClassVar[str] = "copy"
    """What the messages call the job: restore-table keeps its segments in the same kind of file."""
    content: ClassVar[str] = "table"
    replaced: ClassVar[str] = "it was replaced"

    def save(self) -> None:
        with self._lock:
            payload = {
                "source": self.source,
                "destination": self.destination,
                "segments": self.segments,
                "identity": self.identity,
                "positions": {
                    str(s): {"last_key": encode_item(p.last_key) if p.last_key else None, "done": p.done, "copied": p.copied}
                    for s, p in self.positions.items()
                },
            }
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.unlink(missing_ok=True)  # left by a crash; a new file gets the mode below
            with os.fdopen(private_file(tmp), "w") as out:
                out.write(json.dumps(payload))
            os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path) -> Self:
        try:
            payload = json.loads(path.read_text())
            positions = {
                int(s): SegmentState(decode_item(p["last_key"]) if p["last_key"] else None, bool(p["done"]), int(p["copied"]))
                for s, p in payload["positions"].items()
            }
            return cls(path, payload["source"], payload["destination"], int(payload["segments"]), positions,
                       str(payload.get("identity", "")))
        except FileNotFoundError:
            raise ReplicatorError(f"--resume: no state file {path}: run without --resume to start the {cls.work}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ReplicatorError(f"state file {path} is not a {cls.tool} state ({exc}): delete it and start over") from None

    @classmethod
    def start_or_resume(cls, path: Path, source: str, destination: str, *, resume: bool, segments: int | None,
                        segment: int | None, default_segments: Callable[[], int], identity: str = "") -> Self:
        """The saved state with ``resume`` (checked against this run's arguments), else a new one, saved.

        A new job refuses to start over an existing state file: that would forget an interrupted job's
        positions."""
        if resume:
            state = cls.load(path)
            if (state.source, state.destination) != (source, destination):
                raise ReplicatorError(
                    f"state file {path} is for {state.source} -> {state.destination}, not "
                    f"{source} -> {destination}: give the same arguments, or another --state-file"
                )
            if segments is not None and segments != state.segments:
                raise ReplicatorError(f"state file {path} was written with --segments {state.segments}, not {segments}")
            if segment is not None and set(state.positions) != {segment}:
                raise ReplicatorError(f"state file {path} holds segments {sorted(state.positions)}, not --segment {segment}")
            if state.identity != identity:
                raise ReplicatorError(f"state file {path} is of another {cls.content} than the one at {source} now "
                                      f"({cls.replaced}): resuming would mix the two; delete the state file and "
                                      f"start the {cls.work} again")
            return state
        if path.exists():
            raise ReplicatorError(
                f"state file {path} from an earlier {cls.work} exists: pass --resume to continue it, "
                "or delete it to start over"
            )
        total = segments or default_segments()
        mine = [segment] if segment is not None else list(range(total))
        state = cls(path, source, destination, total, {s: SegmentState() for s in mine}, identity)
        state.save()
        return state


def check_state_path(path: Path, resume: bool) -> None:
    """The state file can be written (``files.check_writable``), before any write; a --resume without one
    is left to start_or_resume, which says so."""
    if not resume or path.exists():
        check_writable(path, "--state-file", create_dirs=False)


def default_state_path(source: Table, destination: Table, segment: int | None) -> Path:
    name = (f".copy-table.{source.spec.region}.{source.spec.file_name}.{destination.spec.region}."
            f"{destination.spec.file_name}")
    return Path(name + (f".segment-{segment}" if segment is not None else "") + ".json")


# --- progress ------------------------------------------------------------------------------------


class ProgressReporter:
    """A progress bar on a terminal (rich), else a structured ``<event>`` log line every 10 s.

    copy-table counts items; backup-table and restore-table also count bytes (``show_bytes``): what a
    backup has written to its store, or a restore has read from it."""

    def __init__(self, total: int, done: int, *, tty: bool | None = None, interval_s: float = PROGRESS_LOG_INTERVAL_S,
                 label: str = "copying", event: str = "copy_progress", show_bytes: bool = False) -> None:
        self.total = max(total, done)
        self.done = done
        self.bytes = 0
        self._start_done = done
        self._started = time.monotonic()
        self._last_log = self._started
        self._interval_s = interval_s
        self._event = event
        self._show_bytes = show_bytes
        self._lock = threading.Lock()
        self._bar: Any = None
        if tty if tty is not None else sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

            size = [TextColumn("{task.fields[size]}")] if show_bytes else []
            self._bar = Progress(
                TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("items"), *size,
                TaskProgressColumn(), TextColumn("{task.fields[rate]} items/s"), TextColumn("ETA"),
                TimeRemainingColumn(), console=Console(stderr=True), transient=False,
            )
            self._task = self._bar.add_task(event, total=self.total or None, completed=done, rate="-", size="")
            self._bar.start()

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0

    def advance(self, n: int, nbytes: int = 0) -> None:
        with self._lock:
            self.done += n
            self.bytes += nbytes
            if self.done > self.total:
                self.total = self.done
            now = time.monotonic()
            rate = self.rate
            due = now - self._last_log >= self._interval_s
            if due:
                self._last_log = now
        if self._bar is not None:
            from rich.filesize import decimal

            self._bar.update(self._task, completed=self.done, total=self.total or None, rate=f"{rate:,.0f}",
                             size=decimal(self.bytes) if self._show_bytes else "")
        elif due:
            eta = (self.total - self.done) / rate if rate > 0 else None
            extra = {"bytes": self.bytes} if self._show_bytes else {}
            _log.info(self._event, items=self.done, total=self.total, **extra, items_per_s=round(rate, 1),
                      eta_s=round(eta, 1) if eta is not None else None)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --- the copy ------------------------------------------------------------------------------------


def put_changes(table: Table, items: list[Item]) -> list[Change]:
    """Items to put into ``table``, as the writer takes them. Items of one scan page or one backup segment
    have distinct keys, so no key identity is needed to squash them."""
    return [Change(key_id="", keys=table.key_of(i), new_image=i, sequence_number="", created_ms=None) for i in items]


MAX_SEGMENT_THREADS = 16


def run_segments(segments: list[int], run: Callable[[int], None], stop: threading.Event, *, name: str,
                 max_threads: int = MAX_SEGMENT_THREADS) -> None:
    """``run(segment)`` for each segment, one thread a segment (at most 16). A failed segment or Ctrl-C sets
    ``stop``, so that every other segment stops after the page it is handling (and saves it), and is raised
    once they all have."""
    pool = ThreadPoolExecutor(max_workers=max(1, min(len(segments), max_threads)), thread_name_prefix=name)
    try:
        for future in [pool.submit(run, s) for s in segments]:
            future.result()
    except BaseException:
        stop.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class CopyResult:
    copied: int
    segments: int
    segments_run: list[int]
    seconds: float
    read_units: float
    write_units: float
    resumed: bool
    state_file: str
    skipped: int = 0
    """Items not written because the destination already had their key (bootstrap's conditional load)."""
    left_out: int = 0
    """Items scanned but not copied: filtered out, or expired (``changes.shape``)."""

    @property
    def items_per_s(self) -> float:
        return self.copied / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "copied": self.copied, "skipped": self.skipped, "segments": self.segments, "segments_run": self.segments_run,
            "seconds": round(self.seconds, 3), "items_per_s": round(self.items_per_s, 1),
            "read_units": self.read_units, "write_units": self.write_units, "resumed": self.resumed,
            "state_file": self.state_file, "left_out": self.left_out,
        }


def copy_table(
    source: Table,
    destination: Table,
    *,
    segments: int | None = None,
    segment: int | None = None,
    read_units: float | None = None,
    write_units: float | None = None,
    state_path: Path | None = None,
    resume: bool = False,
    page_size: int | None = None,
    max_in_flight: int = 8,
    consistent: bool = True,
    progress: bool | None = None,
    keep_state: bool = False,
    put_request: Callable[[str, Change], dict[str, Any]] | None = None,
    shape: ReplicaShape = KEEP_ALL,
) -> CopyResult:
    """Copy ``source`` into ``destination`` (all segments, or the one given); see the module docstring.
    ``put_request`` makes each write one conditional PutItem (bootstrap's loader, ``tables.load``); the
    items it refuses are counted as ``skipped``."""
    check_segments(segment, segments)
    check_same_keys(source, destination)
    shape.check_keys(source.key_names)
    state_path = state_path or default_state_path(source, destination, segment)
    check_state_path(state_path, resume)
    # The shape is part of what is copied: a --resume with other shape options is refused, not mixed in.
    shaped = "".join(f" {k}={v}" for k, v in sorted(shape.as_settings().items()))
    state = CopyState.start_or_resume(state_path, str(source.spec), f"{destination.spec}{shaped}", resume=resume,
                                      segments=segments, segment=segment,
                                      default_segments=lambda: default_segments(source))
    total = state.segments
    reads, writes = rate_limit(read_units), rate_limit(write_units)
    writer = TableWriter(destination.client, destination.name, max_in_flight=max_in_flight,
                         before_request=writes.wait, on_consumed=writes.consume, put_request=put_request)
    already = sum(p.copied for p in state.positions.values())
    expected = source.item_count if segment is None else math.ceil(source.item_count / total)
    reporter = ProgressReporter(expected, already, tty=progress)
    pending = [s for s, p in sorted(state.positions.items()) if not p.done]
    _log.info("copy_started", source=str(source.spec), destination=str(destination.spec), segments=total,
              segments_to_run=len(pending), resumed=resume, state_file=str(state_path))
    copied, skipped, left_out = [0], [0], [0]
    now_s = time.time()  # "expired" is decided against one moment, the copy's start
    count_lock = threading.Lock()
    stop = threading.Event()

    def run_segment(s: int) -> None:
        position = state.positions[s]
        for items, last in scan_pages(source, segment=s, segments=total, start_key=position.last_key,
                                      limit=page_size or DEFAULT_PAGE_SIZE,
                                      consistent=consistent, before_request=reads.wait, on_consumed=reads.consume):
            kept = shape.views(items, destination.key_names, now_s)
            if kept:
                try:
                    stats = writer.write(put_changes(destination, kept))
                except NonRetryableWriteError as exc:
                    raise ReplicatorError(f"{destination.spec} refused a write: {exc}; fix the cause (table, "
                                          "permissions), then run the same command with --resume") from None
                with count_lock:
                    skipped[0] += stats.stale
            with count_lock:
                copied[0] += len(kept)
                left_out[0] += len(items) - len(kept)
            position.copied += len(items)
            position.last_key = last
            position.done = last is None
            state.save()
            reporter.advance(len(items))
            if stop.is_set():
                return

    started = time.monotonic()
    try:
        run_segments(pending, run_segment, stop, name="copy-segment")
    finally:
        reporter.close()
        writer.close()
    seconds = time.monotonic() - started
    if not keep_state:
        state_path.unlink(missing_ok=True)
    result = CopyResult(copied=copied[0], segments=total, segments_run=pending, seconds=seconds,
                        read_units=reads.consumed, write_units=writes.consumed, resumed=resume, state_file=str(state_path),
                        skipped=skipped[0], left_out=left_out[0])
    _log.info("copy_finished", **result.as_json())
    return result
