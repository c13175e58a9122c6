"""A replication path: one source stream to one destination table, and the KCL settings that run it.

The source is a table's DynamoDB stream (a *table path*, read through our launcher and the adapter) or a
Kinesis data stream of records in one format (a *Kinesis path*, read through our launcher by a plain KCL
scheduler). The same settings live in the path's MultiLangDaemon properties file, under the Java
connector's camelCase option names, beside the standard KCL keys the launcher and the MultiLangDaemon read.

A Kinesis path's lease table is named like a table path's, with a prefix of its own
(``KINESIS_TASK_NAME_PREFIX``) and the stream in place of the source table, so the two never share one.

Each side's credentials are settings of the path too (``sourceRoleArn``, ``destinationRoleArn``, ``kclRoleArn``,
``cloudWatchRoleArn``, their external ids, ``sourceProfile``/``destinationProfile``; ``replicator.credentials``
says what they mean), and a table given by its ARN supplies its region (``replicator.arns``).

A path onto itself is invalid (``changes.self_path``, the rule the Lambda and the tools share), and so is
a ``--kcl-property`` of a key this module writes itself: the file must say what the checks saw. A command
writes the file only after every check passed (``files.check_writable`` first), so a refused one leaves the
file a supervisor runs as it was.
"""

from __future__ import annotations

import hashlib
import io
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from jproperties import Properties
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from replicator import credentials
from replicator.arns import region_for
from replicator.changes.formats import CDC_VERSION_ATTRIBUTE
from replicator.changes.self_path import locate, onto_itself
from replicator.changes.shape import ReplicaShape
from replicator.errors import ReplicatorError

TASK_NAME_PREFIX = "DynamoDBCrossRegionReplication"
KINESIS_TASK_NAME_PREFIX = "KinesisCrossRegionReplication"
SOURCE_FORMATS = ("dynamodb-cdc", "keys-only", "binlog")
PROCESSOR_EXECUTABLE = "replicator-processor"
DISPATCH_POLL_INTERVAL_MILLIS = 200

# Our settings, by their camelCase (properties and Java connector) names.
PATH_KEYS = {
    "sourceRegion": "source_region",
    "sourceTable": "source_table",
    "sourceKinesisStream": "source_kinesis_stream",
    "sourceFormat": "source_format",
    "sourceEndpoint": "source_endpoint",
    "sourceStreamsEndpoint": "source_streams_endpoint",
    "destinationRegion": "destination_region",
    "destinationTable": "destination_table",
    "destinationEndpoint": "destination_endpoint",
    "kclRegion": "kcl_region",
    "kclEndpoint": "kcl_endpoint",
    "taskName": "task_name",
    "batchSize": "batch_size",
    "parentShardPollIntervalMillis": "parent_shard_poll_interval_millis",
    "dontPublishCloudwatch": "dont_publish_cloudwatch",
    "cloudWatchEndpoint": "cloudwatch_endpoint",
    "metricsIntervalSeconds": "metrics_interval_seconds",
    "initialPosition": "initial_position",
    "initialTimestamp": "initial_timestamp",
    "maxWritesPerSecond": "max_writes_per_second",
    "writeConcurrency": "write_concurrency",
    "failoverTimeMillis": "failover_time_millis",
    "shutdownGraceMillis": "shutdown_grace_millis",
    "idleTimeBetweenReadsInMillis": "idle_time_between_reads_millis",
    "versionAttribute": "version_attribute",
    "includeAttributes": "include_attributes",
    "excludeAttributes": "exclude_attributes",
    "filter": "filter",
    "ttlDeletes": "ttl_deletes",
    # Credentials per side (``replicator.credentials``): settings only, never keys or tokens.
    "sourceRoleArn": "source_role_arn",
    "sourceExternalId": "source_external_id",
    "sourceProfile": "source_profile",
    "destinationRoleArn": "destination_role_arn",
    "destinationExternalId": "destination_external_id",
    "destinationProfile": "destination_profile",
    "kclRoleArn": "kcl_role_arn",
    "kclExternalId": "kcl_external_id",
    "cloudWatchRoleArn": "cloudwatch_role_arn",
    "cloudWatchExternalId": "cloudwatch_external_id",
}
CREDENTIAL_FIELDS = tuple(field for field in PATH_KEYS.values() if field.endswith(("_role_arn", "_external_id",
                                                                                    "_profile")))


