"""CLI commands of the table tools; `replicator.cli` adds each command in TOOL_COMMANDS to the group.

Tables are written ``region/table`` or as a table ARN. The first table (source, primary) is reached at
--source-endpoint, the second (destination, replica) at --destination-endpoint; both also take the Java
connector's camelCase spelling. Each side's credentials (--source-role-arn, --destination-profile, ...)
come from one decorator, ``cli.sides.with_credentials``. Backups live at s3://bucket/prefix (S3 reached at --s3-endpoint) or in a directory.
Human summaries go to stdout, structured logs to stderr; with --json the last line of stdout is one JSON
object. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from replicator import log
from replicator.cli.shape import shape_from, shape_options
from replicator.files import check_writable
from replicator.kcl.config import check_task_name_option, parse_kcl_properties
from replicator.kcl.launcher import stop_daemon
from replicator.errors import ReplicatorError, friendly_errors
from replicator.cli.sides import side, with_credentials

TOOL_COMMANDS: list[click.Command] = []


def _command(func: click.Command) -> click.Command:
    TOOL_COMMANDS.append(func)
    return func


source_endpoint_option = click.option(
    "--source-endpoint", "--sourceEndpoint", "source_endpoint", metavar="URL", help="Endpoint of the first table.")
destination_endpoint_option = click.option(
    "--destination-endpoint", "--destinationEndpoint", "destination_endpoint", metavar="URL",
    help="Endpoint of the second table (`replicator local`, or any DynamoDB endpoint).")
s3_endpoint_option = click.option(
    "--s3-endpoint", metavar="URL", default=None,
    help="Endpoint of S3 for an s3:// URL (`replicator local`, or any S3-compatible endpoint).")


def endpoint_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return source_endpoint_option(destination_endpoint_option(func))


def segment_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--segment", type=int, default=None, metavar="I",
                        help="Run only segment I (0 to N-1) of --segments N, e.g. one per machine.")(func)
    func = click.option("--segments", type=int, default=None, metavar="N",
                        help="Split the scan into N parallel segments.")(func)
    return func


read_units_option = click.option("--read-units", type=click.FloatRange(0, min_open=True), default=None,
                                 help="Read capacity units per second to consume at most from the source table.")
write_units_option = click.option("--write-units", type=click.FloatRange(0, min_open=True), default=None,
                                  help="Write capacity units per second to consume at most in the destination table.")
resume_option = click.option("--resume", is_flag=True, help="Continue an interrupted run from its state file.")
in_flight_option = click.option("--in-flight", type=click.IntRange(1, 64), default=8, show_default=True,
                                help="BatchWriteItem requests in flight.")


def state_file_option(default: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--state-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                        help=f"Where each segment's position is kept. [default: {default}]")


def copy_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The copy's rate limits, page size and state file: copy-table's, and bootstrap's for its copy."""
    for decorate in reversed([
        read_units_option,
        write_units_option,
        resume_option,
        state_file_option(".copy-table.<tables>[.segment-I].json"),
        click.option("--page-size", type=click.IntRange(1, 10000), default=None,
                     help="Items per Scan page (Scan's Limit; a page is also at most 1 MB). [default: 250]"),
    ]):
        func = decorate(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
version_option = click.option(
    "--version-attribute", "--versionAttribute", "version_attribute", metavar="NAME", default=None,
    help="The replica is kept by a path with this versionAttribute: ignore the attribute, and read tombstones "
         "as deleted items.")


def _emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, sort_keys=True))


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``kill``, a container's stop), handled as Ctrl-C is."""


