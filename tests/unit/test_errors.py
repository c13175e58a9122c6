"""Expected failures are one line on stderr, never a traceback: one test per family (issue 17).

Bad region and endpoint names, unreachable endpoints, AWS refusals (of a Scan, or of writes in the middle
of a copy), server errors that outlive every retry, files that cannot be read or written, and properties
files that are not UTF-8. The commands run in this process (click's CliRunner) against moto, a closed
port, or a tiny HTTP server; AWS refusals are made by answering one operation with the error instead.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import boto3
import click
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError
from click.testing import CliRunner
from moto import mock_aws

from replicator.cli.main import main
from replicator import errors
from replicator.errors import NonRetryableWriteError, ReplicatorError, friendly_errors
from unit_helpers import free_port

PATH = ["--source-region", "us-east-1", "--source-table", "aaa", "--destination-region", "us-west-2",
        "--destination-table", "bbb"]


def invoke(*args: str) -> str:
    """Run `replicator ARGS`; return its one stderr line, after checking it is the only one (besides the
    tools' structured log lines, JSON objects) and the exit status is 2."""
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.stderr, result.exception
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("replicator: error: "), result.stderr
    return lines[0]


@pytest.fixture
def aws(monkeypatch, tmp_path) -> Iterator[object]:
    """moto in this process, with tables src (20 items) and dst in us-east-1; the cwd is tmp_path."""
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name in ("src", "dst"):
            client.create_table(TableName=name, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                BillingMode="PAY_PER_REQUEST")
        for i in range(20):
            client.put_item(TableName="src", Item={"pk": {"S": f"k{i:02}"}})
        yield client


def refuse(monkeypatch, operation: str, code: str, *, after: int = 0, status: int = 400) -> None:
    """Answer ``operation`` with the error ``code`` from its call number ``after`` on (0: every call)."""
    real = BaseClient._make_api_call
    calls = [0]

    def call(self, name, params):  # noqa: ANN001, ANN202
        if name == operation:
            calls[0] += 1
            if calls[0] > after:
                raise ClientError({"Error": {"Code": code, "Message": "refused by the test"},
                                   "ResponseMetadata": {"HTTPStatusCode": status}}, name)
        return real(self, name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)


# --- region and endpoint names ------------------------------------------------------------------------


@pytest.mark.parametrize("args, named", [
    (["status", *PATH[:1], "US EAST", *PATH[2:]], "--source-region 'US EAST' is not a region name"),
    (["status", *PATH, "--source-endpoint", "not-a-url"], "--source-endpoint 'not-a-url' is not a URL"),
    (["status", *PATH, "--kcl-region", "eu west"], "--kcl-region 'eu west' is not a region name"),
    (["run", *PATH[:5], "US WEST", *PATH[6:], "--write-properties", "p.properties"],
     "--destination-region 'US WEST' is not a region name"),
    (["run", *PATH, "--destination-endpoint", "not-a-url"], "--destination-endpoint 'not-a-url' is not a URL"),
    (["copy-table", "us-east-1/src", "us-west-2/dst", "--source-endpoint", "not-a-url"],
     "--source-endpoint 'not-a-url' is not a URL"),
    (["diff-tables", "us-east-1/src", "us-west-2/dst", "--source-endpoint", "http://"],
     "--source-endpoint 'http://' is not a URL"),
    (["binlog", "put", "--stream", "s", "--key", "pk:S", "--region", "Mars"], "--region 'Mars' is not a region name"),
])
def test_a_bad_region_or_endpoint_is_one_line_naming_the_option(tmp_path, monkeypatch, args, named):
    monkeypatch.chdir(tmp_path)
    assert named in invoke(*args)
    assert not (tmp_path / "p.properties").exists()


# --- unreachable endpoints, credentials --------------------------------------------------------------


def test_status_on_an_unreachable_endpoint_names_the_lease_table_and_the_fix():
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    line = invoke("status", *PATH, "--source-endpoint", endpoint)
    assert "cannot reach lease table DynamoDBCrossRegionReplication" in line and endpoint in line
    assert "check --kcl-endpoint" in line


def test_status_watch_goes_on_after_a_later_refresh_cannot_reach_the_lease_table():
    """read_status turns an unreachable lease table into a ReplicatorError: a watch must still survive it."""
    from replicator.kcl import status as status_module

    answers: list = [[], ReplicatorError("cannot reach lease table T at http://x:1"), []]

    def read() -> list:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    got = list(status_module.snapshots(read, 0.1, count=3, sleep=lambda _: None))
    assert [snapshot.error for snapshot in got] == [None, "cannot reach lease table T at http://x:1", None]


def test_status_without_credentials_says_how_to_give_them(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = invoke("status", *PATH, "--source-endpoint", f"http://127.0.0.1:{free_port()}")
    assert "no AWS credentials found" in line and "AWS_PROFILE" in line


# --- AWS refusals: Scan, and writes after the copy started ---------------------------------------------


@pytest.mark.parametrize("args", [
    ["copy-table", "us-east-1/src", "us-east-1/dst"],
    ["diff-tables", "us-east-1/src", "us-east-1/dst"],
    ["backup-table", "us-east-1/src", "backups"],
], ids=["copy-table", "diff-tables", "backup-table"])
def test_a_refused_scan_is_one_line_naming_the_table(aws, monkeypatch, args):
    refuse(monkeypatch, "Scan", "AccessDeniedException")
    line = invoke(*args)
    assert "cannot scan us-east-1/src: AccessDeniedException: refused by the test" in line


def test_backup_table_names_a_bad_s3_endpoint(aws):
    assert "--s3-endpoint 'ftp://host' is not a URL" in invoke("backup-table", "us-east-1/src", "s3://bucket/x",
                                                               "--s3-endpoint", "ftp://host")


@pytest.mark.parametrize("code", ["AccessDeniedException", "ResourceNotFoundException"])
def test_copy_table_when_the_destination_refuses_writes_mid_copy(aws, monkeypatch, tmp_path, code):
    refuse(monkeypatch, "BatchWriteItem", code, after=1)  # the first page is written, the next refused
    line = invoke("copy-table", "us-east-1/src", "us-east-1/dst", "--segments", "1", "--page-size", "5")
    assert f"us-east-1/dst refused a write: {code}: refused by the test" in line and "--resume" in line
    assert len(list(tmp_path.glob(".copy-table.*.json"))) == 1  # kept for --resume


def test_diff_tables_repair_when_the_replica_refuses_writes(aws, monkeypatch):
    refuse(monkeypatch, "BatchWriteItem", "AccessDeniedException")
    line = invoke("diff-tables", "us-east-1/src", "us-east-1/dst", "--repair")
    assert "us-east-1/dst refused a write: AccessDeniedException" in line


# --- a server error that outlives every retry ------------------------------------------------------------


class _FailsAfterDescribe(http.server.BaseHTTPRequestHandler):
    """DescribeTable answers a table keyed by pk; every other request gets HTTP 500."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("X-Amz-Target", "").endswith(".DescribeTable"):
            body = json.dumps({"Table": {"TableName": "t", "TableStatus": "ACTIVE", "ItemCount": 0,
                                         "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                                         "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}})
            self.send_response(200)
        else:
            body = json.dumps({"__type": "com.amazon.coral.service#InternalFailure", "message": "boom"})
            self.send_response(500)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def failing_server(monkeypatch) -> Iterator[str]:
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda self, context: 0)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailsAfterDescribe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def test_diff_tables_on_a_server_error_that_survives_every_retry(failing_server):
    line = invoke("diff-tables", "us-east-1/aaa", "us-east-1/bbb", "--source-endpoint", failing_server,
                  "--destination-endpoint", failing_server)
    assert "cannot scan us-east-1/aaa: InternalFailure: boom; the service kept failing after retries" in line


# --- files ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "status"])
def test_a_properties_file_that_is_not_utf8_is_one_line_naming_it(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.properties").write_bytes(b"sourceRegion=us-east-1\nsourceTable=caf\xe9\n")
    line = invoke(command, "--properties", "p.properties")
    assert "properties file p.properties is not UTF-8 text" in line


def test_a_file_that_cannot_be_written_is_one_line_naming_it(tmp_path):
    """The net under every command: an OSError no command anticipated names its file."""
    target = tmp_path / "no-such-dir" / "out.txt"

    @click.command()
    @friendly_errors
    def write() -> None:
        target.write_text("x")

    result = CliRunner().invoke(write, [])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"replicator: error: cannot use {target}: No such file or directory")


# --- the one place that turns failures into lines --------------------------------------------------------


@pytest.mark.parametrize("exc, expected", [
    (ReplicatorError("named"), "named"),
    (ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem"),
     "PutItem failed: AccessDeniedException: no; check the names"),
    (NonRetryableWriteError("ValidationException", "too big"), "a write was refused: ValidationException: too big"),
    (NoCredentialsError(), "no AWS credentials found"),
    (EndpointConnectionError(endpoint_url="http://x:1"), "cannot reach AWS: Could not connect"),
    (UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte"), "a file is not UTF-8 text"),
    (PermissionError(13, "Permission denied", "/x/y"), "cannot use /x/y: Permission denied"),
    (ValueError("a bug"), None),
    (OSError("no file named"), None),
])
def test_expected_failures_become_lines_and_bugs_do_not(exc, expected):
    line = errors.expected_failure(exc)
    assert line == expected if expected is None else expected in line


def test_a_bug_keeps_its_traceback():
    @click.command()
    @friendly_errors
    def broken() -> None:
        raise KeyError("a bug")

    result = CliRunner().invoke(broken, [])
    assert isinstance(result.exception, KeyError)


def test_the_lambda_handler_still_raises_to_its_runtime(monkeypatch):
    """A bad region is a ReplicatorError raised out of the handler, as before a botocore error was: the
    Lambda runtime reports it and retries the batch, rather than the handler printing a line."""
    from replicator.lambda_handler import function

    monkeypatch.setenv("REPLICATOR_DESTINATION_TABLE", "replica")
    monkeypatch.setenv("REPLICATOR_DESTINATION_REGION", "EU WEST")
    function.reset()
    try:
        with pytest.raises(ReplicatorError, match="REPLICATOR_DESTINATION_REGION 'EU WEST' is not a region name"):
            function.handler({"Records": [{"eventID": "1"}]}, None)
    finally:
        function.reset()
