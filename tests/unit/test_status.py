"""`replicator status --watch`: a refresh every interval, one JSON object a line with --json, Ctrl-C exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from replicator.kcl import status as status_module
from replicator.kcl.config import task_name
from unit_helpers import VENV_BIN, create_pk_table, endpoint_client, unique_table

REPLICATOR = str(VENV_BIN / "replicator")


@pytest.fixture
def leased_path(moto_endpoint):
    """A source table with 3 stream records and a lease table whose one lease sits at TRIM_HORIZON."""
    source = unique_table("src")
    client = endpoint_client(moto_endpoint)
    create_pk_table(client, source, stream_view="NEW_AND_OLD_IMAGES")
    for key in ("a", "b", "c"):
        client.put_item(TableName=source, Item={"pk": {"S": key}})
    streams = boto3.client("dynamodbstreams", region_name="us-east-1", endpoint_url=moto_endpoint)
    arn = client.describe_table(TableName=source)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    lease_table = task_name("us-east-1", source, "eu-west-1", "dst")
    client.create_table(TableName=lease_table, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    client.put_item(TableName=lease_table, Item={"leaseKey": {"S": shard}, "checkpoint": {"S": "TRIM_HORIZON"},
                                                 "leaseOwner": {"S": "worker-1"}})
    return ["--source-region", "us-east-1", "--source-table", source, "--source-endpoint", moto_endpoint,
            "--destination-region", "eu-west-1", "--destination-table", "dst"], shard


def test_watch_with_json_prints_one_object_a_line_per_refresh(leased_path, tmp_path):
    options, shard = leased_path
    result = subprocess.run([REPLICATOR, "status", *options, "--watch", "--json", "--interval", "0.2", "--count", "2"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    refreshes = [json.loads(line) for line in lines]
    for refresh in refreshes:
        assert datetime.fromisoformat(refresh["at"]).tzinfo is not None
        (only,) = refresh["shards"]
        assert only["shard_id"] == shard and only["owner"] == "worker-1" and only["behind_records"] == 3
    assert refreshes[0]["at"] <= refreshes[1]["at"]


def test_without_watch_the_json_is_unchanged(leased_path, tmp_path):
    options, shard = leased_path
    result = subprocess.run([REPLICATOR, "status", *options, "--json"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (only,) = json.loads(result.stdout)
    assert only["shard_id"] == shard and only["behind_records"] == 3


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_ctrl_c_ends_a_watch_with_status_0_and_no_traceback(leased_path, tmp_path, as_json):
    options, _ = leased_path
    argv = [REPLICATOR, "status", *options, "--watch", "--interval", "0.2"] + (["--json"] if as_json else [])
    # Ctrl-C as at a terminal: SIGINT at its default even when the test runner was started in the background
    # (a non-interactive shell's background job starts with SIGINT ignored, and Python keeps it so).
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # A first refresh is out: the watch is running (a table's header, then its column names).
        first = [proc.stdout.readline() for _ in range(1 if as_json else 2)]
        assert all(line.strip() for line in first), proc.stderr.read() if proc.poll() is not None else first
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    if as_json:
        assert json.loads(first[0])["shards"]
    else:
        assert first[1].startswith("SHARD")


def test_count_without_watch_is_a_usage_error(leased_path, tmp_path):
    options, _ = leased_path
    result = subprocess.run([REPLICATOR, "status", *options, "--count", "2"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "--count needs --watch" in result.stderr


def test_snapshots_survive_a_later_failure_but_not_a_first_one():
    shard = status_module.ShardStatus("shardId-1", "w", "1", "active", 0, False, None)
    answers: list = [[shard], EndpointConnectionError(endpoint_url="http://x"), [shard]]
    sleeps: list[float] = []

    def read():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    at = datetime(2024, 1, 1, tzinfo=timezone.utc)
    got = list(status_module.snapshots(read, 1.5, count=3, sleep=sleeps.append, now=lambda: at))
    assert [s.shards for s in got] == [[shard], None, [shard]]
    assert "EndpointConnectionError" in got[1].error
    assert got[1].as_json() == {"at": "2024-01-01T00:00:00+00:00", "error": got[1].error}
    assert sleeps == [1.5, 1.5]

    def failing():
        raise EndpointConnectionError(endpoint_url="http://x")

    with pytest.raises(EndpointConnectionError):
        next(status_module.snapshots(failing, 1.0))


def test_a_shard_in_a_graceful_handoff_shows_the_worker_still_processing_it(leased_path, tmp_path, moto_endpoint):
    """KCL 3's leader writes the next owner into leaseOwner at once; the current one keeps processing (and is
    the checkpointOwner) until it has checkpointed. Status shows who processes the shard now."""
    options, shard = leased_path
    lease_table = task_name("us-east-1", options[3], "eu-west-1", "dst")
    endpoint_client(moto_endpoint).update_item(
        TableName=lease_table, Key={"leaseKey": {"S": shard}},
        UpdateExpression="SET leaseOwner = :next, checkpointOwner = :now",
        ExpressionAttributeValues={":next": {"S": "worker-2"}, ":now": {"S": "worker-1"}})
    result = subprocess.run([REPLICATOR, "status", *options, "--json"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (only,) = json.loads(result.stdout.strip().splitlines()[-1])
    assert only["owner"] == "worker-1" and only["state"] == "handoff"


def test_every_shard_of_a_long_lived_stream_is_listed_across_describe_stream_pages():
    """After months of splits a stream has more shards than one DescribeStream page (100) holds: bootstrap's
    open shards and lambda-local's shard discovery read them all."""
    from replicator.kcl.streams import stream_shards

    shards = [{"ShardId": f"shardId-{n:03}", "SequenceNumberRange": {"StartingSequenceNumber": str(n)}}
              for n in range(250)]

    class Pages:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def describe_stream(self, **kwargs):
            self.calls.append(kwargs)
            start = next((i + 1 for i, s in enumerate(shards) if s["ShardId"] == kwargs.get("ExclusiveStartShardId")), 0)
            page = shards[start:start + 100]
            more = {"LastEvaluatedShardId": page[-1]["ShardId"]} if start + 100 < len(shards) else {}
            return {"StreamDescription": {"Shards": page, **more}}

    client = Pages()
    assert stream_shards(client, "arn:stream") == shards
    assert [c.get("ExclusiveStartShardId") for c in client.calls] == [None, "shardId-099", "shardId-199"]