@contextlib.contextmanager
def _resumable(what: str) -> Any:
    """Around a resumable job (copy-table, restore-table): Ctrl-C or SIGTERM stops it the same way, each
    segment after the page it is handling, and prints the --resume hint; exit status 130 for SIGINT, 143
    (128 + 15) for SIGTERM, as a shell reports them."""

    def terminated(*_: Any) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    except KeyboardInterrupt as exc:
        click.echo(f"replicator: interrupted: run the same command with --resume to continue {what}", err=True)
        sys.exit(143 if isinstance(exc, _Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@_command
@click.command("diff-tables")
@click.argument("primary", metavar="PRIMARY")
@click.argument("replica", metavar="REPLICA")
@endpoint_options
@segment_options
@click.option("--repair", is_flag=True, help="Make the replica match: put missing and different items, delete extraneous ones.")
@click.option("--backfill", is_flag=True, help="Only put every primary item into the replica, without comparing.")
@click.option("--page-size", type=click.IntRange(1, 10000), default=None, help="Items per Scan page (Scan's Limit).")
@version_option
@shape_options()
@json_option
@friendly_errors
@with_credentials("source", "destination")
def diff_tables_command(primary: str, replica: str, source_endpoint: str | None, destination_endpoint: str | None,
                        segments: int | None, segment: int | None, repair: bool, backfill: bool,
                        page_size: int | None, version_attribute: str | None, as_json: bool, sides: Any,
                        **shaping: Any) -> None:
    """Compare PRIMARY with REPLICA (region/table or table ARN each): missing, different and extraneous items.

    Exit status 0 when the tables are equal (or --repair made them so), 1 while discrepancies remain,
    2 on bad input.
    """
    from replicator.tables.diff import diff_tables, sample_lines, summary
    from replicator.errors import ReplicatorError
    from replicator.tables.spec import check_segments, open_table

    log.configure()
    shape = shape_from(shaping)
    if repair and backfill:
        raise ReplicatorError("--repair and --backfill exclude each other: --backfill only copies, --repair compares and fixes")
    check_segments(segment, segments)
    p = open_table(primary, source_endpoint, side="source", credentials=side(sides, "source"))
    r = open_table(replica, destination_endpoint, side="destination", credentials=side(sides, "destination"))
    result = diff_tables(p, r, repair=repair, backfill=backfill, segment=segment, segments=segments, page_size=page_size,
                         version_attribute=version_attribute, shape=shape)
    click.echo(summary(result, p, r))
    for line in sample_lines(result):
        click.echo(line)
    if as_json:
        _emit_json(result.as_json())
    sys.exit(1 if result.unrepaired else 0)


def record_arguments(func: Callable[..., Any]) -> Callable[..., Any]:
    """PRIMARY REPLICA KEY, the endpoints, --version-attribute and --json, for the single-record commands."""
    for decorate in reversed([
        click.argument("primary", metavar="PRIMARY"),
        click.argument("replica", metavar="REPLICA"),
        click.argument("key", metavar="KEY"),
        endpoint_options,
        version_option,
        shape_options(),
        json_option,
        friendly_errors,
        with_credentials("source", "destination"),
    ]):
        func = decorate(func)
    return func


def _record_tables(primary: str, replica: str, key: str, source_endpoint: str | None, destination_endpoint: str | None,
                   sides: Any):  # noqa: ANN202
    from replicator.tables.spec import open_table, parse_key

    p = open_table(primary, source_endpoint, side="source", credentials=side(sides, "source"))
    r = open_table(replica, destination_endpoint, side="destination", credentials=side(sides, "destination"))
    return p, r, parse_key(key, p)


@_command
@click.command("diff-record")
@record_arguments
def diff_record_command(primary: str, replica: str, key: str, source_endpoint: str | None,
                        destination_endpoint: str | None, version_attribute: str | None, as_json: bool,
                        sides: Any, **shaping: Any) -> None:
    """Compare one item, by KEY (plain JSON or DynamoDB JSON), in PRIMARY and REPLICA.

    Exit status 0 when both are alike (or both absent), 1 when they differ, 2 on bad input.
    """
    from replicator.tables.records import diff_record

    log.configure()
    shape = shape_from(shaping)
    p, r, parsed = _record_tables(primary, replica, key, source_endpoint, destination_endpoint, sides)
    result = diff_record(p, r, parsed, version_attribute, shape)
    payload = result.as_json()
    click.echo(f"{result.status}: {json.dumps(payload['key'], sort_keys=True)}")
    if result.status != "equal" or as_json:
        click.echo(f"  primary: {json.dumps(payload['primary'], sort_keys=True)}")
        click.echo(f"  replica: {json.dumps(payload['replica'], sort_keys=True)}")
    if as_json:
        _emit_json(payload)
    sys.exit(0 if result.status == "equal" else 1)


@_command
@click.command("replicate-record")
@record_arguments
def replicate_record_command(primary: str, replica: str, key: str, source_endpoint: str | None,
                             destination_endpoint: str | None, version_attribute: str | None, as_json: bool,
                             sides: Any, **shaping: Any) -> None:
    """Copy one item, by KEY, from PRIMARY to REPLICA (or delete it there if PRIMARY has none; with the shape
    options, as the replica keeps it: projected, or deleted there when filtered out or expired)."""
    from replicator.tables.records import replicate_record

    log.configure()
    shape = shape_from(shaping)
    p, r, parsed = _record_tables(primary, replica, key, source_endpoint, destination_endpoint, sides)
    result = replicate_record(p, r, parsed, version_attribute, shape)
    click.echo(f"{result.action}: {json.dumps(result.as_json()['key'], sort_keys=True)} (was {result.before.status})")
    if as_json:
        _emit_json(result.as_json())


@_command
@click.command("copy-table")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@endpoint_options
@segment_options
@copy_options
@in_flight_option
@shape_options()
@json_option
@friendly_errors
@with_credentials("source", "destination")
def copy_table_command(source: str, destination: str, source_endpoint: str | None, destination_endpoint: str | None,
                       segments: int | None, segment: int | None, read_units: float | None, write_units: float | None,
                       resume: bool, state_file: Path | None, page_size: int | None, in_flight: int,
                       as_json: bool, sides: Any, **shaping: Any) -> None:
    """Copy every item of SRC into DST (region/table or table ARN each), with a parallel Scan and BatchWriteItem.

    Prints an estimate first, and warns when the copy would outlast a stream's 24-hour retention.
    Interrupted (crash, Ctrl-C), it continues with --resume, re-copying at most one page per segment.
    """
    from replicator.tables.copy import copy_table, estimate
    from replicator.tables.spec import check_not_onto_itself, check_same_keys, check_segments, open_table

    log.configure()
    shape = shape_from(shaping)
    check_segments(segment, segments)
    check_not_onto_itself(source, source_endpoint, destination, destination_endpoint)
    src = open_table(source, source_endpoint, side="source", credentials=side(sides, "source"))
    dst = open_table(destination, destination_endpoint, side="destination", credentials=side(sides, "destination"))
    check_same_keys(src, dst)
    shape.check_keys(src.key_names)
    for line in estimate(src, dst, write_units).lines():
        click.echo(line, err=line.startswith("warning"))
    with _resumable("the copy"):
        result = copy_table(src, dst, segments=segments, segment=segment, read_units=read_units,
                            write_units=write_units, state_path=state_file, resume=resume, page_size=page_size,
                            max_in_flight=in_flight, shape=shape)
    click.echo(f"Copied {result.copied} items from {src.spec} to {dst.spec} in {result.seconds:.1f} s "
               f"({result.items_per_s:,.0f} items/s, segments {len(result.segments_run)} of {result.segments})"
               + (f"; {result.left_out} left out (filtered or expired)" if result.left_out else ""))
    if as_json:
        _emit_json(result.as_json())


@_command
@click.command("backup-table")
@click.argument("table", metavar="TABLE")
@click.argument("url", metavar="URL")
@source_endpoint_option
@s3_endpoint_option
@segment_options
@read_units_option
@click.option("--jobid", default=None, metavar="ID",
              help="Name of the backup under URL; the same on every machine of a --segment backup. [default: random]")
@click.option("--overwrite", is_flag=True, help="Replace what the jobid already holds at URL.")
@shape_options()
@json_option
@friendly_errors
@with_credentials("source", "s3")
def backup_table_command(table: str, url: str, source_endpoint: str | None, s3_endpoint: str | None,
                         segments: int | None, segment: int | None, read_units: float | None, jobid: str | None,
                         overwrite: bool, as_json: bool, sides: Any, **shaping: Any) -> None:
    """Back TABLE (region/table) up to URL: s3://bucket/prefix, a directory, or file:///path.

    Each scan segment becomes URL/<jobid>/<segment> (gzip, a line {"Item": ...} of DynamoDB JSON per item,
    as DynamoDB's exports, so ImportTable reads the folder), and URL/<jobid>.manifest.json is written last:
    a backup without it is incomplete. With --segment I the run that finishes last writes the manifest.
    """
    from replicator.tables.backup import backup_table, check_jobid, new_jobid
    from replicator.tables.spec import check_segments, open_table

    log.configure()
    shape = shape_from(shaping)
    check_segments(segment, segments)
    jobid = jobid or new_jobid()
    check_jobid(jobid)
    src = open_table(table, source_endpoint, side="source", credentials=side(sides, "source"))
    click.echo(f"Backup job {jobid} of {src.spec} to {url}")
    try:
        result = backup_table(src, url, jobid=jobid, segments=segments, segment=segment, read_units=read_units,
                              s3_endpoint=s3_endpoint, overwrite=overwrite, shape=shape,
                              s3_credentials=side(sides, "s3"))
    except KeyboardInterrupt:
        click.echo(f"replicator: interrupted: backup {jobid} is incomplete (no manifest); run it again with "
                   "--overwrite", err=True)
        sys.exit(130)
    click.echo(f"Backed up {result.items} items ({result.bytes:,} bytes gzip) of {src.spec} to {result.url} in "
               f"{result.seconds:.1f} s ({result.items_per_s:,.0f} items/s, segments {len(result.segments_run)} of "
               f"{result.segments})")
    click.echo(f"Complete: {result.manifest}" if result.complete else
               "Not complete yet: the manifest is written by the run that finishes the last segment")
    if as_json:
        _emit_json(result.as_json())


@_command
@click.command("restore-table")
@click.argument("url", metavar="URL/JOBID")
@click.argument("table", metavar="TABLE")
@destination_endpoint_option
@s3_endpoint_option
@write_units_option
@in_flight_option
@resume_option
@state_file_option(".restore-table.<jobid>.<region>.<table>.json")
@click.option("--force", is_flag=True, help="Restore into a table that already holds items.")
@json_option
@friendly_errors
@with_credentials("destination", "s3")
def restore_table_command(url: str, table: str, destination_endpoint: str | None, s3_endpoint: str | None,
                          write_units: float | None, in_flight: int, resume: bool, state_file: Path | None,
                          force: bool, as_json: bool, sides: Any) -> None:
    """Write the backup at URL/JOBID (backup-table's, a DynamoDB JSON full export's
    .../AWSDynamoDB/<export id>, or a mapbox dynamodb-replicator backup-table's prefix/<jobid>) into TABLE
    (region/table).

    The manifest is checked first (a missing or damaged segment is an error naming it), and the keys
    against TABLE's key schema. Interrupted, it continues with --resume. A TABLE that holds items needs
    --force.
    """
    from replicator.tables.restore import restore_table
    from replicator.tables.spec import open_table

    log.configure()
    dst = open_table(table, destination_endpoint, side="destination", credentials=side(sides, "destination"))
    with _resumable("the restore"):
        result = restore_table(url, dst, s3_endpoint=s3_endpoint, write_units=write_units, max_in_flight=in_flight,
                               resume=resume, force=force, state_path=state_file, s3_credentials=side(sides, "s3"))
    click.echo(f"Restored {result.restored} items from {result.url} ({result.kind}) into {dst.spec} in "
               f"{result.seconds:.1f} s ({result.items_per_s:,.0f} items/s, segments {len(result.segments_run)} of "
               f"{result.segments})")
    if as_json:
        _emit_json(result.as_json())


@_command
@click.command("bootstrap")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@endpoint_options
@click.option("--load", "load", type=click.Choice(["scan", "export"]), default="scan", show_default=True,
              help="How the table is loaded while the path runs: a parallel Scan, or a point-in-time export.")
@segment_options
@copy_options
@click.option("--export-bucket", metavar="s3://BUCKET[/PREFIX]", default=None,
              help="--load export: export SRC there (ExportTableToPointInTime; PITR on SRC) and load the export.")
@click.option("--export", "export", metavar="URL", default=None,
              help="--load export: load this existing export (s3://.../AWSDynamoDB/<export id>) instead.")
@s3_endpoint_option
@click.option("--source-kinesis-stream", "--sourceKinesisStream", "kinesis_stream", metavar="STREAM", default=None,
              help="Replicate SRC's Kinesis streaming destination (dynamodb-cdc records) instead of its DynamoDB "
                   "stream, from --start-at; with --load export.")
@click.option("--source-format", "--sourceFormat", "source_format",
              type=click.Choice(["dynamodb-cdc", "keys-only", "binlog"]), default=None,
              help="The Kinesis stream's records: a bootstrap takes dynamodb-cdc only. [default: dynamodb-cdc]")
@click.option("--start-at", metavar="TIME", default=None,
              help="--source-kinesis-stream: start the path AT_TIMESTAMP TIME (ISO 8601), at or before the "
                   "export's time. [default: the export's time; with --export-bucket, now]")
@click.option("--task-name", "--taskName", "task_name", default=None, help="Name of the lease table after the prefix.")
@click.option("--write-properties", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Where to write the path's properties file. [default: properties/<taskName>.properties]")
@click.option("--kcl-property", "kcl_properties", multiple=True, metavar="KEY=VALUE",
              help="Any other property for the file (repeatable), as with `replicator run`.")
@click.option("--daemon-log", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Append the daemon's output to this file. [default: this command's stdout]")
@click.option("--start-timeout", type=click.FloatRange(0), default=600, show_default=True,
              help="Seconds the path may take to start on every shard before the load begins.")
@click.option("--check-timeout", type=click.FloatRange(0), default=600, show_default=True,
              help="Seconds to wait for the replica to equal the source after the load.")
@click.option("--exit-after-check", is_flag=True,
              help="Stop the daemon (SIGTERM) after the check; by default it keeps running in the foreground.")
@click.option("--version-attribute", "--versionAttribute", "version_attribute", metavar="NAME",
              default="replicator_version", show_default=True,
              help="The path's versionAttribute (see `replicator run --help`): a bootstrap's path is always fenced.")
@shape_options(ttl=True)
@json_option
@friendly_errors
@with_credentials("source", "destination", "kcl", "cloudwatch", "s3")
def bootstrap_command(source: str, destination: str, source_endpoint: str | None, destination_endpoint: str | None,
                      load: str, segment: int | None, segments: int | None, read_units: float | None,
                      write_units: float | None, page_size: int | None, resume: bool, state_file: Path | None,
                      export_bucket: str | None, export: str | None, s3_endpoint: str | None,
                      kinesis_stream: str | None, source_format: str | None, start_at: str | None,
                      task_name: str | None, write_properties: Path | None, kcl_properties: tuple[str, ...],
                      daemon_log: Path | None, start_timeout: float, check_timeout: float, exit_after_check: bool,
                      version_attribute: str, as_json: bool, sides: Any, **shaping: Any) -> None:
    """Start replicating SRC to DST under live writes: start the path, load the table while it runs, check.

    The path (fenced by --version-attribute) starts at LATEST; once it runs on every shard, the table is
    loaded (--load scan, or --load export) with writes conditional on the key's absence in DST, so a
    change the path applied is never overwritten and a delete never undone, however long the load takes.
    With --segment I, a machine whose path already runs (its lease table exists) only loads segment I;
    --resume restarts an interrupted bootstrap's path from its checkpoints and its load from its state file.
    With --source-kinesis-stream (SRC's Kinesis streaming destination, dynamodb-cdc records), the path
    starts AT_TIMESTAMP --start-at, at or before the export's time, so an existing --export can be loaded.
    Exit status 0 when the check found the tables equal, 1 when not, 2 on bad input.
    """
    import signal as signals
    import time

    from replicator.kcl import launcher
    from replicator.tables import bootstrap as bs
    from replicator.tables import bootstrap_kinesis as bk
    from replicator.tables import export as ex
    from replicator.tables.copy import copy_table, estimate
    from replicator.tables.load import absent_key_put
    from replicator.tables.spec import check_not_onto_itself, check_segments, open_table

    log.configure()
    # Every check before the properties file, the daemon, the export and the load: a refused bootstrap writes nothing.
    shape = shape_from(shaping)
    check_segments(segment, segments)
    check_task_name_option(task_name)
    if kinesis_stream is not None:
        bk.check_options(load=load, source_format=source_format)
    elif source_format is not None or start_at is not None:
        raise ReplicatorError("--source-format and --start-at go with --source-kinesis-stream (a table's own "
                              "DynamoDB stream path starts at LATEST)")
    starts_at = bk.parse_time(start_at) if start_at is not None else None
    if load == "export":
        if (export_bucket is None) == (export is None):
            raise ReplicatorError("--load export takes --export-bucket s3://BUCKET[/PREFIX] (export now) or "
                                  "--export URL (an existing export), one of them")
        if resume:
            raise ReplicatorError("--resume continues a --load scan; an interrupted --load export cannot tell when "
                                  "its first path started, so bootstrap again with another --task-name")
        if segment is not None:
            raise ReplicatorError("--segment splits a --load scan; an export is loaded by one machine, its data "
                                  "files in parallel")
        bucket = ex.bucket_of(export_bucket) if export_bucket else None
    elif export_bucket or export:
        raise ReplicatorError("--export-bucket and --export go with --load export")
    settings, extra = parse_kcl_properties(kcl_properties, path_keys=bs.KCL_PATH_KEYS, options=bs.BOOTSTRAP_OPTIONS)
    check_not_onto_itself(source, source_endpoint, destination, destination_endpoint)
    if write_properties is not None:
        check_writable(write_properties, "--write-properties", create_dirs=True)
    if daemon_log is not None:
        check_writable(daemon_log, "--daemon-log", create_dirs=True)
    launcher.find_java()
    launcher.classpath()
    src = open_table(source, source_endpoint, side="source", credentials=side(sides, "source"))
    dst = open_table(destination, destination_endpoint, side="destination", credentials=side(sides, "destination"))
    s3 = s3_endpoint or source_endpoint
    replays_from: float | None = None  # a Kinesis path's start time: it replicates every change from then on
    if kinesis_stream is not None:
        export_at = ex.export_time(export, region=src.spec.region, s3_endpoint=s3, s3_credentials=side(sides, "s3")) if export is not None else None
        replays_from = bk.start_time(export_at, starts_at)
        summary = bk.stream_summary(src, kinesis_stream)
        bk.check_retention(kinesis_stream, int(summary.get("RetentionPeriodHours", 24)), replays_from)
        path = bk.replication_path(src, dst, kinesis_stream, replays_from, task_name=task_name,
                                   version_attribute=version_attribute,
                                   settings={**settings, **bs.credential_settings(sides)}, shape=shape)
        replays_from = float(int(replays_from))  # the path's start, in whole seconds (see replication_path)
    else:
        path = bs.replication_path(src, dst, task_name, version_attribute,
                                   {**settings, **bs.credential_settings(sides)}, shape)
    joining = segment is not None and bs.lease_table_exists(path)
    properties = write_properties or Path("properties") / f"{path.application_name}.properties"
    if write_properties is None and not joining:
        check_writable(properties, "--write-properties", create_dirs=True)
    # --resume restarts the same path from its checkpoints (no change is missed between the two runs) and
    # continues the load from the state file; a new path would start at LATEST and miss the gap.
    bs.check_ready(src, dst, path, joining=joining or resume)
    if load == "export":
        if export_bucket is not None:
            bs.check_point_in_time_recovery(src)
        if export is not None and kinesis_stream is None:
            at = ex.export_time(export, region=src.spec.region, s3_endpoint=s3, s3_credentials=side(sides, "s3"))
            ex.check_after_start(at, time.time(), export)  # a path started now is always after an existing export
    shards = bk.open_shards(src, kinesis_stream) if kinesis_stream is not None else bs.open_shards(src)
    put_request = absent_key_put(src.key_names[0], version_attribute)

    if joining:
        click.echo(f"Joining the bootstrap of lease table {path.application_name}: loading segment {segment}")
        path_started_at = bs.wait_for_owned_leases(path, shards, start_timeout)
        try:
            loaded = copy_table(src, dst, segments=segments, segment=segment, read_units=read_units,
                                write_units=write_units, state_path=state_file, resume=resume, page_size=page_size,
                                put_request=put_request, shape=shape)
        except KeyboardInterrupt:
            click.echo("replicator: interrupted: run the same command with --resume to continue the load", err=True)
            sys.exit(130)
        click.echo(f"Loaded segment {segment}: {loaded.copied - loaded.skipped} items written, {loaded.skipped} "
                   "skipped (the path had written their keys)")
        if as_json:
            _emit_json({"loaded": loaded.copied - loaded.skipped, "skipped": loaded.skipped, "joined": True,
                        "path_started_at": path_started_at})
        sys.exit(0)

    output = open(daemon_log, "ab") if daemon_log else None
    started = bs.start_replication(path, properties, extra, output)
    status: int | None = None

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt  # SIGTERM as Ctrl-C: either stops the daemon (SIGTERM) before exiting

    signals.signal(signals.SIGTERM, interrupted)
    try:
        path_started_at = started.wait_for_shards(shards, start_timeout)
        bs.log_path_started(path, shards, path_started_at)
        position = "LATEST" if replays_from is None else f"{path.initial_timestamp.isoformat()} ({kinesis_stream})"  # type: ignore[union-attr]
        click.echo(f"Replicating from {position} on {len(shards)} shard(s) (versionAttribute {version_attribute}); "
                   f"loading by {load}")
        if load == "scan":
            for line in estimate(src, dst, write_units).lines()[:1]:
                click.echo(line)
            try:
                copied = copy_table(src, dst, segments=segments, segment=segment, read_units=read_units,
                                    write_units=write_units, state_path=state_file, resume=resume,
                                    page_size=page_size, put_request=put_request, shape=shape)
            except KeyboardInterrupt:
                click.echo("replicator: interrupted: the path is stopped; run the same command with --resume to "
                           "continue it from its checkpoints and the load from its state file", err=True)
                raise
            result = {"loaded": copied.copied - copied.skipped, "skipped": copied.skipped, "read": copied.copied}
        else:
            # A Kinesis path replicates every change from its start time on, whenever its processors started.
            replicated_from = path_started_at if replays_from is None else replays_from
            result = bs.load_export(src, dst, bucket, export, s3, replicated_from, write_units=write_units,
                                    put_request=put_request, resume=resume, state_path=state_file,
                                    shape=shape, s3_credentials=side(sides, "s3"))
        bs.check_tombstones_kept(dst, version_attribute)
        click.echo(f"Loaded {result['loaded']} items, skipped {result['skipped']} (the path had written their "
                   "keys); checking")
        check = bs.wait_until_equal(src, dst, started.daemon, timeout_s=check_timeout,
                                    version_attribute=path.version_attribute, shape=shape)
        from replicator.tables.diff import summary

        click.echo("Check: " + summary(check, src, dst) + (" (equal)" if not check.discrepancies else
                   f" after {check_timeout:g} s; the daemon may still be catching up: check again with diff-tables"))
        if exit_after_check:
            status = stop_daemon(started.daemon)
        else:
            click.echo(f"Replicating with {properties} (lease table {path.application_name}); Ctrl-C or SIGTERM stops it")
            try:
                status = started.daemon.wait()
            except KeyboardInterrupt:
                status = stop_daemon(started.daemon)
    except KeyboardInterrupt:
        stop_daemon(started.daemon)
        sys.exit(130)
    except BaseException:
        stop_daemon(started.daemon)
        raise
    if as_json:
        _emit_json({**bs.as_json(result, started, check, status, path_started_at), "replays_from": replays_from})
    if not exit_after_check:
        sys.exit(status or 0)
    sys.exit(0 if not check.discrepancies and status == 0 else 1)
