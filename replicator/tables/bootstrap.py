"""bootstrap: start replicating a table that already has data and keeps taking writes.

The order makes it safe without comparing versions:

1. Check the options (not a table onto itself, where the files go, Java), the source's stream (enabled)
   and that the path has never run (no lease table: its checkpoints, not TRIM_HORIZON, would decide where
   replication starts). A refused bootstrap has copied and written nothing.
2. Copy the table while no daemon applies anything. The stream was enabled before the copy began, so
   it holds every change made during the copy (and up to 24 hours before it).
3. Start the daemon (``replicator run --properties``) at TRIM_HORIZON: it replays the stream from its
   oldest record, in order per key, over the copied images.

Every copied item is written before the daemon starts, so no copied image can ever overwrite a change
the stream applied. Replaying records older than the copy briefly takes an item back in time, but the
last record of each key is the item's current state, so the replica converges to the source (an item
with no record in the stream has not changed since before it, and its copied image is current). This
holds while the copy takes less than the stream's 24 hours, which copy-table's estimate warns about.

4. Check: compare the tables until they are equal (or the check's time runs out).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, IO

from botocore.exceptions import ClientError

from replicator import clients, log
from replicator.kcl import checks
from replicator.kcl.launcher import spawn_daemon
from replicator.credentials import Credentials
from replicator.kcl.config import PATH_KEYS, ReplicationPath, build_path
from replicator.tables.diff import DiffResult, diff_tables
from replicator.errors import ReplicatorError
from replicator.tables.spec import Table, check_same_keys

_log = log.get("replicator.tables.bootstrap")


BOOTSTRAP_OPTIONS = {"sourceRegion": "SRC", "sourceTable": "SRC", "destinationRegion": "DST",
                     "destinationTable": "DST", "sourceEndpoint": "--source-endpoint",
                     "destinationEndpoint": "--destination-endpoint", "taskName": "--task-name",
                     "versionAttribute": "--version-attribute",
                     "initialPosition": "`replicator run` (bootstrap starts at TRIM_HORIZON)",
                     "initialTimestamp": "`replicator run` (bootstrap starts at TRIM_HORIZON)",
                     "sourceKinesisStream": "`replicator run` (bootstrap replicates SRC's own stream)",
                     "sourceFormat": "`replicator run` (bootstrap replicates SRC's own stream)"}
"""The path keys bootstrap sets itself, and what sets each; --kcl-property gives the other path keys."""
KCL_PATH_KEYS = tuple(key for key in PATH_KEYS if key not in BOOTSTRAP_OPTIONS)


def credential_settings(sides: dict[str, Credentials]) -> dict[str, str]:
    """The path settings (by field name) of each side's credentials, as `replicator run` takes them."""
    found: dict[str, str] = {}
    for name, creds in sides.items():
        for what in ("role_arn", "external_id", "profile"):
            value = getattr(creds, what)
            if value is not None:
                found[f"{name}_{what}"] = value
    return found


def replication_path(source: Table, destination: Table, task_name: str | None = None,
                     version_attribute: str | None = None, settings: dict[str, str] | None = None) -> ReplicationPath:
    """The path bootstrap starts; ``settings`` are the other path keys, by field name (from --kcl-property)."""
    return build_path({
        **(settings or {}),
        "source_region": source.spec.region, "source_table": source.name, "source_endpoint": source.endpoint,
        "destination_region": destination.spec.region, "destination_table": destination.name,
        "destination_endpoint": destination.endpoint, "task_name": task_name, "initial_position": "TRIM_HORIZON",
        "version_attribute": version_attribute,
    })


def check_ready(source: Table, destination: Table, path: ReplicationPath) -> None:
    """The stream carries new images, the keys match and the path has never run."""
    checks.check_stream(source.description, source.spec.region)
    check_same_keys(source, destination)
    leases = clients.dynamodb(path.lease_region, path.lease_endpoint, retries=3, credentials=path.lease_credentials)
    try:
        leases.describe_table(TableName=path.application_name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return
        raise ReplicatorError(f"cannot check the lease table {path.application_name}: {exc}") from None
    raise ReplicatorError(
        f"lease table {path.application_name} exists: this path has run before, so its checkpoints, not "
        "TRIM_HORIZON, would decide where replication starts; bootstrap with another --task-name, or delete "
        "that table (and its -WorkerMetricStats and -CoordinatorState tables) first"
    )


def wait_until_equal(source: Table, destination: Table, daemon: subprocess.Popen[bytes], *, timeout_s: float,
                     poll_s: float = 2.0, clock: Callable[[], float] = time.monotonic,
                     version_attribute: str | None = None) -> DiffResult:
    """Compare (read only) until no discrepancy remains, the time is up, or the daemon has died."""
    deadline = clock() + timeout_s
    while True:
        result = diff_tables(source, destination, version_attribute=version_attribute)
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


def start_replication(path: ReplicationPath, properties: Path, extra: dict[str, str], output: IO[bytes] | None) -> Started:
    path.write_properties(properties, extra={**extra, "initialPositionInStream": "TRIM_HORIZON"})
    daemon = spawn_daemon(properties, output)
    _log.info("replication_started", properties=str(properties), lease_table=path.application_name,
              initial_position="TRIM_HORIZON", pid=daemon.pid)
    return Started(path, properties, daemon)


def as_json(copied: int, started: Started, check: DiffResult | None, status: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {"copied": copied, "properties": str(started.properties),
                           "lease_table": started.path.application_name, "daemon_exit_status": status}
    if check is not None:
        out.update(check=check.as_json(), equal=check.discrepancies == 0)
    return out
