"""The `replicator` command line.

Options of a replication path take the Java connector's names in kebab-case and in its camelCase
spelling (``--source-region`` or ``--sourceRegion``), so its users switch by changing one word.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from replicator import clients, log
from replicator.cli.shape import STREAM_SHAPE_OPTIONS, shape_options
from replicator.kcl.config import (
    PATH_KEYS,
    ReplicationPath,
    build_path,
    check_task_name_option,
    parse_kcl_properties,
    path_from_properties,
    read_properties,
)
from replicator.errors import CREDENTIALS_FIX, ReplicatorError, friendly_errors
from replicator.files import check_writable
from replicator.cli.sides import PATH_CREDENTIAL_OPTIONS


def _camel(kebab: str) -> str:
    head, *rest = kebab.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _kebab(field_name: str) -> str:
    return field_name.replace("_", "-")


PATH_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("source-region", {"help": "Region of the source table."}),
    ("source-table", {"help": "Source table (its stream's records are replicated); with a Kinesis stream, the table "
                      "keys-only records are read from, or the one table kept from dynamodb-cdc records."}),
    ("source-kinesis-stream", {"metavar": "NAME", "help": "Replicate this Kinesis data stream instead of a table's "
                               "DynamoDB stream (needs --source-format)."}),
    ("source-format", {"type": click.Choice(["dynamodb-cdc", "keys-only", "binlog"]),
                       "help": "What the Kinesis stream's records are (see the README)."}),
    ("source-endpoint", {"help": "DynamoDB endpoint of the source (e.g. `replicator local`)."}),
    ("source-streams-endpoint", {"help": "DynamoDB Streams endpoint of the source (default: --source-endpoint)."}),
    ("destination-region", {"help": "Region of the destination table."}),
    ("destination-table", {"help": "Destination table, with the source's key schema."}),
    ("destination-endpoint", {"help": "DynamoDB endpoint of the destination."}),
    ("kcl-region", {"help": "Region of the lease and checkpoint table (default: --source-region)."}),
    ("kcl-endpoint", {"help": "Endpoint of the lease and checkpoint table (default: --source-endpoint)."}),
    ("task-name", {"help": "Name of the lease table after the prefix (default: derived from the four names)."}),
    ("batch-size", {"type": click.IntRange(1, 1000), "help": "Records per GetRecords call. [default: 1000]"}),
    ("parent-shard-poll-interval-millis", {"type": click.IntRange(1), "help": "[default: 10000]"}),
    ("dont-publish-cloudwatch", {"is_flag": True, "default": None, "help": "Publish no metrics to CloudWatch: "
                                 "neither the processors' own (DynamoDBReplicator) nor KCL's."}),
    ("cloudwatch-endpoint", {"help": "CloudWatch endpoint for the metrics, ours and KCL's (e.g. `replicator local`)."}),
    ("initial-position", {"type": click.Choice(["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]),
                          "help": "Where a new lease starts (AT_TIMESTAMP: Kinesis paths). [default: TRIM_HORIZON]"}),
    ("initial-timestamp", {"metavar": "ISO-8601", "help": "Where AT_TIMESTAMP starts, e.g. 2026-11-30T10:00:00Z (UTC "
                           "when no zone is given), to the second."}),
    ("max-writes-per-second", {"type": click.FloatRange(min=0, min_open=True), "metavar": "N",
                               "help": "Write at most N items a second per worker, across its shards (a lazy replica). [default: no cap]"}),
    ("write-concurrency", {"type": click.IntRange(1, 64), "help": "Write requests in flight per shard (BatchWriteItem, or PutItem with --version-attribute). [default: 8]"}),
    ("failover-time-millis", {"type": click.IntRange(1000), "help": "Lease duration before another worker takes over. [default: 10000]"}),
    ("shutdown-grace-millis", {"type": click.IntRange(1000), "help": "Time allowed for a graceful stop on SIGTERM. [default: 30000]"}),
    ("version-attribute", {"metavar": "NAME", "help": "Keep each replica item's replication version in attribute NAME "
                           "and never write over a newer one (deletes leave tombstones). [default: off]"}),
    *STREAM_SHAPE_OPTIONS,
]


PATH_OPTIONS += PATH_CREDENTIAL_OPTIONS  # --source-role-arn ... (cli.sides): each side's credentials


def _camel_name(kebab: str) -> str:
    """The option's camelCase spelling: its properties key (cloudWatchEndpoint), else derived."""
    field_name = kebab.replace("-", "_")
    return next((camel for camel, name in PATH_KEYS.items() if name == field_name), _camel(kebab))


