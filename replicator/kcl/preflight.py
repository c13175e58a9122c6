"""Every start-up check of a path, in one place: `run` (one path or many), `run --check-only`, the daemon's
check of a file added to its directory (``pathset``) and `discover` make the same ones.

A path may only be written to a properties file, or started, once all of these have passed: Java and the
jars the daemon needs are there, the source (table and its stream, or Kinesis stream) and the destination
exist, are reachable with the path's own credentials and agree on keys, and the replica's shape fits them.
Each problem is one ReplicatorError naming it and the fix, so a refused command has written nothing and
started nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from replicator import clients, log
from replicator.changes.formats import key_schema_of
from replicator.kcl import checks, launcher
from replicator.kcl.config import ReplicationPath


@dataclass(frozen=True)
class PathChecks:
    """What the checks found and the daemon needs: the stream read, and what its processors are told."""

    path: ReplicationPath
    stream_arn: str
    extra_env: dict[str, str] = field(default_factory=dict)
    ttl_note: str | None = None
    """The one line saying what ttlDeletes skip can do on this source (``checks.check_shape``), if any."""


def check_path(path: ReplicationPath) -> PathChecks:
    """Raise ReplicatorError for the first problem found; otherwise what `run` needs to start the path."""
    launcher.find_java()
    launcher.classpath()
    source_client = clients.dynamodb(path.source_region, path.source_endpoint, retries=3, side="source",
                                     credentials=path.source_credentials)
    destination_client = clients.dynamodb(path.destination_region, path.destination_endpoint, retries=3,
                                          side="destination", credentials=path.destination_credentials)
    if path.is_kinesis:
        kinesis_client = clients.kinesis(path.source_region, path.source_endpoint, side="source",
                                         credentials=path.source_credentials)
        stream_arn, destination = checks.check_kinesis_path(path, kinesis_client, source_client, destination_client)
        schema = ",".join(f"{name}:{kind}" for name, kind in key_schema_of(destination))
        note = checks.check_shape(path, destination)
        return PathChecks(path, stream_arn, {launcher.KEY_SCHEMA_ENV: schema}, note)
    source = checks.check_tables(path, source_client, destination_client)
    view = source["StreamSpecification"]["StreamViewType"]
    note = checks.check_shape(path, source, view)
    return PathChecks(path, source["LatestStreamArn"], {launcher.STREAM_VIEW_ENV: view}, note)


def warn(checked: PathChecks, **context: str) -> None:
    """Log what the checks found worth a line (today: a TTL setting that can only be honoured in part)."""
    if checked.ttl_note:
        log.get(__name__).warning("ttl_deletes_limited", note=checked.ttl_note, **context)
