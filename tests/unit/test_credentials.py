"""Credentials per side and tables by ARN: the options, their checks, their keys, and roles on moto's STS.

The moto server here is the unit tests' shared one, with the local server's STS checks installed
(``local.accounts``): a role must exist, trust the caller's account and get its external id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from replicator import clients, credentials
from replicator.credentials import Credentials
from replicator.errors import ReplicatorError
from replicator.kcl.config import build_path, path_from_properties, read_properties
from replicator.local import accounts
from unit_helpers import REPO_ROOT, create_pk_table, unique_table

from test_cli import one_error_line, replicator

DESTINATION = "222222222222"
MARKED = {"AWS_ACCESS_KEY_ID": "AKIAMARKEDKEY0000001", "AWS_SECRET_ACCESS_KEY": "MARKED-secret-never-shown-0001"}


@pytest.fixture(scope="module")
def sts_checked(moto_endpoint: str) -> Iterator[str]:
    """The local server, answering STS too: roles are assumed at AWS_ENDPOINT_URL_STS (``credentials``)."""
    accounts.install()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL_STS", moto_endpoint)
        yield moto_endpoint


@pytest.fixture(autouse=True)
def fresh_sessions():
    credentials.reset()
    yield
    credentials.reset()


def role(endpoint: str, external_id: str | None = "xid-1") -> str:
    return accounts.create_role(endpoint, DESTINATION, unique_table("role"), accounts.DEFAULT_ACCOUNT, external_id)


@pytest.mark.parametrize("given, named", [
    (Credentials("arn:aws:iam::2222:role/x"), "--destination-role-arn 'arn:aws:iam::2222:role/x' is not an IAM role ARN"),
    (Credentials(None, "xid-1"), "--destination-external-id goes with --destination-role-arn"),
    (Credentials("arn:aws:iam::222222222222:role/x", "has space"), "--destination-external-id is not an external id"),
    (Credentials(profile=" "), "--destination-profile is empty"),
])
def test_malformed_settings_are_one_line_naming_the_option(given, named):
    with pytest.raises(ReplicatorError, match=named):
        credentials.check(given, "destination")


def test_a_role_gives_clients_in_the_roles_account_and_the_source_account_cannot_see_them(sts_checked):
    arn = role(sts_checked)
    name = unique_table()
    replica = clients.dynamodb("eu-west-1", sts_checked, side="destination", credentials=Credentials(arn, "xid-1"))
    create_pk_table(replica, name)
    assert replica.describe_table(TableName=name)["Table"]["TableArn"].split(":")[4] == DESTINATION
    own = clients.dynamodb("eu-west-1", sts_checked)
    assert name not in own.list_tables()["TableNames"]
    # By its ARN, with the role: DynamoDB takes the ARN as a table name.
    by_arn = f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/{name}"
    assert replica.describe_table(TableName=by_arn)["Table"]["TableName"] == name


def test_a_role_is_assumed_at_the_sts_endpoint_not_at_the_sides_own(sts_checked):
    """A side's endpoint serves its service (a VPC endpoint of DynamoDB, say), not STS: the role is assumed at
    AWS_ENDPOINT_URL_STS (here the local server), even when the side's endpoint answers nothing at all."""
    arn = role(sts_checked)
    client = clients.dynamodb("eu-west-1", "http://127.0.0.1:1", side="destination",
                              credentials=Credentials(arn, "xid-1"))
    issued = client._request_signer._credentials.get_frozen_credentials()
    assert issued.token and issued.access_key != os.environ.get("AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize("external_id, why", [("wrong-id", "external id does not match"), (None, "external id")])
def test_a_role_that_cannot_be_assumed_is_one_line_naming_it(sts_checked, external_id, why):
    arn = role(sts_checked)
    client = clients.dynamodb("eu-west-1", sts_checked, side="destination", credentials=Credentials(arn, external_id))
    with pytest.raises(ReplicatorError) as caught:
        client.list_tables()
    message = str(caught.value)
    assert message.startswith(f"cannot assume --destination-role-arn {arn}: AccessDenied") and why in message
    assert "\n" not in message


def test_a_missing_role_is_refused_by_the_local_sts(sts_checked):
    arn = f"arn:aws:iam::{DESTINATION}:role/{unique_table('absent')}"
    client = clients.dynamodb("eu-west-1", sts_checked, side="source", credentials=Credentials(arn))
    with pytest.raises(ReplicatorError, match=f"cannot assume --source-role-arn {arn}: AccessDenied.*no such role"):
        client.list_tables()


def test_a_missing_profile_is_one_line():
    with pytest.raises(ReplicatorError, match="--source-profile nope: no such profile"):
        clients.dynamodb("eu-west-1", None, side="source", credentials=Credentials(profile="nope"))


def test_assumed_credentials_are_renewed_and_the_client_keeps_working(sts_checked, monkeypatch):
    """REPLICATOR_CREDENTIALS_LIFETIME_S makes botocore renew a session after that long; the client made
    before goes on with the new session, in the role's account."""
    monkeypatch.setenv(credentials.LIFETIME_ENV, "1")
    arn = role(sts_checked)
    client = clients.dynamodb("eu-west-1", sts_checked, side="destination", credentials=Credentials(arn, "xid-1"))
    name = unique_table()
    create_pk_table(client, name)
    first = client._request_signer._credentials.get_frozen_credentials().access_key
    time.sleep(1.5)
    client.put_item(TableName=name, Item={"pk": {"S": "after-renewal"}})
    second = client._request_signer._credentials.get_frozen_credentials().access_key
    assert second != first
    assert client.get_item(TableName=name, Key={"pk": {"S": "after-renewal"}})["Item"]
    assert name not in clients.dynamodb("eu-west-1", sts_checked).list_tables()["TableNames"]


class _Fetcher:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def fetch_credentials(self) -> dict:
        raise self.error


def _sts_error(code: str, status: int) -> Exception:
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "AssumeRole")


