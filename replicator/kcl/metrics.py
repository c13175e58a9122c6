"""The path's own CloudWatch metrics, in the shape of DynamoDB Global Tables' replication metrics.

Each record processor (one per shard) publishes every ``metricsIntervalSeconds`` (60 s) in the namespace
``DynamoDBReplicator``, in the source table's region (as Global Tables do), with the dimensions
``TableName`` (the source table), ``ReceivingRegion`` (the destination's region) and ``TaskName`` (the
path's lease table name, its applicationName):

========================  ============  ===================================================================
ReplicationLatency        Milliseconds  a statistic set (SampleCount, Sum, Minimum, Maximum) per interval:
                                        for each record, from its ApproximateCreationDateTime to the moment
                                        its batch was durable in the destination (so Average, Minimum,
                                        Maximum and SampleCount are right across shards and intervals)
PendingReplicationCount   Count         the records in the shard after the processor's checkpoint (below)
MillisBehindLatest        Milliseconds  a statistic set of KCL's value for each batch delivered: the age of
                                        the batch's newest record when it was read (none while idle)
Records, Puts, Deletes,   Count         sums over the interval, published even when 0 so that an alarm sees
Retries, StaleWrites,                   data; Retries are the writer's retried requests, StaleWrites the
FailedBatches,                          versioned writes refused as older, FailedBatches the batches that
TtlDeletesSkipped                       stopped the processor, TtlDeletesSkipped the TTL expiries left out
                                        (ttlDeletes skip, ``changes.shape``)
========================  ============  ===================================================================

The rule it keeps: publishing never holds up or breaks replication. The processor's thread only adds a
batch's numbers to the open interval, under a lock; a background thread, with clients of its own, closes
the interval, counts the pending records and sends the whole interval in one PutMetricData call (CloudWatch
takes up to 1,000 datums a call; an interval has about ten), never one call per batch. Whatever fails there
(CloudWatch unreachable or throttling, the stream unreadable) is logged at most once per 5 minutes and that
interval is dropped: its numbers describe the past, and keeping them through an outage would grow memory.
``shutdown_requested``, ``shard_ended``, ``lease_lost`` and a failed batch flush the open interval once, and
wait for it at most ``FINAL_FLUSH_S``. With ``dontPublishCloudwatch`` there is no publisher at all.

PendingReplicationCount is counted, not guessed. DynamoDB Streams has no backlog figure: the adapter's
millisBehindLatest is only the age of the newest record of a delivered batch, and while a shard is idle
nothing is delivered, so neither it nor a record rate can tell "caught up" from "stuck". At each interval
the publisher therefore reads the shard from the processor's last checkpoint (one GetShardIterator, then
GetRecords pages of 1,000 until an empty page, at most ``PENDING_PAGES``): every record written and not yet
checkpointed, those in the batch being written included. It is exact up to two pages (2,000 records, fewer
for items large enough to fill a page's 1 MB first) and a lower bound beyond: a shard that far behind also
shows in ReplicationLatency and MillisBehindLatest. It costs at most three stream calls a shard an interval,
beside KCL's polls (two a second at the default 500 ms); for that moment the shard has two readers, the
most DynamoDB Streams advises (mind it if another consumer reads the same stream). It is 0 after
``shard_ended``; after ``lease_lost`` (or a refused checkpoint) this processor stops reporting it, since the
shard's new owner does. Each shard publishes one value an interval, so over a 1-minute period the Sum is
the path's total and the Maximum its worst shard.

On AWS ApproximateCreationDateTime is rounded down to the second, so ReplicationLatency reads up to 1 s
high there (0.5 s on average); moto's server keeps milliseconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from replicator import clients, log
from replicator.changes.applier import BatchResult
from replicator.kcl.config import ReplicationPath
from replicator.kcl.streams import SourceStream, source_stream

NAMESPACE = "DynamoDBReplicator"
MAX_DATUMS_PER_CALL = 1000
"""PutMetricData's limit on datums per call."""
PENDING_PAGE = 1000
PENDING_PAGES = 2
FINAL_FLUSH_S = 5.0
ERROR_LOG_INTERVAL_S = 300.0
COUNTS = ("Records", "Puts", "Deletes", "Retries", "StaleWrites", "FailedBatches", "TtlDeletesSkipped")

_log = log.get("replicator.kcl.metrics")


class ProcessorMetrics(Protocol):
    """What the record processor tells its metrics; every call returns at once."""

    def started(self, shard_id: str, checkpoint: str | None) -> None: ...

    def batch_applied(self, result: BatchResult, millis_behind_latest: int | None) -> None: ...

    def batch_failed(self) -> None: ...

    def checkpointed(self, sequence_number: str) -> None: ...

    def lease_gone(self) -> None: ...

    def close(self, *, shard_ended: bool = False) -> None: ...