def path_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for kebab, kwargs in reversed(PATH_OPTIONS):
        names = [f"--{kebab}"] + ([f"--{_camel_name(kebab)}"] if "-" in kebab else [])
        func = click.option(*names, _kebab(kebab).replace("-", "_"), **kwargs)(func)
    return func


RUN_KCL_PATH_KEYS = ("metricsIntervalSeconds", "idleTimeBetweenReadsInMillis")
"""Path keys `run` has no option for: --kcl-property sets them, validated with the other settings."""


def _path_from(properties: Path | None, given: dict[str, Any]) -> ReplicationPath:
    """The path from its properties file, or from the options (but not from both)."""
    if properties:
        if given:
            names = ", ".join(f"--{_kebab(k)}" for k in given)
            raise ReplicatorError(f"--properties describes the whole path; drop {names} or edit {properties}")
        return path_from_properties(read_properties(properties), source=str(properties))
    check_task_name_option(given.get("task_name"))
    required = ("sourceRegion", "destinationRegion", "destinationTable")
    from replicator.arns import parse_table_arn

    with_arn = {f"{side}_region" for side in ("source", "destination")
                if parse_table_arn(str(given.get(f"{side}_table", "")))}  # the ARN says the region
    missing = [f"--{_kebab(PATH_KEYS[k])}" for k in required if PATH_KEYS[k] not in given and PATH_KEYS[k] not in with_arn]
    if "source_table" not in given and "source_kinesis_stream" not in given:
        missing.insert(1, "--source-table (or --source-kinesis-stream)")
    if missing:
        raise ReplicatorError(f"missing {', '.join(missing)}: name the source and destination tables and regions")
    return build_path(given)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="dynamodb-replicator")
def main() -> None:
    """Replicate a DynamoDB table to another region or account, in near real time."""


@main.command("task-name")
@click.option("--source-region", "--sourceRegion", default=None, help="Required unless --source-table is an ARN.")
@click.option("--source-table", "--sourceTable", default=None)
@click.option("--source-kinesis-stream", "--sourceKinesisStream", default=None, help="A Kinesis path's stream.")
@click.option("--destination-region", "--destinationRegion", default=None,
              help="Required unless --destination-table is an ARN.")
@click.option("--destination-table", "--destinationTable", required=True)
@click.option("--task-name", "--taskName", default=None, help="A given name; the prefix is added to it.")
@click.option("--source-endpoint", "--sourceEndpoint", default=None, help="Checked only, as by run (not in the name).")
@click.option("--destination-endpoint", "--destinationEndpoint", default=None,
              help="Checked only, as by run (not in the name).")
@friendly_errors
def task_name_command(
    source_region: str | None, source_table: str | None, source_kinesis_stream: str | None,
    destination_region: str | None,
    destination_table: str, task_name: str | None, source_endpoint: str | None, destination_endpoint: str | None,
) -> None:
    """Print the lease table name (taskName) of a replication path.

    A table path's is DynamoDBCrossRegionReplication + MD5 hex of source region, table, destination region
    and table (the Java connector's); a Kinesis path's is KinesisCrossRegionReplication + MD5 hex of source
    region, stream, destination region and table, so the two never share a lease table. The names are
    checked as `run` checks them (a path onto itself is refused: give the endpoints when the two tables
    are at different ones); a Kinesis path may name a source table too (keys-only, dynamodb-cdc), which
    its name does not depend on."""
    given = {"source_region": source_region, "source_table": source_table, "source_kinesis_stream": source_kinesis_stream,
             "destination_region": destination_region, "destination_table": destination_table, "task_name": task_name,
             "source_endpoint": source_endpoint, "destination_endpoint": destination_endpoint}
    given = {k: v for k, v in given.items() if v is not None}
    if source_kinesis_stream is not None:
        given["source_format"] = "dynamodb-cdc"  # required by a Kinesis path; the name does not depend on it
    click.echo(_path_from(None, given).application_name)


