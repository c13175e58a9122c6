"""Start-up checks: each problem with the tables is one line that names it and the fix."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from replicator.kcl.checks import check_tables
from replicator.kcl.config import ReplicationPath
from replicator.errors import ReplicatorError
from unit_helpers import create_pk_table

PATH = ReplicationPath(source_region="us-east-1", source_table="src", destination_region="us-west-2",
                       destination_table="dst")


@pytest.fixture
def aws():
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1"), boto3.client("dynamodb", region_name="us-west-2")


def problem(source_client, destination_client) -> str:
    with pytest.raises(ReplicatorError) as info:
        check_tables(PATH, source_client, destination_client)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("view", ["NEW_AND_OLD_IMAGES", "NEW_IMAGE"])
def test_good_tables_pass_and_return_the_source_description(aws, view):
    source, destination = aws
    create_pk_table(source, "src", stream_view=view)
    create_pk_table(destination, "dst")
    assert check_tables(PATH, source, destination)["TableName"] == "src"


def test_missing_source_table(aws):
    source, destination = aws
    create_pk_table(destination, "dst")
    message = problem(source, destination)
    assert "source table us-east-1/src does not exist" in message
    assert "--source-table" in message


def test_source_table_in_another_region_is_missing(aws):
    source, destination = aws
    create_pk_table(destination, "src", stream_view="NEW_AND_OLD_IMAGES")  # us-west-2, not us-east-1
    assert "us-east-1/src does not exist" in problem(source, destination)


def test_source_without_a_stream(aws):
    source, destination = aws
    create_pk_table(source, "src")
    create_pk_table(destination, "dst")
    message = problem(source, destination)
    assert "us-east-1/src has no stream enabled" in message
    assert "update-table --table-name src" in message
    assert "StreamViewType=NEW_AND_OLD_IMAGES" in message


def test_source_with_a_disabled_stream(aws):
    source, destination = aws
    create_pk_table(source, "src", stream_view="NEW_AND_OLD_IMAGES")
    source.update_table(TableName="src", StreamSpecification={"StreamEnabled": False})
    create_pk_table(destination, "dst")
    message = problem(source, destination)
    assert "no stream enabled" in message and "update-table" in message


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE"])
def test_a_source_stream_without_new_images_is_accepted_for_a_read_through(aws, view):
    source, destination = aws
    create_pk_table(source, "src", stream_view=view)
    create_pk_table(destination, "dst")
    assert check_tables(PATH, source, destination)["StreamSpecification"]["StreamViewType"] == view


def test_missing_destination_table(aws):
    source, destination = aws
    create_pk_table(source, "src", stream_view="NEW_AND_OLD_IMAGES")
    message = problem(source, destination)
    assert "destination table us-west-2/dst does not exist" in message
    assert "--destination-table" in message


def test_key_schemas_differ_in_type(aws):
    source, destination = aws
    create_pk_table(source, "src", stream_view="NEW_AND_OLD_IMAGES")
    create_pk_table(destination, "dst", key_type="N")
    message = problem(source, destination)
    assert "key schemas differ" in message
    assert "src has [pk HASH S]" in message
    assert "dst has [pk HASH N]" in message


def test_key_schemas_differ_in_sort_key(aws):
    source, destination = aws
    create_pk_table(source, "src", stream_view="NEW_AND_OLD_IMAGES")
    destination.create_table(
        TableName="dst",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    message = problem(source, destination)
    assert "[pk HASH S]" in message and "[pk HASH S, sk RANGE N]" in message


class RaisingClient:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def describe_table(self, TableName):  # noqa: N803 - boto3's spelling
        raise self.exc


def test_access_denied_is_one_line_with_the_code():
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not allowed"}}, "DescribeTable")
    message = problem(RaisingClient(denied), RaisingClient(denied))
    assert "cannot describe source table us-east-1/src" in message
    assert "AccessDeniedException: not allowed" in message


def test_an_unreachable_endpoint_names_the_endpoint_option():
    message = problem(RaisingClient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1")), None)
    assert "cannot reach source table us-east-1/src" in message
    assert "--source-endpoint" in message