@pytest.mark.parametrize("error", [
    _sts_error("Throttling", 400), _sts_error("InternalFailure", 500), _sts_error("ServiceUnavailable", 503),
], ids=["throttled", "internal", "unavailable"])
def test_a_renewal_that_sts_throttles_or_fails_is_retried_by_the_writer_not_a_stopped_path(error):
    """A running path renews its role every hour for months: one throttled or failed AssumeRole must reach
    the writer as the retryable error it is, not as the one-line refusal that stops the path."""
    from replicator.changes.writer import is_retryable

    refresh = credentials._refresher(_Fetcher(error), Credentials("arn:aws:iam::222222222222:role/r"), "destination")
    with pytest.raises(type(error)) as raised:
        refresh()
    assert is_retryable(raised.value)


def test_a_renewal_that_sts_cannot_reach_is_retried_by_the_writer():
    from botocore.exceptions import EndpointConnectionError

    from replicator.changes.writer import is_retryable

    refresh = credentials._refresher(_Fetcher(EndpointConnectionError(endpoint_url="https://sts")),
                                     Credentials("arn:aws:iam::222222222222:role/r"), "destination")
    with pytest.raises(EndpointConnectionError) as raised:
        refresh()
    assert is_retryable(raised.value)


def test_a_renewal_the_role_refuses_is_the_one_line_that_stops_the_path():
    refresh = credentials._refresher(_Fetcher(_sts_error("AccessDenied", 403)),
                                     Credentials("arn:aws:iam::222222222222:role/r"), "destination")
    with pytest.raises(ReplicatorError, match="cannot assume --destination-role-arn .*AccessDenied"):
        refresh()


