"""The `replicator` console script, run as a user runs it: errors are one line and exit status 2."""

from __future__ import annotations

import os
import subprocess

import pytest

from pathlib import Path

from replicator.kcl.config import build_path, path_from_properties, read_properties
from unit_helpers import FAKE_AWS_ENV, VENV_BIN, create_pk_table, endpoint_client, unique_table

REPLICATOR = str(VENV_BIN / "replicator")
PINNED = "DynamoDBCrossRegionReplication0f1a71f75bedfcf19fc3cf8edbabf287"  # us-east-1 aaa us-west-2 bbb
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
    result = replicator("task-name", "--sourceRegion", "us-east-1", "--source-table", "aaa",
                        "--destination-region", "us-west-2", "--destinationTable", "bbb", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == PINNED + "\n"


def test_task_name_with_a_given_name_adds_the_prefix(tmp_path):
    result = replicator("task-name", "--source-region", "us-east-1", "--source-table", "aaa",
                        "--destination-region", "us-west-2", "--destination-table", "bbb", "--taskName", "Mine",
                        cwd=tmp_path)
    assert result.stdout == "DynamoDBCrossRegionReplicationMine\n"


@pytest.mark.parametrize("args, named", [
    (["--source-table", "aaa", "--task-name", ""], "--task-name is empty"),
    (["--source-table", "", "--task-name", "Mine"], "sourceTable (source-table)"),
    (["--source-table", "aaa", "--destination-table", ""], "destinationTable (destination-table)"),
    (["--source-kinesis-stream", ""], "sourceKinesisStream (source-kinesis-stream)"),
])
def test_task_name_refuses_empty_names_as_run_does(tmp_path, args, named):
    base = {"--source-region": "us-east-1", "--destination-region": "us-west-2", "--destination-table": "bbb"}
    given = dict(zip(args[::2], args[1::2]))
    argv = [a for k, v in {**base, **given}.items() for a in (k, v)]
    assert named in one_error_line(replicator("task-name", *argv, cwd=tmp_path))
    assert named in one_error_line(replicator("run", *argv, cwd=tmp_path))


def test_task_name_of_a_kinesis_path_with_a_source_table_is_the_one_run_uses(tmp_path):
    from replicator.kcl.config import ReplicationPath

    result = replicator("task-name", "--source-region", "us-east-1", "--source-kinesis-stream", "events",
                        "--source-table", "aaa", "--destination-region", "us-west-2", "--destination-table", "bbb",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    run_path = ReplicationPath(source_region="us-east-1", source_kinesis_stream="events", source_table="aaa",
                               source_format="keys-only", destination_region="us-west-2", destination_table="bbb")
    assert result.stdout == run_path.application_name + "\n"


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
    assert list(tmp_path.iterdir()) == []  # checked before the write: no properties/ directory, no file


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


@pytest.fixture
def good_tables(moto_endpoint):
    """A source with a stream in us-east-1 and a destination in us-west-2, both keyed by pk, on moto."""
    source, destination = unique_table("src"), unique_table("dst")
    create_pk_table(endpoint_client(moto_endpoint, "us-east-1"), source, stream_view="NEW_AND_OLD_IMAGES")
    create_pk_table(endpoint_client(moto_endpoint, "us-west-2"), destination)
    return ["--source-region", "us-east-1", "--source-table", source, "--source-endpoint", moto_endpoint,
            "--destination-region", "us-west-2", "--destination-table", destination,
            "--destination-endpoint", moto_endpoint]


def run_in_process(monkeypatch, tmp_path, *args: str):
    """`replicator run` in this process, up to the exec of the daemon, which is recorded instead."""
    from click.testing import CliRunner

    from replicator.cli.main import main
    from replicator.kcl import launcher

    execs: list[Path] = []
    monkeypatch.setattr(launcher, "exec_daemon", lambda argv, env: execs.append(Path(argv[-1])))
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(main, ["run", *args]), execs


@pytest.mark.parametrize("option", ["--cloudwatch-endpoint", "--cloudWatchEndpoint"])
def test_run_writes_the_cloudwatch_endpoint_where_the_launcher_and_processors_read_it(tmp_path, monkeypatch,
                                                                                       good_tables, option):
    result, execs = run_in_process(monkeypatch, tmp_path, *good_tables, option, "http://127.0.0.1:4566",
                                   "--write-properties", "p.properties")
    assert result.exit_code == 0, result.output
    assert execs == [tmp_path / "p.properties"]
    props = read_properties(tmp_path / "p.properties")
    assert props["cloudWatchEndpoint"] == "http://127.0.0.1:4566"
    assert path_from_properties(props).cloudwatch_endpoint == "http://127.0.0.1:4566"


def test_run_says_when_the_daemon_starts_without_its_class_archive(tmp_path, monkeypatch, good_tables, capfd):
    monkeypatch.setenv("REPLICATOR_CLASS_ARCHIVE", str(tmp_path / "untrained.jsa"))
    result, execs = run_in_process(monkeypatch, tmp_path, *good_tables, "--write-properties", "p.properties")
    assert result.exit_code == 0, result.output
    assert execs == [tmp_path / "p.properties"]
    warning = [line for line in (result.output + capfd.readouterr().err).splitlines() if "class_archive_missing" in line]
    assert len(warning) == 1 and "make setup" in warning[0] and "untrained.jsa" in warning[0]


@pytest.mark.parametrize("refusal, expected", [
    (["--version-attribute", "pk"], "versionAttribute pk reserves pk"),
    (["--destination-endpoint", "http://127.0.0.1:1"], "cannot reach destination table"),
])
def test_a_refused_run_leaves_the_working_properties_file_as_it_was(tmp_path, good_tables, refusal, expected):
    first = replicator("run", *good_tables, "--write-properties", "p.properties", cwd=tmp_path,
                       env={**os.environ, "PATH": "/nonexistent"})  # every check passes up to java
    assert "java not found" in one_error_line(first) and not (tmp_path / "p.properties").exists()
    path_from_options = build_path(dict(zip(["source_region", "source_table", "source_endpoint", "destination_region",
                                             "destination_table", "destination_endpoint"], good_tables[1::2])))
    path_from_options.write_properties(tmp_path / "p.properties")
    before = (tmp_path / "p.properties").read_bytes()
    options = dict(zip(good_tables[::2], good_tables[1::2]))
    options.update(dict(zip(refusal[::2], refusal[1::2])))
    argv = [a for k, v in options.items() for a in (k, v)]
    assert expected in one_error_line(replicator("run", *argv, "--write-properties", "p.properties", cwd=tmp_path))
    assert (tmp_path / "p.properties").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.properties"]


def test_run_into_an_unwritable_place_is_one_line_before_anything_else(tmp_path):
    (tmp_path / "a-file").write_text("")
    env = {"PATH": "/nonexistent", **FAKE_AWS_ENV}  # no java either: the write target is checked first
    line = one_error_line(replicator("run", *FOUR, "--write-properties", "a-file/p.properties", cwd=tmp_path, env=env))
    assert "--write-properties a-file/p.properties cannot be written" in line
    line = one_error_line(replicator("run", *FOUR, "--write-properties", ".", cwd=tmp_path, env=env))
    assert "--write-properties . is a directory" in line
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_run_takes_the_path_keys_it_has_no_option_for_from_kcl_property(tmp_path, monkeypatch, good_tables):
    result, _ = run_in_process(monkeypatch, tmp_path, *good_tables, "--kcl-property", "metricsIntervalSeconds=5",
                               "--kcl-property", "maxLeasesForWorker=3", "--write-properties", "p.properties")
    assert result.exit_code == 0, result.output
    props = read_properties(tmp_path / "p.properties")
    assert path_from_properties(props).metrics_interval_seconds == 5 and props["maxLeasesForWorker"] == "3"
    line = one_error_line(replicator("run", *FOUR, "--kcl-property", "metricsIntervalSeconds=often", cwd=tmp_path))
    assert "metricsIntervalSeconds" in line


@pytest.mark.parametrize("setting, named", [
    ("applicationName=Other", "use --task-name instead"),
    ("sourceEndpoint=http://x:1", "use --source-endpoint instead"),
    ("destinationTable=other", "use --destination-table instead"),
    ("kinesisEndpoint=http://x:1", "use --source-endpoint instead"),
    ("dynamoDBEndpoint=http://x:1", "use --kcl-endpoint instead"),
    ("maxRecords=10", "use --batch-size instead"),
    ("cloudWatchEndpoint=http://x:1", "use --cloudwatch-endpoint instead"),
    ("executableName=other", "cannot be changed"),
])
def test_kcl_property_refuses_the_keys_the_tool_writes_itself(tmp_path, setting, named):
    line = one_error_line(replicator("run", *FOUR, "--kcl-property", setting, cwd=tmp_path))
    assert f"--kcl-property {setting.partition('=')[0]}: " in line and named in line
    assert list(tmp_path.iterdir()) == []


SELF = ["--source-region", "us-east-1", "--source-table", "orders", "--destination-region", "us-east-1"]


@pytest.mark.parametrize("args", [
    [*SELF, "--destination-table", "orders"],
    [*SELF, "--destination-table", "arn:aws:dynamodb:us-east-1:123456789012:table/orders"],
    [*SELF, "--destination-table", "orders", "--destination-endpoint", "https://dynamodb.us-east-1.amazonaws.com/"],
    [*SELF, "--destination-table", "orders", "--source-endpoint", "http://127.0.0.1:8000",
     "--destination-endpoint", "http://127.0.0.1:8000", "--version-attribute", "v"],
    ["--source-table", "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
     "--destination-region", "us-east-1", "--destination-table", "orders"],
], ids=["names", "arn", "default-endpoint", "local-server", "arn-region"])
def test_run_and_task_name_refuse_a_path_onto_itself(tmp_path, args):
    without_version = args[:-2] if "--version-attribute" in args else args  # task-name has no such option
    for command, argv in (("run", args), ("task-name", without_version)):
        line = one_error_line(replicator(command, *argv, cwd=tmp_path))
        assert "source and destination are the same table us-east-1/orders" in line
    assert list(tmp_path.iterdir()) == []


def test_a_properties_file_of_a_path_onto_itself_is_refused(tmp_path):
    (tmp_path / "p.properties").write_text("sourceRegion=us-east-1\nsourceTable=orders\n"
                                           "destinationRegion=us-east-1\ndestinationTable=orders\n")
    line = one_error_line(replicator("run", "--properties", "p.properties", cwd=tmp_path))
    assert "p.properties" in line and "same table us-east-1/orders" in line


def test_a_path_to_the_same_name_elsewhere_is_not_onto_itself(tmp_path):
    for extra in (["--destination-region", "us-west-2"],
                  ["--destination-region", "us-east-1", "--destination-endpoint", "http://127.0.0.1:8000"]):
        result = replicator("task-name", "--source-region", "us-east-1", "--source-table", "orders",
                            "--destination-table", "orders", *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["copy-table", "bootstrap"])
@pytest.mark.parametrize("endpoints", [[], ["--source-endpoint", "http://127.0.0.1:1", "--destination-endpoint",
                                            "http://127.0.0.1:1/"]], ids=["aws", "same-endpoint"])
def test_copy_table_and_bootstrap_refuse_a_table_onto_itself(tmp_path, command, endpoints):
    line = one_error_line(replicator(command, "us-east-1/orders", "us-east-1/orders", *endpoints, cwd=tmp_path))
    assert "SRC us-east-1/orders and DST us-east-1/orders: source and destination are the same table" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, named", [
    (["--kcl-property", "sourceTable=other"], "use SRC instead"),
    (["--kcl-property", "applicationName=Other"], "use --task-name instead"),
    (["--task-name", ""], "--task-name is empty"),
    (["--write-properties", "a-file/p.properties"], "--write-properties a-file/p.properties cannot be written"),
    (["--daemon-log", "a-file/d.log"], "--daemon-log a-file/d.log cannot be written"),
    (["--load", "export"], "--load export takes --export-bucket"),
    (["--load", "export", "--export-bucket", "s3://b-x", "--export", "s3://b-x/AWSDynamoDB/1"], "one of them"),
    (["--export-bucket", "s3://b-x"], "--export-bucket and --export go with --load export"),
    (["--load", "export", "--export-bucket", "s3://b-x", "--resume"], "--resume continues a --load scan"),
    (["--load", "export", "--export-bucket", "/tmp/x"], "is not an S3 URL"),
    (["--load", "export", "--export-bucket", "s3://b-x", "--segment", "0", "--segments", "2"], "--segment splits a --load scan"),
])
def test_bootstrap_checks_its_options_before_it_reads_or_writes_anything(tmp_path, args, named):
    (tmp_path / "a-file").write_text("")
    line = one_error_line(replicator("bootstrap", "us-east-1/src-missing", "us-west-2/dst", *args,
                                     "--source-endpoint", "http://127.0.0.1:1", cwd=tmp_path))
    assert named in line
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_lambda_local_names_its_own_options(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_") and k not in ("AWS_REGION",)}
    line = one_error_line(replicator("lambda-local", "--source-table", "orders", cwd=tmp_path, env=env))
    assert "--destination-table is not set" in line and "REPLICATOR_" not in line
    line = one_error_line(replicator("lambda-local", "--source-table", "orders", "--destination-table", "replica",
                                     "--destination-region", "us-west-2", "--destination-endpoint", "localhost",
                                     cwd=tmp_path, env=env))
    assert "--destination-endpoint 'localhost' is not a URL" in line and "REPLICATOR_" not in line


@pytest.mark.parametrize("args", [
    ["--source-table", "orders", "--destination-table", "orders", "--destination-region", "us-east-1"],
    ["--source-kinesis-stream", "events", "--source-format", "keys-only", "--source-table", "orders",
     "--destination-table", "arn:aws:dynamodb:us-east-1:123456789012:table/orders", "--destination-region", "us-east-1"],
], ids=["table-stream", "kinesis-keys-only"])
def test_lambda_local_refuses_a_path_onto_itself(tmp_path, args):
    line = one_error_line(replicator("lambda-local", "--source-region", "us-east-1", *args, cwd=tmp_path))
    assert "--source-table and --destination-table: source and destination are the same table us-east-1/orders" in line


def test_run_with_properties_and_write_properties_says_which_to_drop(tmp_path):
    line = one_error_line(replicator("run", "--properties", "p.properties", "--write-properties", "q.properties",
                                     cwd=tmp_path))
    assert "drop --write-properties" in line and list(tmp_path.iterdir()) == []
