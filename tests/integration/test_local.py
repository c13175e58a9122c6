"""`replicator local`: moto's server in the foreground, every service and region on one port, HTTP/1.1 and 2."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from h2.connection import H2Connection
from h2.events import DataReceived, ResponseReceived, StreamEnded

from replicator.local.server import free_port, local_client
from replicator.local.workload import create_table

pytestmark = pytest.mark.integration
REPLICATOR = str(Path(sys.executable).parent / "replicator")


def serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    """`replicator local --port P`, as scripts call it; returns once it printed its endpoint."""
    port = free_port()
    proc = subprocess.Popen([REPLICATOR, "local", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    endpoint = proc.stdout.readline().strip()
    assert endpoint == f"http://127.0.0.1:{port}", (endpoint, proc.stderr.read() if proc.poll() is not None else "")
    return proc, endpoint


def stop(proc: subprocess.Popen[str], signum: int = signal.SIGTERM) -> int:
    proc.send_signal(signum)
    return proc.wait(timeout=30)


def h2_post(port: int, target: str, body: bytes, service: str, region: str) -> tuple[int, bytes]:
    """One request over HTTP/2 cleartext with prior knowledge, as KCL 3's Kinesis client sends it."""
    conn = H2Connection()
    conn.initiate_connection()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(conn.data_to_send())
        headers = [(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                   ("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target),
                   ("authorization", f"AWS4-HMAC-SHA256 Credential=local/20260101/{region}/{service}/aws4_request, "
                                     "SignedHeaders=host, Signature=0")]
        conn.send_headers(1, headers)
        conn.send_data(1, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, data = 0, b""
        while True:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the HTTP/2 connection"
            for event in conn.receive_data(chunk):
                if isinstance(event, ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                elif isinstance(event, DataReceived):
                    data += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, StreamEnded):
                    return status, data
            sock.sendall(conn.data_to_send())


def test_one_port_serves_every_service_in_two_regions_over_http_1_and_2() -> None:
    proc, endpoint = serve()
    try:
        for region in ("us-east-1", "eu-west-1"):
            dynamodb = local_client(endpoint, "dynamodb", region)
            create_table(dynamodb, f"orders-{region}", "NEW_AND_OLD_IMAGES")
            assert dynamodb.list_tables()["TableNames"] == [f"orders-{region}"]  # regions keep tables apart
            streams = local_client(endpoint, "dynamodbstreams", region)
            assert [s["TableName"] for s in streams.list_streams()["Streams"]] == [f"orders-{region}"]
            local_client(endpoint, "kinesis", region).create_stream(StreamName=f"binlog-{region}", ShardCount=1)
            s3 = local_client(endpoint, "s3", region)
            bucket = f"backups-{region}"
            s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else
                                               {"CreateBucketConfiguration": {"LocationConstraint": region}}))
            s3.put_object(Bucket=bucket, Key="k", Body=b"v")
            assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
            cloudwatch = local_client(endpoint, "cloudwatch", region)
            cloudwatch.put_metric_data(Namespace="DynamoDBReplicator", MetricData=[{"MetricName": "m", "Value": 1.0}])
            assert any(m["MetricName"] == "m" for m in cloudwatch.list_metrics(Namespace="DynamoDBReplicator")["Metrics"])

        port = int(endpoint.rsplit(":", 1)[1])
        status, body = h2_post(port, "Kinesis_20131202.ListStreams", b"{}", "kinesis", "eu-west-1")
        assert status == 200 and b'"binlog-eu-west-1"' in body and b"us-east-1" not in body
        status, body = h2_post(port, "DynamoDB_20120810.ListTables", b"{}", "dynamodb", "us-east-1")
        assert status == 200 and b'"orders-us-east-1"' in body
    finally:
        assert stop(proc) == 0


def test_state_lives_in_memory_and_ctrl_c_stops_cleanly() -> None:
    proc, endpoint = serve("--in-memory")  # accepted for old scripts: it is the only way it runs
    create_table(local_client(endpoint), "gone", None)
    assert stop(proc, signal.SIGINT) == 0
    proc, endpoint = serve()
    assert local_client(endpoint).list_tables()["TableNames"] == []
    assert stop(proc) == 0


def test_db_path_and_a_busy_port_are_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([REPLICATOR, "local", "--db-path", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "replicator: error: --db-path is gone: the local server (moto) keeps its state in memory only; drop the option"]

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = subprocess.run([REPLICATOR, "local", "--port", str(port)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0] and "--port" in lines[0], lines
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("host", ["999.1.1.1", "no-such-host.invalid", "192.0.2.1"],
                         ids=["not-an-address", "unknown-name", "another-machines-address"])
def test_a_host_that_cannot_be_bound_is_one_line_blaming_the_host(host: str) -> None:
    port = free_port()
    result = subprocess.run([REPLICATOR, "local", "--host", host, "--port", str(port)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"replicator: error: cannot listen on {host}:{port} ("), lines
    assert f"--host {host} is not" in lines[0] and "--port" not in lines[0], lines


def test_a_parallel_scan_of_a_binary_keyed_table_answers_every_segment() -> None:
    """Stock moto places an item in a segment by ``.encode``-ing its partition key: a binary key (bytes)
    made every Scan with Segment answer 500, so copy-table --segments 4 of a pk:B table failed."""
    proc, endpoint = serve()
    try:
        dynamodb = local_client(endpoint)
        dynamodb.create_table(TableName="bin", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "B"}],
                              BillingMode="PAY_PER_REQUEST")
        keys = {bytes([i, 0, 255]) for i in range(40)}
        for key in keys:
            dynamodb.put_item(TableName="bin", Item={"pk": {"B": key}})
        segments = [[item["pk"]["B"] for item in dynamodb.scan(TableName="bin", Segment=segment,
                                                                TotalSegments=4)["Items"]] for segment in range(4)]
        assert sorted(key for segment in segments for key in segment) == sorted(keys)  # each item in one segment
        assert sum(1 for segment in segments if segment) > 1  # and the items do spread over segments
    finally:
        assert stop(proc) == 0
