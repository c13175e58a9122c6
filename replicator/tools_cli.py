"""CLI commands of the table tools; `replicator.cli` adds each command in TOOL_COMMANDS to the group.

Tables are written ``region/table``. The first table (source, primary) is reached at --source-endpoint,
the second (destination, replica) at --destination-endpoint; both also take the Java connector's
camelCase spelling. Human summaries go to stdout, structured logs to stderr; with --json the last line
of stdout is one JSON object. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from replicator import log
from replicator.errors import friendly_errors

TOOL_COMMANDS: list[click.Command] = []


def _command(func: click.Command) -> click.Command:
    TOOL_COMMANDS.append(func)
    return func


def endpoint_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--destination-endpoint", "--destinationEndpoint", "destination_endpoint", metavar="URL",
                        help="Endpoint of the second table (DynamoDB Local, or any DynamoDB endpoint).")(func)
    func = click.option("--source-endpoint", "--sourceEndpoint", "source_endpoint", metavar="URL",
                        help="Endpoint of the first table.")(func)
    return func


def segment_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--segment", type=int, default=None, metavar="I",
                        help="Run only segment I (0 to N-1) of --segments N, e.g. one per machine.")(func)
    func = click.option("--segments", type=int, default=None, metavar="N",
                        help="Split the scan into N parallel segments.")(func)
    return func


json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")


def _emit_json(payload: dict[str, Any]) -> None:
    click.echo(json.dumps(payload, sort_keys=True))


@_command
@click.command("diff-tables")
@click.argument("primary", metavar="PRIMARY")
@click.argument("replica", metavar="REPLICA")
@endpoint_options
@segment_options
@click.option("--repair", is_flag=True, help="Make the replica match: put missing and different items, delete extraneous ones.")
@click.option("--backfill", is_flag=True, help="Only put every primary item into the replica, without comparing.")
@click.option("--page-size", type=click.IntRange(1, 10000), default=None, help="Items per Scan page (Scan's Limit).")
@json_option
@friendly_errors
def diff_tables_command(primary: str, replica: str, source_endpoint: str | None, destination_endpoint: str | None,
                        segments: int | None, segment: int | None, repair: bool, backfill: bool,
                        page_size: int | None, as_json: bool) -> None:
    """Compare PRIMARY with REPLICA (region/table each): missing, different and extraneous items.

    Exit status 0 when the tables are equal (or --repair made them so), 1 while discrepancies remain,
    2 on bad input.
    """
    from replicator.diff_tables import diff_tables, sample_lines, summary
    from replicator.errors import ReplicatorError
    from replicator.tables import check_segments, open_table

    log.configure()
    if repair and backfill:
        raise ReplicatorError("--repair and --backfill exclude each other: --backfill only copies, --repair compares and fixes")
    check_segments(segment, segments)
    p = open_table(primary, source_endpoint)
    r = open_table(replica, destination_endpoint)
    result = diff_tables(p, r, repair=repair, backfill=backfill, segment=segment, segments=segments, page_size=page_size)
    click.echo(summary(result, p, r))
    for line in sample_lines(result):
        click.echo(line)
    if as_json:
        _emit_json(result.as_json())
    sys.exit(1 if result.unrepaired else 0)


def _record_tables(primary: str, replica: str, key: str, source_endpoint: str | None, destination_endpoint: str | None):  # noqa: ANN202
    from replicator.tables import open_table, parse_key

    p = open_table(primary, source_endpoint)
    r = open_table(replica, destination_endpoint)
    return p, r, parse_key(key, p)


@_command
@click.command("diff-record")
@click.argument("primary", metavar="PRIMARY")
@click.argument("replica", metavar="REPLICA")
@click.argument("key", metavar="KEY")
@endpoint_options
@json_option
@friendly_errors
def diff_record_command(primary: str, replica: str, key: str, source_endpoint: str | None,
                        destination_endpoint: str | None, as_json: bool) -> None:
    """Compare one item, by KEY (plain JSON or DynamoDB JSON), in PRIMARY and REPLICA.

    Exit status 0 when both are alike (or both absent), 1 when they differ, 2 on bad input.
    """
    from replicator.records import diff_record

    log.configure()
    p, r, parsed = _record_tables(primary, replica, key, source_endpoint, destination_endpoint)
    result = diff_record(p, r, parsed)
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
@click.argument("primary", metavar="PRIMARY")
@click.argument("replica", metavar="REPLICA")
@click.argument("key", metavar="KEY")
@endpoint_options
@json_option
@friendly_errors
def replicate_record_command(primary: str, replica: str, key: str, source_endpoint: str | None,
                             destination_endpoint: str | None, as_json: bool) -> None:
    """Copy one item, by KEY, from PRIMARY to REPLICA (or delete it there if PRIMARY has none)."""
    from replicator.records import replicate_record

    log.configure()
    p, r, parsed = _record_tables(primary, replica, key, source_endpoint, destination_endpoint)
    result = replicate_record(p, r, parsed)
    click.echo(f"{result.action}: {json.dumps(result.as_json()['key'], sort_keys=True)} (was {result.before.status})")
    if as_json:
        _emit_json(result.as_json())