def test_the_path_keys_hold_the_settings_and_round_trip_through_the_properties_file(tmp_path, monkeypatch):
    for name, value in MARKED.items():
        monkeypatch.setenv(name, value)
    path = build_path({"source_region": "us-east-1", "source_table": "orders",
                       "destination_table": f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/orders",
                       "destination_role_arn": f"arn:aws:iam::{DESTINATION}:role/w", "destination_external_id": "x-1",
                       "kcl_role_arn": "arn:aws:iam::111111111111:role/leases", "source_profile": "prod"})
    assert path.destination_region == "eu-west-1"
    assert path.destination_credentials == Credentials(f"arn:aws:iam::{DESTINATION}:role/w", "x-1")
    assert path.lease_credentials == Credentials("arn:aws:iam::111111111111:role/leases", None, "prod")
    assert path.cloudwatch_credentials == path.source_credentials == Credentials(profile="prod")
    file = tmp_path / "p.properties"
    path.write_properties(file)
    props = read_properties(file)
    assert props["destinationRoleArn"] == f"arn:aws:iam::{DESTINATION}:role/w" and props["kclRoleArn"].endswith("leases")
    assert props["destinationExternalId"] == "x-1" and props["sourceProfile"] == "prod"
    assert path_from_properties(props) == path
    text = file.read_text()
    assert not any(value in text for value in MARKED.values())


def test_run_refuses_a_table_arn_whose_region_disagrees_and_writes_nothing(tmp_path):
    arn = f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/orders"
    line = one_error_line(replicator("run", "--source-region", "us-east-1", "--source-table", "orders",
                                     "--destination-region", "us-west-2", "--destination-table", arn, cwd=tmp_path))
    assert f"destinationTable (destination-table) {arn} is in eu-west-1 but destinationRegion (destination-region) " \
           "is us-west-2" in line
    assert list(tmp_path.iterdir()) == []
    line = one_error_line(replicator("run", "--source-region", "us-east-1", "--source-table", "orders",
                                     "--destination-region", "eu-west-1", "--destination-table", "orders",
                                     "--destination-role-arn", "role/writer", cwd=tmp_path))
    assert "--destination-role-arn 'role/writer' is not an IAM role ARN" in line
    assert list(tmp_path.iterdir()) == []


def test_task_name_takes_the_region_from_a_table_arn(tmp_path):
    arn = f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/orders"
    result = replicator("task-name", "--source-region", "us-east-1", "--source-table", "orders",
                        "--destination-table", arn, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["copy-table", "diff-tables"])
