"""The table tools see the source through a replica shape (changes.shape), on moto in-process."""

from __future__ import annotations

import gzip
import json
import time

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from replicator.changes.shape import ReplicaShape
from replicator.cli.tools import backup_table_command, copy_table_command, diff_tables_command
from replicator.errors import ReplicatorError
from replicator.tables.copy import copy_table
from replicator.tables.diff import diff_tables
from replicator.tables.records import diff_record, replicate_record
from replicator.tables.spec import open_table

SHAPE_ARGS = ["--filter", "tenant == 'eu'", "--exclude-attributes", "email", "--skip-expired", "expires"]
SHAPE = ReplicaShape.build({"filter": "tenant == 'eu'", "exclude_attributes": "email", "skip_expired": "expires"})


@pytest.fixture
def aws():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name in ("src", "dst"):
            client.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                BillingMode="PAY_PER_REQUEST")
        future, past = str(int(time.time()) + 3600), str(int(time.time()) - 3600)
        for i in range(40):
            item = {"pk": {"S": f"k{i:02}"}, "tenant": {"S": "eu" if i % 2 else "us"}, "email": {"S": f"{i}@x"},
                    "expires": {"N": past if i % 5 == 0 else future}}
            client.put_item(TableName="src", Item=item)
        yield client


def _dst(client):
    return {i["pk"]["S"]: i for i in client.scan(TableName="dst", ConsistentRead=True)["Items"]}


def _expected():
    return {f"k{i:02}" for i in range(40) if i % 2 and i % 5}


def test_copy_table_writes_the_source_as_the_replica_keeps_it_and_diff_tables_agrees(aws):
    runner = CliRunner()
    result = runner.invoke(copy_table_command, ["us-east-1/src", "us-east-1/dst", *SHAPE_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    assert (out["copied"], out["left_out"]) == (len(_expected()), 40 - len(_expected()))
    replica = _dst(aws)
    assert set(replica) == _expected() and all("email" not in i for i in replica.values())
    same = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst", *SHAPE_ARGS])
    assert same.exit_code == 0 and "0 missing, 0 different, 0 extraneous" in same.output
    plain = runner.invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst"])  # without the options: different
    assert plain.exit_code == 1


def test_diff_tables_repair_makes_a_replica_of_the_shape(aws):
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    copy_table(src, dst, segments=1, progress=False)  # a whole copy: too much of everything
    aws.put_item(TableName="dst", Item={"pk": {"S": "stray"}, "tenant": {"S": "eu"}})
    found = diff_tables(src, dst, shape=SHAPE)
    expired = {f"k{i:02}" for i in range(0, 40, 5)}  # counted on neither side: the replica's TTL would take them
    assert (found.missing, found.different, found.extraneous) == (0, len(_expected()), 40 - len(_expected()) - 8 + 1)
    repaired = diff_tables(src, dst, repair=True, shape=SHAPE)
    assert repaired.unrepaired == 0 and diff_tables(src, dst, shape=SHAPE).discrepancies == 0
    assert set(_dst(aws)) == _expected() | expired
    assert all("email" not in i for k, i in _dst(aws).items() if k not in expired)


def test_records_are_compared_and_replicated_through_the_shape(aws):
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    eu, us, expired = {"pk": {"S": "k01"}}, {"pk": {"S": "k02"}}, {"pk": {"S": "k05"}}
    assert diff_record(src, dst, eu, shape=SHAPE).status == "missing"
    assert replicate_record(src, dst, eu, shape=SHAPE).action == "put"
    assert "email" not in _dst(aws)["k01"] and diff_record(src, dst, eu, shape=SHAPE).status == "equal"
    aws.put_item(TableName="dst", Item={**us, "tenant": {"S": "us"}})
    assert diff_record(src, dst, us, shape=SHAPE).status == "extraneous"
    assert replicate_record(src, dst, us, shape=SHAPE).action == "delete"
    assert diff_record(src, dst, expired, shape=SHAPE).status == "equal"  # expired: both absent


def test_a_tool_refuses_excluding_a_key_before_writing_anything(aws, tmp_path):
    runner = CliRunner()
    result = runner.invoke(copy_table_command, ["us-east-1/src", "us-east-1/dst", "--exclude-attributes", "pk"])
    assert result.exit_code == 2 and "names 'pk', a key attribute" in result.output
    assert _dst(aws) == {}
    result = runner.invoke(backup_table_command, ["us-east-1/src", str(tmp_path / "b"), "--exclude-attributes", "pk"])
    assert result.exit_code == 2 and not (tmp_path / "b").exists()
    with pytest.raises(ReplicatorError, match="a key attribute"):
        diff_tables(open_table("us-east-1/src", None), open_table("us-east-1/dst", None),
                    shape=ReplicaShape.build({"exclude_attributes": "pk"}))


def test_backup_table_backs_up_the_shape(aws, tmp_path):
    result = CliRunner().invoke(backup_table_command, ["us-east-1/src", str(tmp_path), "--jobid", "j", "--segments", "1",
                                                       *SHAPE_ARGS, "--json"])
    assert result.exit_code == 0, result.output
    lines = gzip.decompress((tmp_path / "j" / "0").read_bytes()).decode().splitlines()
    items = [json.loads(line)["Item"] for line in lines]
    assert {i["pk"]["S"] for i in items} == _expected() and all("email" not in i for i in items)


def test_a_replica_that_kept_its_expired_items_is_equal_with_skip_expired(aws):
    """ttlDeletes skip: the source's TTL deleted an item the replica kept; --skip-expired counts it on neither side."""
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    copy_table(src, dst, segments=1, progress=False)
    expired = [i for i in aws.scan(TableName="src")["Items"] if int(i["expires"]["N"]) < time.time()]
    for item in expired[:3]:  # what TTL would do at the source; the replica skipped those deletes
        aws.delete_item(TableName="src", Key={"pk": item["pk"]})
    assert diff_tables(src, dst).extraneous == 3
    kept = ReplicaShape.build({"skip_expired": "expires"})
    assert diff_tables(src, dst, shape=kept).discrepancies == 0
    assert diff_record(src, dst, {"pk": expired[0]["pk"]}, shape=kept).status == "equal"


def test_a_copy_resumed_with_other_shape_options_is_refused(aws, tmp_path):
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    state = tmp_path / "state.json"
    copy_table(src, dst, segments=1, page_size=10, state_path=state, progress=False, keep_state=True, shape=SHAPE)
    with pytest.raises(ReplicatorError, match="exclude_attributes=email filter=tenant == 'eu' skip_expired=expires, not"):
        copy_table(src, dst, segments=1, state_path=state, resume=True, progress=False)
