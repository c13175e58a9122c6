"""bootstrap: start replicating a table that already has data and keeps taking writes, with no deadline.

The path runs first and the table is loaded while it runs, so the load may take as long as it takes:

1. Check the options, the source's stream (enabled, new images), that the path has never run (no lease
   table), that the replica keeps tombstones (no TTL on ``<versionAttribute>_tombstone``) and, for an
   export, PITR on the source. A refused bootstrap has started nothing and written nothing.
2. Start the path, fenced by versions (``--version-attribute``, default ``replicator_version``), at
   LATEST, and wait until a processor has started on every open shard of the stream (its ``shard_started``
   line: KCL takes the shard iterator before it initialises the processor). From then on every change of
   the source reaches the replica through the stream, in order per key.
3. Load a snapshot taken after that moment (a parallel Scan, or a point-in-time export whose export time
   is checked to be after it) with ``tables.load``'s conditional put: an item is written only where the
   replica has no item and no tombstone of its key. A key the path has touched since it started is never
   written by the load, so a newer change is never overwritten and a delete never undone; a key it has
   not touched gets the snapshot, and any later change of it arrives by the stream and is written over
   the unversioned loaded item by the fence.
4. Check: compare the tables (ignoring the version attribute, reading tombstones as absent) until they
   are equal, then stop the path (``--exit-after-check``) or keep it running.

Tombstones must outlive the load: a delete the path applied after the snapshot was read, reaped before
the loaded image of that key is written, would let the image back in. A tombstone is removed only by
DynamoDB's TTL on ``<versionAttribute>_tombstone``; bootstrap refuses a replica where that TTL is on, and
checks it again when the load ends. So tombstones live as long as the bootstrap, however long; TTL may be
enabled once it is over (each tombstone then goes 24 hours after its delete, as the path intends).

A Kinesis ``dynamodb-cdc`` source (``--source-kinesis-stream``) keeps its records for up to a year, so its
path starts in the past instead, AT_TIMESTAMP at or before an export's time: ``bootstrap_kinesis``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, IO

from botocore.exceptions import ClientError

from replicator import clients, log
from replicator.changes.codec import Change
from replicator.changes.versions import TOMBSTONE_SUFFIX
from replicator.kcl import checks
from replicator.kcl.launcher import spawn_daemon
from replicator.credentials import DEFAULT, Credentials
from replicator.kcl.config import PATH_KEYS, ReplicationPath, build_path
from replicator.kcl.status import read_leases
from replicator.kcl.streams import stream_shards
from replicator.tables.diff import DiffResult, diff_tables
from replicator.errors import ReplicatorError
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.tables.spec import Table, check_same_keys

_log = log.get("replicator.tables.bootstrap")

DEFAULT_VERSION_ATTRIBUTE = "replicator_version"
"""A bootstrap's path is always fenced: the loader's condition and the path's versions work together."""

BOOTSTRAP_OPTIONS = {"sourceRegion": "SRC", "sourceTable": "SRC", "destinationRegion": "DST",
                     "destinationTable": "DST", "sourceEndpoint": "--source-endpoint",
                     "destinationEndpoint": "--destination-endpoint", "taskName": "--task-name",
                     "versionAttribute": "--version-attribute",
                     "initialPosition": "--start-at (bootstrap starts a table path at LATEST)",
                     "initialTimestamp": "--start-at (bootstrap starts a table path at LATEST)",
                     "sourceKinesisStream": "--source-kinesis-stream",
                     "sourceFormat": "--source-format",
                     "includeAttributes": "--include-attributes", "excludeAttributes": "--exclude-attributes",
                     "filter": "--filter", "ttlDeletes": "--ttl-deletes"}
"""The path keys bootstrap sets itself, and what sets each; --kcl-property gives the other path keys."""
KCL_PATH_KEYS = tuple(key for key in PATH_KEYS if key not in BOOTSTRAP_OPTIONS)


