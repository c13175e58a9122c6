"""The handler: one event to the applier, and the first record not durable back to the event source mapping.

Rules it keeps, and why:

* The same decode, squash, read-through, writer and fence as the daemon (``changes``), so both give the
  same replica. Only the translation of the event is here.
* Nothing after a record that is not durable is skipped. The answer names the first record (in stream
  order) whose change is not durable: the mapping retries from it, and records before it are done. A
  record that cannot be decoded is reported the same way, and so is a destination that refuses every
  write (missing table, access denied), each with one clear log line.
* Writes retry until a deadline short of the function's timeout, then report instead of being killed:
  a timed-out invocation would retry the whole batch, and say nothing about why.
* The configuration is read once per cold start; a wrong one fails every invocation with the same line.
  A DynamoDB stream of the destination table itself (``changes.self_path``) fails each batch, unwritten.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import structlog
from botocore.exceptions import ClientError

from replicator import clients, log
from replicator.changes.applier import Applier, PartialResult
from replicator.changes.codec import Change, RecordFormatError
from replicator.changes.formats import (
    CDC_VERSION_ATTRIBUTE,
    DynamoDBStreamRecords,
    KeySchema,
    RecordFormat,
    SourceRecord,
    key_schema_of,
    kinesis_format,
)
from replicator.changes.reader import SourceReader
from replicator.changes.self_path import locate, onto_itself
from replicator.changes.shape import ttl_capability
from replicator.changes.versions import Versioning, stream_label
from replicator.changes.writer import DeadlinePassed, TableWriter
from replicator.errors import NonRetryableWriteError, ReplicatorError, SourceReadError
from replicator.lambda_handler.config import PREFIX, ConfigError, FunctionConfig

READ_THROUGH_VIEWS = ("KEYS_ONLY", "OLD_IMAGE")
DEADLINE_MARGIN_S = 10.0
"""Time kept back from the function's remaining time to answer the mapping before Lambda stops us."""
WRITE_CONCURRENCY = 8

_log = log.get("replicator.lambda")


@dataclass(frozen=True)
class Base64Records:
    """Kinesis event data is base64 of the record's bytes; a record that is not base64 is undecodable."""

    inner: RecordFormat

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def in_order(self) -> bool:
        return self.inner.in_order

    @property
    def read_through(self) -> bool:
        return self.inner.read_through

    def decode(self, record: SourceRecord) -> list[Change]:
        try:
            data = base64.b64decode(record.data, validate=True)
        except binascii.Error:
            raise RecordFormatError(f"record {record.sequence_number}: kinesis.data is not base64") from None
        return self.inner.decode(SourceRecord(data, record.sequence_number))


@dataclass(frozen=True)
class Batch:
    source: str
    records: list[SourceRecord]
    applier: Applier


