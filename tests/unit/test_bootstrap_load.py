"""bootstrap's loader condition, the local server's export layout, and the export-time check."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from replicator.changes.codec import encode_item
from replicator.changes.versions import Versioning, replica_view
from replicator.changes.writer import TableWriter
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.local import exports
from replicator.local.workload import create_table, every_type_item
from replicator.tables import export as ex
from replicator.tables.copy import put_changes
from replicator.tables.load import absent_key_put
from replicator.tables.restore import restore_table
from replicator.tables.spec import open_table
from unit_helpers import create_pk_table, delete_change, endpoint_client, put_change, unique_table

VERSION = "replicator_version"
LABEL = "2026-01-01T00:00:00.000000"
ARN = re.compile(r"^arn:aws:dynamodb:us-east-1:\d{12}:table/src/export/\d{14}-[0-9a-f]{8}$")


def get(client: Any, table: str, pk: str) -> Any:
    return client.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def test_the_loader_writes_only_where_the_replica_has_neither_the_item_nor_its_tombstone(moto_endpoint: str) -> None:
    client = endpoint_client(moto_endpoint)
    table = unique_table("load")
    create_pk_table(client, table)
    fence = TableWriter(client, table, versioning=Versioning(VERSION, LABEL))
    # The path, started before the load, has applied a newer put of "updated" and a delete of "deleted".
    fence.write([put_change("updated", "5", v={"S": "newer"}), delete_change("deleted", "6")])
    loader = TableWriter(client, table, put_request=absent_key_put("pk", VERSION))
    # The load's snapshot, read before those changes: older images of both, and an untouched item.
    snapshot = [{"pk": {"S": "updated"}, "v": {"S": "older"}}, {"pk": {"S": "deleted"}, "v": {"S": "older"}},
                {"pk": {"S": "untouched"}, "v": {"S": "snapshot"}, "n": {"NS": ["1", "2.50"]}, "b": {"B": b"\0"}}]
    stats = loader.write(put_changes(open_table(f"us-east-1/{table}", moto_endpoint), snapshot))

    assert stats.stale == 2 and stats.puts == 1  # two skips, counted; one item loaded
    assert get(client, table, "updated")["v"] == {"S": "newer"}  # never overwritten
    assert replica_view(get(client, table, "deleted"), VERSION) is None  # the delete is not undone
    loaded = get(client, table, "untouched")
    assert loaded["v"] == {"S": "snapshot"} and VERSION not in loaded  # a loaded item carries no version
    # A change after the snapshot reaches it by the stream: the fence writes over the unversioned item.
    fence.write([put_change("untouched", "7", v={"S": "after"})])
    assert get(client, table, "untouched")["v"] == {"S": "after"}
    # And the load again (a resumed page) skips every key now.
    assert loader.write(put_changes(open_table(f"us-east-1/{table}", moto_endpoint), snapshot)).stale == 3


def test_the_loader_refuses_an_item_holding_the_version_attribute() -> None:
    request = absent_key_put("pk", VERSION)
    assert request("t", put_change("a", v={"S": "x"}))["ConditionExpression"] == "attribute_not_exists(#key)"
    for name in (VERSION, VERSION + "_tombstone"):
        with pytest.raises(NonRetryableWriteError, match=f"'{name}'.*--version-attribute"):
            request("t", put_change("a", **{name: {"S": "x"}}))


def test_the_export_layout_is_dynamodbs_with_its_checksums_and_restore_table_reads_it(tmp_path: Path) -> None:
    rng = random.Random(3)
    items = [every_type_item(f"p{i % 13}", i, rng, 1) for i in range(2500)]
    lines = [json.dumps({"Item": encode_item(i)}) for i in items]
    now = time.time()
    export_id = exports.export_id(now)
    folder = f"tables/AWSDynamoDB/{export_id}"
    arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/src/export/{export_id}"
    objects = exports.layout(lines=lines, folder=folder, bucket="b", prefix="tables", arn=arn,
                             table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/src", table_id="id",
                             export_time=now, start_time=now, end_time=now + 1)
    assert ARN.match(arn)
    data = sorted(k for k in objects if k.startswith(f"{folder}/data/"))
    assert len(data) == 3 and all(k.endswith(".json.gz") for k in data)
    assert objects[f"{folder}/_started"] == b""
    entries = [json.loads(line) for line in objects[f"{folder}/manifest-files.json"].decode().splitlines()]
    assert sorted(e["dataFileS3Key"] for e in entries) == data
    for e in entries:
        body = objects[e["dataFileS3Key"]]
        assert e["md5Checksum"] == base64.b64encode(hashlib.md5(body).digest()).decode()
        assert e["etag"] == hashlib.md5(body).hexdigest()
        assert e["itemCount"] == len(gzip.decompress(body).splitlines())
    for name in ("manifest-files", "manifest-summary"):
        body = objects[f"{folder}/{name}.json"]
        assert objects[f"{folder}/{name}.checksum"].decode() == base64.b64encode(hashlib.md5(body).digest()).decode()
    summary = json.loads(objects[f"{folder}/manifest-summary.json"])
    assert summary["itemCount"] == 2500 and summary["exportArn"] == arn
    assert summary["manifestFilesS3Key"] == f"{folder}/manifest-files.json"
    assert (summary["outputFormat"], summary["exportType"], summary["version"]) == ("DYNAMODB_JSON", "FULL_EXPORT",
                                                                                    "2020-06-30")
    assert abs(ex.export_time_of_summary(summary) - now) < 0.001

    for key, body in objects.items():  # the export copied to a directory, as `aws s3 sync` would
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "dst", None)
        result = restore_table(str(tmp_path / folder), open_table("us-east-1/dst", None), progress=False,
                               state_path=tmp_path / "state.json")
        assert result.kind == "dynamodb-export" and result.restored == 2500
        assert exports.ITEMS_PER_FILE == 1000


@pytest.fixture
def local_exports(monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto in this process with the local server's export patches, undone after the test."""
    import moto.dynamodb.models as models
    from moto.dynamodb.responses import DynamoHandler

    monkeypatch.setattr(models, "TableExport", models.TableExport)
    for name in ("export_table_to_point_in_time", "list_exports"):
        monkeypatch.setattr(DynamoHandler, name, getattr(DynamoHandler, name))
    monkeypatch.setattr(DynamoHandler, "list_imports", None, raising=False)
    exports.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "src", None)
        client.update_continuous_backups(TableName="src",
                                         PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="exports")
        yield client, s3


