"""The record processor: translates the MultiLang protocol's calls (through amazon-kclpy) to the applier.

The MultiLangDaemon spawns one of these per shard with ``REPLICATOR_PROPERTIES`` naming the path's
properties file. Rules it keeps:

* checkpoint only after the whole batch is durable in the destination;
* shard_ended and shutdown_requested checkpoint; lease_lost does not (another worker owns the shard);
* a non-retryable failure logs one structured error, writes the path's stop record (``stopped``: the
  reason `status` shows) and exits non-zero without checkpointing, so the daemon stops this path (its
  other paths go on) and the records come again once the cause is fixed. (amazon-kclpy would report an
  exception as success and move on, so nothing may escape as an exception.)
* stdout carries the protocol only: it is moved to a private descriptor before anything else runs, and
  descriptor 1 then points at stderr, so a stray print or a library's output cannot corrupt the protocol.
* metrics (``metrics``) are only noted here; a thread of their own publishes them, so they can neither
  slow a batch nor stop the processor. Each lifecycle end flushes them once, after its checkpoint.
* the worker's rate-limit bucket (``ratelimit``) is left when the process ends, however it ends (stdin
  closed, a non-retryable exit), so the worker's last processor removes its file.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor as kcl_processor

from replicator import clients, log
from replicator.changes.applier import Applier
from replicator.changes.codec import RecordFormatError
from replicator.changes.formats import DynamoDBStreamRecords, KeySchema, RecordFormat, SourceRecord, kinesis_format
from replicator.changes.reader import SourceReader
from replicator.kcl.config import ReplicationPath, path_from_properties, read_properties
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.kcl import stopped
from replicator.kcl.checks import READ_THROUGH_VIEWS
from replicator.kcl.launcher import KEY_SCHEMA_ENV, STREAM_ARN_ENV, STREAM_VIEW_ENV
from replicator.kcl.ratelimit import SharedTokenBucket
from replicator.kcl.metrics import NO_METRICS, ProcessorMetrics, for_path
from replicator.changes.versions import Versioning, stream_label
from replicator.changes.writer import TableWriter

EXIT_NON_RETRYABLE = 3
CHECKPOINT_RETRIES = 5

_log = log.get("replicator.kcl.processor")


class ReplicationProcessor(kcl_processor.RecordProcessorBase):
    """KCL lifecycle calls to Applier calls; nothing else."""

    def __init__(self, applier: Applier, *, exit_fn: Any = sys.exit, sleep: Any = time.sleep,
                 metrics: ProcessorMetrics = NO_METRICS, bucket: SharedTokenBucket | None = None,
                 properties: Path | None = None) -> None:
        self._applier = applier
        self._properties = properties
        self._exit = exit_fn
        self._sleep = sleep
        self._metrics = metrics
        self._bucket = bucket
        self._shard_id = "?"

    def close(self) -> None:
        """At the process's end, however it ends: leave the worker's rate-limit bucket (the last one out
        removes its file)."""
        if self._bucket is not None:
            self._bucket.close()
            self._bucket = None

    def initialize(self, initialize_input: Any) -> None:
        self._shard_id = initialize_input.shard_id
        _log.info("shard_started", shard=self._shard_id, checkpoint=initialize_input.sequence_number)
        self._metrics.started(self._shard_id, initialize_input.sequence_number)

    def process_records(self, process_records_input: Any) -> None:
        records = process_records_input.records
        started = time.monotonic()
        try:
            result = self._applier.apply([SourceRecord(r.binary_data, r.sequence_number) for r in records])
        except (NonRetryableWriteError, RecordFormatError, ReplicatorError) as exc:  # a refused role is the last
            self._fail("batch_not_applied", exc)
            return
        except Exception as exc:  # noqa: BLE001 - anything unexpected must also stop before a checkpoint
            self._fail("batch_failed_unexpectedly", exc)
            return
        millis_behind_latest = process_records_input.millis_behind_latest
        self._metrics.batch_applied(result, millis_behind_latest)
        if result.last_sequence_number is not None:
            self._checkpoint(process_records_input.checkpointer, result.last_sequence_number)
        if records:
            _log.info("batch_applied", shard=self._shard_id, **result.log_fields(),
                      millis_behind_latest=millis_behind_latest,
                      duration_ms=int((time.monotonic() - started) * 1000))

    def lease_lost(self, lease_lost_input: Any) -> None:
        _log.info("lease_lost", shard=self._shard_id)
        self._metrics.lease_gone()
        self._metrics.close()

    def shard_ended(self, shard_ended_input: Any) -> None:
        _log.info("shard_ended", shard=self._shard_id)
        self._checkpoint(shard_ended_input.checkpointer, None)
        self._metrics.close(shard_ended=True)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        # process_records returns only after its batch is durable, so every delivered record is written.
        _log.info("shutdown_requested", shard=self._shard_id)
        self._checkpoint(shutdown_requested_input.checkpointer, None)
        self._metrics.close()

    def _checkpoint(self, checkpointer: Any, sequence_number: str | None) -> None:
        for attempt in range(CHECKPOINT_RETRIES):
            try:
                checkpointer.checkpoint(sequence_number)
                if sequence_number is not None:
                    self._metrics.checkpointed(sequence_number)
                return
            except kcl.CheckpointError as exc:
                error = str(exc.value)  # str(exc) is the repr of the exception's name
                if error in ("ShutdownException", "InvalidStateException"):
                    # The lease is gone: the next owner starts from the last checkpoint (at-least-once).
                    _log.warning("checkpoint_refused", shard=self._shard_id, error=error)
                    self._metrics.lease_gone()
                    return
                _log.warning("checkpoint_retry", shard=self._shard_id, error=error, attempt=attempt + 1)
                self._sleep(min(2**attempt * 0.2, 5))
        _log.error("checkpoint_failed", shard=self._shard_id, sequence_number=sequence_number)

    def _fail(self, event: str, exc: BaseException) -> None:
        _log.error(event, shard=self._shard_id, error=str(exc), error_type=type(exc).__name__, exc_info=exc)
        self._metrics.batch_failed()
        self._metrics.close()
        if self._properties is not None:
            stopped.record(self._properties, f"{type(exc).__name__}: {exc}", self._shard_id)
        self._exit(EXIT_NON_RETRYABLE)


def load_path() -> ReplicationPath:
    location = os.environ.get("REPLICATOR_PROPERTIES")
    if not location:
        raise ReplicatorError("REPLICATOR_PROPERTIES is not set: start the processor through `replicator run`")
    return path_from_properties(read_properties(Path(location)))


def versioning(path: ReplicationPath, stream_arn: str | None) -> Versioning | None:
    if path.source_format == "dynamodb-cdc":
        assert path.fence_attribute is not None
        return Versioning.by_time(path.fence_attribute)
    if path.version_attribute is None:
        return None
    if not stream_arn:
        raise ReplicatorError(
            f"{STREAM_ARN_ENV} is not set, and versionAttribute needs the stream's label: start the processor "
            "through `replicator run`"
        )
    return Versioning(path.version_attribute, stream_label(stream_arn))


def parse_key_schema(text: str | None) -> KeySchema:
    """``pk:S,sk:N`` (as `replicator run` passes it) to a key schema."""
    pairs = [part.partition(":") for part in (text or "").split(",") if part]
    if not pairs or any(not name or kind not in ("S", "N", "B") for name, _, kind in pairs):
        raise ReplicatorError(f"{KEY_SCHEMA_ENV}={text!r} is not a key schema: start the processor through `replicator run`")
    return tuple((name, kind) for name, _, kind in pairs)


def record_format(path: ReplicationPath, env: Mapping[str, str]) -> RecordFormat:
    """How this path's records decode: a Kinesis path's format, or a table path's stream records (read
    through when the stream's view carries no new image)."""
    if path.source_format is not None:
        return kinesis_format(path.source_format, parse_key_schema(env.get(KEY_SCHEMA_ENV)), table=path.source_table)
    return DynamoDBStreamRecords(read_through=env.get(STREAM_VIEW_ENV) in READ_THROUGH_VIEWS)


