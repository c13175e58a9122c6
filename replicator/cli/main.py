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
from replicator.kcl.config import (
    PATH_KEYS,
    ReplicationPath,
    TASK_NAME_PREFIX,
    build_path,
    parse_kcl_properties,
    path_from_properties,
    read_properties,
)
from replicator.kcl.config import task_name as derive_task_name
from replicator.errors import ReplicatorError, friendly_errors


def _camel(kebab: str) -> str:
    head, *rest = kebab.split("-")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _kebab(field_name: str) -> str:
    return field_name.replace("_", "-")


PATH_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("source-region", {"help": "Region of the source table."}),
    ("source-table", {"help": "Source table (its stream must carry new images)."}),
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
    ("initial-position", {"type": click.Choice(["TRIM_HORIZON", "LATEST"]), "help": "Where a new lease starts. [default: TRIM_HORIZON]"}),
    ("write-concurrency", {"type": click.IntRange(1, 64), "help": "Write requests in flight per shard (BatchWriteItem, or PutItem with --version-attribute). [default: 8]"}),
    ("failover-time-millis", {"type": click.IntRange(1000), "help": "Lease duration before another worker takes over. [default: 10000]"}),
    ("shutdown-grace-millis", {"type": click.IntRange(1000), "help": "Time allowed for a graceful stop on SIGTERM. [default: 30000]"}),
    ("version-attribute", {"metavar": "NAME", "help": "Keep each replica item's replication version in attribute NAME "
                           "and never write over a newer one (deletes leave tombstones). [default: off]"}),
]


def _camel_name(kebab: str) -> str:
    """The option's camelCase spelling: its properties key (cloudWatchEndpoint), else derived."""
    field_name = kebab.replace("-", "_")
    return next((camel for camel, name in PATH_KEYS.items() if name == field_name), _camel(kebab))


def path_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for kebab, kwargs in reversed(PATH_OPTIONS):
        names = [f"--{kebab}"] + ([f"--{_camel_name(kebab)}"] if "-" in kebab else [])
        func = click.option(*names, _kebab(kebab).replace("-", "_"), **kwargs)(func)
    return func


def _path_from(properties: Path | None, given: dict[str, Any]) -> ReplicationPath:
    """The path from its properties file, or from the options (but not from both)."""
    if properties:
        if given:
            names = ", ".join(f"--{_kebab(k)}" for k in given)
            raise ReplicatorError(f"--properties describes the whole path; drop {names} or edit {properties}")
        return path_from_properties(read_properties(properties), source=str(properties))
    required = ("sourceRegion", "sourceTable", "destinationRegion", "destinationTable")
    missing = [f"--{_kebab(PATH_KEYS[k])}" for k in required if PATH_KEYS[k] not in given]
    if missing:
        raise ReplicatorError(f"missing {', '.join(missing)}: name the source and destination tables and regions")
    return build_path(given)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="dynamodb-replicator")
def main() -> None:
    """Replicate a DynamoDB table to another region or account, in near real time."""


@main.command("task-name")
@click.option("--source-region", "--sourceRegion", required=True)
@click.option("--source-table", "--sourceTable", required=True)
@click.option("--destination-region", "--destinationRegion", required=True)
@click.option("--destination-table", "--destinationTable", required=True)
@click.option("--task-name", "--taskName", default=None, help="A given name; the prefix is added to it.")
def task_name_command(
    source_region: str, source_table: str, destination_region: str, destination_table: str, task_name: str | None
) -> None:
    """Print the lease table name (taskName) of a replication path."""
    if task_name:
        click.echo(TASK_NAME_PREFIX + task_name)
    else:
        click.echo(derive_task_name(source_region, source_table, destination_region, destination_table))


