"""bootstrap from a Kinesis dynamodb-cdc stream: its refusals, its path, and the fence against the load."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from replicator.changes.formats import KinesisCdcRecords, SourceRecord
from replicator.changes.versions import Versioning, replica_view
from replicator.changes.writer import TableWriter
from replicator.errors import ReplicatorError
from replicator.local import exports
from replicator.local.workload import create_table
from replicator.tables import bootstrap_kinesis as bk
from replicator.tables.copy import put_changes
from replicator.tables.load import absent_key_put
from replicator.tables.spec import open_table
from unit_helpers import create_pk_table, endpoint_client, unique_table

VERSION = "replicator_version"


def cdc(event: str, pk: str, created_us: int, **attributes: Any) -> SourceRecord:
    body: dict[str, Any] = {"ApproximateCreationDateTime": created_us, "ApproximateCreationDateTimePrecision":
                            "MICROSECOND", "Keys": {"pk": {"S": pk}}}
    if event != "REMOVE":
        body["NewImage"] = {"pk": {"S": pk}, **attributes}
    return SourceRecord(json.dumps({"eventName": event, "tableName": "src", "dynamodb": body}).encode(), "1")


def get(client: Any, table: str, pk: str) -> Any:
    return client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def test_a_loaded_item_never_overwrites_a_replayed_change_nor_undoes_a_replayed_delete(moto_endpoint: str) -> None:
    """The replay starts before the export: its changes and the export's images meet in either order."""
    client = endpoint_client(moto_endpoint)
    table = unique_table("kload")
    create_pk_table(client, table)
    decode = KinesisCdcRecords(table="src").decode
    fence = TableWriter(client, table, versioning=Versioning.by_time(VERSION))
    loader = TableWriter(client, table, put_request=absent_key_put("pk", VERSION))
    export_us = 2_000_000_000_000_000
    # Replayed first: a change after the export, a delete after it, and a change from before it.
    fence.write(decode(cdc("MODIFY", "newer", export_us + 5, v={"S": "after"}))
                + decode(cdc("REMOVE", "deleted", export_us + 6))
                + decode(cdc("MODIFY", "replayed-old", export_us - 9, v={"S": "before"})))
    snapshot = [{"pk": {"S": k}, "v": {"S": "export"}} for k in ("newer", "deleted", "replayed-old", "loaded-first")]
    stats = loader.write(put_changes(open_table(f"us-east-1/{table}", moto_endpoint), snapshot))
    assert stats.stale == 3 and stats.puts == 1
    assert get(client, table, "newer")["v"] == {"S": "after"}  # never overwritten
    assert replica_view(get(client, table, "deleted"), VERSION) is None  # the delete is not undone
    # "replayed-old" shows its older image until the replay reaches its next change, which then lands:
    fence.write(decode(cdc("MODIFY", "replayed-old", export_us + 1, v={"S": "latest"})))
    assert get(client, table, "replayed-old")["v"] == {"S": "latest"}
    # A key loaded first: a replayed change from before the export goes over it (it carries no version),
    # then the later changes, applied out of order and twice, end with the newest.
    fence.write(decode(cdc("MODIFY", "loaded-first", export_us - 3, v={"S": "before"})))
    assert get(client, table, "loaded-first")["v"] == {"S": "before"}
    later = decode(cdc("REMOVE", "loaded-first", export_us + 8)) + decode(cdc("MODIFY", "loaded-first", export_us + 2,
                                                                             v={"S": "x"}))
    fence.write(later + later)
    assert replica_view(get(client, table, "loaded-first"), VERSION) is None
    assert loader.write(put_changes(open_table(f"us-east-1/{table}", moto_endpoint), snapshot)).stale == 4


def test_the_start_is_at_or_before_the_export_and_within_the_streams_retention() -> None:
    assert bk.start_time(1000.0, None) == 1000.0
    assert bk.start_time(1000.0, 400.0) == 400.0
    assert bk.start_time(1000.0, 1000.0004) == 1000.0004  # the same millisecond
    with pytest.raises(ReplicatorError, match=r"--start-at .* is after the export's time .* in neither"):
        bk.start_time(1000.0, 1000.5)
    with pytest.raises(ReplicatorError, match=r"is after now"):
        bk.start_time(None, 2000.0, now=1000.0)
    assert bk.start_time(None, None, now=1000.0) == 1000.0
    now = 100 * 3600.0
    bk.check_retention("changes", 24, now - 22.9 * 3600, now=now)
    with pytest.raises(ReplicatorError, match=r"keeps records 24 h.*23.5 h ago.*increase-stream-retention-period"):
        bk.check_retention("changes", 24, now - 23.5 * 3600, now=now)
    bk.check_retention("changes", 24 * 365, now - 23.5 * 3600, now=now)
    with pytest.raises(ReplicatorError, match="not an ISO 8601 time"):
        bk.parse_time("yesterday")
    assert bk.parse_time("1970-01-01T00:16:40") == bk.parse_time("1970-01-01T00:16:40Z") == 1000.0


def write_export(folder: Path, at: float) -> Path:
    name = f"AWSDynamoDB/{exports.export_id(at)}"
    objects = exports.layout(lines=[], folder=name, bucket="b", prefix="", arn="arn", table_arn="t", table_id="i",
                             export_time=at, start_time=at, end_time=at)
    for key, body in objects.items():
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(body)
    return folder / name


