"""Every start-up check of a path, in one place: `run`, `run --check-only` and `discover` make the same ones.

A path may only be written to a properties file, or started, once all of these have passed: Java and the
jars the daemon needs are there, the source (table and its stream, or Kinesis stream) and the destination
exist and agree on keys. Each problem is one ReplicatorError naming it and the fix, so a refused command has
written nothing and started nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from replicator import clients
from replicator.changes.formats import key_schema_of
from replicator.kcl import checks, launcher
from replicator.kcl.config import ReplicationPath


@dataclass(frozen=True)
class CheckedPath:
    """What the checks found and the daemon needs: the stream read, and what its processors are told."""

    path: ReplicationPath
    stream_arn: str
    extra_env: dict[str, str] = field(default_factory=dict)
    kinesis_client: Any = None


def check_path(path: ReplicationPath) -> CheckedPath:
    """Raise ReplicatorError for the first problem found; otherwise what `run` needs to start the daemon."""
    launcher.find_java()
    source_client = clients.dynamodb(path.source_region, path.source_endpoint, retries=3, side="source")
    destination_client = clients.dynamodb(path.destination_region, path.destination_endpoint, retries=3,
                                          side="destination")
    if path.is_kinesis:
        launcher.kclpy_jars()
        kinesis_client = clients.kinesis(path.source_region, path.source_endpoint, side="source")
        stream_arn, destination = checks.check_kinesis_path(path, kinesis_client, source_client, destination_client)
        schema = ",".join(f"{name}:{kind}" for name, kind in key_schema_of(destination))
        return CheckedPath(path, stream_arn, {launcher.KEY_SCHEMA_ENV: schema}, kinesis_client)
    launcher.classpath()
    source = checks.check_tables(path, source_client, destination_client)
    return CheckedPath(path, source["LatestStreamArn"],
                       {launcher.STREAM_VIEW_ENV: source["StreamSpecification"]["StreamViewType"]})