@main.command()
@path_options
@click.option("--properties", type=click.Path(path_type=Path), multiple=True,
              help="Run the path described by this properties file; repeat it to run several paths in one daemon.")
@click.option("--properties-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Run every *.properties path in DIR in one daemon, and follow the files added, changed or "
              "removed (every 30 s, or at once on SIGHUP).")
@click.option(
    "--write-properties",
    type=click.Path(path_type=Path),
    help="Where to write the path's properties file. [default: properties/<taskName>.properties]",
)
@click.option(
    "--kcl-property",
    "kcl_properties",
    multiple=True,
    metavar="KEY=VALUE",
    help="Any other MultiLangDaemon/KCL setting for the properties file (repeatable), e.g. maxLeasesForWorker=10.",
)
@click.option("--check-only", is_flag=True,
              help="Make every start-up check and write the properties file, but start no daemon (exit 0).")
@friendly_errors
def run(properties: tuple[Path, ...], properties_dir: Path | None, write_properties: Path | None,
        kcl_properties: tuple[str, ...], check_only: bool, **options: Any) -> None:
    """Replicate a table: check the tables, write the path's properties file, and run the KCL daemon.

    With several --properties, or --properties-dir, one daemon (one JVM) runs every path, each with its
    own lease table, processors and status (see the README, "Several paths in one daemon")."""
    from replicator.kcl import launcher, pathset
    # Every check comes before the one write: a refused run leaves the file it would replace as it was.
    given = {k: v for k, v in options.items() if v is not None}
    path_values, extra = parse_kcl_properties(kcl_properties, path_keys=RUN_KCL_PATH_KEYS)
    if properties_dir is not None or len(properties) > 1:
        _run_several(properties, properties_dir, given, bool(extra or path_values), write_properties, check_only)
        return
    single = properties[0] if properties else None
    if single and (extra or path_values):
        raise ReplicatorError(f"--properties describes the whole path; drop --kcl-property or edit {single}")
    if single and write_properties:
        raise ReplicatorError(f"--properties runs {single} as it is; drop --write-properties")
    path = _path_from(single, {**given, **path_values})
    to_write = None
    if not single:
        single = to_write = write_properties or Path("properties") / f"{path.application_name}.properties"
        check_writable(to_write, "--write-properties", create_dirs=True)
    launcher.find_java()
    launcher.classpath()
    environment = pathset.environment(single, path)
    if to_write is not None:
        path.write_properties(to_write, extra=extra)
    if check_only:
        click.echo(f"{path.source_region}/{path.source_name} -> {path.destination_region}/{path.destination_table}: "
                   f"checked; {'wrote' if to_write is not None else 'runs as it is:'} {single}")
        return
    checked = pathset.CheckedPath(pathset.absolute(single), path, environment)
    _start_daemon([checked], launcher.command(single))


def _run_several(properties: tuple[Path, ...], directory: Path | None, given: dict[str, Any], kcl: bool,
                 write_properties: Path | None, check_only: bool = False) -> None:
    """Several paths in one daemon: every file checked first (see kcl.pathset for a refused one)."""
    from replicator.kcl import launcher, pathset
    if directory is not None and properties:
        raise ReplicatorError("--properties-dir runs every file of its directory; drop --properties, or move "
                              "the files into the directory")
    if given or kcl or write_properties:
        names = [f"--{_kebab(k)}" for k in given] + (["--kcl-property"] if kcl else []) + (
            ["--write-properties"] if write_properties else [])
        raise ReplicatorError(f"each properties file describes its whole path; drop {', '.join(names)}, or "
                              "edit the files")
    launcher.find_java()
    launcher.classpath()
    files = pathset.path_files(directory) if directory is not None else list(properties)
    checked, refused = pathset.check_files(files, from_directory=directory is not None)
    log.configure()
    logger = log.get("replicator.cli.main")
    for file, why in refused.items():
        logger.error("path_not_started", properties=str(file), error=why)
    if check_only:
        for one in checked:
            click.echo(f"{one.properties}: checked")
        if refused:
            raise ReplicatorError(f"{len(refused)} of {len(files)} path files refused (logged above): fix them, "
                                  "then check again")
        return
    if not checked:
        where = f"--properties-dir {directory}"
        raise ReplicatorError(f"{where} holds no path that can start ({len(refused)} refused, logged above): add "
                              "a properties file (`replicator run ... --write-properties DIR/NAME.properties`) or "
                              "fix the refused ones")
    argv = launcher.command(directory=directory) if directory is not None else launcher.command(*files)
    _start_daemon(checked, argv, refused)


