"""Replication versions: their order, and a versioned replica that a stale (zombie) batch cannot move back."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from click.testing import CliRunner
from hypothesis import given, strategies as st
from moto import mock_aws

from replicator.kcl import checks
from replicator.changes.codec import RecordFormatError
from replicator.kcl.config import ReplicationPath
from replicator.tables.diff import diff_tables
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.kcl.processor import build_processor
from replicator.tables.records import diff_record
from replicator.tables.spec import open_table
from replicator.cli.tools import diff_tables_command
from replicator.changes.versions import TOMBSTONE_RETENTION_S, Versioning, replica_view, stream_label, version_of
from replicator.changes.writer import TableWriter
from unit_helpers import create_pk_table, delete_change, put_change

AWS_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2015-05-11T21:21:33.291"
LOCAL_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2026-11-30T12:00:36.727926"  # moto's
LABEL = stream_label(AWS_ARN)
ATTR = "_rv"


def test_stream_label_from_aws_and_local_server_arns():
    assert stream_label(AWS_ARN) == "2015-05-11T21:21:33.291000"
    assert stream_label(LOCAL_ARN) == "2026-11-30T12:00:36.727926"


@pytest.mark.parametrize("arn", ["", "arn:aws:dynamodb:us-east-1:1:table/orders", "x/stream/yesterday"])
def test_a_malformed_stream_arn_is_one_clear_error(arn):
    with pytest.raises(ReplicatorError, match="is not a DynamoDB stream ARN.*replicator run"):
        stream_label(arn)


@given(st.integers(0, 10**40 - 1), st.integers(0, 10**40 - 1))
def test_versions_order_as_their_sequence_numbers_do_whatever_their_lengths(a, b):
    # DynamoDB Streams' sequence numbers are 21 to 40 digits; as text, "9" > "10", so they are padded.
    assert (version_of(LABEL, str(a)) < version_of(LABEL, str(b))) == (a < b)


def test_a_later_stream_sorts_after_every_record_of_an_earlier_one():
    later = stream_label(AWS_ARN.replace("2015-05-11T21:21:33.291", "2015-05-11T21:21:33.292"))
    assert version_of(LABEL, "9" * 40) < version_of(later, "1")


@pytest.mark.parametrize("seq", ["", "12a", "1" * 41, "-5"])
def test_a_sequence_number_that_cannot_be_ordered_is_refused(seq):
    with pytest.raises(RecordFormatError, match="versionAttribute"):
        version_of(LABEL, seq)


def test_the_tombstone_expires_a_retention_after_the_delete_happened():
    change = dataclasses.replace(delete_change("a", "7"), created_ms=1_700_000_000_123)
    request = Versioning(ATTR, LABEL).put_item_request("t", change)
    assert request["Item"] == {"pk": {"S": "a"}, ATTR: {"S": version_of(LABEL, "7")},
                               f"{ATTR}_tombstone": {"N": str(1_700_000_000 + TOMBSTONE_RETENTION_S)}}


def test_a_source_item_using_the_reserved_attribute_is_refused_with_the_fix():
    with pytest.raises(NonRetryableWriteError, match="choose a versionAttribute the source never uses"):
        Versioning(ATTR, LABEL).put_item_request("t", put_change("a", "1", **{ATTR: {"S": "mine"}}))


def test_replica_view_hides_tombstones_and_the_version():
    assert replica_view({"pk": {"S": "a"}, ATTR: {"S": "v"}, "x": {"N": "1"}}, ATTR) == {"pk": {"S": "a"}, "x": {"N": "1"}}
    assert replica_view({"pk": {"S": "a"}, ATTR: {"S": "v"}, f"{ATTR}_tombstone": {"N": "1"}}, ATTR) is None
    assert replica_view({"pk": {"S": "a"}, ATTR: {"S": "v"}}, None) == {"pk": {"S": "a"}, ATTR: {"S": "v"}}


@pytest.fixture
def dest():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_table(client, "dst")
        create_pk_table(client, "src")
        writer = TableWriter(client, "dst", versioning=Versioning(ATTR, LABEL), sleep=lambda s: None)
        yield client, writer
        writer.close()


def seen(client, pk: str):
    return replica_view(client.get_item(TableName="dst", Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item"), ATTR)


def test_a_zombie_batch_written_after_a_newer_one_changes_nothing(dest):
    client, writer = dest
    newer = [put_change("a", "20", v={"N": "2"}), put_change("b", "21", v={"N": "2"}), delete_change("c", "22")]
    zombie = [put_change("a", "10", v={"N": "1"}), put_change("b", "11", v={"N": "1"}), put_change("c", "12", v={"N": "1"})]
    writer.write([put_change("c", "5", v={"N": "0"})])
    assert writer.write(newer).stale == 0
    stats = writer.write(zombie)
    assert (stats.puts, stats.deletes, stats.stale) == (0, 0, 3)  # refused: nothing was written
    assert seen(client, "a") == {"pk": {"S": "a"}, "v": {"N": "2"}}
    assert seen(client, "b") == {"pk": {"S": "b"}, "v": {"N": "2"}}
    assert seen(client, "c") is None  # the tombstone keeps the deleted item from coming back


def test_records_delivered_again_are_counted_stale_and_newer_ones_apply(dest):
    client, writer = dest
    batch = [put_change("a", "10", v={"N": "1"}), delete_change("b", "11")]
    writer.write(batch)
    assert writer.write(batch).stale == 2  # at-least-once: a replay after a crash
    assert writer.write([put_change("b", "12", v={"N": "3"})]).stale == 0  # a put after the delete
    assert seen(client, "b") == {"pk": {"S": "b"}, "v": {"N": "3"}}


def test_the_counts_of_a_partly_stale_batch_are_the_writes_that_happened(dest):
    client, writer = dest
    writer.write([put_change("a", "10", v={"N": "1"}), delete_change("b", "11")])
    stats = writer.write([put_change("a", "5", v={"N": "0"}), delete_change("b", "6"),
                          put_change("c", "12", v={"N": "1"}), delete_change("d", "13")])
    assert (stats.puts, stats.deletes, stats.stale) == (1, 1, 2)


def test_an_item_too_large_once_versioned_is_refused_naming_its_key(dest):
    client, writer = dest
    blob = {"S": "x" * 404_960}  # within 40 bytes of moto's size limit: fits alone, not with the version
    client.put_item(TableName="src", Item={"pk": {"S": "big"}, "blob": blob})
    with pytest.raises(NonRetryableWriteError, match=r'Item size has exceeded.*item key \{"pk":\{"S":"big"\}\}'):
        writer.write([put_change("small", "9"), put_change("big", "10", blob=blob)])
    assert seen(client, "small") == {"pk": {"S": "small"}}


def test_an_unversioned_item_from_a_copy_is_overwritten_by_any_record(dest):
    client, writer = dest
    client.put_item(TableName="dst", Item={"pk": {"S": "a"}, "v": {"N": "9"}})
    assert writer.write([put_change("a", "1", v={"N": "1"})]).stale == 0
    assert seen(client, "a") == {"pk": {"S": "a"}, "v": {"N": "1"}}


def test_tools_compare_a_versioned_replica_as_its_readers_see_it(dest):
    client, writer = dest
    for i in range(6):
        client.put_item(TableName="src", Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}})
    writer.write([put_change(f"k{i}", str(100 + i), v={"N": str(i)}) for i in range(6)]
                 + [put_change("gone", "200", v={"N": "0"})])
    writer.write([delete_change("gone", "201")])
    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)

    plain = diff_tables(src, dst)
    assert (plain.different, plain.extraneous) == (6, 1)  # the versions and the tombstone, seen as data
    versioned = diff_tables(src, dst, version_attribute=ATTR, page_size=2)
    assert (versioned.scanned, versioned.replica_scanned, versioned.discrepancies) == (6, 6, 0)
    assert diff_record(src, dst, {"pk": {"S": "gone"}}, ATTR).status == "equal"  # absent from both
    result = CliRunner().invoke(diff_tables_command, ["us-east-1/src", "us-east-1/dst", "--version-attribute", ATTR])
    assert result.exit_code == 0 and "0 missing, 0 different, 0 extraneous" in result.output, result.output


def test_versioning_and_consumed_capacity_are_not_mixed():
    with pytest.raises(ValueError, match="versioning or on_consumed"):
        TableWriter(object(), "t", versioning=Versioning(ATTR, LABEL), on_consumed=lambda units: None)


def path(**settings) -> ReplicationPath:
    return ReplicationPath(source_region="us-east-1", source_table="src", destination_region="eu-west-1",
                           destination_table="dst", **settings)


def test_a_versioned_processor_needs_the_stream_arn_from_replicator_run():
    with pytest.raises(ReplicatorError, match="REPLICATOR_STREAM_ARN is not set.*replicator run"):
        build_processor(path(version_attribute=ATTR), None)


def test_a_version_attribute_that_is_a_key_attribute_is_refused_at_start_up():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_table(client, "src", stream_view="NEW_AND_OLD_IMAGES")
        create_pk_table(client, "dst")
        with pytest.raises(ReplicatorError, match="versionAttribute pk reserves pk, a key attribute of dst"):
            checks.check_tables(path(version_attribute="pk"), client, client)
