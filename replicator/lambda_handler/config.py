"""The function's configuration: environment variables, validated once per cold start.

Each problem is one line naming the variable and the fix, logged once and raised on every invocation
until the configuration is fixed (a new deployment is a new cold start). A source table that is the
destination (``changes.self_path``: same region, table and endpoint) is such a problem: the function would
write its changes back into its source.

The replica may be in another account: ``REPLICATOR_DESTINATION_ROLE_ARN`` (with
``REPLICATOR_DESTINATION_EXTERNAL_ID``) is assumed for its writes (``replicator.credentials``, as the daemon's
destinationRoleArn), or ``REPLICATOR_DESTINATION_TABLE`` is its ARN, shared by a resource-based policy; an ARN
says its region, and a disagreeing ``REPLICATOR_DESTINATION_REGION`` is refused. keys-only records are read
through with ``REPLICATOR_SOURCE_ROLE_ARN`` likewise."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from replicator import credentials
from replicator.arns import region_for
from replicator.changes.formats import FORMAT_NAMES
from replicator.clients import is_endpoint_url
from replicator.changes.self_path import locate, onto_itself
from replicator.changes.shape import KEEP_ALL, ReplicaShape, ttl_capability
from replicator.errors import ReplicatorError

PREFIX = "REPLICATOR_"


class ConfigError(ReplicatorError):
    """An environment variable is missing or wrong."""


def side_label(n: Callable[[str], str], side: str) -> str:
    """How messages name a side's credential settings: REPLICATOR_DESTINATION (its variables), or
    --destination (lambda-local's options)."""
    return n(f"{side}_ROLE_ARN").removesuffix("_ROLE_ARN").removesuffix("-role-arn")


@dataclass(frozen=True)
class FunctionConfig:
    destination_table: str
    destination_region: str
    destination_endpoint: str | None = None
    source_format: str | None = None
    """How Kinesis records are read (dynamodb-cdc, keys-only, binlog); DynamoDB Streams events need none."""
    source_table: str | None = None
    """keys-only: the table read through; dynamodb-cdc: the one table kept from a shared stream; a DynamoDB
    stream's table, optionally (lambda-local sets it)."""
    source_region: str | None = None
    source_endpoint: str | None = None
    version_attribute: str | None = None
    shape: ReplicaShape = field(default=KEEP_ALL)
    """What the replica keeps (``changes.shape``): REPLICATOR_INCLUDE_ATTRIBUTES, _EXCLUDE_ATTRIBUTES, _FILTER
    and _TTL_DELETES."""
    destination_credentials: credentials.Credentials = credentials.DEFAULT
    source_credentials: credentials.Credentials = credentials.DEFAULT
    destination_side: str = "REPLICATOR_DESTINATION"
    """How messages name the destination's settings (``side_label``)."""
    source_side: str = "REPLICATOR_SOURCE"

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None,
                         names: Mapping[str, str] | None = None) -> "FunctionConfig":
        """The configuration from ``env``; ``names`` says how a message names each setting to its user (by
        default its variable, REPLICATOR_DESTINATION_TABLE; `replicator lambda-local`: its option)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            return (env.get(PREFIX + name) or "").strip() or None

        def n(name: str) -> str:
            return (names or {}).get(name, PREFIX + name)

        table = get("DESTINATION_TABLE")
        if table is None:
            raise ConfigError(f"{n('DESTINATION_TABLE')} is not set: set it to the replica table's name")
        if not 3 <= len(table) <= 255:
            raise ConfigError(f"{n('DESTINATION_TABLE')} {table!r} is not a table name (3 to 255 characters)")
        function_region = (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "").strip() or None
        try:
            region = region_for(table, get("DESTINATION_REGION"), n("DESTINATION_TABLE"),
                                n("DESTINATION_REGION")) or function_region
            source_region_given = region_for(get("SOURCE_TABLE") or "", get("SOURCE_REGION"), n("SOURCE_TABLE"),
                                             n("SOURCE_REGION"))
        except ReplicatorError as exc:
            raise ConfigError(str(exc)) from None
        sides = {}
        for side in ("DESTINATION", "SOURCE"):
            found = credentials.Credentials(get(f"{side}_ROLE_ARN"), get(f"{side}_EXTERNAL_ID"))
            try:
                credentials.check(found, side_label(n, side))
            except ReplicatorError as exc:
                raise ConfigError(str(exc)) from None
            sides[side] = found
        if region is None:
            raise ConfigError(f"{n('DESTINATION_REGION')} is not set, nor is AWS_REGION: set the replica's region")
        for name in ("DESTINATION_ENDPOINT", "SOURCE_ENDPOINT"):
            value = get(name)
            if value is not None and not is_endpoint_url(value):
                raise ConfigError(f"{n(name)} {value!r} is not a URL: give http(s)://host:port, or remove it")
        source_format = get("SOURCE_FORMAT")
        if source_format is not None and source_format not in FORMAT_NAMES:
            raise ConfigError(
                f"{n('SOURCE_FORMAT')} {source_format!r} is not a Kinesis record format: use one of "
                f"{', '.join(FORMAT_NAMES)}"
            )
        source_table = get("SOURCE_TABLE")
        if source_format == "keys-only" and source_table is None:
            raise ConfigError(
                f"{n('SOURCE_TABLE')} is not set, and keys-only records are read through from it: set the "
                "source table's name"
            )
        version = get("VERSION_ATTRIBUTE")
        if version is not None and source_format in ("keys-only", "binlog"):
            raise ConfigError(
                f"{n('VERSION_ATTRIBUTE')} cannot fence {source_format} records (they carry no version of the "
                "item): remove it"
            )
        source_region = source_region_given or function_region or region
        if source_table is not None:
            problem = onto_itself(locate(source_region, source_table, get("SOURCE_ENDPOINT")),
                                  locate(region, table, get("DESTINATION_ENDPOINT")))
            if problem:
                raise ConfigError(f"{n('SOURCE_TABLE')} and {n('DESTINATION_TABLE')}: {problem}")
        shape_vars = {"include_attributes": "INCLUDE_ATTRIBUTES", "exclude_attributes": "EXCLUDE_ATTRIBUTES",
                      "filter": "FILTER", "ttl_deletes": "TTL_DELETES"}
        shape_names = {f: n(v) for f, v in shape_vars.items()}
        try:
            shape = ReplicaShape.build({f: get(v) for f, v in shape_vars.items()}, shape_names)
            if source_format == "binlog":
                ttl_capability(shape, "binlog", setting=shape_names["ttl_deletes"])
        except ReplicatorError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            destination_table=table,
            destination_region=region,
            destination_endpoint=get("DESTINATION_ENDPOINT"),
            source_format=source_format,
            source_table=source_table,
            source_region=source_region,
            source_endpoint=get("SOURCE_ENDPOINT"),
            version_attribute=version,
            shape=shape,
            destination_credentials=sides["DESTINATION"],
            source_credentials=sides["SOURCE"],
            destination_side=side_label(n, "DESTINATION"),
            source_side=side_label(n, "SOURCE"),
        )
