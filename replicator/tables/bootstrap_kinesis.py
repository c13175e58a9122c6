"""bootstrap from a Kinesis ``dynamodb-cdc`` stream: the path replays from a time at or before the export's.

A table's DynamoDB stream keeps 24 hours, so a bootstrap from it must start its path (at LATEST) before
the snapshot it loads. A Kinesis data stream that is the table's streaming destination (Kinesis Data
Streams for DynamoDB) keeps up to a year, so its path can start in the past instead: ``AT_TIMESTAMP`` at
or before the export's time, and an export that already exists (``--export URL``) can be loaded.

Why it is safe. The path reads every record that arrived in the stream from its start time T0 on, and a
change arrives after it was made, so every change made from T0 on reaches the replica, fenced by its
creation time (``changes.formats.KinesisCdcRecords``, ``changes.versions``): of one key's changes the
newest wins, whatever order they are applied in. The export holds every change made before its time TE
>= T0. The loader writes an exported item only where the replica has no item of its key (no item, no
tombstone: ``tables.load``), and its item carries no version, so:

* a key the path has written (a replayed put, update or delete, which leaves a tombstone) is skipped by the
  load: a loaded image never overwrites a replayed change nor undoes a replayed delete;
* a key loaded first is overwritten by any replayed change of it, even one older than the export (made
  between T0 and TE): the replica may show that older image for as long as the replay takes to reach the
  key's next change, which it then applies, so each key ends with its newest change;
* a key with no change since T0 keeps the export's image, which is its present state.

So the order of the load and the replay does not matter for the result; the path still starts first, and
the load waits until a processor runs on every open shard of the Kinesis stream, so that a path that cannot
start is found before hours of loading. What must hold instead is that the records from T0 on are still
in the stream when the path reads them: the start time must be within the stream's retention, less
``RETENTION_MARGIN_S`` for the path to start and read them, or the bootstrap is refused.

Only ``--load export`` is built here: a ``--load scan`` from a Kinesis path would be safe by the same
argument (start at the scan's start), but it gives nothing the table's own DynamoDB stream does not, and
is refused rather than shipped untested.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator import clients, log
from replicator.errors import ReplicatorError
from replicator.kcl.config import ReplicationPath, build_path
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.tables.spec import Table

_log = log.get("replicator.tables.bootstrap_kinesis")

FORMAT = "dynamodb-cdc"
RETENTION_MARGIN_S = 3600.0
"""How much of the stream's retention must be left after the start time: the path must start and read
the first records before Kinesis trims them."""


def check_options(*, load: str, source_format: str | None) -> None:
    """A Kinesis bootstrap replays dynamodb-cdc records and loads an export."""
    if source_format is not None and source_format != FORMAT:
        raise ReplicatorError(
            f"--source-format {source_format}: a bootstrap replays Kinesis Data Streams for DynamoDB records "
            "(dynamodb-cdc), whose creation times the version fence orders against the loaded items; "
            f"{source_format} records carry no version: give --source-format dynamodb-cdc, or replicate them "
            "with `replicator run`")
    if load != "export":
        raise ReplicatorError(
            "--load scan with --source-kinesis-stream is not supported: a Kinesis path bootstraps from an "
            "export (--load export --export URL, or --export-bucket), which it can replay from; for a scan, "
            "bootstrap from the table's own DynamoDB stream (drop --source-kinesis-stream)")


def parse_time(value: str, option: str = "--start-at") -> float:
    """An ISO 8601 time (a time without a zone is UTC) as epoch seconds."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReplicatorError(f"{option} {value!r} is not an ISO 8601 time: give e.g. 2026-11-30T10:00:00Z") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def start_time(export_at: float | None, start_at: float | None, *, now: float | None = None) -> float:
    """Where the path starts: ``start_at`` if given, else the export's time (``export_at``, or now for an
    export to be asked for once the path runs). A start after the export's time is refused: the changes
    made between the two would be in neither."""
    limit = export_at if export_at is not None else (time.time() if now is None else now)
    if start_at is None:
        return limit
    if round(start_at * 1000) > round(limit * 1000):
        what = f"the export's time ({_iso(limit)})" if export_at is not None else f"now ({_iso(limit)})"
        raise ReplicatorError(
            f"--start-at {_iso(start_at)} is after {what}: the changes made between the two would be in "
            "neither the export nor the replay; give a --start-at at or before it, or drop it (the default "
            "is the export's time)")
    return start_at