def build_processor(path: ReplicationPath, stream_arn: str | None = None,
                    env: Mapping[str, str] | None = None) -> ReplicationProcessor:
    env = os.environ if env is None else env
    client = clients.dynamodb(
        path.destination_region, path.destination_endpoint, pool=path.write_concurrency * 2, validate=False,
        credentials=path.destination_credentials,
    )
    fence = versioning(path, stream_arn)
    decoder = record_format(path, env)
    reader = None
    if decoder.read_through:
        assert path.source_table is not None
        reader = SourceReader(clients.dynamodb(path.source_region, path.source_endpoint, validate=False,
                                                   credentials=path.source_credentials), path.source_table)
    metrics = for_path(path, stream_arn)
    bucket = None  # joined last, so that no failure to start leaves this processor counted in its file
    if path.max_writes_per_second is not None:
        bucket = SharedTokenBucket.for_worker(path.application_name, path.max_writes_per_second)
    writer = TableWriter(client, path.destination_table, max_in_flight=path.write_concurrency,
                         versioning=fence, charge=bucket.take if bucket else None)
    location = env.get("REPLICATOR_PROPERTIES")
    return ReplicationProcessor(Applier(writer, decoder, reader, shape=path.shape), metrics=metrics, bucket=bucket,
                                properties=Path(location) if location else None)


def protocol_stdout() -> TextIO:
    """Keep the real stdout for the protocol alone; point descriptor 1 and sys.stdout at stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", buffering=1, encoding="utf-8")


def ignore_termination_signals() -> None:
    """The daemon, not a signal, ends a processor: SIGTERM or Ctrl-C sent to the whole process group
    (supervisord's stopasgroup, a terminal) must leave it alive to answer the daemon's shutdownRequested
    and checkpoint. When the daemon is gone, its end of stdin closes and the processor exits; SIGKILL
    still works."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    ignore_termination_signals()
    protocol_out = protocol_stdout()
    log.configure()
    try:
        processor = build_processor(load_path(), os.environ.get(STREAM_ARN_ENV))
    except ReplicatorError as exc:
        _log.error("processor_not_started", error=str(exc))
        sys.exit(2)
    try:
        kcl.KCLProcess(processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()
    finally:  # the daemon closed stdin, or a failure exits
        processor.close()
