"""Start-up checks: each problem becomes one line naming it and the fix, before Java starts."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from replicator.kcl.config import ReplicationPath
from replicator.errors import ReplicatorError
from replicator.changes.versions import TOMBSTONE_SUFFIX

NEW_IMAGE_VIEWS = ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")


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
        raise ReplicatorError(
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run "
            "with an instance or task role"
        ) from None
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
    if view not in NEW_IMAGE_VIEWS:
        raise ReplicatorError(
            f"source table {region}/{name} has stream view type {view}, which carries no new images: a view type "
            "cannot be changed in place, so disable the stream and enable it again with "
            "StreamViewType=NEW_AND_OLD_IMAGES (then bootstrap the replica, as the old stream's records are lost)"
        )


def key_schema(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    return [(k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?")) for k in table["KeySchema"]]


def _show(schema: list[tuple[str, str, str]]) -> str:
    return ", ".join(f"{name} {kind} {typ}" for name, kind, typ in schema)


def check_tables(path: ReplicationPath, source_client: Any, destination_client: Any) -> dict[str, Any]:
    """Raise ReplicatorError for the first problem found; return the source table's description."""
    source = describe_table(source_client, path.source_region, path.source_table, "source", "source")
    check_stream(source, path.source_region)
    destination = describe_table(
        destination_client, path.destination_region, path.destination_table, "destination", "destination"
    )
    if key_schema(source) != key_schema(destination):
        raise ReplicatorError(
            f"key schemas differ: source {path.source_table} has [{_show(key_schema(source))}] but destination "
            f"{path.destination_table} has [{_show(key_schema(destination))}]; create the destination with the "
            "source's key schema"
        )
    reserved = {path.version_attribute, f"{path.version_attribute}{TOMBSTONE_SUFFIX}"} if path.version_attribute else set()
    clash = reserved & {name for name, _, _ in key_schema(destination)}
    if clash:
        raise ReplicatorError(
            f"versionAttribute {path.version_attribute} reserves {sorted(clash)[0]}, a key attribute of "
            f"{path.destination_table}: choose "
            "an attribute name that no item of the source uses"
        )
    return source