def test_the_local_servers_export_is_of_the_moment_it_was_asked_and_the_list_calls_answer(local_exports: Any) -> None:
    client, s3 = local_exports
    client.put_item(TableName="src", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "b": {"B": b"\xff"}})
    table_arn = client.describe_table(TableName="src")["Table"]["TableArn"]
    asked = client.export_table_to_point_in_time(TableArn=table_arn, S3Bucket="exports", S3Prefix="p",
                                                 ExportFormat="DYNAMODB_JSON")["ExportDescription"]
    client.put_item(TableName="src", Item={"pk": {"S": "after"}, "sk": {"N": "2"}})  # after the export time
    assert ARN.match(asked["ExportArn"])
    description = ex.wait_for_export(open_table("us-east-1/src", None), asked["ExportArn"], poll_s=0.05)
    assert description["ItemCount"] == 1 and abs(description["ExportTime"].timestamp() - time.time()) < 30
    url = ex.export_url(description)
    assert url == f"s3://exports/p/AWSDynamoDB/{asked['ExportArn'].rpartition('/')[2]}"
    key = url.removeprefix("s3://exports/")
    entries = s3.get_object(Bucket="exports", Key=f"{key}/manifest-files.json")["Body"].read().decode().splitlines()
    (entry,) = [json.loads(e) for e in entries]
    body = s3.get_object(Bucket="exports", Key=entry["dataFileS3Key"])["Body"].read()
    assert [json.loads(line)["Item"]["pk"] for line in gzip.decompress(body).splitlines()] == [{"S": "a"}]
    assert ex.export_time(url, region="us-east-1", s3_endpoint=None) == pytest.approx(
        description["ExportTime"].timestamp(), abs=0.001)

    assert [e["ExportArn"] for e in client.list_exports()["ExportSummaries"]] == [asked["ExportArn"]]
    assert [e["ExportArn"] for e in client.list_exports(TableArn=table_arn)["ExportSummaries"]] == [asked["ExportArn"]]
    assert client.list_imports()["ImportSummaryList"] == []
    with pytest.raises(client.exceptions.ClientError, match="as of now only.*omit ExportTime"):
        client.export_table_to_point_in_time(TableArn=table_arn, S3Bucket="exports", ExportTime=time.time() - 3600)


