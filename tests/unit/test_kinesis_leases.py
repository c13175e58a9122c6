"""A new Kinesis path's first leases, written before the stock daemon starts (moto in-process)."""

from __future__ import annotations

from datetime import datetime, timezone

import boto3
import pytest
from moto import mock_aws
from structlog.testing import capture_logs

from replicator.kcl.config import ReplicationPath
from replicator.kcl import leases
from replicator.kcl.leases import create_initial_leases, lease

REGION = "us-east-1"


def kinesis_path(**overrides) -> ReplicationPath:
    values = {"source_region": REGION, "source_kinesis_stream": "events", "source_format": "binlog",
              "destination_region": "us-west-2", "destination_table": "dst"}
    return ReplicationPath(**{**values, **overrides})


@pytest.fixture
def aws():
    with mock_aws():
        kinesis = boto3.client("kinesis", region_name=REGION)
        kinesis.create_stream(StreamName="events", ShardCount=3)
        yield boto3.client("dynamodb", region_name=REGION), kinesis


def leases_in(dynamodb, table: str) -> dict[str, dict]:
    return {i["leaseKey"]["S"]: i for i in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]}


def test_a_new_path_gets_its_lease_table_and_one_unowned_lease_per_shard_at_its_position(aws):
    dynamodb, kinesis = aws
    path = kinesis_path()
    assert create_initial_leases(path, {}, dynamodb, kinesis) == 3
    table = dynamodb.describe_table(TableName=path.application_name)["Table"]
    assert table["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName="events")["Shards"]}
    written = leases_in(dynamodb, path.application_name)
    assert set(written) == set(shards)
    for shard_id, item in written.items():
        assert "leaseOwner" not in item  # KCL's leader assigns it
        assert (item["checkpoint"], item["checkpointSubSequenceNumber"]) == ({"S": "TRIM_HORIZON"}, {"N": "0"})
        assert (item["leaseCounter"], item["ownerSwitchesSinceCheckpoint"]) == ({"N": "0"}, {"N": "0"})
        hash_range = shards[shard_id]["HashKeyRange"]
        assert (item["startingHashKey"]["S"], item["endingHashKey"]["S"]) == (
            hash_range["StartingHashKey"], hash_range["EndingHashKey"])


def test_a_path_whose_table_holds_leases_is_left_to_kcl(aws):
    """A restart, or a second worker: nothing is written, and a checkpoint already taken is never reset."""
    dynamodb, kinesis = aws
    path = kinesis_path(initial_position="LATEST")
    assert create_initial_leases(path, {}, dynamodb, kinesis) == 3
    shard = sorted(leases_in(dynamodb, path.application_name))[0]
    dynamodb.update_item(TableName=path.application_name, Key={"leaseKey": {"S": shard}},
                         UpdateExpression="SET checkpoint = :c", ExpressionAttributeValues={":c": {"S": "49590"}})
    assert create_initial_leases(path, {}, dynamodb, kinesis) == 0
    assert leases_in(dynamodb, path.application_name)[shard]["checkpoint"] == {"S": "49590"}


def test_workers_starting_together_write_each_lease_once(aws, monkeypatch):
    """A second worker that found the table empty too writes only the leases still missing."""
    dynamodb, kinesis = aws
    path = kinesis_path()
    put = leases._put_if_absent
    raced: list[bool] = []

    def other_worker_first(client, table, item):
        if not raced:  # the other worker's write of this lease lands between our scan and our write
            raced.append(put(client, table, item))
        return put(client, table, item)

    monkeypatch.setattr(leases, "_put_if_absent", other_worker_first)
    assert create_initial_leases(path, {}, dynamodb, kinesis) == 2
    assert raced == [True] and len(leases_in(dynamodb, path.application_name)) == 3


def test_an_at_timestamp_path_and_a_named_lease_table_with_kcls_table_settings(aws):
    dynamodb, kinesis = aws
    path = kinesis_path(initial_position="AT_TIMESTAMP", initial_timestamp=datetime(2026, 11, 30, tzinfo=timezone.utc))
    props = {"tableName": "my-leases", "leaseTableDeletionProtectionEnabled": "true", "leaseTablePitrEnabled": "true"}
    assert create_initial_leases(path, props, dynamodb, kinesis) == 3
    assert {i["checkpoint"]["S"] for i in leases_in(dynamodb, "my-leases").values()} == {"AT_TIMESTAMP"}
    assert dynamodb.describe_table(TableName="my-leases")["Table"]["DeletionProtectionEnabled"] is True
    backups = dynamodb.describe_continuous_backups(TableName="my-leases")["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.describe_table(TableName=path.application_name)


def test_a_child_shards_lease_names_both_its_parents():
    shard = {"ShardId": "shardId-000000000003", "ParentShardId": "shardId-000000000001",
             "AdjacentParentShardId": "shardId-000000000002",
             "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "99"}}
    assert lease(shard, "TRIM_HORIZON")["parentShardId"] == {"SS": ["shardId-000000000001", "shardId-000000000002"]}
    assert "parentShardId" not in lease({"ShardId": "shardId-000000000000"}, "LATEST")


def test_a_failure_is_one_warning_and_leaves_the_leases_to_kcl(aws):
    dynamodb, kinesis = aws
    path = kinesis_path(source_kinesis_stream="missing")
    with capture_logs() as logs:
        assert create_initial_leases(path, {}, dynamodb, kinesis) == 0
    [warning] = [e for e in logs if e["event"] == "initial_leases_failed"]
    assert warning["log_level"] == "warning" and "missing" in warning["error"]