def _start_daemon(checked: list[Any], argv: list[str], refused: dict[Path, str] | None = None) -> None:
    from replicator.kcl import launcher, pathset
    log.configure()
    logger = log.get("replicator.cli.main")
    for one in checked:
        path = one.path
        logger.info(
            "starting_path", properties=str(one.properties), lease_table=path.application_name,
            source=f"{path.source_region}/{path.source_name}",
            destination=f"{path.destination_region}/{path.destination_table}",
            **({"format": path.source_format} if path.is_kinesis else {}),
        )
    archive = launcher.class_archive()
    if archive is not None and not archive.is_file():
        logger.warning("class_archive_missing", archive=str(archive),
                       fix="run `make setup` (or `python -m replicator.local.class_archive`): the JVM starts "
                           "about 1 s sooner with it")
    pathset.started(checked)
    launcher.exec_daemon(argv, launcher.environment({one.properties: one.environment for one in checked}, refused))


DISCOVER_SKIPS = ("source-table", "source-kinesis-stream", "source-format", "destination-table", "task-name",
                  "initial-timestamp")
"""Path options `discover` has no use for: each table names its own path, and table paths only."""


def discover_path_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for kebab, kwargs in reversed(PATH_OPTIONS):
        if kebab not in DISCOVER_SKIPS:
            names = [f"--{kebab}"] + ([f"--{_camel_name(kebab)}"] if "-" in kebab else [])
            func = click.option(*names, _kebab(kebab).replace("-", "_"), **kwargs)(func)
    return func


@main.command()
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
              help="Replicate the tables with this tag (repeatable: all must match).")
@click.option("--table-prefix", default="", metavar="P", help="Replicate the tables whose name starts with P.")
@click.option("--destination-suffix", default="", metavar="S",
              help="Each destination table is the source's name plus S. [default: the same name]")
@click.option("--properties-dir", type=click.Path(path_type=Path), required=True,
              help="Where to write one <taskName>.properties per table (created if missing).")
@click.option("--overwrite", is_flag=True, help="Replace a path's file that exists with other settings.")
@click.option("--kcl-property", "kcl_properties", multiple=True, metavar="KEY=VALUE",
              help="Any other MultiLangDaemon/KCL setting for every file (repeatable), as for run.")
@discover_path_options
@friendly_errors
def discover(tags: tuple[str, ...], table_prefix: str, destination_suffix: str, properties_dir: Path, overwrite: bool,
             kcl_properties: tuple[str, ...], **options: Any) -> None:
    """Write one properties file per source table chosen by tag or name prefix (those with a stream), each
    checked as `run --check-only` checks it: a tag on a table is all it takes to replicate it."""
    from replicator.kcl import discover as discover_module

    if not tags and not table_prefix:
        raise ReplicatorError("discover needs --tag KEY=VALUE or --table-prefix P: say which tables to replicate")
    given = {k: v for k, v in options.items() if v is not None}
    missing = [f"--{_kebab(k)}" for k in ("source_region", "destination_region") if k not in given]
    if missing:
        raise ReplicatorError(f"missing {', '.join(missing)}: name the source and destination regions")
    path_values, extra = parse_kcl_properties(kcl_properties, path_keys=RUN_KCL_PATH_KEYS)
    selection = discover_module.Selection(dict(discover_module.parse_tag(t) for t in tags), table_prefix)

    def make_path(table: str) -> ReplicationPath:
        return build_path({**given, **path_values, "source_table": table,
                           "destination_table": table + destination_suffix})

    region, endpoint = given["source_region"], given.get("source_endpoint")
    from replicator import credentials

    client = clients.dynamodb(region, endpoint, retries=3, side="source", credentials=credentials.of(given, "source"))
    report = discover_module.discover(client, region, selection, make_path, properties_dir, overwrite=overwrite,
                                      extra=extra)
    for line in report.lines():
        click.echo(line)