class NoMetrics:
    """``dontPublishCloudwatch``: nothing is kept and nothing is sent."""

    def started(self, shard_id: str, checkpoint: str | None) -> None:
        pass

    def batch_applied(self, result: BatchResult, millis_behind_latest: int | None) -> None:
        pass

    def batch_failed(self) -> None:
        pass

    def checkpointed(self, sequence_number: str) -> None:
        pass

    def lease_gone(self) -> None:
        pass

    def close(self, *, shard_ended: bool = False) -> None:
        pass


NO_METRICS = NoMetrics()


@dataclass
class StatisticSet:
    """SampleCount, Sum, Minimum and Maximum of many values: what PutMetricData's StatisticValues takes."""

    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.merge(1, value, value, value)

    def merge(self, count: int, total: float, minimum: float, maximum: float) -> None:
        self.count += count
        self.total += total
        self.minimum = min(self.minimum, minimum)
        self.maximum = max(self.maximum, maximum)

    def statistic_values(self) -> dict[str, float]:
        return {"SampleCount": float(self.count), "Sum": float(self.total),
                "Minimum": float(self.minimum), "Maximum": float(self.maximum)}


@dataclass
class Interval:
    """The numbers of one interval, until it is published."""

    latency: StatisticSet = field(default_factory=StatisticSet)
    behind: StatisticSet = field(default_factory=StatisticSet)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))

    def add_batch(self, result: BatchResult, millis_behind_latest: int | None) -> None:
        if result.latency is not None:
            lat = result.latency
            self.latency.merge(lat.count, lat.sum_ms, lat.min_ms, lat.max_ms)
        if millis_behind_latest is not None:
            self.behind.add(millis_behind_latest)
        self.counts["Records"] += result.records
        self.counts["Puts"] += result.writes.puts
        self.counts["Deletes"] += result.writes.deletes
        self.counts["Retries"] += result.writes.retries
        self.counts["StaleWrites"] += result.writes.stale
        self.counts["TtlDeletesSkipped"] += result.ttl_skipped


def dimensions(path: ReplicationPath) -> list[dict[str, str]]:
    return [
        {"Name": "TableName", "Value": path.source_table or path.source_name},
        {"Name": "ReceivingRegion", "Value": path.destination_region},
        {"Name": "TaskName", "Value": path.application_name},
    ]


