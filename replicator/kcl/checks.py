"""Start-up checks: each problem becomes one line naming it and the fix, before Java starts."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from replicator.changes.shape import ttl_capability
from replicator.kcl.config import SETTING_NAMES, ReplicationPath
from replicator.errors import CREDENTIALS_FIX, ReplicatorError
from replicator.changes.versions import TOMBSTONE_SUFFIX

NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
READ_THROUGH_VIEWS = ("KEYS_ONLY", "OLD_IMAGE")
"""Stream views without new images: the processor reads each changed key's item from the source table."""


def describe(client: Any, table: str, what: str, not_found_fix: str, reach_fix: str) -> dict[str, Any]:
    """DescribeTable, with every expected failure turned into one line naming ``what`` and the fix."""
    try:
        return client.describe_table(TableName=table)["Table"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise ReplicatorError(f"{what} does not exist: {not_found_fix}") from None
        message = exc.response.get("Error", {}).get("Message")
        raise ReplicatorError(f"cannot describe {what}: {code}: {message}") from None
    except NoCredentialsError:
        raise ReplicatorError(f"no AWS credentials found: {CREDENTIALS_FIX}") from None
    except BotoCoreError as exc:
        raise ReplicatorError(f"cannot reach {what}: {exc}; {reach_fix}") from None


def describe_table(client: Any, region: str, table: str, role: str, option: str) -> dict[str, Any]:
    return describe(
        client,
        table,
        f"{role} table {region}/{table}",
        f"create it, or fix --{option}-table/--{option}-region",
        f"check --{option}-endpoint and the network",
    )


def check_stream(table: dict[str, Any], region: str) -> None:
    name = table["TableName"]
    spec = table.get("StreamSpecification") or {}
    if not spec.get("StreamEnabled") or not table.get("LatestStreamArn"):
        raise ReplicatorError(
            f"source table {region}/{name} has no stream enabled: enable one with `aws dynamodb update-table "
            f"--table-name {name} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`"
        )
    view = spec.get("StreamViewType")
    if view not in NEW_IMAGE_VIEWS + READ_THROUGH_VIEWS:
        raise ReplicatorError(f"source table {region}/{name} has stream view type {view}, which this version cannot read")


def key_schema(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in table["KeySchema"]]


def _show(schema: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{name} {kind} {typ}" for name, kind, typ in schema)


def check_tables(path: ReplicationPath, source_client: Any, destination_client: Any) -> dict[str, Any]:
    """A table path: raise ReplicatorError for the first problem found; return the source's description."""
    assert path.source_table is not None
    source = describe_table(source_client, path.source_region, path.source_table, "source", "source")
    check_stream(source, path.source_region)
    check_destination(path, destination_client, source)
    return source


def check_kinesis_path(path: ReplicationPath, kinesis_client: Any, source_client: Any,
                       destination_client: Any) -> tuple[str, dict[str, Any]]:
    """A Kinesis path: the stream exists and is active, the destination exists (with the source table's keys,
    when one is named); raise ReplicatorError for the first problem, return the stream's ARN and the
    destination's description."""
    name = path.source_kinesis_stream
    what = f"Kinesis stream {path.source_region}/{name}"
    try:
        summary = kinesis_client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ResourceNotFoundException":
            raise ReplicatorError(f"{what} does not exist: create it, or fix --source-kinesis-stream/--source-region") from None
        raise ReplicatorError(f"cannot describe {what}: {code}: {exc.response.get('Error', {}).get('Message')}") from None
    except NoCredentialsError:
        raise ReplicatorError(f"no AWS credentials found: {CREDENTIALS_FIX}") from None
    except BotoCoreError as exc:
        raise ReplicatorError(f"cannot reach {what}: {exc}; check --source-endpoint and the network") from None
    status = summary.get("StreamStatus")
    if status not in ("ACTIVE", "UPDATING"):
        raise ReplicatorError(f"{what} is {status}, not ACTIVE: wait until it is active, then start the path again")
    source = None
    if path.source_table is not None and path.source_format == "keys-only":
        source = describe_table(source_client, path.source_region, path.source_table, "source", "source")
    return summary["StreamARN"], check_destination(path, destination_client, source)


def check_destination(path: ReplicationPath, destination_client: Any, source: dict[str, Any] | None) -> dict[str, Any]:
    destination = describe_table(
        destination_client, path.destination_region, path.destination_table, "destination", "destination"
    )
    if source is not None and key_schema(source) != key_schema(destination):
        raise ReplicatorError(
            f"key schemas differ: source {source['TableName']} has [{_show(key_schema(source))}] but destination "
            f"{path.destination_table} has [{_show(key_schema(destination))}]; create the destination with the "
            "source's key schema"
        )
    attribute = path.fence_attribute
    reserved = {attribute, f"{attribute}{TOMBSTONE_SUFFIX}"} if attribute else set()
    clash = reserved & {name for name, _, _ in key_schema(destination)}
    if clash:
        raise ReplicatorError(
            f"versionAttribute {attribute} reserves {sorted(clash)[0]}, a key attribute of "
            f"{path.destination_table}: choose "
            "an attribute name that no item of the source uses"
        )
    return destination


def check_shape(path: ReplicationPath, destination: dict[str, Any], stream_view: str | None = None) -> str | None:
    """The path's replica shape against its tables (``changes.shape``): refuse excluding a key attribute or
    the version attribute, and a TTL setting nothing can honour; return the one line that says what
    ttlDeletes skip can do on this source, or None."""
    shape = path.shape
    names = SETTING_NAMES
    shape.check_keys([name for name, _, _ in key_schema(destination)], path.fence_attribute, names)
    source = path.source_format or "dynamodb"
    return ttl_capability(shape, source, read_through=stream_view in READ_THROUGH_VIEWS,  # type: ignore[arg-type]
                          setting=names["ttl_deletes"])
