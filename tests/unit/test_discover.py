"""`replicator discover` and `replicator run --check-only` on moto (in process): which tables are chosen, what
is named and skipped, what a rerun does, and that a refusal writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from replicator.cli.main import main
from replicator.kcl import launcher
from replicator.kcl.config import path_from_properties, read_properties
from unit_helpers import create_pk_table

SOURCE, DESTINATION = "us-east-1", "us-west-2"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """In us-east-1: orders and users (tagged replicate=yes, with streams), audit (tagged, no stream),
    orders-archive (stream, untagged); in us-west-2 a destination of the same name for each."""
    monkeypatch.chdir(tmp_path)
    execs: list[Any] = []
    monkeypatch.setattr(launcher, "exec_daemon", lambda properties, **_: execs.append(properties))
    with mock_aws():
        source = boto3.client("dynamodb", region_name=SOURCE)
        destination = boto3.client("dynamodb", region_name=DESTINATION)
        for name, stream, tagged in [("orders", True, True), ("users", True, True), ("audit", False, True),
                                     ("orders-archive", True, False)]:
            create_pk_table(source, name, stream_view="NEW_AND_OLD_IMAGES" if stream else None)
            if tagged:
                arn = source.describe_table(TableName=name)["Table"]["TableArn"]
                source.tag_resource(ResourceArn=arn, Tags=[{"Key": "replicate", "Value": "yes"}])
            create_pk_table(destination, name)
        yield source, destination, execs


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def discover(directory: Path, *args: str) -> Any:
    return invoke("discover", "--source-region", SOURCE, "--destination-region", DESTINATION,
                  "--properties-dir", str(directory), *args)


def paths_in(directory: Path) -> dict[str, tuple[str, str]]:
    """Each file's source and destination table, by file name."""
    found = {}
    for file in sorted(directory.glob("*.properties")):
        path = path_from_properties(read_properties(file))
        found[file.name] = (f"{path.source_region}/{path.source_table}",
                            f"{path.destination_region}/{path.destination_table}")
    return found


def error_line(result: Any) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replicator: error: "), result.stderr
    return lines[0]


def test_a_tag_chooses_the_tables_and_a_table_without_a_stream_is_named(aws, tmp_path):
    result = discover(tmp_path / "paths", "--tag", "replicate=yes")
    assert result.exit_code == 0, result.output
    assert sorted(paths_in(tmp_path / "paths").values()) == [
        ("us-east-1/orders", "us-west-2/orders"), ("us-east-1/users", "us-west-2/users")]
    skipped = [line for line in result.stdout.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 1 and "us-east-1/audit" in skipped[0] and "no stream" in skipped[0]
    assert sum(line.startswith("wrote ") for line in result.stdout.splitlines()) == 2


def test_each_file_is_where_run_writes_it_and_runs_as_it_is(aws, tmp_path):
    assert discover(tmp_path / "paths", "--tag", "replicate=yes", "--batch-size", "100").exit_code == 0
    for name in paths_in(tmp_path / "paths"):
        props = read_properties(tmp_path / "paths" / name)
        assert name == f"{props['applicationName']}.properties" and props["maxRecords"] == "100"
    written = tmp_path / "paths" / next(iter(paths_in(tmp_path / "paths")))
    result = invoke("run", "--properties", str(written), "--check-only")
    assert result.exit_code == 0, result.output
    assert aws[2] == []  # no daemon started


def test_a_prefix_chooses_by_name_and_a_replica_under_it_is_not_a_source(aws, tmp_path):
    source = aws[0]
    # the same-region replica of orders, under the prefix too, with a stream of its own
    create_pk_table(source, "orders-replica", stream_view="NEW_IMAGE")
    result = invoke("discover", "--source-region", SOURCE, "--destination-region", SOURCE, "--destination-suffix",
                    "-replica", "--table-prefix", "orders", "--properties-dir", str(tmp_path / "p"))
    # orders-archive has no orders-archive-replica: every check is made, so the whole run is refused
    assert "destination table us-east-1/orders-archive-replica does not exist" in error_line(result)
    assert not (tmp_path / "p").exists()
    create_pk_table(source, "orders-archive-replica")
    result = invoke("discover", "--source-region", SOURCE, "--destination-region", SOURCE, "--destination-suffix",
                    "-replica", "--table-prefix", "orders", "--properties-dir", str(tmp_path / "p"))
    assert result.exit_code == 0, result.output
    assert sorted(paths_in(tmp_path / "p").values()) == [
        ("us-east-1/orders", "us-east-1/orders-replica"),
        ("us-east-1/orders-archive", "us-east-1/orders-archive-replica")]
    assert "skipped us-east-1/orders-replica: it is the destination of us-east-1/orders" in result.stdout


def test_a_rerun_changes_nothing_and_a_changed_file_is_replaced_only_when_asked(aws, tmp_path):
    directory = tmp_path / "paths"
    assert discover(directory, "--tag", "replicate=yes").exit_code == 0
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in directory.iterdir()}
    again = discover(directory, "--tag", "replicate=yes")
    assert again.exit_code == 0, again.output
    assert {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in directory.iterdir()} == before
    assert sum(line.startswith("unchanged ") for line in again.stdout.splitlines()) == 2
    line = error_line(discover(directory, "--tag", "replicate=yes", "--write-concurrency", "16"))
    assert "exists with other settings: rerun with --overwrite" in line
    assert {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in directory.iterdir()} == before
    assert discover(directory, "--tag", "replicate=yes", "--write-concurrency", "16", "--overwrite").exit_code == 0
    assert all(read_properties(f)["writeConcurrency"] == "16" for f in directory.iterdir())


def test_a_refused_check_writes_no_file(aws, tmp_path):
    aws[1].delete_table(TableName="users")
    line = error_line(discover(tmp_path / "paths", "--tag", "replicate=yes"))
    assert "destination table us-west-2/users does not exist" in line
    assert not (tmp_path / "paths").exists()
    line = error_line(discover(tmp_path / "paths", "--tag", "replicate=no"))
    assert "no table in us-east-1 matches --tag replicate=no" in line
    line = error_line(invoke("discover", "--source-region", SOURCE, "--destination-region", DESTINATION,
                             "--properties-dir", str(tmp_path / "paths")))
    assert "--tag KEY=VALUE or --table-prefix" in line
    assert not (tmp_path / "paths").exists()


def test_run_check_only_checks_writes_the_file_and_starts_nothing(aws, tmp_path):
    options = ["--source-region", SOURCE, "--source-table", "orders", "--destination-region", DESTINATION,
               "--destination-table", "orders"]
    result = invoke("run", *options, "--check-only", "--write-properties", "p.properties")
    assert result.exit_code == 0, result.output
    assert paths_in(tmp_path)["p.properties"] == ("us-east-1/orders", "us-west-2/orders")
    assert "checked; wrote p.properties" in result.stdout and aws[2] == []
    options[3] = "audit"  # no stream
    line = error_line(invoke("run", *options, "--check-only", "--write-properties", "q.properties"))
    assert "has no stream enabled" in line
    assert not (tmp_path / "q.properties").exists() and aws[2] == []
