"""Kinesis paths as a user meets them: lease table names, validation, properties, start-up checks, decoding,
and the lazy replica's shared write cap."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from replicator.changes.codec import encode_record
from replicator.changes.formats import SourceRecord
from replicator.changes.versions import Versioning
from replicator.errors import ReplicatorError
from replicator.kcl import processor
from replicator.kcl.checks import check_kinesis_path
from replicator.kcl.config import (
    KINESIS_TASK_NAME_PREFIX,
    ReplicationPath,
    build_path,
    kinesis_task_name,
    path_from_properties,
    read_properties,
    task_name,
)
from replicator.kcl.ratelimit import SharedTokenBucket
from unit_helpers import REPO_ROOT, VENV_BIN, create_pk_table

REPLICATOR = str(VENV_BIN / "replicator")


def kinesis_path(**overrides) -> ReplicationPath:
    values = {"source_region": "us-east-1", "source_kinesis_stream": "events", "source_format": "binlog",
              "destination_region": "us-west-2", "destination_table": "dst"}
    return ReplicationPath(**{**values, **overrides})


def table_path(**overrides) -> ReplicationPath:
    values = {"source_region": "us-east-1", "source_table": "src", "destination_region": "us-west-2",
              "destination_table": "dst"}
    return ReplicationPath(**{**values, **overrides})


def replicator(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([REPLICATOR, *args], cwd=cwd, env=dict(os.environ), capture_output=True, text=True,
                          timeout=60)


# --- the lease table -------------------------------------------------------------------------------------


def test_a_kinesis_paths_lease_table_is_its_prefix_and_the_md5_of_the_four_names():
    expected = "KinesisCrossRegionReplication" + hashlib.md5(b"us-east-1" b"events" b"us-west-2" b"dst").hexdigest()
    assert kinesis_path().application_name == expected
    assert kinesis_task_name("us-east-1", "events", "us-west-2", "dst") == expected


def test_a_kinesis_path_never_shares_a_lease_table_with_a_table_path_of_the_same_names():
    kinesis = kinesis_path(source_kinesis_stream="orders")
    table = table_path(source_table="orders")
    assert kinesis.application_name != table.application_name
    assert table.application_name == task_name("us-east-1", "orders", "us-west-2", "dst")
    assert kinesis.application_name.startswith(KINESIS_TASK_NAME_PREFIX)
    # Naming a table too (keys-only's read-through table) does not move a Kinesis path's lease table.
    with_table = kinesis_path(source_kinesis_stream="orders", source_format="keys-only", source_table="orders")
    assert with_table.application_name == kinesis.application_name


def test_a_given_task_name_gets_the_kinesis_prefix():
    assert kinesis_path(task_name="Mine").application_name == "KinesisCrossRegionReplicationMine"
    assert table_path(task_name="Mine").application_name == "DynamoDBCrossRegionReplicationMine"


def test_task_name_command_prints_a_kinesis_paths_lease_table(tmp_path):
    result = replicator("task-name", "--source-region", "r", "--source-kinesis-stream", "s",
                        "--destination-region", "d", "--destination-table", "ttt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "KinesisCrossRegionReplication" + hashlib.md5(b"rsdttt").hexdigest() + "\n"


def test_task_name_command_adds_the_kinesis_prefix_to_a_given_name(tmp_path):
    result = replicator("task-name", "--source-region", "r", "--sourceKinesisStream", "s",
                        "--destination-region", "d", "--destination-table", "ttt", "--task-name", "Mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "KinesisCrossRegionReplicationMine\n"


# --- validation ------------------------------------------------------------------------------------------

KINESIS = {"source_region": "us-east-1", "source_kinesis_stream": "events", "destination_region": "us-west-2",
           "destination_table": "dst"}
TABLE = {"source_region": "us-east-1", "source_table": "src", "destination_region": "us-west-2",
         "destination_table": "dst"}
WHEN = "2026-11-30T10:00:00Z"


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        (KINESIS, "sourceFormat"),
        ({**KINESIS, "source_format": "keys-only"}, "sourceTable"),
        ({**KINESIS, "source_format": "binlog", "version_attribute": "ver"}, "versionAttribute"),
        ({**KINESIS, "source_format": "binlog", "initial_position": "AT_TIMESTAMP"}, "initialTimestamp"),
        ({**KINESIS, "source_format": "binlog", "initial_timestamp": WHEN}, "initialTimestamp"),
        ({**KINESIS, "source_format": "binlog", "initial_position": "LATEST", "initial_timestamp": WHEN},
         "initialTimestamp"),
        ({**TABLE, "initial_position": "AT_TIMESTAMP", "initial_timestamp": WHEN}, "initialPosition"),
        ({**TABLE, "source_format": "binlog"}, "sourceFormat"),
    ],
    ids=["kinesis-without-format", "keys-only-without-table", "version-attribute-with-binlog",
         "at-timestamp-without-timestamp", "timestamp-without-at-timestamp", "timestamp-with-latest",
         "at-timestamp-on-a-table-path", "format-on-a-table-path"],
)
def test_an_invalid_path_is_one_line_naming_the_setting(values, setting):
    with pytest.raises(ReplicatorError) as info:
        build_path(values)
    message = str(info.value)
    assert "\n" not in message
    assert setting in message, message
    assert message.startswith("invalid options: ")
    assert info.value.exit_code == 2


def test_a_version_attribute_is_allowed_with_dynamodb_cdc_and_a_timestamp_with_at_timestamp():
    cdc = build_path({**KINESIS, "source_format": "dynamodb-cdc", "version_attribute": "ver"})
    assert cdc.fence_attribute == "ver"
    replay = build_path({**KINESIS, "source_format": "binlog", "initial_position": "AT_TIMESTAMP",
                         "initial_timestamp": WHEN})
    assert replay.initial_timestamp == datetime(2026, 11, 30, 10, tzinfo=timezone.utc)


# --- properties ------------------------------------------------------------------------------------------

ENDPOINT = "http://127.0.0.1:4566"


def replay_path(**overrides) -> ReplicationPath:
    return kinesis_path(source_endpoint=ENDPOINT, initial_position="AT_TIMESTAMP",
                        initial_timestamp=datetime(2026, 11, 30, 10, 0, 0, tzinfo=timezone.utc), **overrides)


def test_a_kinesis_paths_properties_are_the_stock_multilangdaemons():
    props = replay_path().to_properties()
    assert props["streamName"] == "events"
    assert props["retrievalMode"] == "POLLING"
    assert props["kinesisEndpoint"] == ENDPOINT
    assert props["dynamoDBEndpoint"] == ENDPOINT
    assert props["initialPositionInStreamExtended"] == str(int(datetime(2026, 11, 30, 10, tzinfo=timezone.utc).timestamp()))
    assert props["initialPositionInStreamExtended"] == "1796032800"
    assert "initialPositionInStream" not in props
    assert props["applicationName"] == kinesis_task_name("us-east-1", "events", "us-west-2", "dst")
    assert props["sourceKinesisStream"] == "events" and props["sourceFormat"] == "binlog"


def test_a_kinesis_paths_lease_endpoint_is_the_kcl_endpoint_when_given():
    props = replay_path(kcl_endpoint="http://127.0.0.1:9999").to_properties()
    assert props["kinesisEndpoint"] == ENDPOINT
    assert props["dynamoDBEndpoint"] == "http://127.0.0.1:9999"


def test_a_kinesis_path_without_at_timestamp_keeps_initial_position_in_stream():
    props = kinesis_path(initial_position="LATEST").to_properties()
    assert props["initialPositionInStream"] == "LATEST"
    assert "initialPositionInStreamExtended" not in props
    assert "kinesisEndpoint" not in props and "dynamoDBEndpoint" not in props


def test_a_table_path_has_none_of_the_kinesis_keys():
    props = table_path(source_endpoint=ENDPOINT).to_properties()
    for key in ("retrievalMode", "kinesisEndpoint", "dynamoDBEndpoint", "initialPositionInStreamExtended"):
        assert key not in props


def test_table_and_kinesis_paths_both_turn_the_schedulers_loop_faster():
    """Our launcher reads shardConsumerDispatchPollIntervalMillis (a consumer waits one turn of the loop per
    state on its way to the first batch), and runs Kinesis paths too."""
    assert table_path().to_properties()["shardConsumerDispatchPollIntervalMillis"] == "200"
    assert replay_path().to_properties()["shardConsumerDispatchPollIntervalMillis"] == "200"


@pytest.mark.parametrize(
    "original",
    [
        replay_path(),
        replay_path(task_name="Mine", max_writes_per_second=250.5, kcl_endpoint="http://127.0.0.1:9999"),
        kinesis_path(source_format="keys-only", source_table="src", max_writes_per_second=10),
        kinesis_path(source_format="dynamodb-cdc", source_table="src", version_attribute="ver"),
    ],
    ids=["replay", "replay-every-setting", "keys-only", "dynamodb-cdc"],
)
def test_a_kinesis_path_round_trips_through_its_properties_file(tmp_path, original):
    file = tmp_path / "p.properties"
    original.write_properties(file)
    assert path_from_properties(read_properties(file)) == original


# --- start-up checks -------------------------------------------------------------------------------------


@pytest.fixture
def aws():
    with mock_aws():
        yield (boto3.client("kinesis", region_name="us-east-1"), boto3.client("dynamodb", region_name="us-east-1"),
               boto3.client("dynamodb", region_name="us-west-2"))


def check_problem(path: ReplicationPath, kinesis, source, destination) -> str:
    with pytest.raises(ReplicatorError) as info:
        check_kinesis_path(path, kinesis, source, destination)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_stream_is_one_line_naming_it(aws):
    kinesis, source, destination = aws
    create_pk_table(destination, "dst")
    message = check_problem(kinesis_path(), kinesis, source, destination)
    assert "Kinesis stream us-east-1/events does not exist" in message
    assert "--source-kinesis-stream" in message


def test_an_existing_stream_with_a_missing_destination_names_the_destination(aws):
    kinesis, source, destination = aws
    kinesis.create_stream(StreamName="events", ShardCount=1)
    message = check_problem(kinesis_path(), kinesis, source, destination)
    assert "destination table us-west-2/dst does not exist" in message
    assert "events" not in message


def test_a_good_kinesis_path_returns_the_streams_arn(aws):
    kinesis, source, destination = aws
    kinesis.create_stream(StreamName="events", ShardCount=2)
    create_pk_table(destination, "dst")
    arn = kinesis.describe_stream_summary(StreamName="events")["StreamDescriptionSummary"]["StreamARN"]
    stream_arn, description = check_kinesis_path(kinesis_path(), kinesis, source, destination)
    assert stream_arn == arn
    assert stream_arn.endswith(":stream/events")
    assert description["TableName"] == "dst"


def test_a_keys_only_path_needs_its_source_table(aws):
    kinesis, source, destination = aws
    kinesis.create_stream(StreamName="events", ShardCount=1)
    create_pk_table(destination, "dst")
    path = kinesis_path(source_format="keys-only", source_table="src")
    assert "source table us-east-1/src does not exist" in check_problem(path, kinesis, source, destination)
    create_pk_table(source, "src", key_type="N")
    assert "key schemas differ" in check_problem(path, kinesis, source, destination)


# --- the processor's decoder and versioning --------------------------------------------------------------


def test_a_binlog_path_decodes_with_the_key_schema_from_the_environment():
    decoder = processor.record_format(kinesis_path(), {"REPLICATOR_KEY_SCHEMA": "pk:S,sk:N"})
    assert decoder.name == "binlog"
    data = b'{"Action": "PutItem", "Data": {"pk": "a", "sk": 12345678901234567890123456789012345678, "v": "x"}}'
    [change] = decoder.decode(SourceRecord(data, "49590338271490256608559692538361571095921575989136588898"))
    assert change.keys == {"pk": {"S": "a"}, "sk": {"N": "12345678901234567890123456789012345678"}}
    assert change.new_image == {**change.keys, "v": {"S": "x"}}
    assert not change.read_through
    [delete] = decoder.decode(SourceRecord(b'{"Action": "DeleteItem", "Data": {"pk": "a", "sk": 1}}', "2"))
    assert delete.is_delete and delete.keys == {"pk": {"S": "a"}, "sk": {"N": "1"}}


@pytest.mark.parametrize("schema", [None, "", "pk", "pk:X", ":S", "pk:S,sk"])
def test_a_bad_key_schema_in_the_environment_is_a_replicator_error(schema):
    env = {} if schema is None else {"REPLICATOR_KEY_SCHEMA": schema}
    with pytest.raises(ReplicatorError) as info:
        processor.record_format(kinesis_path(), env)
    assert "REPLICATOR_KEY_SCHEMA" in str(info.value)
    assert "\n" not in str(info.value)


def test_a_keys_only_table_stream_is_read_through():
    record = encode_record("MODIFY", {"pk": {"S": "a"}}, {"pk": {"S": "a"}, "v": {"S": "x"}}, "100")
    decoder = processor.record_format(table_path(), {"REPLICATOR_STREAM_VIEW": "KEYS_ONLY"})
    [change] = decoder.decode(SourceRecord(record, "100"))
    assert change.read_through
    assert change.new_image is None and change.keys == {"pk": {"S": "a"}}
    # With new images in the stream, the record's image is written as it is.
    [change] = processor.record_format(table_path(), {"REPLICATOR_STREAM_VIEW": "NEW_AND_OLD_IMAGES"}).decode(
        SourceRecord(record, "100"))
    assert not change.read_through and change.new_image == {"pk": {"S": "a"}, "v": {"S": "x"}}


def test_a_dynamodb_cdc_path_is_versioned_by_time_in_replicator_version():
    versioning = processor.versioning(kinesis_path(source_format="dynamodb-cdc"), None)
    assert versioning == Versioning.by_time("replicator_version")
    assert versioning.attribute == "replicator_version"
    assert versioning.ties_apply
    given = processor.versioning(kinesis_path(source_format="dynamodb-cdc", version_attribute="ver"), None)
    assert given == Versioning.by_time("ver")
    assert processor.versioning(kinesis_path(source_format="binlog"), None) is None


# --- the lazy replica's write cap ------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_three_times_the_rate_from_a_fresh_bucket_sleeps_two_seconds(tmp_path):
    fake = FakeTime()
    bucket = SharedTokenBucket(tmp_path / "b.bucket", 50, clock=fake.clock, sleep=fake.sleep)
    try:
        waits = [bucket.take(1) for _ in range(150)]
    finally:
        bucket.close()
    assert waits[:50] == [0.0] * 50  # one second's burst
    assert sum(fake.slept) == pytest.approx(2.0)
    assert fake.now - 1_000_000.0 == pytest.approx(2.0)


def test_one_large_take_from_a_fresh_bucket_sleeps_off_its_debt(tmp_path):
    fake = FakeTime()
    bucket = SharedTokenBucket(tmp_path / "b.bucket", 50, clock=fake.clock, sleep=fake.sleep)
    try:
        assert bucket.take(150) == pytest.approx(2.0)
        assert bucket.take(1) == pytest.approx(1 / 50)  # the sleep paid the debt; no burst is left
    finally:
        bucket.close()
    assert sum(fake.slept) == pytest.approx(2.0 + 1 / 50)


def test_the_writer_threads_of_one_processor_lose_no_take(tmp_path):
    """The writer's threads share the bucket's open file, which ``flock`` does not exclude: every take by
    eight threads at once must be counted, or the processor writes faster than its cap."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, between the read and the write
    try:
        bucket = SharedTokenBucket(tmp_path / "b.bucket", 50, clock=lambda: 1_000_000.0, sleep=lambda _: None)
        threads = [threading.Thread(target=lambda: [bucket.take(1) for _ in range(500)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert bucket.take(0) == pytest.approx((8 * 500 - 50) / 50)  # the debt of every take but the burst
    finally:
        sys.setswitchinterval(previous)
        bucket.close()


CHILD = r"""
import sys, time
from pathlib import Path
from replicator.kcl.ratelimit import SharedTokenBucket
bucket = SharedTokenBucket(Path(sys.argv[1]), float(sys.argv[2]))
print("ready", flush=True)
sys.stdin.readline()
start = time.time()
for _ in range(int(sys.argv[3])):
    bucket.take(1)
print(start, time.time(), flush=True)
"""


def test_two_processes_sharing_a_bucket_write_at_the_rate_together(tmp_path):
    """Two workers' processors share one cap: 400 items at 200 a second, of which 200 are the one-second
    burst, take one second from the first take to the last (not half a second, as two separate caps would)."""
    rate, each = 200, 200
    bucket = tmp_path / "shared.bucket"
    children = [
        subprocess.Popen([sys.executable, "-c", CHILD, str(bucket), str(rate), str(each)], cwd=REPO_ROOT,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for child in children:  # both have imported and opened the bucket before either takes
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        times = []
        for child in children:
            out, err = child.communicate(timeout=30)
            assert child.returncode == 0, err
            times.append(tuple(map(float, out.split())))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    started = min(start for start, _ in times)
    finished = max(end for _, end in times)
    # (2 x 200 items - 200 burst) / 200 per second = 1 s
    assert 0.8 <= finished - started <= 1.6, times