@main.command()
@path_options
@click.option("--properties", type=click.Path(path_type=Path), help="The path's properties file.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON instead of a table (with --watch, one object a line per refresh: at, shards).")
@click.option("--watch", is_flag=True, help="Refresh until Ctrl-C: in place on a terminal.")
@click.option("--interval", type=click.FloatRange(0.1), default=5.0, show_default=True, metavar="S",
              help="Seconds between refreshes with --watch.")
@click.option("--count", type=click.IntRange(1), default=None, hidden=True, help="Stop after N refreshes (tests).")
@friendly_errors
def status(properties: Path | None, as_json: bool, watch: bool, interval: float, count: int | None,
           **options: Any) -> None:
    """Show each shard's lease owner, checkpoint, and how far behind it is."""
    import json

    from replicator.kcl import status as status_module
    from replicator.kcl import stopped
    from replicator.kcl.streams import source_stream
    path = _path_from(properties, {k: v for k, v in options.items() if v is not None})
    clients.check_location(path.source_region, path.source_endpoint, "source")  # first: the lease's defaults
    lease_client = clients.dynamodb(path.lease_region, path.lease_endpoint, retries=3, side="kcl",
                                    credentials=path.lease_credentials)
    stream = source_stream(path)

    def read() -> list[Any]:
        statuses = status_module.read_status(path, lease_client, stream)
        return status_module.with_stop_record(statuses, stopped.read(properties) if properties else None)

    if not watch:
        if count is not None:
            raise ReplicatorError("--count needs --watch")
        statuses = read()
        if as_json:
            click.echo(json.dumps(status_module.as_json(statuses)))
        else:
            click.echo(status_module.as_table(statuses))
        return
    try:
        snapshots = status_module.snapshots(read, interval, count)
        if as_json:
            for snapshot in snapshots:
                click.echo(json.dumps(snapshot.as_json()))
        else:
            _watch_table(path.application_name, interval, snapshots)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends: exit 0, no traceback