def credential_settings(sides: dict[str, Credentials]) -> dict[str, str]:
    """The path settings (by field name) of each side's credentials, as `replicator run` takes them."""
    found: dict[str, str] = {}
    for name, creds in sides.items():
        if name == "s3":
            continue  # the export's bucket: bootstrap's own reads, not the path's
        for what in ("role_arn", "external_id", "profile"):
            value = getattr(creds, what)
            if value is not None:
                found[f"{name}_{what}"] = value
    return found


def replication_path(source: Table, destination: Table, task_name: str | None = None,
                     version_attribute: str | None = None, settings: dict[str, str] | None = None,
                     shape: ReplicaShape = KEEP_ALL) -> ReplicationPath:
    """The path bootstrap starts; ``settings`` are the other path keys, by field name (from --kcl-property);
    ``shape``'s stream settings go into the path, so that the daemon keeps the replica the copy made."""
    return build_path({
        **(settings or {}),
        **{k: v for k, v in shape.as_settings().items() if k != "skip_expired"},
        "source_region": source.spec.region, "source_table": source.name, "source_endpoint": source.endpoint,
        "destination_region": destination.spec.region, "destination_table": destination.name,
        "destination_endpoint": destination.endpoint, "task_name": task_name, "initial_position": "LATEST",
        "version_attribute": version_attribute or DEFAULT_VERSION_ATTRIBUTE,
    })


def check_ready(source: Table, destination: Table, path: ReplicationPath, *, joining: bool = False) -> None:
    """The stream carries new images, the keys match, the path has never run (or, ``joining``, may have:
    a machine joining with ``--segment``, or ``--resume`` restarting the path from its checkpoints) and
    tombstones are kept."""
    if path.is_kinesis:  # its records come from the Kinesis stream (``bootstrap_kinesis``), not the table's own
        view = None
    else:
        checks.check_stream(source.description, source.spec.region)
        view = source.description["StreamSpecification"]["StreamViewType"]
    check_same_keys(source, destination)
    note = checks.check_shape(path, source.description, view)
    if note:
        _log.warning("ttl_deletes_limited", note=note)
    exists = lease_table_exists(path)
    if exists and not joining:
        raise ReplicatorError(
            f"lease table {path.application_name} exists: this path has run before, so its checkpoints, not "
            "LATEST, would decide where replication starts; bootstrap with another --task-name, or delete "
            "that table (and its -WorkerMetricStats and -CoordinatorState tables) first (a machine joining "
            "another's bootstrap gives --segment I)"
        )
    check_tombstones_kept(destination, path.version_attribute or DEFAULT_VERSION_ATTRIBUTE)


def check_tombstones_kept(destination: Table, version_attribute: str) -> None:
    """No TTL reaps the replica's tombstones while the load runs (see the module docstring)."""
    tombstone = version_attribute + TOMBSTONE_SUFFIX
    try:
        ttl = destination.client.describe_time_to_live(TableName=destination.name)["TimeToLiveDescription"]
    except ClientError as exc:
        raise ReplicatorError(f"cannot read the TTL setting of {destination.spec}: {exc}") from None
    if ttl.get("AttributeName") == tombstone and ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        raise ReplicatorError(
            f"{destination.spec} has TTL on {tombstone}, which would reap tombstones during the load and let "
            f"deleted items back in: disable it (aws dynamodb update-time-to-live --table-name {destination.name} "
            f"--time-to-live-specification Enabled=false,AttributeName={tombstone}) and enable it again once "
            "the bootstrap is over"
        )


def check_point_in_time_recovery(source: Table) -> None:
    """ExportTableToPointInTime needs PITR on the source."""
    try:
        backups = source.client.describe_continuous_backups(TableName=source.name)["ContinuousBackupsDescription"]
    except ClientError as exc:
        raise ReplicatorError(f"cannot read the backup settings of {source.spec}: {exc}") from None
    status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus")
    if status != "ENABLED":
        raise ReplicatorError(
            f"--load export needs point-in-time recovery on {source.spec} (it is {status or 'DISABLED'}): enable "
            f"it (aws dynamodb update-continuous-backups --table-name {source.name} "
            "--point-in-time-recovery-specification PointInTimeRecoveryEnabled=true), or use --load scan"
        )