SETTING_NAMES = {field: camel if camel == field else f"{camel} ({field.replace('_', '-')})"
                 for camel, field in PATH_KEYS.items()}
"""How a message names a path setting: its properties key and its option, e.g. ttlDeletes (ttl-deletes)."""


def task_name(source_region: str, source_table: str, destination_region: str, destination_table: str) -> str:
    """The Java connector's default taskName: the prefix and the MD5 hex of the four names joined."""
    digest = hashlib.md5(
        (source_region + source_table + destination_region + destination_table).encode("utf-8")
    ).hexdigest()
    return TASK_NAME_PREFIX + digest


def kinesis_task_name(source_region: str, stream: str, destination_region: str, destination_table: str) -> str:
    """A Kinesis path's default taskName: its own prefix, and the MD5 hex of the four names joined."""
    digest = hashlib.md5((source_region + stream + destination_region + destination_table).encode("utf-8")).hexdigest()
    return KINESIS_TASK_NAME_PREFIX + digest


class ReplicationPath(BaseModel):
    """Everything needed to replicate one table to another."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_region: str = Field(min_length=1)
    source_table: str | None = Field(default=None, min_length=3, max_length=255)
    """A table path's source; on a Kinesis path, the table keys-only records are read from, or the one
    table whose dynamodb-cdc records are kept."""
    source_kinesis_stream: str | None = Field(default=None, min_length=1, max_length=128)
    source_format: Literal["dynamodb-cdc", "keys-only", "binlog"] | None = None
    source_endpoint: str | None = None
    source_streams_endpoint: str | None = None
    destination_region: str = Field(min_length=1)
    destination_table: str = Field(min_length=3, max_length=255)
    destination_endpoint: str | None = None
    kcl_region: str | None = None
    kcl_endpoint: str | None = None
    task_name: str | None = None
    batch_size: int = Field(default=1000, ge=1, le=1000)
    parent_shard_poll_interval_millis: int = Field(default=10_000, ge=1)
    dont_publish_cloudwatch: bool = False
    """Publish no metrics at all: neither the processors' own (``metrics``) nor KCL's (metricsLevel NONE)."""
    cloudwatch_endpoint: str | None = None
    """CloudWatch endpoint override for both (e.g. `replicator local`); the launcher reads the same key."""
    metrics_interval_seconds: int = Field(default=60, ge=1, le=3600)
    """How often each processor publishes its metrics. 60 s on AWS (CloudWatch's standard resolution);
    shorter only for tests and local trials."""
    initial_position: Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"] = "TRIM_HORIZON"
    initial_timestamp: datetime | None = None
    """Where AT_TIMESTAMP starts a new lease (Kinesis paths: a replay from a point in time)."""
    max_writes_per_second: float | None = Field(default=None, gt=0)
    """Cap on the items each worker writes per second, across its shards (a lazy replica)."""
    write_concurrency: int = Field(default=8, ge=1, le=64)
    failover_time_millis: int = Field(default=10_000, ge=1000)
    shutdown_grace_millis: int = Field(default=30_000, ge=1000)
    idle_time_between_reads_millis: int = Field(default=500, ge=1)
    version_attribute: str | None = Field(default=None, max_length=200)
    """Keep each replica item's replication version in this attribute, and write only over older ones
    (see ``versions``); off by default, so that the replica holds exactly the source's attributes."""
    include_attributes: str | None = None
    exclude_attributes: str | None = None
    filter: str | None = None
    ttl_deletes: str | None = None
    """The replica's shape (``changes.shape``): projection, item filter, TTL expiries; as given, checked by
    the shape's own rules, and read as one :attr:`shape`."""

    source_role_arn: str | None = None
    source_external_id: str | None = None
    source_profile: str | None = None
    destination_role_arn: str | None = None
    destination_external_id: str | None = None
    destination_profile: str | None = None
    kcl_role_arn: str | None = None
    """The lease table's role (default: the source's credentials, as its region defaults to the source's)."""
    kcl_external_id: str | None = None
    cloudwatch_role_arn: str | None = None
    """The metrics' role (default: the source's credentials)."""
    cloudwatch_external_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _regions_from_arns(cls, values: Any) -> Any:
        """A table given as an ARN says its region (``arns``); a disagreeing region setting is refused."""
        if not isinstance(values, dict):
            return values
        values = dict(values)
        for side in ("source", "destination"):
            table = values.get(f"{side}_table")
            if isinstance(table, str):
                region = region_for(table, values.get(f"{side}_region") or None, f"{side}Table ({side}-table)",
                                    f"{side}Region ({side}-region)")
                if region is not None:
                    values[f"{side}_region"] = region
        return values

    @field_validator(
        "source_endpoint", "source_streams_endpoint", "destination_endpoint", "kcl_endpoint", "task_name",
        "version_attribute", "cloudwatch_endpoint", "include_attributes", "exclude_attributes", "filter",
        "ttl_deletes", *CREDENTIAL_FIELDS,
    )
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _one_source(self) -> "ReplicationPath":
        if self.source_kinesis_stream is None:
            if self.source_table is None:
                raise ValueError("sourceTable (source-table) is required: name the source table, or a "
                                 "--source-kinesis-stream with its --source-format")
            if self.source_format is not None:
                raise ValueError("sourceFormat (source-format) is for Kinesis paths: add --source-kinesis-stream, or drop it")
            if self.initial_position == "AT_TIMESTAMP":
                raise ValueError("initialPosition (initial-position) AT_TIMESTAMP is for Kinesis paths: DynamoDB "
                                 "streams start at TRIM_HORIZON or LATEST")
        else:
            if self.source_format is None:
                raise ValueError("sourceFormat (source-format) is required with a Kinesis stream: "
                                 f"choose {', '.join(SOURCE_FORMATS)}")
            if self.source_format == "keys-only" and self.source_table is None:
                raise ValueError("sourceTable (source-table) is required for keys-only records: the table they "
                                 "are read from")
            if self.version_attribute and self.source_format != "dynamodb-cdc":
                raise ValueError(f"versionAttribute (version-attribute) cannot fence {self.source_format} records "
                                 "(they carry no version of the item): drop it")
        self.check_credentials()
        if (self.initial_position == "AT_TIMESTAMP") != (self.initial_timestamp is not None):
            raise ValueError("initialTimestamp (initial-timestamp) goes with initialPosition AT_TIMESTAMP, and only "
                             "with it: give both, e.g. --initial-position AT_TIMESTAMP --initial-timestamp 2026-11-30T10:00:00Z")
        if self.source_table is not None:
            problem = onto_itself(locate(self.source_region, self.source_table, self.source_endpoint),
                                  locate(self.destination_region, self.destination_table, self.destination_endpoint))
            if problem:
                raise ValueError(problem)
        try:
            self.shape  # noqa: B018 - the shape's own rules check its settings
        except ReplicatorError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def shape(self) -> ReplicaShape:
        """What the replica keeps of its source (``changes.shape``)."""
        return ReplicaShape.build(
            {"include_attributes": self.include_attributes, "exclude_attributes": self.exclude_attributes,
             "filter": self.filter, "ttl_deletes": self.ttl_deletes},
            SETTING_NAMES,
        )

    @field_validator("initial_timestamp")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)  # an ISO time without a zone is UTC
        return value

    @property
    def is_kinesis(self) -> bool:
        return self.source_kinesis_stream is not None

    @property
    def source_name(self) -> str:
        """What the path reads: the source table, or the Kinesis stream (for logs and metrics)."""
        name = self.source_kinesis_stream if self.source_kinesis_stream is not None else self.source_table
        assert name is not None  # the validator requires one
        return name

    @property
    def fence_attribute(self) -> str | None:
        """The version fence's attribute: the given one, or for dynamodb-cdc (which needs it) the default."""
        if self.source_format == "dynamodb-cdc":
            return self.version_attribute or CDC_VERSION_ATTRIBUTE
        return self.version_attribute

    @property
    def application_name(self) -> str:
        """The lease and checkpoint table: the derived taskName, or the prefix plus a given one."""
        if self.source_kinesis_stream is not None:
            if self.task_name:
                return KINESIS_TASK_NAME_PREFIX + self.task_name
            return kinesis_task_name(self.source_region, self.source_kinesis_stream, self.destination_region,
                                     self.destination_table)
        assert self.source_table is not None
        if self.task_name:
            return TASK_NAME_PREFIX + self.task_name
        return task_name(self.source_region, self.source_table, self.destination_region, self.destination_table)

    @property
    def source_credentials(self) -> credentials.Credentials:
        return credentials.of(self.__dict__, "source")

    @property
    def destination_credentials(self) -> credentials.Credentials:
        return credentials.of(self.__dict__, "destination")

    @property
    def lease_credentials(self) -> credentials.Credentials:
        """The kcl side's role (from the source's profile, if any), else the source's credentials."""
        own = credentials.of(self.__dict__, "kcl")
        if own.is_default:
            return self.source_credentials
        return credentials.Credentials(own.role_arn, own.external_id, self.source_profile)

    @property
    def cloudwatch_credentials(self) -> credentials.Credentials:
        own = credentials.of(self.__dict__, "cloudwatch")
        if own.is_default:
            return self.source_credentials
        return credentials.Credentials(own.role_arn, own.external_id, self.source_profile)

    def check_credentials(self) -> None:
        """Each side's settings are well formed (one line naming the option), before any request."""
        for side, found in (("source", self.source_credentials), ("destination", self.destination_credentials),
                            ("kcl", credentials.of(self.__dict__, "kcl")),
                            ("cloudwatch", credentials.of(self.__dict__, "cloudwatch"))):
            credentials.check(found, side)

    @property
    def lease_region(self) -> str:
        return self.kcl_region or self.source_region

    @property
    def lease_endpoint(self) -> str | None:
        return self.kcl_endpoint or self.source_endpoint

    def to_properties(self) -> dict[str, str]:
        """Our keys plus the standard MultiLangDaemon keys they imply."""
        props: dict[str, str] = {}
        for camel, field_name in PATH_KEYS.items():
            value = getattr(self, field_name)
            if value is None:
                continue
            if isinstance(value, bool):
                props[camel] = str(value).lower()
            elif isinstance(value, datetime):
                props[camel] = value.isoformat()
            else:
                props[camel] = str(value)
        props.update(
            {
                "executableName": PROCESSOR_EXECUTABLE,
                "applicationName": self.application_name,
                "streamName": self.source_name,
                "regionName": self.lease_region,
                "AwsCredentialsProvider": "DefaultCredentialsProvider",
                "initialPositionInStream": self.initial_position,
                "maxRecords": str(self.batch_size),
                "metricsLevel": "NONE" if self.dont_publish_cloudwatch else "SUMMARY",
                "processingLanguage": "python/3",
            }
        )
        if self.is_kinesis:
            # MultiLangDaemon keys our launcher reads for a Kinesis path as the stock daemon did: polling (not
            # enhanced fan-out, which needs a consumer registered per application), and its endpoint overrides.
            props["retrievalMode"] = "POLLING"
            if self.initial_timestamp is not None:
                del props["initialPositionInStream"]
                props["initialPositionInStreamExtended"] = str(int(self.initial_timestamp.timestamp()))
            if self.source_endpoint:
                props["kinesisEndpoint"] = self.source_endpoint
            if self.lease_endpoint:
                props["dynamoDBEndpoint"] = self.lease_endpoint
            if self.cloudwatch_endpoint:
                props["cloudWatchClient.endpointOverride"] = self.cloudwatch_endpoint
        # The launcher's own key (see daemon/): KCL's scheduler loop turns every 1 s by default, and a
        # shard consumer waits one turn per state on its way to the first batch; a turn only reads this
        # worker's leases in memory, so a faster one costs no request.
        props["shardConsumerDispatchPollIntervalMillis"] = str(DISPATCH_POLL_INTERVAL_MILLIS)
        # The launcher falls back from sourceStreamsEndpoint and kclEndpoint to sourceEndpoint itself,
        # so that editing sourceEndpoint in the file moves all three.
        return props

    def properties_bytes(self, extra: dict[str, str] | None = None) -> bytes:
        """The properties file's content: the same bytes for the same path (no timestamp), so a rewrite of an
        unchanged path can be told apart from a changed one (`replicator discover`)."""
        props = Properties()
        for key, value in {**self.to_properties(), **(extra or {})}.items():
            props[key] = value
        out = io.BytesIO()
        props.store(out, initial_comments=f"Replication path {self.source_region}/{self.source_name} -> "
                    f"{self.destination_region}/{self.destination_table}; written by `replicator run`.",
                    timestamp=False, encoding="utf-8")
        return out.getvalue()

    def write_properties(self, path: Path, extra: dict[str, str] | None = None) -> None:
        """Write the file, creating its directory; callers check it with files.check_writable before any other step."""
        content = self.properties_bytes(extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            out.write(content)


def check_task_name_option(value: str | None) -> None:
    """A given --task-name names something: blank in a properties file means unset, but given empty it is a
    mistake (the lease table would silently be the derived one)."""
    if value is not None and not value.strip():
        raise ReplicatorError("--task-name is empty: give the lease table's name after the prefix, or drop the option")


DERIVED_KEYS = {
    "applicationName": "taskName",
    "streamName": "sourceTable",
    "regionName": "kclRegion",
    "initialPositionInStream": "initialPosition",
    "initialPositionInStreamExtended": "initialTimestamp",
    "maxRecords": "batchSize",
    "metricsLevel": "dontPublishCloudwatch",
    "kinesisEndpoint": "sourceEndpoint",
    "dynamoDBEndpoint": "kclEndpoint",
    "cloudWatchClient.endpointOverride": "cloudWatchEndpoint",
}
"""The standard keys ``to_properties`` writes from a path setting, and that setting."""
FIXED_KEYS = ("executableName", "processingLanguage", "AwsCredentialsProvider", "retrievalMode")
"""The standard keys ``to_properties`` writes with one value, which the processors and launcher rely on."""


def parse_kcl_properties(settings: tuple[str, ...] | list[str], *, path_keys: tuple[str, ...] = (),
                         options: dict[str, str] | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """``--kcl-property KEY=VALUE`` options: (the path settings among them, by field name; the other keys).

    A key the tool writes itself (a path key, or one of DERIVED_KEYS or FIXED_KEYS) is refused with one
    line naming the option that sets it (from ``options``, else `replicator run`'s), so that the file
    never says other than what the checks saw. ``path_keys`` are path keys the command has no option
    for: they are path settings, validated with the others."""
    path_values: dict[str, str] = {}
    extra: dict[str, str] = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            raise ReplicatorError(f"--kcl-property {setting!r} is not KEY=VALUE, e.g. --kcl-property maxLeasesForWorker=10")
        if key in path_keys:
            path_values[PATH_KEYS[key]] = value
            continue
        if key in FIXED_KEYS:
            raise ReplicatorError(f"--kcl-property {key}: the tool writes {key} itself, and it cannot be changed; "
                                  "drop it")
        setting_key = DERIVED_KEYS.get(key, key)
        if setting_key in PATH_KEYS:
            option = (options or {}).get(setting_key) or f"--{PATH_KEYS[setting_key].replace('_', '-')}"
            raise ReplicatorError(f"--kcl-property {key}: the tool writes {key} itself; use {option} instead")
        extra[key] = value
    return path_values, extra


def read_properties(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise ReplicatorError(f"properties file {path} not found: check the path, or write one with `replicator run`")
    props = Properties()
    try:
        with open(path, "rb") as src:
            props.load(src, "utf-8")
    except UnicodeDecodeError:
        # The file is read as UTF-8 (what `replicator run` writes); an old Java file may be ISO-8859-1.
        raise ReplicatorError(f"properties file {path} is not UTF-8 text: save it as UTF-8 (from ISO-8859-1: "
                              "iconv -f ISO-8859-1 -t UTF-8)") from None
    return {key: props[key].data for key in props}


def path_from_properties(props: dict[str, str], source: str = "properties") -> ReplicationPath:
    values = {PATH_KEYS[key]: value for key, value in props.items() if key in PATH_KEYS}
    path = build_path(values, source)
    # The daemon names its lease table after applicationName; `status` and the tools derive it from the
    # path. An edited file where the two disagree would split one path over two lease tables.
    given = props.get("applicationName")
    if given is not None and given != path.application_name:
        raise ReplicatorError(
            f"{source}: applicationName {given} is not this path's lease table {path.application_name}: "
            f"set taskName (the part after {TASK_NAME_PREFIX}) instead, or remove applicationName"
        )
    return path


def build_path(values: dict[str, object], source: str = "options") -> ReplicationPath:
    """Validate settings into a ReplicationPath, or raise one clear line naming the bad setting."""
    try:
        return ReplicationPath(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        if not err["loc"]:  # a rule across settings (the model's validator) names them in its message
            raise ReplicatorError(f"invalid {source}: {err['msg'].removeprefix('Value error, ')}") from None
        field_name = str(err["loc"][0])
        camel = next((c for c, f in PATH_KEYS.items() if f == field_name), field_name)
        raise ReplicatorError(f"invalid {source}: {camel} ({field_name.replace('_', '-')}): {err['msg']}") from None