@main.command()
@path_options
@click.option("--properties", type=click.Path(path_type=Path), help="Run the path described by this properties file.")
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
@friendly_errors
def run(properties: Path | None, write_properties: Path | None, kcl_properties: tuple[str, ...], **options: Any) -> None:
    """Replicate a table: check the tables, write the path's properties file, and run the KCL daemon."""
    from replicator.kcl import checks
    from replicator.kcl import launcher
    given = {k: v for k, v in options.items() if v is not None}
    extra = parse_kcl_properties(kcl_properties)
    if properties and extra:
        raise ReplicatorError(f"--properties describes the whole path; drop --kcl-property or edit {properties}")
    path = _path_from(properties, given)
    if not properties:
        properties = write_properties or Path("properties") / f"{path.application_name}.properties"
        path.write_properties(properties, extra=extra)
    launcher.find_java()
    launcher.classpath()
    source = checks.check_tables(
        path,
        clients.dynamodb(path.source_region, path.source_endpoint, retries=3),
        clients.dynamodb(path.destination_region, path.destination_endpoint, retries=3),
    )
    log.configure()
    log.get("replicator.cli.main").info(
        "starting_daemon", properties=str(properties), lease_table=path.application_name,
        source=f"{path.source_region}/{path.source_table}", destination=f"{path.destination_region}/{path.destination_table}",
    )
    launcher.exec_daemon(properties, stream_arn=source["LatestStreamArn"])


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
    path = _path_from(properties, {k: v for k, v in options.items() if v is not None})
    lease_client = clients.dynamodb(path.lease_region, path.lease_endpoint, retries=3)
    streams = clients.streams(path.source_region, path.source_streams_endpoint or path.source_endpoint)

    def read() -> list[Any]:
        return status_module.read_status(path, lease_client, streams)

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
@friendly_errors
def demo(operations: int, keys: int, rate: int, as_lambda: bool) -> None:
    """Replicate a live mixed workload between two regions of the local server and verify the replica."""
    from replicator.local.demo import run_demo

    sys.exit(run_demo(operations=operations, keys=keys, rate=rate, as_lambda=as_lambda))


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
@click.option("--batch-size", type=click.IntRange(1, 10000), default=100, show_default=True,
              help="Records per invocation at most, as the event source mapping's BatchSize.")
@click.option("--starting-position", type=click.Choice(["TRIM_HORIZON", "LATEST"]), default="TRIM_HORIZON",
              show_default=True)
@click.option("--timeout", "timeout_s", type=click.FloatRange(1, 900), default=60, show_default=True,
              help="The function's timeout in seconds, which bounds each invocation's retries.")
@friendly_errors
def lambda_local(source_table: str | None, source_kinesis_stream: str | None, source_region: str,
                 source_endpoint: str | None, source_format: str | None, destination_table: str | None,
                 destination_region: str | None, destination_endpoint: str | None, version_attribute: str | None,
                 batch_size: int, starting_position: str, timeout_s: float) -> None:
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
        "SOURCE_TABLE": source_table if source_kinesis_stream else None,
        "SOURCE_REGION": source_region, "SOURCE_ENDPOINT": source_endpoint, "VERSION_ATTRIBUTE": version_attribute,
    }
    os.environ.update({f"REPLICATOR_{name}": value for name, value in given.items() if value is not None})
    log.configure()
    function.reset()
    try:
        function.FunctionConfig.from_environment()
    except function.ConfigError as exc:
        raise ReplicatorError(str(exc)) from None
    source = stream_source(source_region, source_endpoint, table=None if source_kinesis_stream else source_table,
                           kinesis_stream=source_kinesis_stream)
    click.echo(f"lambda-local: replicator.lambda_handler.handler on {getattr(source, 'stream_arn', '?')}; "
               "Ctrl-C stops", err=True)
    run_until_signalled(EventSourceMapping(source, function.handler, batch_size=batch_size,
                                           starting_position=starting_position, timeout_s=timeout_s))


# The table tools (copy-table, bootstrap, diff-tables, ...) register their commands in cli.tools.
from replicator.cli.tools import TOOL_COMMANDS  # noqa: E402 - after main, which they extend

for _command in TOOL_COMMANDS:
    main.add_command(_command)


if __name__ == "__main__":
    main()
