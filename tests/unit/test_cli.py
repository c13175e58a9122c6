"""The `replicator` console script, run as a user runs it: errors are one line and exit status 2."""

from __future__ import annotations

import os
import subprocess

import pytest

from replicator.kcl.config import task_name
from unit_helpers import FAKE_AWS_ENV, VENV_BIN

REPLICATOR = str(VENV_BIN / "replicator")
PINNED = "DynamoDBCrossRegionReplication0cc5006e160e88ca669865d35057dfe9"
FOUR = ["--source-region", "us-east-1", "--source-table", "src-missing",
        "--destination-region", "us-west-2", "--destination-table", "dst"]


def replicator(*args: str, cwd, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([REPLICATOR, *args], cwd=cwd, env=env if env is not None else dict(os.environ),
                          capture_output=True, text=True, timeout=60)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("replicator: error: ")
    return lines[0]


def test_task_name_prints_the_java_connectors_name(tmp_path):
    result = replicator("task-name", "--sourceRegion", "us-east-1", "--source-table", "a",
                        "--destination-region", "us-west-2", "--destinationTable", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == PINNED + "\n"


def test_task_name_with_a_given_name_adds_the_prefix(tmp_path):
    result = replicator("task-name", "--source-region", "us-east-1", "--source-table", "a",
                        "--destination-region", "us-west-2", "--destination-table", "b", "--taskName", "Mine",
                        cwd=tmp_path)
    assert result.stdout == "DynamoDBCrossRegionReplicationMine\n"


def test_run_without_the_tables_names_what_is_missing(tmp_path):
    line = one_error_line(replicator("run", "--source-region", "us-east-1", cwd=tmp_path))
    assert "--source-table" in line and "--destination-region" in line and "--destination-table" in line
    assert "--source-region," not in line


@pytest.mark.parametrize("option", ["--batch-size", "--batchSize"])
def test_run_with_batch_size_zero_is_a_usage_error(tmp_path, option):
    result = replicator("run", *FOUR, option, "0", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "batch-size" in result.stderr or "batchSize" in result.stderr
    assert not (tmp_path / "properties").exists()


def test_run_with_a_missing_properties_file(tmp_path):
    line = one_error_line(replicator("run", "--properties", "/nonexistent.properties", cwd=tmp_path))
    assert "/nonexistent.properties" in line and "not found" in line


def test_run_with_properties_and_path_options_says_which_to_drop(tmp_path):
    line = one_error_line(replicator("run", "--properties", "p.properties", "--source-region", "us-east-1",
                                     cwd=tmp_path))
    assert "drop --source-region" in line


def test_run_against_a_missing_source_table(tmp_path, moto_endpoint):
    line = one_error_line(replicator("run", *FOUR, "--source-endpoint", moto_endpoint,
                                     "--destination-endpoint", moto_endpoint, cwd=tmp_path))
    assert "source table us-east-1/src-missing does not exist" in line
    written = list((tmp_path / "properties").glob("*.properties"))
    assert [p.name for p in written] == [task_name("us-east-1", "src-missing", "us-west-2", "dst") + ".properties"]


def test_run_without_java(tmp_path):
    env = {"PATH": "/nonexistent", **FAKE_AWS_ENV}
    line = one_error_line(replicator("run", *FOUR, cwd=tmp_path, env=env))
    assert "java not found" in line and "JAVA_HOME" in line


def test_run_without_the_built_launcher(tmp_path):
    empty = tmp_path / "daemon-home"
    empty.mkdir()
    env = {**os.environ, "REPLICATOR_DAEMON_HOME": str(empty)}
    line = one_error_line(replicator("run", *FOUR, cwd=tmp_path, env=env))
    assert "the launcher is not built" in line and "make setup" in line


@pytest.mark.parametrize("option", ["--cloudwatch-endpoint", "--cloudWatchEndpoint"])
def test_run_writes_the_cloudwatch_endpoint_where_the_launcher_and_processors_read_it(tmp_path, option):
    env = {"PATH": "/nonexistent", **FAKE_AWS_ENV}  # stops at `java not found`, after the file is written
    one_error_line(replicator("run", *FOUR, option, "http://127.0.0.1:4566", "--write-properties", "p.properties",
                              cwd=tmp_path, env=env))
    from replicator.kcl.config import path_from_properties, read_properties

    props = read_properties(tmp_path / "p.properties")
    assert props["cloudWatchEndpoint"] == "http://127.0.0.1:4566"
    assert path_from_properties(props).cloudwatch_endpoint == "http://127.0.0.1:4566"