class Function:
    """What a warm function keeps between invocations: its configuration, clients and writers."""

    def __init__(self, config: FunctionConfig) -> None:
        self.config = config
        self._destination = clients.dynamodb(config.destination_region, config.destination_endpoint,
                                             pool=WRITE_CONCURRENCY * 2, validate=False, read_timeout_s=10,
                                             side=config.destination_side, credentials=config.destination_credentials)
        self._writers: dict[Versioning | None, TableWriter] = {}
        self._readers: dict[tuple[str, str], SourceReader] = {}
        self._schema: KeySchema | None = None
        self._shape_checked: set[tuple[str, ...]] = set()
        self._noted: set[str] = set()

    def batch(self, event: dict[str, Any]) -> Batch:
        """The event's records and the applier for them; raises for an event no record of which can apply."""
        records = event["Records"]
        source = records[0].get("eventSource")
        if source == "aws:dynamodb":
            return self._dynamodb_batch(records)
        if source == "aws:kinesis":
            return self._kinesis_batch(records)
        raise ReplicatorError(
            f"event source {source!r} is not aws:dynamodb or aws:kinesis: map the function to a DynamoDB or "
            "Kinesis stream only"
        )

    def _dynamodb_batch(self, records: list[dict[str, Any]]) -> Batch:
        first = records[0]
        arn = str(first.get("eventSourceARN", ""))
        config = self.config
        problem = onto_itself(locate(config.source_region or config.destination_region, arn, config.source_endpoint),
                              locate(config.destination_region, config.destination_table, config.destination_endpoint))
        if problem:
            raise ConfigError(f"the function is mapped to the stream {arn} of {PREFIX}DESTINATION_TABLE: {problem}")
        read_through = (first.get("dynamodb") or {}).get("StreamViewType") in READ_THROUGH_VIEWS
        versioning = None
        if self.config.version_attribute:
            versioning = Versioning(self.config.version_attribute, stream_label(arn))
        reader = None
        if read_through:
            # arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL names the table to read through.
            region = arn.split(":")[3] if arn.count(":") >= 5 else self.config.source_region
            table = arn.split(":table/", 1)[-1].split("/stream/", 1)[0] if ":table/" in arn else None
            if not table or not region:
                raise ReplicatorError(f"eventSourceARN {arn!r} names no table to read keys-only records through")
            reader = self._reader(region, table)
        self._check_shape(sorted((first.get("dynamodb") or {}).get("Keys") or {}), "dynamodb", read_through)
        applier = Applier(self._writer(versioning), DynamoDBStreamRecords(created_unit_ms=1000, read_through=read_through),
                          reader, shape=self.config.shape)
        sources = [SourceRecord(b"", str((r.get("dynamodb") or {}).get("SequenceNumber", "")), parsed=r)
                   for r in records]
        return Batch("aws:dynamodb", sources, applier)

    def _kinesis_batch(self, records: list[dict[str, Any]]) -> Batch:
        name = self.config.source_format
        if name is None:
            raise ConfigError(
                f"{PREFIX}SOURCE_FORMAT is not set, and Kinesis records need it: set dynamodb-cdc, keys-only or binlog"
            )
        record_format = kinesis_format(name, self._key_schema(), table=self.config.source_table)
        versioning = None
        if name == "dynamodb-cdc":
            versioning = Versioning.by_time(self.config.version_attribute or CDC_VERSION_ATTRIBUTE)
        reader = None
        if name == "keys-only":
            assert self.config.source_table is not None  # the configuration requires it
            reader = self._reader(self.config.source_region or self.config.destination_region,
                                  self.config.source_table)
        sources = [SourceRecord(str(r.get("kinesis", {}).get("data", "")).encode("ascii", "replace"),
                                str(r.get("kinesis", {}).get("sequenceNumber", ""))) for r in records]
        self._check_shape([key for key, _ in self._key_schema()], name, False)  # type: ignore[arg-type]
        return Batch("aws:kinesis", sources, Applier(self._writer(versioning), Base64Records(record_format), reader,
                                                     shape=self.config.shape))

    def _check_shape(self, key_names: list[str], source: str, read_through: bool) -> None:
        """The shape against the records' keys (once per key schema): refuse excluding a key or the version
        attribute; log once what ttlDeletes skip can do on this source."""
        shape = self.config.shape
        if tuple(key_names) not in self._shape_checked:
            names = {"exclude_attributes": f"{PREFIX}EXCLUDE_ATTRIBUTES"}
            version = self.config.version_attribute or (CDC_VERSION_ATTRIBUTE if source == "dynamodb-cdc" else None)
            try:
                shape.check_keys(key_names, version, names)
            except ReplicatorError as exc:
                raise ConfigError(str(exc)) from None
            self._shape_checked.add(tuple(key_names))
        note = ttl_capability(shape, source, read_through, setting=f"{PREFIX}TTL_DELETES")  # type: ignore[arg-type]
        if note and note not in self._noted:
            self._noted.add(note)
            _log.warning("ttl_deletes_limited", note=note)

    def _writer(self, versioning: Versioning | None) -> TableWriter:
        if versioning not in self._writers:
            self._writers[versioning] = TableWriter(self._destination, self.config.destination_table,
                                                    max_in_flight=WRITE_CONCURRENCY, versioning=versioning)
        return self._writers[versioning]

    def _reader(self, region: str, table: str) -> SourceReader:
        if (region, table) not in self._readers:
            client = clients.dynamodb(region, self.config.source_endpoint, pool=8, validate=False, read_timeout_s=10,
                                      side=self.config.source_side, credentials=self.config.source_credentials)
            self._readers[(region, table)] = SourceReader(client, table)
        return self._readers[(region, table)]

    def _key_schema(self) -> KeySchema:
        """The replica's key, which Kinesis records in plain JSON need; read once per cold start."""
        if self._schema is None:
            try:
                description = self._destination.describe_table(TableName=self.config.destination_table)["Table"]
            except ClientError as exc:
                err = exc.response.get("Error", {})
                raise NonRetryableWriteError(err.get("Code", "ClientError"), err.get("Message", str(exc))) from None
            self._schema = key_schema_of(description)
        return self._schema


