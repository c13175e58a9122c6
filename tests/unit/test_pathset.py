"""Several paths in one daemon, the Python side: which files a paths directory holds, each path checked
before anything starts (explicit files: all refused at once; a directory: the bad file reported, the others
start), `run`'s options, the daemon's check of a file added later, and a stopped path's record in status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.kcl import launcher, pathset, stopped
from replicator.kcl.config import build_path
from replicator.kcl.processor import EXIT_NON_RETRYABLE, ReplicationProcessor
from replicator.kcl.status import ShardStatus, as_table, with_stop_record
from unit_helpers import create_pk_table, endpoint_client, unique_table


def table_path_file(moto_endpoint: str, directory: Path, name: str, *, destination: str | None = None) -> Path:
    """A table path's properties file, its tables created on moto (the destination unless one is named)."""
    source = unique_table("src")
    create_pk_table(endpoint_client(moto_endpoint, "us-east-1"), source, stream_view="NEW_AND_OLD_IMAGES")
    if destination is None:
        destination = unique_table("dst")
        create_pk_table(endpoint_client(moto_endpoint, "us-west-2"), destination)
    path = build_path({"source_region": "us-east-1", "source_table": source, "source_endpoint": moto_endpoint,
                       "destination_region": "us-west-2", "destination_table": destination,
                       "destination_endpoint": moto_endpoint})
    target = directory / name
    path.write_properties(target)
    return target


def test_a_paths_directory_holds_its_visible_properties_files_in_name_order(tmp_path):
    for name in ("b.properties", "a.properties", ".hidden.properties", "a.properties.stopped", "notes.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir.properties").mkdir()
    assert [p.name for p in pathset.path_files(tmp_path)] == ["a.properties", "b.properties"]


def test_a_paths_directory_that_is_not_one_is_refused_in_one_line(tmp_path):
    with pytest.raises(ReplicatorError, match="is not a directory"):
        pathset.path_files(tmp_path / "missing")


def test_explicit_files_are_refused_all_at_once_naming_the_bad_one(moto_endpoint, tmp_path):
    good = table_path_file(moto_endpoint, tmp_path, "good.properties")
    bad = table_path_file(moto_endpoint, tmp_path, "bad.properties", destination=unique_table("gone"))
    with pytest.raises(ReplicatorError, match=r"bad\.properties: destination table .* does not exist.*nothing was started"):
        pathset.check_files([good, bad], from_directory=False)


def test_a_directorys_bad_file_is_reported_and_the_others_start(moto_endpoint, tmp_path):
    good = table_path_file(moto_endpoint, tmp_path, "good.properties")
    bad = table_path_file(moto_endpoint, tmp_path, "bad.properties", destination=unique_table("gone"))
    checked, refused = pathset.check_files(pathset.path_files(tmp_path), from_directory=True)
    assert [c.properties for c in checked] == [good]
    assert list(refused) == [bad] and "does not exist" in refused[bad]
    env = checked[0].environment
    assert env["REPLICATOR_PROPERTIES"] == str(good)  # each path's processors get their own file
    assert env["REPLICATOR_STREAM_ARN"].startswith("arn:aws:dynamodb:us-east-1:")
    assert env["REPLICATOR_STREAM_VIEW"] == "NEW_AND_OLD_IMAGES"


def test_two_files_of_one_path_are_refused(moto_endpoint, tmp_path):
    first = table_path_file(moto_endpoint, tmp_path, "first.properties")
    second = tmp_path / "second.properties"
    second.write_bytes(first.read_bytes())
    with pytest.raises(ReplicatorError, match="same path as .*first.properties"):
        pathset.check_files([first, second], from_directory=False)


def run_in_process(monkeypatch, tmp_path, *args: str):
    """`replicator run` in this process, up to the exec of the daemon, whose argv and environment are kept."""
    from replicator.cli.main import main

    execs: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(launcher, "exec_daemon", lambda argv, env: execs.append((argv, env)))
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, ["run", *args]), execs


def test_run_with_repeated_properties_starts_one_daemon_with_each_paths_environment(moto_endpoint, tmp_path, monkeypatch):
    one = table_path_file(moto_endpoint, tmp_path, "one.properties")
    two = table_path_file(moto_endpoint, tmp_path, "two.properties")
    result, execs = run_in_process(monkeypatch, tmp_path, "--properties", str(one), "--properties", str(two))
    assert result.exit_code == 0, result.output
    [(argv, env)] = execs
    assert argv[argv.index(launcher.MAIN_CLASS) + 1:] == [str(one), str(two)]
    paths = json.loads(env["REPLICATOR_PATHS"])["paths"]
    assert {Path(f).name: e["REPLICATOR_PROPERTIES"] for f, e in paths.items()} == {
        "one.properties": str(one), "two.properties": str(two)}
    assert env["REPLICATOR_PYTHON"] == sys.executable