def check_retention(stream: str, retention_hours: int, start_at: float, *, now: float | None = None) -> None:
    """The stream still holds the records from ``start_at`` on, with RETENTION_MARGIN_S to spare."""
    now = time.time() if now is None else now
    age = now - start_at
    kept = retention_hours * 3600.0
    if age > kept - RETENTION_MARGIN_S:
        raise ReplicatorError(
            f"Kinesis stream {stream} keeps records {retention_hours} h, but the path would start at "
            f"{_iso(start_at)}, {age / 3600:.1f} h ago, which leaves less than {RETENTION_MARGIN_S / 3600:g} h "
            "before Kinesis trims those records: raise its retention (aws kinesis increase-stream-retention-period "
            f"--stream-name {stream} --retention-period-hours H) or take a newer export")


def stream_summary(source: Table, stream: str) -> dict[str, Any]:
    """DescribeStreamSummary of the stream, ACTIVE or UPDATING, or one line saying why not."""
    kinesis = clients.kinesis(source.spec.region, source.endpoint, side="source", credentials=source.credentials)
    what = f"Kinesis stream {source.spec.region}/{stream}"
    try:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") == "ResourceNotFoundException":
            raise ReplicatorError(f"{what} does not exist: fix --source-kinesis-stream (the table's Kinesis "
                                  "streaming destination) or --source-endpoint") from None
        raise ReplicatorError(f"cannot describe {what}: {error.get('Code')}: {error.get('Message')}") from None
    except BotoCoreError as exc:
        raise ReplicatorError(f"cannot reach {what}: {exc}; check --source-endpoint and the network") from None
    if summary.get("StreamStatus") not in ("ACTIVE", "UPDATING"):
        raise ReplicatorError(f"{what} is {summary.get('StreamStatus')}, not ACTIVE: wait until it is active")
    return summary


def open_shards(source: Table, stream: str) -> set[str]:
    """The Kinesis stream's open shards: the path must have started on each before the load. (After a
    reshard since the start time, KCL starts the children once it has replayed their parents, so the wait
    then includes that replay: give it --start-timeout.)"""
    kinesis = clients.kinesis(source.spec.region, source.endpoint, side="source", credentials=source.credentials)
    shards: set[str] = set()
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards |= {s["ShardId"] for s in page.get("Shards", [])
                   if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})}
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def replication_path(source: Table, destination: Table, stream: str, start_at: float, *, task_name: str | None,
                     version_attribute: str, settings: dict[str, str] | None = None,
                     shape: ReplicaShape = KEEP_ALL) -> ReplicationPath:
    """The Kinesis path bootstrap starts: dynamodb-cdc records of the source table only, fenced, from
    ``start_at`` (written to the properties file in whole seconds, rounded down: a little earlier)."""
    return build_path({
        **(settings or {}),
        **{k: v for k, v in shape.as_settings().items() if k != "skip_expired"},
        "source_region": source.spec.region, "source_table": source.name, "source_endpoint": source.endpoint,
        "source_kinesis_stream": stream, "source_format": FORMAT,
        "destination_region": destination.spec.region, "destination_table": destination.name,
        "destination_endpoint": destination.endpoint, "task_name": task_name,
        "initial_position": "AT_TIMESTAMP",
        "initial_timestamp": datetime.fromtimestamp(int(start_at), timezone.utc),
        "version_attribute": version_attribute,
    })


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