_function: Function | ConfigError | None = None


def _cold_start() -> Function:
    global _function
    if _function is None:
        if not structlog.is_configured():  # the runtime's first call; a local runner has configured it
            log.configure()
        try:
            _function = Function(FunctionConfig.from_environment())
        except ConfigError as exc:
            _log.error("configuration_invalid", error=str(exc))
            _function = exc
    if isinstance(_function, ConfigError):
        raise _function
    return _function


def reset() -> None:
    """Forget the warm state, as a new cold start would (tests, ``replicator lambda-local``)."""
    global _function
    _function = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: ``{"batchItemFailures": [...]}``, empty when the whole batch is durable."""
    function = _cold_start()
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    started = time.monotonic()
    try:
        batch = function.batch(event)
    except (ReplicatorError, NonRetryableWriteError, RecordFormatError) as exc:
        first = _identifier(records[0])
        _log.error("batch_not_applied", error=str(exc), error_type=type(exc).__name__, failed_record=first,
                   records=len(records))
        return {"batchItemFailures": [{"itemIdentifier": first}]}
    partial = batch.applier.apply_partial(batch.records, _deadline(context))
    _report(batch, partial, started)
    if partial.first_not_durable is None:
        return {"batchItemFailures": []}
    return {"batchItemFailures": [{"itemIdentifier": batch.records[partial.first_not_durable].sequence_number}]}


def _identifier(record: dict[str, Any]) -> str:
    if record.get("eventSource") == "aws:kinesis":
        return str(record.get("kinesis", {}).get("sequenceNumber", ""))
    return str((record.get("dynamodb") or {}).get("SequenceNumber", ""))


def _deadline(context: Any) -> float | None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    remaining_s = remaining() / 1000
    return time.monotonic() + max(remaining_s - min(DEADLINE_MARGIN_S, remaining_s / 4), 0.0)


def _report(batch: Batch, partial: PartialResult, started: float) -> None:
    result = partial.result
    _log.info("batch_applied", source=batch.source, **result.log_fields(), of=len(batch.records),
              duration_ms=int((time.monotonic() - started) * 1000))
    if partial.first_not_durable is None:
        return
    failure = partial.failure
    failed = batch.records[partial.first_not_durable].sequence_number
    if isinstance(failure, RecordFormatError):
        _log.error("record_undecodable", sequence_number=failed, error=str(failure))
    elif isinstance(failure, SourceReadError):
        _log.error("source_refused", failed_record=failed, error=str(failure))
    elif isinstance(failure, NonRetryableWriteError):
        _log.error("destination_refused", failed_record=failed, error=str(failure))
    elif isinstance(failure, DeadlinePassed):
        _log.error("destination_unavailable", failed_record=failed, error=str(failure))
    elif isinstance(failure, ReplicatorError):  # e.g. a role that cannot be assumed: its line names it
        _log.error("batch_not_applied", failed_record=failed, error=str(failure))
    else:
        _log.error("batch_failed_unexpectedly", failed_record=failed, error=str(failure),
                   error_type=type(failure).__name__, exc_info=failure)