def _watch_table(lease_table: str, interval: float, snapshots: Any) -> None:
    """The shard table redrawn in place on a terminal (rich Live); one table after another otherwise."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    from replicator.kcl.status import as_table

    def render(snapshot: Any) -> str:
        head = f"{lease_table}  {snapshot.at:%Y-%m-%d %H:%M:%S} UTC, every {interval:g} s; Ctrl-C stops"
        body = as_table(snapshot.shards) if snapshot.shards is not None else f"refresh failed: {snapshot.error}"
        return f"{head}\n{body}"

    console = Console()
    if not console.is_terminal:
        for snapshot in snapshots:
            click.echo(render(snapshot) + "\n")
        return
    with Live(console=console, auto_refresh=False, transient=False) as live:
        for snapshot in snapshots:
            live.update(Text(render(snapshot)), refresh=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--in-memory", is_flag=True, hidden=True, help="Accepted for old scripts: state is always in memory.")
@click.option("--db-path", hidden=True, help="Gone: the local server keeps its state in memory only.")
@friendly_errors
def local(host: str, port: int, in_memory: bool, db_path: str | None) -> None:
    """Run the local server (moto) in the foreground on HOST:PORT; Ctrl-C or SIGTERM stops it.

    One endpoint serves DynamoDB, DynamoDB Streams, Kinesis, S3 and CloudWatch for every region (a client's
    region keeps its resources apart), over HTTP/1.1 and HTTP/2 cleartext. Its state lives in memory and
    ends with it. The endpoint is printed on stdout once it answers.
    """
    from replicator.local.server import serve

    if db_path is not None:
        raise ReplicatorError("--db-path is gone: the local server (moto) keeps its state in memory only; drop the option")

    def ready(endpoint: str) -> None:
        click.echo(endpoint)
        click.echo(f"local server (moto) on {endpoint}: DynamoDB, DynamoDB Streams, Kinesis, S3, CloudWatch, "
                   "every region, HTTP/1.1 and HTTP/2; Ctrl-C stops it", err=True)

    serve(host, port, on_ready=ready)


@main.command()
@click.option("--operations", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--keys", type=click.IntRange(1), default=300, show_default=True)
@click.option("--rate", type=click.IntRange(1), default=300, show_default=True, help="Source writes per second.")
@click.option("--lambda", "as_lambda", is_flag=True,
              help="Replicate with the Lambda handler under `replicator lambda-local` instead of the daemon.")
@click.option("--cross-account", is_flag=True, help="Replicate into a replica in another account (222222222222), "
              "through a role the source account (111111111111) assumes.")
@friendly_errors
def demo(operations: int, keys: int, rate: int, as_lambda: bool, cross_account: bool) -> None:
    """Replicate a live mixed workload between two regions of the local server and verify the replica."""
    from replicator.local.demo import run_demo

    sys.exit(run_demo(operations=operations, keys=keys, rate=rate, as_lambda=as_lambda, cross_account=cross_account))


@main.command("lambda-local")
@click.option("--source-table", help="Read this table's DynamoDB stream (and, for a Kinesis stream, the table "
              "keys-only records are read from, or the one table dynamodb-cdc records are kept for).")
@click.option("--source-kinesis-stream", help="Read this Kinesis stream instead.")
@click.option("--source-region", default="us-east-1", show_default=True)
@click.option("--source-endpoint", help="Endpoint of the source (e.g. the local server's).")
@click.option("--source-format", type=click.Choice(["dynamodb-cdc", "keys-only", "binlog"]),
              help="What the Kinesis stream's records are (REPLICATOR_SOURCE_FORMAT).")
@click.option("--destination-table", help="The replica (REPLICATOR_DESTINATION_TABLE).")
@click.option("--destination-region", help="The replica's region (REPLICATOR_DESTINATION_REGION).")
@click.option("--destination-endpoint", help="The replica's endpoint (REPLICATOR_DESTINATION_ENDPOINT).")
@click.option("--version-attribute", help="The fence's attribute (REPLICATOR_VERSION_ATTRIBUTE).")
@click.option("--destination-role-arn", metavar="ARN", help="Assume this role for the replica's writes, e.g. in "
              "another account (REPLICATOR_DESTINATION_ROLE_ARN).")
@click.option("--destination-external-id", metavar="ID", help="Its external id (REPLICATOR_DESTINATION_EXTERNAL_ID).")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Records per invocation at most, as the event source mapping's BatchSize.")
@click.option("--starting-position", type=click.Choice(["TRIM_HORIZON", "LATEST"]), default="TRIM_HORIZON",
              show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 900), default=60, show_default=True,
              help="The function's timeout in seconds, which bounds each invocation's retries.")
@shape_options(ttl=True, expired=False)
@friendly_errors
def lambda_local(source_table: str | None, source_kinesis_stream: str | None, source_region: str,
                 source_endpoint: str | None, source_format: str | None, destination_table: str | None,
                 destination_region: str | None, destination_endpoint: str | None, version_attribute: str | None,
                 destination_role_arn: str | None, destination_external_id: str | None,
                 batch_size: int, starting_position: str, timeout_s: float, **shaping: str | None) -> None:
    """Run the Lambda handler on a stream, in-process, as its event source mapping would.

    Each shard is read in order in batches; a batch whose answer names a failed record is read again from
    it. The handler's configuration is its REPLICATOR_* environment, which the options set. Ctrl-C or
    SIGTERM stops after each shard's batch in flight.
    """
    import os

    from replicator.lambda_handler import function
    from replicator.local.lambda_runner import EventSourceMapping, run_until_signalled, stream_source

    given = {
        "DESTINATION_TABLE": destination_table, "DESTINATION_REGION": destination_region,
        "DESTINATION_ENDPOINT": destination_endpoint, "SOURCE_FORMAT": source_format,
        "SOURCE_TABLE": source_table,
        "SOURCE_REGION": source_region, "SOURCE_ENDPOINT": source_endpoint, "VERSION_ATTRIBUTE": version_attribute,
        **{name.upper(): value for name, value in shaping.items()},  # REPLICATOR_FILTER, ... (changes.shape)
        "DESTINATION_ROLE_ARN": destination_role_arn, "DESTINATION_EXTERNAL_ID": destination_external_id,
    }
    os.environ.update({f"REPLICATOR_{name}": value for name, value in given.items() if value is not None})
    log.configure()
    function.reset()
    try:  # the function's own checks, its messages naming our options rather than its variables
        function.FunctionConfig.from_environment(names={name: "--" + name.lower().replace("_", "-") for name in given})
    except function.ConfigError as exc:
        raise ReplicatorError(str(exc)) from None
    source = stream_source(source_region, source_endpoint, table=None if source_kinesis_stream else source_table,
                           kinesis_stream=source_kinesis_stream)
    click.echo(f"lambda-local: replicator.lambda_handler.handler on {getattr(source, 'stream_arn', '?')}; "
               "Ctrl-C stops", err=True)
    run_until_signalled(EventSourceMapping(source, function.handler, batch_size=batch_size,
                                           starting_position=starting_position, timeout_s=timeout_s))


@main.group()
def binlog() -> None:
    """Write a binlog: actions on a Kinesis stream that Kinesis paths (--source-format binlog) replay."""


def _key_schema_option(values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    schema = []
    for value in values:
        name, _, kind = value.partition(":")
        if not name or kind not in ("S", "N", "B"):
            raise ReplicatorError(f"--key {value!r} is not NAME:TYPE with TYPE S, N or B, e.g. --key pk:S --key sk:N")
        schema.append((name, kind))
    return tuple(schema)


@binlog.command("put")
@click.argument("file", type=click.File("rb"), default="-")  # decoded line by line: a bad byte names its line
@click.option("--stream", required=True, help="The Kinesis stream.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--endpoint", help="Kinesis endpoint (e.g. the local server's).")
@click.option("--key", "keys", multiple=True, required=True, metavar="NAME:TYPE",
              help="The table's key attributes, partition key first (repeat for the sort key): --key pk:S --key sk:N.")
@friendly_errors
def binlog_put(file: Any, stream: str, region: str, endpoint: str | None, keys: tuple[str, ...]) -> None:
    """Append the actions in FILE (JSON lines; standard input by default) to a Kinesis stream.

    Each line is {"Action": "PutItem", "Data": ITEM}, {"Action": "DeleteItem", "Data": KEY} or
    {"Action": "BatchWrite", "Data": [ITEM or {"Delete": KEY}, ...]}, items in DynamoDB JSON or plain JSON.
    Each record is keyed by its item's key, so one item's actions stay in order on one shard. A bad line
    (not an action, not UTF-8, or one DynamoDB would refuse: an empty key, a number beyond its range) stops
    with its number: every line before it was sent, nothing from it on.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    from replicator.changes.binlog import BinlogProducer

    producer = BinlogProducer(clients.kinesis(region, endpoint, side=""), stream, _key_schema_option(keys))
    try:
        sent = producer.put_lines(file, source=file.name)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ReplicatorError(f"Kinesis stream {region}/{stream}: {error.get('Code')}: {error.get('Message')}; "
                              f"{producer.sent} records were sent before it") from None
    except NoCredentialsError:
        raise ReplicatorError(f"no AWS credentials found: {CREDENTIALS_FIX}") from None
    except BotoCoreError as exc:
        raise ReplicatorError(f"cannot reach Kinesis stream {region}/{stream}: {exc}; check --endpoint and the network "
                              f"({producer.sent} records were sent before it)") from None
    except ReplicatorError as exc:
        raise ReplicatorError(f"{exc} ({producer.sent} records before it were sent)") from None
    click.echo(f"sent {sent} records to {region}/{stream}", err=True)


# The table tools (copy-table, bootstrap, diff-tables, ...) register their commands in cli.tools.
from replicator.cli.tools import TOOL_COMMANDS  # noqa: E402 - after main, which they extend

for _command in TOOL_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
