"""A new Kinesis path's leases, created by `replicator run` before the stock MultiLangDaemon starts.

KCL 3 makes a worker that finds its lease table empty wait a random 1–30 s (not a setting) before it lists
the stream's shards and creates the leases, and then sleep ``shardSyncIntervalMillis`` once (60 s by
default). A table path's launcher skips both by running the adapter's shard syncer first (``InitialLeases``
in daemon/). A Kinesis path runs amazon-kclpy's stock daemon, which has no such hook, so this module does the
same from Python: when the lease table is missing or empty it creates the table as KCL would and writes the
leases KCL's own sync writes into an empty table. KCL, finding leases, skips its wait and its sync.

Those leases are one per shard that ListShards returns for the initial position's filter (AT_TRIM_HORIZON,
AT_LATEST or AT_TIMESTAMP), checkpointed at the position's sentinel, with the shard's parents and hash key
range; the shards after them get their leases from KCL when a parent ends, as before. Each lease is written
only if absent, so workers starting together create each lease once. Anything that fails here is logged
and left to KCL, whose own lease creation still runs: a start is never refused for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator import log
from replicator.kcl.config import ReplicationPath

_log = log.get("replicator.kcl.leases")

SHARD_FILTERS = {"TRIM_HORIZON": "AT_TRIM_HORIZON", "LATEST": "AT_LATEST", "AT_TIMESTAMP": "AT_TIMESTAMP"}


def lease_table_name(path: ReplicationPath, props: Mapping[str, str]) -> str:
    """The lease table KCL uses: ``tableName`` if the properties set one, else the path's applicationName."""
    return props.get("tableName") or path.application_name


def create_initial_leases(path: ReplicationPath, props: Mapping[str, str], dynamodb: Any, kinesis: Any) -> int:
    """Create the lease table and a new path's leases if the table holds none; return the leases written.

    Never raises for AWS's or the network's errors: it logs one warning and returns 0, and KCL creates the
    leases itself after its wait."""
    table = lease_table_name(path, props)
    try:
        if not _ensure_table(dynamodb, table, props):
            return 0
        leases = [lease(shard, path.initial_position) for shard in _initial_shards(kinesis, path)]
        written = sum(_put_if_absent(dynamodb, table, item) for item in leases)
    except (BotoCoreError, ClientError) as exc:
        _log.warning("initial_leases_failed", lease_table=table, error=str(exc),
                     consequence="KCL creates the leases itself, after its random wait of 1-30 s")
        return 0
    _log.info("initial_leases_created", lease_table=table, leases=written, shards=len(leases))
    return written


def lease(shard: Mapping[str, Any], initial_position: str) -> dict[str, Any]:
    """A shard's first lease, attribute for attribute as KCL's lease serializer writes a new lease."""
    item: dict[str, Any] = {
        "leaseKey": {"S": shard["ShardId"]},
        "leaseCounter": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": initial_position},
        "checkpointSubSequenceNumber": {"N": "0"},
    }
    parents = [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]
    if parents:
        item["parentShardId"] = {"SS": parents}
    hash_range = shard.get("HashKeyRange")
    if hash_range:
        item["startingHashKey"] = {"S": hash_range["StartingHashKey"]}
        item["endingHashKey"] = {"S": hash_range["EndingHashKey"]}
    return item


def _ensure_table(dynamodb: Any, table: str, props: Mapping[str, str]) -> bool:
    """True once the lease table exists, is active and holds no lease; creates it as KCL would if missing."""
    try:
        dynamodb.describe_table(TableName=table)
        created = False
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        created = _create_table(dynamodb, table, props)
    dynamodb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if created and _setting(props, "leaseTablePitrEnabled"):
        dynamodb.update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
    return not dynamodb.scan(TableName=table, Limit=1, ConsistentRead=True).get("Items")


def _create_table(dynamodb: Any, table: str, props: Mapping[str, str]) -> bool:
    """KCL 3's lease table: a leaseKey hash key, on demand, with deletion protection as MultiLang reads it
    (KCL adds its leaseOwner index itself). False when another worker created it first."""
    try:
        dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            DeletionProtectionEnabled=_setting(props, "leaseTableDeletionProtectionEnabled"),
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
        return False
    return True


def _setting(props: Mapping[str, str], key: str) -> bool:
    return props.get(key, "false").strip().lower() == "true"


def _initial_shards(kinesis: Any, path: ReplicationPath) -> list[dict[str, Any]]:
    """The shards KCL's sync leases first: those ListShards returns for the initial position's filter."""
    shard_filter: dict[str, Any] = {"Type": SHARD_FILTERS[path.initial_position]}
    if path.initial_timestamp is not None:
        shard_filter["Timestamp"] = path.initial_timestamp
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": path.source_kinesis_stream, "ShardFilter": shard_filter}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards += page.get("Shards", [])
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token}


def _put_if_absent(dynamodb: Any, table: str, item: dict[str, Any]) -> bool:
    try:
        dynamodb.put_item(TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
            raise
        return False
    return True