def test_the_tools_reach_a_replica_by_its_arn_through_a_role_with_no_secret_in_their_output(
        sts_checked, tmp_path, command):
    env = {**os.environ, **MARKED, "PYTHONPATH": str(REPO_ROOT)}
    arn = accounts.create_role(sts_checked, DESTINATION, unique_table("role"), accounts.DEFAULT_ACCOUNT, "xid-1")
    source_name, replica_name = unique_table("src"), unique_table("dst")
    source = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=sts_checked,
                          aws_access_key_id=MARKED["AWS_ACCESS_KEY_ID"], aws_secret_access_key=MARKED["AWS_SECRET_ACCESS_KEY"])
    create_pk_table(source, source_name)
    for i in range(30):
        source.put_item(TableName=source_name, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}})
    replica = clients.dynamodb("eu-west-1", sts_checked, credentials=Credentials(arn, "xid-1"))
    create_pk_table(replica, replica_name)
    replica_arn = f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/{replica_name}"
    common = ["--source-endpoint", sts_checked, "--destination-endpoint", sts_checked,
              "--destination-role-arn", arn, "--destination-external-id", "xid-1"]
    args = ["--repair"] if command == "diff-tables" else []
    done = replicator(command, f"us-east-1/{source_name}", replica_arn, *common, *args, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert len(replica.scan(TableName=replica_name)["Items"]) == 30
    assert replica_name not in source.list_tables()["TableNames"]
    again = replicator("diff-tables", f"us-east-1/{source_name}", replica_arn, *common, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    refused = replicator(command, f"us-east-1/{source_name}", replica_arn, *common[:-1], "other-id", cwd=tmp_path,
                         env=env)
    line = one_error_line(refused)
    assert f"cannot assume --destination-role-arn {arn}: AccessDenied" in line
    written = [p.read_text(errors="replace") for p in Path(tmp_path).rglob("*") if p.is_file()]
    for value in MARKED.values():
        for text in (done.stdout, done.stderr, again.stdout, again.stderr, refused.stderr, *written):
            assert value not in text


@pytest.fixture
def lambda_env(monkeypatch, sts_checked):
    from replicator.lambda_handler import function

    for name in ("SOURCE_FORMAT", "SOURCE_TABLE", "VERSION_ATTRIBUTE", "SOURCE_ROLE_ARN", "DESTINATION_ROLE_ARN"):
        monkeypatch.delenv(f"REPLICATOR_{name}", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("REPLICATOR_DESTINATION_ENDPOINT", sts_checked)
    function.reset()
    yield sts_checked
    function.reset()


def test_the_lambda_handler_writes_into_another_account_through_its_destination_role(lambda_env, monkeypatch):
    from replicator.lambda_handler import function
    from test_lambda_handler import Context, ddb_record

    arn = role(lambda_env)
    name = unique_table("replica")
    replica = clients.dynamodb("eu-west-1", lambda_env, credentials=Credentials(arn, "xid-1"))
    create_pk_table(replica, name)
    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", name)
    monkeypatch.setenv("REPLICATOR_DESTINATION_REGION", "eu-west-1")
    monkeypatch.setenv("REPLICATOR_DESTINATION_ROLE_ARN", arn)
    monkeypatch.setenv("REPLICATOR_DESTINATION_EXTERNAL_ID", "xid-1")
    event = {"Records": [ddb_record(1, "INSERT", "a", {"v": {"N": "1"}}), ddb_record(2, "INSERT", "b", {"v": {"N": "1"}}),
                         ddb_record(3, "REMOVE", "b")]}
    assert function.handler(event, Context()) == {"batchItemFailures": []}
    assert replica.scan(TableName=name)["Items"] == [{"pk": {"S": "a"}, "v": {"N": "1"}}]
    assert name not in clients.dynamodb("eu-west-1", lambda_env).list_tables()["TableNames"]

    # The same replica by its ARN (its region from the ARN), and a wrong external id as one line naming the role.
    function.reset()
    monkeypatch.delenv("REPLICATOR_DESTINATION_REGION")
    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/{name}")
    assert function.handler({"Records": [ddb_record(4, "INSERT", "c", {"v": {"N": "3"}})]}, Context()) == \
        {"batchItemFailures": []}
    assert len(replica.scan(TableName=name)["Items"]) == 2
    function.reset()
    credentials.reset()
    monkeypatch.setenv("REPLICATOR_DESTINATION_EXTERNAL_ID", "wrong-id")
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        answer = function.handler({"Records": [ddb_record(5, "INSERT", "d", {"v": {"N": "3"}})]}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "5".zfill(21)}]}  # Lambda retries it
    [line] = [entry for entry in logs if entry["event"] == "batch_not_applied"]
    assert line["error"].startswith(f"cannot assume REPLICATOR_DESTINATION_ROLE_ARN {arn}: AccessDenied")
    assert "exc_info" not in line


@pytest.mark.parametrize("env, named", [
    ({"REPLICATOR_DESTINATION_ROLE_ARN": "writer"}, "REPLICATOR_DESTINATION_ROLE_ARN 'writer' is not an IAM role ARN"),
    ({"REPLICATOR_DESTINATION_EXTERNAL_ID": "x-1"},
     "REPLICATOR_DESTINATION_EXTERNAL_ID goes with REPLICATOR_DESTINATION_ROLE_ARN"),
    ({"REPLICATOR_DESTINATION_TABLE": f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/replica"},
     "REPLICATOR_DESTINATION_TABLE arn:aws:dynamodb:eu-west-1:222222222222:table/replica is in eu-west-1 but "
     "REPLICATOR_DESTINATION_REGION is us-west-2"),
])
def test_the_lambdas_credential_variables_are_checked_at_cold_start(env, named):
    from replicator.lambda_handler.config import ConfigError, FunctionConfig

    base = {"REPLICATOR_DESTINATION_TABLE": "replica", "REPLICATOR_DESTINATION_REGION": "us-west-2"}
    with pytest.raises(ConfigError, match=named):
        FunctionConfig.from_environment({**base, **env})


def test_the_lambda_template_may_assume_the_destination_role_and_no_other():
    import yaml

    template = yaml.safe_load((REPO_ROOT / "deploy" / "lambda.yaml").read_text())
    assert {"DestinationRoleArn", "DestinationExternalId"} <= set(template["Parameters"])
    statements = template["Resources"]["Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    [assume] = [s["Fn::If"] for s in statements if "Fn::If" in s and s["Fn::If"][0] == "HasDestinationRole"]
    assert assume[1] == {"Sid": "AssumeDestinationRole", "Effect": "Allow", "Action": "sts:AssumeRole",
                         "Resource": {"Ref": "DestinationRoleArn"}}
    assert assume[2]["Sid"] == "WriteReplica"  # without a role, the function writes the replica itself
    variables = template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
    assert variables["REPLICATOR_DESTINATION_ROLE_ARN"] == {"Fn::If": ["HasDestinationRole", {"Ref": "DestinationRoleArn"},
                                                                       {"Ref": "AWS::NoValue"}]}
    assert "REPLICATOR_DESTINATION_EXTERNAL_ID" in variables


def test_backup_and_restore_reach_a_bucket_in_a_third_account_and_a_replica_through_roles(sts_checked, tmp_path):
    """backup-table of the caller's table into a bucket of account 333333333333 (--s3-role-arn), then
    restore-table from it into a replica of account 222222222222 (--destination-role-arn, by ARN)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    s3_role = accounts.create_role(sts_checked, "333333333333", unique_table("backups"), accounts.DEFAULT_ACCOUNT)
    bucket = unique_table("bucket")
    clients.s3("us-east-1", sts_checked, credentials=Credentials(s3_role)).create_bucket(Bucket=bucket)
    source_name, replica_name = unique_table("src"), unique_table("dst")
    source = clients.dynamodb("us-east-1", sts_checked)
    create_pk_table(source, source_name)
    for i in range(12):
        source.put_item(TableName=source_name, Item={"pk": {"S": f"k{i}"}})
    backed = replicator("backup-table", f"us-east-1/{source_name}", f"s3://{bucket}/b", "--jobid", "j1",
                        "--source-endpoint", sts_checked, "--s3-endpoint", sts_checked, "--s3-role-arn", s3_role,
                        cwd=tmp_path, env=env)
    assert backed.returncode == 0, backed.stderr
    assert bucket not in [b["Name"] for b in clients.s3("us-east-1", sts_checked).list_buckets()["Buckets"]]
    arn = role(sts_checked)
    replica = clients.dynamodb("eu-west-1", sts_checked, credentials=Credentials(arn, "xid-1"))
    create_pk_table(replica, replica_name)
    restored = replicator("restore-table", f"s3://{bucket}/b/j1", f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/{replica_name}",
                          "--destination-endpoint", sts_checked, "--destination-role-arn", arn,
                          "--destination-external-id", "xid-1", "--s3-endpoint", sts_checked, "--s3-role-arn", s3_role,
                          cwd=tmp_path, env=env)
    assert restored.returncode == 0, restored.stderr
    assert len(replica.scan(TableName=replica_name)["Items"]) == 12
    record = replicator("diff-record", f"us-east-1/{source_name}",
                        f"arn:aws:dynamodb:eu-west-1:{DESTINATION}:table/{replica_name}", '{"pk": "k3"}',
                        "--source-endpoint", sts_checked, "--destination-endpoint", sts_checked,
                        "--destinationRoleArn", arn, "--destinationExternalId", "xid-1", cwd=tmp_path, env=env)
    assert record.returncode == 0 and record.stdout.startswith("equal"), record.stdout + record.stderr