def datums(interval: Interval, pending: int | None, dims: list[dict[str, str]], at: datetime) -> list[dict[str, Any]]:
    """The PutMetricData datums of one interval: statistic sets only when they have samples."""

    def datum(name: str, unit: str, **value: Any) -> dict[str, Any]:
        return {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Unit": unit, **value}

    out = []
    if interval.latency.count:
        out.append(datum("ReplicationLatency", "Milliseconds", StatisticValues=interval.latency.statistic_values()))
    if interval.behind.count:
        out.append(datum("MillisBehindLatest", "Milliseconds", StatisticValues=interval.behind.statistic_values()))
    if pending is not None:
        out.append(datum("PendingReplicationCount", "Count", Value=float(pending)))
    out.extend(datum(name, "Count", Value=float(interval.counts[name])) for name in COUNTS)
    return out


class Backlog(Protocol):
    def count(self, shard_id: str, checkpoint: str | None) -> int:
        """The records of the shard after the checkpoint (None: nothing checkpointed yet); may raise."""
        ...


class PendingCounter:
    """Counts the records of one shard after a checkpoint (see the module's rule); raises on any failure."""

    def __init__(self, stream: Callable[[], SourceStream], initial_position: str = "TRIM_HORIZON",
                 pages: int = PENDING_PAGES) -> None:
        self._stream_factory = stream
        self._stream: SourceStream | None = None
        self._initial_position = initial_position
        self._pages = pages

    def count(self, shard_id: str, checkpoint: str | None) -> int:
        if checkpoint == "SHARD_END":
            return 0
        if self._stream is None:
            self._stream = self._stream_factory()
        iterator: str | None = self._stream.iterator_after(shard_id, checkpoint or self._initial_position)
        counted = 0
        for _ in range(self._pages):
            assert iterator is not None
            records, iterator = self._stream.page(iterator, PENDING_PAGE)
            counted += len(records)
            if not records or iterator is None:
                break
        return counted


class _RateLimitedLog:
    """One warning per interval at most, with the number of failures it stood for."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last = -math.inf
        self._suppressed = 0

    def warning(self, event: str, exc: BaseException, **fields: Any) -> None:
        now = self._clock()
        if now - self._last < self._interval_s:
            self._suppressed += 1
            return
        suppressed, self._suppressed, self._last = self._suppressed, 0, now
        _log.warning(event, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
                     suppressed_since_last=suppressed, **fields)


class MetricsPublisher:
    """Keeps the open interval and publishes it from a background thread (see the module's rule)."""

    def __init__(
        self,
        dims: list[dict[str, str]],
        cloudwatch: Callable[[], Any],
        *,
        interval_s: float = 60.0,
        pending: Backlog | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        final_flush_s: float = FINAL_FLUSH_S,
    ) -> None:
        self._dims = dims
        self._cloudwatch_factory = cloudwatch
        self._cloudwatch: Any = None
        self._interval_s = interval_s
        self._pending = pending
        self._clock = clock
        self._wall_clock = wall_clock
        self._final_flush_s = final_flush_s
        self._lock = threading.Lock()
        self._open = Interval()
        self._shard_id: str | None = None
        self._checkpoint: str | None = None
        self._owns_shard = True
        self._shard_ended = False
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors = _RateLimitedLog(ERROR_LOG_INTERVAL_S, clock)

    # --- Called by the processor: quick, and never raise ------------------------------------------------

    def started(self, shard_id: str, checkpoint: str | None) -> None:
        with self._lock:
            self._shard_id, self._checkpoint = shard_id, checkpoint
        self._start_thread()

    def batch_applied(self, result: BatchResult, millis_behind_latest: int | None) -> None:
        with self._lock:
            self._open.add_batch(result, millis_behind_latest)

    def batch_failed(self) -> None:
        with self._lock:
            self._open.counts["FailedBatches"] += 1

    def checkpointed(self, sequence_number: str) -> None:
        with self._lock:
            self._checkpoint = sequence_number

    def lease_gone(self) -> None:
        with self._lock:
            self._owns_shard = False

    def close(self, *, shard_ended: bool = False) -> None:
        """Flush the open interval once and stop, waiting for it at most ``final_flush_s``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._shard_ended = self._shard_ended or shard_ended
        self._stop.set()
        thread = self._start_thread()
        thread.join(self._final_flush_s)

    # --- The background thread --------------------------------------------------------------------------

    def _start_thread(self) -> threading.Thread:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="replicator-metrics", daemon=True)
                self._thread.start()
            return self._thread

    def _run(self) -> None:
        next_at = self._clock() + self._interval_s
        while not self._stop.wait(max(0.0, next_at - self._clock())):
            self.publish()
            next_at += self._interval_s
            if next_at <= self._clock():  # a slow publication skips an interval rather than bursting
                next_at = self._clock() + self._interval_s
        self.publish()

    def publish(self) -> int:
        """Close the open interval and send it; the PutMetricData calls made. Never raises."""
        with self._lock:
            interval, self._open = self._open, Interval()
            shard_id, checkpoint = self._shard_id, self._checkpoint
            owns_shard, shard_ended = self._owns_shard, self._shard_ended
        at = datetime.fromtimestamp(self._wall_clock(), tz=timezone.utc)
        pending: int | None = None
        if shard_ended:
            pending = 0
        elif owns_shard and shard_id is not None and self._pending is not None:
            try:
                pending = self._pending.count(shard_id, checkpoint)
            except Exception as exc:  # noqa: BLE001 - publishing must never break replication
                self._errors.warning("metrics_pending_not_counted", exc, shard=shard_id)
        data = datums(interval, pending, self._dims, at)
        calls = 0
        try:
            if self._cloudwatch is None:
                self._cloudwatch = self._cloudwatch_factory()
            for start in range(0, len(data), MAX_DATUMS_PER_CALL):
                self._cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start:start + MAX_DATUMS_PER_CALL])
                calls += 1
        except Exception as exc:  # noqa: BLE001 - publishing must never break replication
            self._errors.warning("metrics_not_published", exc, shard=shard_id, datums=len(data))
        return calls


def for_path(path: ReplicationPath, stream_arn: str | None) -> ProcessorMetrics:
    """The path's publisher, or NO_METRICS with ``dontPublishCloudwatch``. Its clients are made on its thread."""
    if path.dont_publish_cloudwatch:
        return NO_METRICS
    pending = PendingCounter(lambda: source_stream(path, stream_arn), path.initial_position)
    return MetricsPublisher(
        dimensions(path),
        lambda: clients.cloudwatch(path.source_region, path.cloudwatch_endpoint, credentials=path.cloudwatch_credentials),
        interval_s=path.metrics_interval_seconds,
        pending=pending,
    )