@pytest.fixture
def kinesis_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "src", None)  # no DynamoDB stream: a Kinesis bootstrap does not need one
        create_table(boto3.client("dynamodb", region_name="us-west-2"), "dst", None)
        boto3.client("kinesis", region_name="us-east-1").create_stream(StreamName="changes", ShardCount=2)
        yield client, tmp_path


def bootstrap(*args: str) -> Any:
    from replicator.cli.tools import bootstrap_command

    return CliRunner().invoke(bootstrap_command, ["us-east-1/src", "us-west-2/dst", *args])


@pytest.mark.parametrize("args, message", [
    (["--load", "export", "--source-format", "keys-only"], r"--source-format keys-only: .*give --source-format dynamodb-cdc"),
    (["--load", "scan"], r"--load scan with --source-kinesis-stream is not supported: .*drop --source-kinesis-stream"),
    (["--load", "export", "--start-at", "LATER"], r"--start-at .* is after the export's time"),
    (["--load", "export", "OLD"], r"keeps records 24 h, but the path would start at .* 25.0 h ago"),
])
def test_a_refused_kinesis_bootstrap_starts_nothing_and_writes_nothing(kinesis_world: Any, args: list[str],
                                                                       message: str) -> None:
    client, folder = kinesis_world
    at = time.time() - (25 * 3600 if "OLD" in args else 60)
    export = write_export(folder / "exports", at)
    args = [a for a in args if a != "OLD"]
    args = [time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at + 2)) if a == "LATER" else a for a in args]
    before = sorted(p for p in folder.rglob("*"))
    result = bootstrap("--source-kinesis-stream", "changes", *args,
                       *(["--export", str(export)] if "export" in args else []))
    assert result.exit_code == 2, result.output
    (line,) = [entry for entry in result.output.strip().splitlines() if entry]
    assert line.startswith("replicator: error: ")
    assert re.search(message, line), line
    assert sorted(p for p in folder.rglob("*")) == before  # no properties file
    assert client.list_tables()["TableNames"] == ["src"]  # no lease table: no path was started


def test_start_at_and_source_format_go_with_a_kinesis_stream(kinesis_world: Any) -> None:
    result = bootstrap("--start-at", "2026-01-01T00:00:00Z")
    assert result.exit_code == 2 and "go with --source-kinesis-stream" in result.output


def test_the_kinesis_path_starts_at_the_time_in_whole_seconds_and_keeps_the_source_tables_records() -> None:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "src", None)
        create_table(client, "dst", None)
        src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
        path = bk.replication_path(src, dst, "changes", 1000.9, task_name="boot", version_attribute=VERSION)
    props = path.to_properties()
    assert props["initialPositionInStreamExtended"] == "1000" and "initialPositionInStream" not in props
    assert (props["sourceFormat"], props["sourceTable"], props["versionAttribute"]) == ("dynamodb-cdc", "src", VERSION)
    assert path.application_name == "KinesisCrossRegionReplicationboot"


def test_the_load_waits_for_the_kinesis_streams_open_shards_and_needs_no_dynamodb_stream() -> None:
    from replicator.tables import bootstrap as bs

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "src", None)
        create_table(boto3.client("dynamodb", region_name="us-west-2"), "dst", None)
        kinesis = boto3.client("kinesis", region_name="us-east-1")
        kinesis.create_stream(StreamName="changes", ShardCount=2)
        src, dst = open_table("us-east-1/src", None), open_table("us-west-2/dst", None)
        assert bk.open_shards(src, "changes") == {"shardId-000000000000", "shardId-000000000001"}
        kinesis.update_shard_count(StreamName="changes", TargetShardCount=4, ScalingType="UNIFORM_SCALING")
        shards = kinesis.list_shards(StreamName="changes")["Shards"]
        open_now = {s["ShardId"] for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]}
        assert len(open_now) == 4 and bk.open_shards(src, "changes") == open_now
        assert bk.stream_summary(src, "changes")["RetentionPeriodHours"] == 24
        with pytest.raises(ReplicatorError, match="Kinesis stream us-east-1/other does not exist: fix --source-kinesis-stream"):
            bk.stream_summary(src, "other")
        # The source has no DynamoDB stream: a Kinesis path's bootstrap does not need one, a table path's does.
        path = bk.replication_path(src, dst, "changes", time.time(), task_name="k", version_attribute=VERSION)
        bs.check_ready(src, dst, path)
        with pytest.raises(ReplicatorError, match="has no stream enabled"):
            bs.check_ready(src, dst, bs.replication_path(src, dst, "t", VERSION))


def test_a_kcl_property_for_what_the_kinesis_options_set_names_the_option() -> None:
    from replicator.kcl.config import parse_kcl_properties
    from replicator.tables import bootstrap as bs

    for key, option in (("sourceKinesisStream", "--source-kinesis-stream"), ("sourceFormat", "--source-format"),
                        ("initialTimestamp", "--start-at"), ("initialPositionInStreamExtended", "--start-at")):
        with pytest.raises(ReplicatorError, match=f"--kcl-property {key}: .*use {option}"):
            parse_kcl_properties([f"{key}=x"], path_keys=bs.KCL_PATH_KEYS, options=bs.BOOTSTRAP_OPTIONS)
