"""`replicator status`: each shard's lease owner, checkpoint and how far behind it is.

It reads the path's lease table and, for each shard not yet finished, reads the stream right after the
checkpoint (``streams``: a DynamoDB or a Kinesis stream): the records found there (up to one GetRecords
page) are the backlog, and the oldest one's creation (or arrival) time tells how long it has been waiting. ``snapshots`` repeats that for ``status --watch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from replicator.kcl.config import ReplicationPath
from replicator.kcl.streams import SourceStream
from replicator.errors import CREDENTIALS_FIX, ReplicatorError, client_error

PAGE = 1000


@dataclass(frozen=True)
class ShardStatus:
    shard_id: str
    owner: str | None
    """The worker processing the shard now: during a graceful handoff, the one handing it over."""
    checkpoint: str
    state: str
    """'done' (checkpointed at the end of a closed shard), 'active' (owned), 'handoff' (KCL 3's leader has
    assigned it to another worker, which takes it once its owner has checkpointed), 'unassigned', or
    'stopped' (the path stopped itself after a non-retryable error: see stopped_reason)."""
    behind_records: int | None
    """Records after the checkpoint, counted up to one page; None when the stream could not be read."""
    behind_more: bool
    """True when more than one page is waiting."""
    oldest_waiting_s: float | None
    stopped_reason: str | None = None
    """Why the path stopped, from its stop record (``stopped``), when its state is 'stopped'."""


def with_stop_record(statuses: list[ShardStatus], record: dict[str, Any] | None) -> list[ShardStatus]:
    """The shards of a path that stopped itself: each one not done is 'stopped', with the record's reason
    (its leases may still name the worker until they expire, but nothing processes them)."""
    if record is None:
        return statuses
    reason = f"{record['reason']} (shard {record.get('shard', '?')}, at {record.get('stopped_at', '?')})"
    return [s if s.state == "done" else replace(s, state="stopped", stopped_reason=reason) for s in statuses]


def _backlog(stream: SourceStream, shard_id: str, checkpoint: str) -> tuple[int | None, bool, float | None]:
    try:
        records, _ = stream.page(stream.iterator_after(shard_id, checkpoint), PAGE)
    except ClientError:
        return None, False, None  # trimmed, or a shard of an older stream
    oldest = None
    if records:
        written = stream.written_at(records[0])
        oldest = max(0.0, time.time() - written.timestamp()) if written else None
    return len(records), len(records) == PAGE, oldest


def read_leases(path: ReplicationPath, lease_client: Any, *, missing_ok: bool = False) -> list[dict[str, Any]]:
    """Every item of the path's lease table (a consistent Scan), each failure one line naming the fix; with
    ``missing_ok``, a lease table that does not exist yet is no lease at all."""
    table = path.application_name
    try:
        pages = lease_client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
        return [item for page in pages for item in page["Items"]]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            if missing_ok:
                return []
            raise ReplicatorError(
                f"lease table {table} does not exist in {path.lease_region}: this path has never run "
                "(or check --task-name and --kcl-region)"
            ) from None
        raise ReplicatorError(f"cannot read lease table {table} in {path.lease_region}: {client_error(exc)}") from None
    except NoCredentialsError:
        raise ReplicatorError(f"no AWS credentials found: {CREDENTIALS_FIX}") from None
    except BotoCoreError as exc:
        where = path.lease_endpoint or path.lease_region
        raise ReplicatorError(f"cannot reach lease table {table} at {where}: {exc}; check --kcl-endpoint (by default "
                              "--source-endpoint) and the network") from None


def read_status(path: ReplicationPath, lease_client: Any, stream: SourceStream) -> list[ShardStatus]:
    leases = read_leases(path, lease_client)
    result = []
    for lease in sorted(leases, key=lambda item: item["leaseKey"]["S"]):
        shard_id = lease["leaseKey"]["S"]
        checkpoint = lease.get("checkpoint", {}).get("S", "?")
        # KCL 3's graceful handoff writes the next owner into leaseOwner at once and keeps the current one
        # in checkpointOwner until it has checkpointed: the shard's actual owner is checkpointOwner then.
        assigned = lease.get("leaseOwner", {}).get("S")
        handing_over = lease.get("checkpointOwner", {}).get("S")
        owner = handing_over or assigned
        if checkpoint == "SHARD_END":
            result.append(ShardStatus(shard_id, owner, checkpoint, "done", 0, False, None))
            continue
        behind, more, oldest = _backlog(stream, shard_id, checkpoint)
        if handing_over and handing_over != assigned:
            state = "handoff"
        else:
            state = "active" if owner else "unassigned"
        result.append(ShardStatus(shard_id, owner, checkpoint, state, behind, more, oldest))
    return result


def as_json(statuses: list[ShardStatus]) -> list[dict[str, Any]]:
    return [asdict(s) for s in statuses]


def as_table(statuses: list[ShardStatus]) -> str:
    rows = [("SHARD", "STATE", "OWNER", "CHECKPOINT", "BEHIND", "OLDEST WAITING")]
    for s in statuses:
        behind = "?" if s.behind_records is None else f"{s.behind_records}{'+' if s.behind_more else ''} records"
        oldest = "-" if s.oldest_waiting_s is None else f"{s.oldest_waiting_s:.0f} s"
        rows.append((s.shard_id, s.state, s.owner or "-", s.checkpoint, behind, oldest))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)
    reasons = sorted({s.stopped_reason for s in statuses if s.stopped_reason})
    return "\n".join([f"PATH STOPPED: {reason}" for reason in reasons] + [table])


@dataclass(frozen=True)
class Snapshot:
    """One refresh of ``status --watch``: the shards, or why they could not be read this time."""

    at: datetime
    shards: list[ShardStatus] | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at.isoformat(timespec="seconds")}
        if self.shards is not None:
            out["shards"] = as_json(self.shards)
        if self.error is not None:
            out["error"] = self.error
        return out


def snapshots(
    read: Callable[[], list[ShardStatus]],
    interval_s: float,
    count: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
) -> Iterator[Snapshot]:
    """``read()`` every ``interval_s`` (``count`` times, or until the caller stops). A first failure
    raises, as ``status`` without ``--watch`` does; a later one (a network blip, throttling) is shown in
    its snapshot and the watch goes on."""
    taken = 0
    while count is None or taken < count:
        if taken:
            sleep(interval_s)
        shards: list[ShardStatus] | None = None
        error = None
        try:
            shards = read()
        except (ClientError, BotoCoreError, ReplicatorError) as exc:
            if not taken:
                raise
            error = str(exc) if isinstance(exc, ReplicatorError) else f"{type(exc).__name__}: {exc}"
        taken += 1
        yield Snapshot(now(), shards, error)
