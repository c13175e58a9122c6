"""Replication paths: the lease table name, and the properties file the daemon and processor read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from replicator.kcl.config import ReplicationPath, build_path, path_from_properties, read_properties, task_name
from replicator.errors import ReplicatorError

PINNED = "DynamoDBCrossRegionReplication0cc5006e160e88ca669865d35057dfe9"


def test_task_name_is_the_java_connectors_md5_name():
    expected = "DynamoDBCrossRegionReplication" + hashlib.md5(b"us-east-1a" + b"us-west-2b").hexdigest()
    assert task_name("us-east-1", "a", "us-west-2", "b") == expected == PINNED


def test_task_name_depends_on_every_name():
    names = {
        task_name("us-east-1", "a", "us-west-2", "b"),
        task_name("us-east-2", "a", "us-west-2", "b"),
        task_name("us-east-1", "c", "us-west-2", "b"),
        task_name("us-east-1", "a", "us-west-1", "b"),
        task_name("us-east-1", "a", "us-west-2", "c"),
    }
    assert len(names) == 5


def path(**overrides) -> ReplicationPath:
    values = {"source_region": "us-east-1", "source_table": "aaa", "destination_region": "us-west-2",
              "destination_table": "bbb"}
    return ReplicationPath(**{**values, **overrides})


def test_application_name_is_derived_or_the_prefix_plus_the_given_task_name():
    assert path().application_name == task_name("us-east-1", "aaa", "us-west-2", "bbb")
    assert path(task_name="MyTask").application_name == "DynamoDBCrossRegionReplicationMyTask"


FULL = dict(
    source_endpoint="http://127.0.0.1:8000",
    source_streams_endpoint="http://127.0.0.1:8001",
    destination_endpoint="http://127.0.0.1:8002",
    kcl_region="eu-west-1",
    kcl_endpoint="http://127.0.0.1:8003",
    task_name="Given=Name:with#chars",
    batch_size=250,
    parent_shard_poll_interval_millis=500,
    dont_publish_cloudwatch=True,
    cloudwatch_endpoint="http://127.0.0.1:8004",
    metrics_interval_seconds=5,
    initial_position="LATEST",
    write_concurrency=3,
    failover_time_millis=20_000,
    shutdown_grace_millis=5_000,
    idle_time_between_reads_millis=100,
)


@pytest.mark.parametrize("overrides", [{}, FULL], ids=["defaults", "every-setting"])
def test_properties_round_trip_to_an_equal_path(tmp_path, overrides):
    original = path(**overrides)
    file = tmp_path / "sub" / "p.properties"
    original.write_properties(file)
    assert path_from_properties(read_properties(file)) == original


def test_properties_round_trip_with_only_a_source_endpoint(tmp_path):
    original = path(source_endpoint="http://127.0.0.1:8000")
    original.write_properties(tmp_path / "p.properties")
    assert path_from_properties(read_properties(tmp_path / "p.properties")) == original


def test_written_properties_carry_the_daemons_keys(tmp_path):
    p = path(batch_size=123, dont_publish_cloudwatch=True, source_endpoint="http://127.0.0.1:8000")
    p.write_properties(tmp_path / "p.properties")
    props = read_properties(tmp_path / "p.properties")
    assert props["applicationName"] == task_name("us-east-1", "aaa", "us-west-2", "bbb")
    assert props["streamName"] == "aaa"
    assert props["executableName"] == "replicator-processor"
    assert props["maxRecords"] == "123"
    assert props["metricsLevel"] == "NONE"
    assert props["regionName"] == "us-east-1"
    # The launcher derives the streams and lease endpoints from sourceEndpoint when they are not given,
    # so the file names it once and an edit to it moves all three.
    assert props["sourceEndpoint"] == "http://127.0.0.1:8000"
    assert "sourceStreamsEndpoint" not in props and "dynamoDBEndpoint" not in props


def test_cloudwatch_metrics_are_published_unless_told_not_to(tmp_path):
    path().write_properties(tmp_path / "p.properties")
    assert read_properties(tmp_path / "p.properties")["metricsLevel"] != "NONE"


def test_extra_properties_are_written_too(tmp_path):
    path().write_properties(tmp_path / "p.properties", extra={"cloudWatchEndpoint": "http://cw:1"})
    assert read_properties(tmp_path / "p.properties")["cloudWatchEndpoint"] == "http://cw:1"


def test_batch_size_zero_is_rejected_naming_batch_size():
    with pytest.raises(ReplicatorError, match="batchSize") as info:
        build_path({"source_region": "us-east-1", "source_table": "aaa", "destination_region": "us-west-2",
                    "destination_table": "bbb", "batch_size": 0})
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_a_bad_value_in_a_properties_file_names_the_file_and_key(tmp_path):
    file = tmp_path / "p.properties"
    path().write_properties(file, extra={"writeConcurrency": "many"})
    with pytest.raises(ReplicatorError, match="writeConcurrency") as info:
        path_from_properties(read_properties(file), source=str(file))
    assert str(file) in str(info.value)


def test_a_missing_properties_file_is_a_replicator_error(tmp_path):
    with pytest.raises(ReplicatorError, match="not found"):
        read_properties(tmp_path / "missing.properties")


def test_the_documented_example_properties_describe_a_valid_path():
    example = Path(__file__).resolve().parents[2] / "properties" / "example.properties"
    props = read_properties(example)
    parsed = path_from_properties(props)
    assert props["applicationName"] == parsed.application_name
    assert props["streamName"] == parsed.source_table
    assert props["executableName"] == "replicator-processor"


def test_an_applicationname_that_disagrees_with_the_path_is_refused(tmp_path):
    file = tmp_path / "p.properties"
    path().write_properties(file, extra={"applicationName": "SomethingElse"})
    with pytest.raises(ReplicatorError, match="applicationName SomethingElse is not this path's lease table"):
        path_from_properties(read_properties(file), source=str(file))


@pytest.mark.parametrize("destination, same", [
    ({"destination_region": "us-east-1", "destination_table": "aaa"}, True),
    ({"destination_region": "us-east-1", "destination_table": "arn:aws:dynamodb:us-east-1:123456789012:table/aaa"}, True),
    ({"destination_region": "us-east-1", "destination_table": "aaa",
      "destination_endpoint": "HTTPS://dynamodb.us-east-1.amazonaws.com/"}, True),
    ({"destination_region": "us-east-1", "destination_table": "aaa", "destination_endpoint": "http://127.0.0.1:8000"}, False),
    ({"destination_region": "us-east-2", "destination_table": "aaa"}, False),
    ({"destination_region": "us-east-1", "destination_table": "aab"}, False),
])
def test_a_path_onto_itself_is_refused_by_region_table_and_effective_endpoint(destination, same):
    values = {"source_region": "us-east-1", "source_table": "aaa", **destination}
    if not same:
        assert build_path(values).destination_table == destination["destination_table"]
        return
    with pytest.raises(ReplicatorError, match="invalid options: source and destination are the same table "
                                              "us-east-1/aaa at https://dynamodb.us-east-1.amazonaws.com"):
        build_path(values)


def test_the_default_endpoint_is_the_one_boto3_would_use(monkeypatch):
    from replicator.changes.self_path import locate

    assert locate("us-east-1", "t", None).endpoint == "https://dynamodb.us-east-1.amazonaws.com"
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")
    assert locate("us-east-1", "t", None) == locate("us-east-1", "t", "http://127.0.0.1:8000/")


def test_kcl_property_keys_the_tool_writes_name_the_option_to_use():
    from replicator.kcl.config import parse_kcl_properties

    assert parse_kcl_properties(["maxLeasesForWorker = 3"]) == ({}, {"maxLeasesForWorker": "3"})
    assert parse_kcl_properties(["batchSize=5"], path_keys=("batchSize",)) == ({"batch_size": "5"}, {})
    with pytest.raises(ReplicatorError, match="streamName itself; use SRC instead"):
        parse_kcl_properties(["streamName=x"], options={"sourceTable": "SRC"})
    with pytest.raises(ReplicatorError, match="regionName itself; use --kcl-region instead"):
        parse_kcl_properties(["regionName=eu-west-1"])
