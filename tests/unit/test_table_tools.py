"""copy-table's rate limiter, estimate, state file and progress; diff-tables and the records on moto."""

from __future__ import annotations

import json

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws
from structlog.testing import capture_logs

from replicator.tables.copy import (
    CopyState,
    ProgressReporter,
    SegmentState,
    TokenBucket,
    copy_table,
    default_segments,
    estimate,
)
from replicator.tables.diff import diff_tables
from replicator.errors import ReplicatorError
from replicator.tables.records import diff_record, replicate_record
from replicator.tables.spec import open_table
from replicator.cli.tools import diff_tables_command


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_holds_the_rate_from_consumed_capacity():
    t = FakeTime()
    bucket = TokenBucket(10, clock=t.clock, sleep=t.sleep)
    for _ in range(50):  # 50 requests of 4 units each: 200 units at 10/s, less the 10-unit burst
        bucket.wait()
        bucket.consume(4)
    assert bucket.consumed == 200
    assert 18.0 <= t.now <= 19.5, t.now


def test_token_bucket_does_not_wait_within_its_burst():
    t = FakeTime()
    bucket = TokenBucket(100, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        bucket.wait()
        bucket.consume(9)
    assert t.sleeps == []


@pytest.fixture
def aws():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name in ("src", "dst"):
            client.create_table(
                TableName=name,
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 10},
            )
        yield client


def test_estimate_and_the_24_hour_warning(aws):
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    src.description.update(ItemCount=1000, TableSizeBytes=1000 * 2500)  # 2.5 KB a item: 3 KB of writes
    e = estimate(src, dst, None)
    assert (e.items, e.item_kb, e.write_units) == (1000, 3, 10)
    assert e.seconds == 300 and not e.exceeds_retention
    assert "1000 items x 3 KB / 10 write units/s" in e.lines()[0] and len(e.lines()) == 1
    src.description.update(ItemCount=10_000_000)
    lines = estimate(src, dst, None).lines()
    assert estimate(src, dst, None).exceeds_retention and "24 hours" in lines[1] and lines[1].startswith("warning")
    assert not estimate(src, dst, 1000).exceeds_retention  # --write-units replaces the table's capacity
    dst.description["BillingModeSummary"] = {"BillingMode": "PAY_PER_REQUEST"}
    assert estimate(src, dst, None).write_units == 4000


def test_default_segments_grow_with_the_table(aws):
    src = open_table("us-east-1/src", None)
    src.description["TableSizeBytes"] = 0
    assert default_segments(src) == 4
    src.description["TableSizeBytes"] = 100 * 1024**3
    assert default_segments(src) == 200
    src.description["TableSizeBytes"] = 10 * 1024**4
    assert default_segments(src) == 1000


def test_state_file_round_trips_binary_keys(tmp_path):
    path = tmp_path / "s.json"
    state = CopyState(path, "us-east-1/a", "eu-west-1/b", 3, {
        0: SegmentState({"pk": {"B": b"\x00\xff"}, "n": {"N": "12345678901234567890123456789012345678"}}, False, 25),
        2: SegmentState(None, True, 7),
    })
    state.save()
    loaded = CopyState.load(path)
    assert loaded.positions == state.positions and loaded.segments == 3
    path.write_text("{not json")
    with pytest.raises(ReplicatorError, match="not a copy-table state"):
        CopyState.load(path)


def test_progress_logs_when_not_a_terminal():
    reporter = ProgressReporter(100, 0, tty=False, interval_s=0.0)
    with capture_logs() as logs:
        reporter.advance(40)
    reporter.close()
    (event,) = [e for e in logs if e["event"] == "copy_progress"]
    assert event["items"] == 40 and event["total"] == 100 and "eta_s" in event and "items_per_s" in event


def put(client, table, pk, **attrs):
    client.put_item(TableName=table, Item={"pk": {"S": pk}, **attrs})


def test_copy_table_and_resume_refusal_on_moto(aws, tmp_path):
    for i in range(60):
        put(aws, "src", f"k{i}", v={"N": str(i)}, b={"B": bytes([i])})
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    state = tmp_path / "state.json"
    result = copy_table(src, dst, segments=1, page_size=7, state_path=state, progress=False)
    assert result.copied == 60 and not state.exists()
    assert len(aws.scan(TableName="dst")["Items"]) == 60
    state.write_text("{}")
    with pytest.raises(ReplicatorError, match="--resume"):
        copy_table(src, dst, segments=1, state_path=state, progress=False)


def test_diff_tables_repair_on_moto(aws):
    for i in range(30):
        put(aws, "src", f"k{i}", v={"N": str(i)})
        if i % 10:
            put(aws, "dst", f"k{i}", v={"N": str(i if i != 5 else -1)})
    put(aws, "dst", "extra", v={"N": "0"})
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    found = diff_tables(src, dst, page_size=8)
    assert (found.scanned, found.missing, found.different, found.extraneous) == (30, 3, 1, 1)
    assert found.unrepaired == 5
    repaired = diff_tables(src, dst, repair=True)
    assert (repaired.written, repaired.deleted, repaired.unrepaired) == (4, 1, 0)
    assert diff_tables(src, dst).discrepancies == 0


def test_diff_tables_cli_exit_status_and_json_on_moto(aws):
    put(aws, "src", "a", v={"S": "1"})
    runner = CliRunner()
    result = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output.strip().splitlines()[-1])["missing"] == 1
    result = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst", "--repair", "--json"])
    assert result.exit_code == 0 and json.loads(result.output.strip().splitlines()[-1])["written"] == 1
    result = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst"])
    assert result.exit_code == 0 and "0 missing, 0 different, 0 extraneous" in result.output
    result = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/nope"])
    assert result.exit_code == 2


def test_records_on_moto(aws):
    put(aws, "src", "a", v={"SS": ["x", "y"]})
    put(aws, "dst", "a", v={"SS": ["y", "x"]})
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    key = {"pk": {"S": "a"}}
    assert diff_record(src, dst, key).status == "equal"
    aws.delete_item(TableName="src", Key=key)
    assert diff_record(src, dst, key).status == "extraneous"
    assert replicate_record(src, dst, key).action == "delete"
    assert diff_record(src, dst, key).status == "equal"  # both absent