def open_shards(source: Table) -> set[str]:
    """The shards of the source's stream that are still open: the path must have started on each."""
    arn = source.description.get("LatestStreamArn")
    streams = clients.streams(source.spec.region, source.endpoint, side="source", credentials=source.credentials)
    return {shard["ShardId"] for shard in stream_shards(streams, arn)
            if "EndingSequenceNumber" not in shard.get("SequenceNumberRange", {})}


def wait_until_equal(source: Table, destination: Table, daemon: subprocess.Popen[bytes], *, timeout_s: float,
                     poll_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                     version_attribute: str | None = None, shape: ReplicaShape = KEEP_ALL) -> DiffResult:
    """Compare (read only) until no discrepancy remains, the time is up, or the daemon has died. A compare
    that fails (a read timed out on a busy table) is tried again until the time is up: the path keeps
    running meanwhile, and giving up on it would stop a bootstrap whose load is done."""
    deadline = clock() + timeout_s
    while True:
        try:
            result = diff_tables(source, destination, version_attribute=version_attribute, shape=shape)
        except ReplicatorError as exc:
            if clock() >= deadline:
                raise
            _log.warning("bootstrap_check_failed", error=str(exc))
            time.sleep(poll_s)
            continue
        _log.info("bootstrap_check", missing=result.missing, different=result.different, extraneous=result.extraneous)
        if not result.discrepancies or clock() >= deadline:
            return result
        if daemon.poll() is not None:
            raise ReplicatorError(f"the replication daemon exited with status {daemon.returncode} before the replica caught up")
        time.sleep(poll_s)