def test_run_with_a_directory_follows_it_and_passes_what_it_refused(moto_endpoint, tmp_path, monkeypatch):
    paths_dir = tmp_path / "paths"
    paths_dir.mkdir()
    table_path_file(moto_endpoint, paths_dir, "good.properties")
    bad = table_path_file(moto_endpoint, paths_dir, "bad.properties", destination=unique_table("gone"))
    result, execs = run_in_process(monkeypatch, tmp_path, "--properties-dir", str(paths_dir))
    assert result.exit_code == 0, result.output
    [(argv, env)] = execs
    assert argv[-2:] == ["--dir", str(paths_dir)]
    assert list(json.loads(env["REPLICATOR_PATHS"])["refused"]) == [str(bad)]


@pytest.mark.parametrize("args, expected", [
    (["--properties-dir", "d", "--properties", "p.properties"], "drop --properties"),
    (["--properties", "a.properties", "--properties", "b.properties", "--source-region", "us-east-1"],
     "drop --source-region"),
    (["--properties-dir", "d", "--kcl-property", "maxLeasesForWorker=3"], "drop --kcl-property"),
    (["--properties-dir", "d", "--write-properties", "x.properties"], "drop --write-properties"),
])
def test_several_paths_take_their_settings_from_their_files_only(tmp_path, monkeypatch, args, expected):
    (tmp_path / "d").mkdir()
    result, execs = run_in_process(monkeypatch, tmp_path, *args)
    assert result.exit_code == 2 and expected in result.output and not execs


def test_a_directory_with_no_path_that_can_start_is_refused(moto_endpoint, tmp_path, monkeypatch):
    paths_dir = tmp_path / "paths"
    paths_dir.mkdir()
    table_path_file(moto_endpoint, paths_dir, "bad.properties", destination=unique_table("gone"))
    result, execs = run_in_process(monkeypatch, tmp_path, "--properties-dir", str(paths_dir))
    assert result.exit_code == 2 and "holds no path that can start (1 refused" in result.output and not execs


def test_the_daemons_check_of_an_added_file_prints_its_environment_or_one_line(moto_endpoint, tmp_path):
    good = table_path_file(moto_endpoint, tmp_path, "good.properties")
    stopped.record(good, "NonRetryableWriteError: old", "shard-1")
    bad = table_path_file(moto_endpoint, tmp_path, "bad.properties", destination=unique_table("gone"))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    ok = subprocess.run([sys.executable, "-m", "replicator.kcl.pathset", str(good)], capture_output=True, text=True,
                        env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["REPLICATOR_PROPERTIES"] == str(good)
    assert stopped.read(good) is None  # the path starts again: its old stop record is gone
    refused = subprocess.run([sys.executable, "-m", "replicator.kcl.pathset", str(bad)], capture_output=True,
                             text=True, env=env, timeout=60)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 2 and len(lines) == 1 and "does not exist" in lines[0] and not refused.stdout


class FailingApplier:
    def apply(self, records):
        raise NonRetryableWriteError("ResourceNotFoundException", "Requested resource not found")


def test_a_non_retryable_failure_records_why_the_path_stopped_and_status_shows_it(tmp_path):
    properties = tmp_path / "p.properties"
    exits: list[int] = []
    processor = ReplicationProcessor(FailingApplier(), exit_fn=exits.append, properties=properties)

    class Input:
        records: list = []
        millis_behind_latest = 0
        checkpointer = None
    processor.process_records(Input())
    assert exits == [EXIT_NON_RETRYABLE]
    record = stopped.read(properties)
    assert record is not None and "ResourceNotFoundException" in record["reason"]
    assert oct(stopped.record_path(properties).stat().st_mode & 0o777) == "0o600"

    shards = [ShardStatus("s-1", "w", "42", "active", 0, False, None),
              ShardStatus("s-0", None, "SHARD_END", "done", 0, False, None)]
    shown = with_stop_record(shards, record)
    assert [s.state for s in shown] == ["stopped", "done"]
    assert "PATH STOPPED: NonRetryableWriteError: ResourceNotFoundException" in as_table(shown)
    stopped.clear(properties)
    assert with_stop_record(shards, stopped.read(properties)) == shards
