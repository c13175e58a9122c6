"""`replicator discover`: one properties file per source table chosen by tag or name prefix.

So that a tag on a table is all it takes to replicate it, a paths directory is filled from the source
region's tables: ListTables (every page), those whose name starts with the prefix and whose tags
(ListTagsOfResource) hold every ``KEY=VALUE`` asked for. Rules it keeps:

* a chosen table without a stream is named on a line of its own and skipped, never silently;
* a chosen table that is the destination of another chosen one (same region and endpoint, e.g. ``orders``
  and ``orders-replica`` under the prefix ``orders``) is named and skipped: it is a replica, not a source;
* every path gets every check `replicator run --check-only` makes (``preflight``) before any file is
  written: one refusal writes nothing;
* a file is named ``<taskName>.properties``, where `run` writes it by default, so a rerun finds the same
  files. One that holds the same bytes is left alone; one that differs (edited by hand, or other options)
  is replaced only when asked (``overwrite``), otherwise the run is refused before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from replicator.errors import CREDENTIALS_FIX, ReplicatorError
from replicator.files import check_writable
from replicator.kcl import checks, preflight
from replicator.kcl.config import ReplicationPath


@dataclass(frozen=True)
class Selection:
    """Which source tables: every tag given (all must match) and the name prefix, if any."""

    tags: dict[str, str] = field(default_factory=dict)
    prefix: str = ""

    def describe(self) -> str:
        parts = [f"--tag {key}={value}" for key, value in self.tags.items()]
        if self.prefix:
            parts.append(f"--table-prefix {self.prefix}")
        return " and ".join(parts)


@dataclass
class Report:
    """What a discover run did, one line a table: files written, left as they were, tables skipped."""

    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return ([f"skipped {reason}" for reason in self.skipped] + [f"wrote {p}" for p in self.written]
                + [f"unchanged {p}" for p in self.unchanged])


def parse_tag(text: str) -> tuple[str, str]:
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise ReplicatorError(f"--tag {text!r} is not KEY=VALUE: give the tag's key and value, e.g. --tag replicate=yes")
    return key, value


def _call(what: str, fn: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """One AWS call, its expected failures turned into one line naming ``what`` and the fix."""
    try:
        return fn(**kwargs)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ReplicatorError(f"cannot {what}: {error.get('Code')}: {error.get('Message')}") from None
    except NoCredentialsError:
        raise ReplicatorError(f"no AWS credentials found: {CREDENTIALS_FIX}") from None
    except BotoCoreError as exc:
        raise ReplicatorError(f"cannot {what}: {exc}; check --source-endpoint and the network") from None


def table_names(client: Any, region: str, prefix: str) -> Iterator[str]:
    """Every table of the region whose name starts with ``prefix``, page after page."""
    start: str | None = None
    while True:
        page = _call(f"list the tables of {region}", client.list_tables,
                     **({"ExclusiveStartTableName": start} if start else {}))
        yield from (name for name in page.get("TableNames", []) if name.startswith(prefix))
        start = page.get("LastEvaluatedTableName")
        if not start:
            return


def table_tags(client: Any, region: str, table: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, str] = {}
    token: str | None = None
    while True:
        page = _call(f"list the tags of {region}/{table['TableName']}", client.list_tags_of_resource,
                     ResourceArn=table["TableArn"], **({"NextToken": token} if token else {}))
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
        token = page.get("NextToken")
        if not token:
            return tags


def _has_stream(table: dict[str, Any]) -> bool:
    spec = table.get("StreamSpecification") or {}
    return bool(spec.get("StreamEnabled") and table.get("LatestStreamArn"))


def chosen_paths(client: Any, region: str, selection: Selection, make_path: Callable[[str], ReplicationPath],
                 report: Report) -> list[ReplicationPath]:
    """The paths of the chosen tables that have a stream; the others are noted in ``report.skipped``."""
    paths: list[ReplicationPath] = []
    for name in table_names(client, region, selection.prefix):
        table = checks.describe_table(client, region, name, "source", "source")
        if selection.tags:
            tags = table_tags(client, region, table)
            if any(tags.get(key) != value for key, value in selection.tags.items()):
                continue
        if not _has_stream(table):
            report.skipped.append(f"{region}/{name}: it has no stream; enable one (NEW_AND_OLD_IMAGES) to replicate it")
            continue
        paths.append(make_path(name))
    destinations = {(p.destination_region, p.destination_endpoint, p.destination_table): p for p in paths}
    kept = []
    for path in paths:
        replica_of = destinations.get((path.source_region, path.source_endpoint, path.source_table))
        if replica_of is not None:
            report.skipped.append(f"{path.source_region}/{path.source_table}: it is the destination of "
                                  f"{replica_of.source_region}/{replica_of.source_table}")
            continue
        kept.append(path)
    return kept


def discover(client: Any, region: str, selection: Selection, make_path: Callable[[str], ReplicationPath],
             directory: Path, *, overwrite: bool = False, extra: dict[str, str] | None = None) -> Report:
    """Check every chosen table's path as `run` would, then write the files that are new or changed.

    ``client`` lists and describes the source region's tables; ``make_path`` gives a table's path (its
    destination, endpoints and settings). Raises ReplicatorError, having written nothing, for the first
    problem found."""
    report = Report()
    paths = chosen_paths(client, region, selection, make_path, report)
    if not paths:
        found = "no table with a stream" if report.skipped else "no table"
        raise ReplicatorError(f"{found} in {region} matches {selection.describe()}: tag a table, or fix the "
                              "selection or --source-region")
    planned: list[tuple[ReplicationPath, Path]] = []
    for path in paths:
        preflight.check_path(path)
        target = directory / f"{path.application_name}.properties"
        content = path.properties_bytes(extra)
        if target.exists() and target.read_bytes() == content:
            report.unchanged.append(target)
            continue
        if target.exists() and not overwrite:
            raise ReplicatorError(f"{target} (the path {path.source_region}/{path.source_table}) exists with other "
                                  "settings: rerun with --overwrite to replace it, or move it away")
        check_writable(target, "--properties-dir", create_dirs=True)
        planned.append((path, target))
    for path, target in planned:
        path.write_properties(target, extra=extra)
        report.written.append(target)
    return report