@dataclass
class Started:
    path: ReplicationPath
    properties: Path
    daemon: subprocess.Popen[bytes]
    shards: set[str] = field(default_factory=set)
    """The shards a processor has started on, from the daemon's ``shard_started`` lines."""
    _changed: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def wait_for_shards(self, shards: set[str], timeout_s: float, poll_s: float = 1.0) -> float:
        """Wait until a processor has started on each of ``shards``; the epoch time at which the last did."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not shards <= self.shards:
                if self.daemon.poll() is not None:
                    raise ReplicatorError(f"the replication daemon exited with status {self.daemon.returncode} "
                                          "before it started on every shard; see its log")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ReplicatorError(
                        f"the path did not start on shards {sorted(shards - self.shards)[:3]} within "
                        f"{timeout_s:g} s, so the load cannot begin; see the daemon's log, or give it longer "
                        "with --start-timeout")
                self._changed.wait(min(poll_s, left))
        return time.time()

    def _saw(self, line: bytes) -> None:
        if b'"shard_started"' not in line or not line.startswith(b"{"):
            return
        try:
            shard = json.loads(line)["shard"]
        except (ValueError, KeyError, TypeError):
            return
        with self._changed:
            self.shards.add(str(shard))
            self._changed.notify_all()


def start_replication(path: ReplicationPath, properties: Path, extra: dict[str, str], output: IO[bytes] | None) -> Started:
    """Start the daemon at LATEST (a Kinesis path: at its initial timestamp); its output goes to ``output``
    (else this process's stdout), read on the way for the processors' ``shard_started`` lines."""
    position = {} if path.is_kinesis else {"initialPositionInStream": "LATEST"}
    path.write_properties(properties, extra={**extra, **position})
    daemon = spawn_daemon(properties, subprocess.PIPE)  # type: ignore[arg-type]
    started = Started(path, properties, daemon)
    sink = output if output is not None else sys.stdout.buffer

    def tee() -> None:
        assert daemon.stdout is not None
        for line in daemon.stdout:
            started._saw(line)
            try:
                sink.write(line)
                sink.flush()
            except (OSError, ValueError):
                pass  # our stdout closed: the daemon's output is dropped, never the daemon blocked on it

    threading.Thread(target=tee, name="daemon-output", daemon=True).start()
    _log.info("replication_started", properties=str(properties), lease_table=path.application_name,
              initial_position=path.initial_position,
              initial_timestamp=path.initial_timestamp.isoformat() if path.initial_timestamp else None,
              version_attribute=path.version_attribute, pid=daemon.pid)
    return started


def as_json(load: dict[str, Any], started: Started, check: DiffResult | None, status: int | None,
            path_started_at: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {**load, "properties": str(started.properties),
                           "lease_table": started.path.application_name, "daemon_exit_status": status,
                           "version_attribute": started.path.version_attribute, "path_started_at": path_started_at}
    if check is not None:
        out.update(check=check.as_json(), equal=check.discrepancies == 0)
    return out


def lease_table_exists(path: ReplicationPath) -> bool:
    leases = clients.dynamodb(path.lease_region, path.lease_endpoint, retries=3, side="kcl",
                              credentials=path.lease_credentials)
    try:
        leases.describe_table(TableName=path.application_name)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise ReplicatorError(f"cannot check the lease table {path.application_name}: {exc}") from None


def wait_for_owned_leases(path: ReplicationPath, shards: set[str], timeout_s: float, poll_s: float = 2.0) -> float:
    """For a machine joining a bootstrap with ``--segment``: wait until the path another machine started
    holds a lease, with an owner, on each of ``shards``; the epoch time at which it did."""
    leases = clients.dynamodb(path.lease_region, path.lease_endpoint, retries=3, side="kcl",
                              credentials=path.lease_credentials)
    deadline = time.monotonic() + timeout_s
    while True:
        # Not there yet, if the other machine has not started the path: wait for it as for its leases.
        owned = {i["leaseKey"]["S"] for i in read_leases(path, leases, missing_ok=True) if i.get("leaseOwner", {}).get("S")}
        if shards <= owned:
            return time.time()
        if time.monotonic() >= deadline:
            raise ReplicatorError(
                f"the path of lease table {path.application_name} holds no owned lease on shards "
                f"{sorted(shards - owned)[:3]} after {timeout_s:g} s: start the machine that runs the path first")
        time.sleep(poll_s)


def log_path_started(path: ReplicationPath, shards: set[str], at: float) -> None:
    _log.info("path_started", lease_table=path.application_name, shards=len(shards),
              at=datetime.fromtimestamp(at, timezone.utc).isoformat())


def load_export(source: Table, destination: Table, bucket: tuple[str, str] | None, url: str | None,
                s3_endpoint: str | None, path_started_at: float, *, write_units: float | None,
                put_request: Callable[[str, Change], dict[str, Any]], resume: bool = False,
                state_path: Path | None = None, shape: ReplicaShape = KEEP_ALL,
                s3_credentials: Credentials | None = None) -> dict[str, Any]:
    """``--load export``: export the source now (``bucket``) or take the export at ``url``, check that it is
    of a time after the path started, and load it through restore-table's reader with the loader's
    conditional puts."""
    from replicator.tables import export as ex
    from replicator.tables.restore import restore_table

    s3 = s3_credentials or DEFAULT
    if bucket is not None:
        description = ex.request_export(source, *bucket, s3_credentials=s3)
        url = ex.export_url(description)
        export_at = description["ExportTime"].timestamp()
        ex.check_after_start(export_at, path_started_at, url)
        ex.wait_for_export(source, description["ExportArn"])
    else:
        assert url is not None
        export_at = ex.export_time(url, region=source.spec.region, s3_endpoint=s3_endpoint, s3_credentials=s3)
        ex.check_after_start(export_at, path_started_at, url)
    _log.info("export_loading", url=url, export_time=datetime.fromtimestamp(export_at, timezone.utc).isoformat(),
              after_path_start_s=round(export_at - path_started_at, 3))
    restored = restore_table(url, destination, s3_endpoint=s3_endpoint, write_units=write_units, resume=resume,
                             force=True, state_path=state_path, put_request=put_request,
                             shape=shape, s3_credentials=s3)
    return {"loaded": restored.restored, "skipped": restored.present,
            "read": restored.restored + restored.present + restored.left_out,
            "export": url, "export_time": datetime.fromtimestamp(export_at, timezone.utc).isoformat()}