def test_an_export_from_before_the_path_started_is_refused() -> None:
    with pytest.raises(ReplicatorError, match="before the path started.*export again"):
        ex.check_after_start(1000.0, 1000.5, "s3://b/AWSDynamoDB/x")
    ex.check_after_start(1000.5, 1000.5, "s3://b/AWSDynamoDB/x")


def test_bootstrap_refuses_a_replica_whose_ttl_would_reap_tombstones_and_an_export_without_pitr() -> None:
    from replicator.tables import bootstrap as bs

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "dst", None)
        dst = open_table("us-east-1/dst", None)
        bs.check_tombstones_kept(dst, VERSION)
        client.update_time_to_live(TableName="dst", TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
        bs.check_tombstones_kept(dst, VERSION)  # TTL on the items' own attribute reaps no tombstone
        client.update_time_to_live(TableName="dst", TimeToLiveSpecification={"Enabled": False, "AttributeName": "expires"})
        client.update_time_to_live(TableName="dst", TimeToLiveSpecification={"Enabled": True,
                                                                            "AttributeName": VERSION + "_tombstone"})
        with pytest.raises(ReplicatorError, match="TTL on replicator_version_tombstone.*disable it.*enable it again"):
            bs.check_tombstones_kept(dst, VERSION)
        with pytest.raises(ReplicatorError, match="--load export needs point-in-time recovery.*or use --load scan"):
            bs.check_point_in_time_recovery(dst)
        client.update_continuous_backups(TableName="dst",
                                         PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        bs.check_point_in_time_recovery(dst)


def test_the_load_waits_for_a_processor_on_every_shard(tmp_path: Path) -> None:
    """The gate before the load: the daemon's shard_started lines, one per shard, nothing else."""
    import subprocess
    import threading

    from replicator.tables.bootstrap import Started

    daemon = subprocess.Popen(["sleep", "30"])
    try:
        started = Started(path=None, properties=tmp_path / "p", daemon=daemon)  # type: ignore[arg-type]
        started._saw(b'{"event": "batch_applied", "shard": "shard-1"}\n')
        started._saw(b'2026 INFO {"event": "shard_started", "shard": "shard-1"}\n')  # not a JSON line
        with pytest.raises(ReplicatorError, match=r"did not start on shards \['shard-1', 'shard-2'\].*--start-timeout"):
            started.wait_for_shards({"shard-1", "shard-2"}, timeout_s=0.2, poll_s=0.05)
        started._saw(b'{"event": "shard_started", "shard": "shard-1", "checkpoint": null}\n')
        later = threading.Timer(0.2, started._saw, [b'{"event": "shard_started", "shard": "shard-2"}\n'])
        later.start()
        at = started.wait_for_shards({"shard-1", "shard-2"}, timeout_s=10, poll_s=0.05)
        assert at >= time.time() - 5 and started.shards == {"shard-1", "shard-2"}
    finally:
        daemon.kill()
        daemon.wait()


def test_bootstrap_refuses_an_export_older_than_the_path_before_it_starts_anything(tmp_path: Path,
                                                                                   moto_endpoint: str) -> None:
    import os
    import subprocess
    import sys

    from replicator.local.workload import create_table as create

    source, replica = unique_table("src"), unique_table("dst")
    client = endpoint_client(moto_endpoint)
    create(client, source)
    create(endpoint_client(moto_endpoint, "us-west-2"), replica, None)
    old = time.time() - 3600
    folder = f"AWSDynamoDB/{exports.export_id(old)}"
    objects = exports.layout(lines=[], folder=folder, bucket="b", prefix="", arn="arn", table_arn="t", table_id="i",
                             export_time=old, start_time=old, end_time=old)
    for key, body in objects.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(body)
    work = tmp_path / "work"
    work.mkdir()
    tables_before = set(client.list_tables()["TableNames"])
    result = subprocess.run(
        [str(Path(sys.executable).parent / "replicator"), "bootstrap", f"us-east-1/{source}", f"us-west-2/{replica}",
         "--source-endpoint", moto_endpoint, "--destination-endpoint", moto_endpoint, "--load", "export",
         "--export", str(tmp_path / folder)],
        cwd=work, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "before the path started" in line and "export again (--export-bucket)" in line
    assert list(work.iterdir()) == []  # no properties file
    assert set(client.list_tables()["TableNames"]) == tables_before  # no lease table: no path was started


def test_an_export_into_a_bucket_reached_through_a_role_names_the_roles_account_as_its_owner():
    """DynamoDB writes an export into another account's bucket only when told whose it is (S3BucketOwner)."""
    from types import SimpleNamespace

    from replicator.credentials import Credentials
    from replicator.tables import export as ex

    asked: list[dict] = []

    def export_table_to_point_in_time(**kwargs):
        asked.append(kwargs)
        return {"ExportDescription": {"ExportArn": "arn:aws:dynamodb:us-east-1:111111111111:table/t/export/1"}}

    source = SimpleNamespace(description={"TableArn": "arn:aws:dynamodb:us-east-1:111111111111:table/t"},
                             client=SimpleNamespace(export_table_to_point_in_time=export_table_to_point_in_time),
                             spec="us-east-1/t")
    ex.request_export(source, "exports", "p", Credentials("arn:aws:iam::333333333333:role/exports"))
    ex.request_export(source, "exports", "p")
    assert asked[0]["S3BucketOwner"] == "333333333333"
    assert "S3BucketOwner" not in asked[1]


def test_a_joining_machine_waits_for_the_path_whose_lease_table_does_not_exist_yet(moto_endpoint):
    """bootstrap --segment on a second machine started before the first has started the path: it waits for
    the lease table and its owned leases, rather than failing on a table that is not there yet."""
    import threading

    from replicator.kcl.config import ReplicationPath
    from replicator.tables.bootstrap import wait_for_owned_leases

    path = ReplicationPath(source_region="us-east-1", source_table=unique_table("src"), source_endpoint=moto_endpoint,
                           destination_region="us-west-2", destination_table=unique_table("dst"),
                           destination_endpoint=moto_endpoint)
    leases = endpoint_client(moto_endpoint, "us-east-1")

    def start_the_path() -> None:
        time.sleep(0.5)
        leases.create_table(TableName=path.application_name, BillingMode="PAY_PER_REQUEST",
                            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}])
        for shard, owner in (("shard-1", "worker-a"), ("shard-2", "worker-b")):
            leases.put_item(TableName=path.application_name,
                            Item={"leaseKey": {"S": shard}, "leaseOwner": {"S": owner}})

    starter = threading.Thread(target=start_the_path)
    starter.start()
    began = time.time()
    try:
        held_at = wait_for_owned_leases(path, {"shard-1", "shard-2"}, timeout_s=30, poll_s=0.1)
    finally:
        starter.join()
    assert began + 0.5 <= held_at < began + 30
    with pytest.raises(ReplicatorError, match=r"holds no owned lease on shards \['shard-3'\] after 0.3 s"):
        wait_for_owned_leases(path, {"shard-3"}, timeout_s=0.3, poll_s=0.1)
