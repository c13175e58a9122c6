"""The record processor: KCL lifecycle calls to applier calls, checkpoints only after durable writes."""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import threading
import time

from types import SimpleNamespace

import boto3
import pytest
from amazon_kclpy.kcl import CheckpointError
from structlog.testing import capture_logs

from replicator.changes.applier import Applier
from replicator.changes.codec import RecordFormatError, encode_record
from replicator.kcl.config import ReplicationPath
from replicator.errors import NonRetryableWriteError
from replicator.kcl.processor import ReplicationProcessor
from replicator.changes.writer import WriteStats
from unit_helpers import VENV_BIN, FakeCheckpointer, create_pk_table, endpoint_client, kcl_input, unique_table

SEQ = "300"


def records(*seqs: str) -> list[bytes]:
    return [encode_record("INSERT", {"pk": {"S": s}}, {"pk": {"S": s}}, s, 1700000000000) for s in seqs]


class FakeWriter:
    """Stands in for TableWriter under the real Applier; notes what was checkpointed when it was called."""

    def __init__(self, checkpointer: FakeCheckpointer) -> None:
        self.checkpoints_seen_at_write: list[list] = []
        self.written: list[list[str]] = []
        self._checkpointer = checkpointer

    def write(self, changes):
        self.checkpoints_seen_at_write.append(list(self._checkpointer.calls))
        self.written.append([c.sequence_number for c in changes])
        return WriteStats(puts=len(changes), requests=1)


class FailingApplier:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.calls = 0

    def apply(self, batch):
        self.calls += 1
        raise self.exc


class Exits(list):
    def __call__(self, code: int) -> None:
        self.append(code)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class FakeMetrics:
    """Notes every call the processor makes to its metrics, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def started(self, shard_id, checkpoint):
        self.calls.append(("started", shard_id, checkpoint))

    def batch_applied(self, result, millis_behind_latest):
        self.calls.append(("batch_applied", result.records, result.latency.count if result.latency else 0,
                           millis_behind_latest))

    def batch_failed(self):
        self.calls.append(("batch_failed",))

    def checkpointed(self, sequence_number):
        self.calls.append(("checkpointed", sequence_number))

    def lease_gone(self):
        self.calls.append(("lease_gone",))

    def close(self, *, shard_ended=False):
        self.calls.append(("close", shard_ended))


def processor(applier, exits=None, sleeps=None, metrics=None) -> ReplicationProcessor:
    extra = {"metrics": metrics} if metrics is not None else {}
    return ReplicationProcessor(applier, exit_fn=exits if exits is not None else Exits(),
                                sleep=sleeps if sleeps is not None else Sleeps(), **extra)


def test_checkpoints_at_the_last_record_after_the_batch_is_written():
    checkpointer = FakeCheckpointer()
    writer = FakeWriter(checkpointer)
    exits = Exits()
    processor(Applier(writer), exits).process_records(kcl_input(records("100", "200", SEQ), checkpointer))
    assert writer.written == [["100", "200", SEQ]]
    assert writer.checkpoints_seen_at_write == [[]]
    assert checkpointer.calls == [SEQ]
    assert exits == []


def test_an_empty_batch_does_not_checkpoint():
    checkpointer = FakeCheckpointer()
    exits = Exits()
    processor(Applier(FakeWriter(checkpointer)), exits).process_records(kcl_input([], checkpointer))
    assert checkpointer.calls == []
    assert exits == []


@pytest.mark.parametrize(
    ("exc", "event"),
    [
        (NonRetryableWriteError("ResourceNotFoundException", "Requested resource not found"), "batch_not_applied"),
        (RecordFormatError("INSERT record 1 carries no NewImage"), "batch_not_applied"),
        (RuntimeError("something unexpected"), "batch_failed_unexpectedly"),
    ],
    ids=["non-retryable-write", "record-format", "unexpected"],
)
def test_a_failed_batch_exits_non_zero_without_checkpointing(exc, event):
    checkpointer = FakeCheckpointer()
    exits = Exits()
    with capture_logs() as logs:
        processor(FailingApplier(exc), exits).process_records(kcl_input(records(SEQ), checkpointer))
    assert len(exits) == 1 and exits[0] != 0
    assert checkpointer.calls == []
    errors = [e for e in logs if e["log_level"] == "error"]
    assert [e["event"] for e in errors] == [event]
    assert errors[0]["error_type"] == type(exc).__name__


def test_an_undecodable_record_stops_before_anything_is_written_or_checkpointed():
    checkpointer = FakeCheckpointer()
    writer = FakeWriter(checkpointer)
    exits = Exits()
    processor(Applier(writer), exits).process_records(kcl_input([*records("100"), b"{not json"], checkpointer))
    assert writer.written == []
    assert checkpointer.calls == []
    assert len(exits) == 1 and exits[0] != 0


def test_with_the_real_exit_a_failed_batch_raises_system_exit():
    proc = ReplicationProcessor(FailingApplier(NonRetryableWriteError("AccessDeniedException", "no")))
    checkpointer = FakeCheckpointer()
    with pytest.raises(SystemExit) as info:
        proc.process_records(kcl_input(records(SEQ), checkpointer))
    assert info.value.code not in (0, None)
    assert checkpointer.calls == []


@pytest.mark.parametrize("method", ["shard_ended", "shutdown_requested"])
def test_shard_end_and_shutdown_checkpoint_everything_delivered(method):
    checkpointer = FakeCheckpointer()
    getattr(processor(FailingApplier(AssertionError("not called"))), method)(kcl_input([], checkpointer))
    assert checkpointer.calls == [None]


def test_a_split_shard_replicates_parent_then_child_and_leaves_the_childs_state():
    """moto's stream has one shard that never splits, so lineage is tested here: KCL starts a child shard's
    processor only after the parent's checkpointed SHARD_END, and the child's later changes to the same keys
    must win in the destination (a real TableWriter on in-process moto)."""
    from moto import mock_aws

    from replicator.changes.writer import TableWriter

    with mock_aws():
        client = endpoint_client(None)
        create_pk_table(client, "dest")
        applier = Applier(TableWriter(client, "dest"))
        parent, child = FakeCheckpointer(), FakeCheckpointer()

        def change(event: str, pk: str, rev: str, seq: str) -> bytes:
            image = None if event == "REMOVE" else {"pk": {"S": pk}, "rev": {"N": rev}}
            return encode_record(event, {"pk": {"S": pk}}, image, seq, 1700000000000)

        on_parent = processor(applier)
        on_parent.process_records(kcl_input([change("INSERT", "a", "1", "100"), change("INSERT", "b", "1", "101"),
                                             change("INSERT", "c", "1", "102")], parent))
        on_parent.shard_ended(kcl_input([], parent))
        assert parent.calls == ["102", None]  # None: SHARD_END, which lets KCL start the children

        processor(applier).process_records(kcl_input([change("MODIFY", "a", "2", "200"), change("REMOVE", "b", "", "201"),
                                                      change("MODIFY", "c", "2", "202")], child))
        assert child.calls == ["202"]
        items = {i["pk"]["S"]: i["rev"]["N"] for i in client.scan(TableName="dest")["Items"]}
        assert items == {"a": "2", "c": "2"}


def test_lease_lost_does_not_checkpoint():
    checkpointer = FakeCheckpointer()
    processor(FailingApplier(AssertionError("not called"))).lease_lost(kcl_input([], checkpointer))
    assert checkpointer.calls == []


def test_a_throttled_checkpoint_is_retried_with_backoff():
    checkpointer = FakeCheckpointer([CheckpointError("ThrottlingException"), CheckpointError("ThrottlingException")])
    sleeps = Sleeps()
    processor(Applier(FakeWriter(checkpointer)), sleeps=sleeps).process_records(kcl_input(records(SEQ), checkpointer))
    assert checkpointer.calls == [SEQ, SEQ, SEQ]
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


def test_a_checkpoint_that_keeps_failing_is_given_up_without_raising():
    checkpointer = FakeCheckpointer([CheckpointError("ThrottlingException")] * 50)
    sleeps = Sleeps()
    with capture_logs() as logs:
        processor(FailingApplier(AssertionError()), sleeps=sleeps).shard_ended(kcl_input([], checkpointer))
    assert 1 < len(checkpointer.calls) < 50
    assert "checkpoint_failed" in [e["event"] for e in logs]


@pytest.mark.parametrize("error", ["ShutdownException", "InvalidStateException"])
def test_a_refused_checkpoint_does_not_raise(error):
    checkpointer = FakeCheckpointer([CheckpointError(error)] * 50)
    processor(FailingApplier(AssertionError())).shutdown_requested(kcl_input([], checkpointer))
    assert checkpointer.calls  # it was asked, and no exception escaped


@pytest.mark.parametrize("error", ["ShutdownException", "InvalidStateException"])
def test_a_refused_checkpoint_is_not_retried(error):
    checkpointer = FakeCheckpointer([CheckpointError(error)] * 50)
    sleeps = Sleeps()
    with capture_logs() as logs:
        processor(FailingApplier(AssertionError()), sleeps=sleeps).shutdown_requested(kcl_input([], checkpointer))
    assert checkpointer.calls == [None]
    assert sleeps == []
    assert [e["event"] for e in logs if e["event"].startswith("checkpoint")] == ["checkpoint_refused"]


def test_the_log_of_a_batch_reports_counts():
    checkpointer = FakeCheckpointer()
    with capture_logs() as logs:
        processor(Applier(FakeWriter(checkpointer))).process_records(
            kcl_input(records("100", "200"), checkpointer, millis_behind_latest=42)
        )
    (applied,) = [e for e in logs if e["event"] == "batch_applied"]
    assert applied["records"] == 2 and applied["puts"] == 2 and applied["millis_behind_latest"] == 42


# --- Metrics: noted per batch, flushed once at each end, after the checkpoint --------------------------

def test_metrics_see_each_batch_its_checkpoint_and_a_flush_at_shutdown():
    checkpointer = FakeCheckpointer()
    metrics = FakeMetrics()
    proc = processor(Applier(FakeWriter(checkpointer)), metrics=metrics)
    proc.initialize(SimpleNamespace(shard_id="shardId-7", sequence_number="TRIM_HORIZON"))
    proc.process_records(kcl_input(records("100", "200"), checkpointer, millis_behind_latest=42))
    proc.process_records(kcl_input(records(SEQ), checkpointer, millis_behind_latest=7))
    proc.shutdown_requested(kcl_input([], checkpointer))
    assert metrics.calls == [
        ("started", "shardId-7", "TRIM_HORIZON"),
        ("batch_applied", 2, 2, 42), ("checkpointed", "200"),
        ("batch_applied", 1, 1, 7), ("checkpointed", SEQ),
        ("close", False),
    ]
    assert checkpointer.calls == ["200", SEQ, None]


def test_metrics_at_shard_end_say_nothing_is_pending():
    metrics = FakeMetrics()
    processor(FailingApplier(AssertionError()), metrics=metrics).shard_ended(kcl_input([], FakeCheckpointer()))
    assert metrics.calls == [("close", True)]


def test_metrics_after_a_lost_lease_leave_pending_to_the_new_owner():
    metrics = FakeMetrics()
    processor(FailingApplier(AssertionError()), metrics=metrics).lease_lost(kcl_input([], FakeCheckpointer()))
    assert metrics.calls == [("lease_gone",), ("close", False)]


def test_a_refused_checkpoint_tells_the_metrics_the_lease_is_gone():
    checkpointer = FakeCheckpointer([CheckpointError("ShutdownException")])
    metrics = FakeMetrics()
    processor(Applier(FakeWriter(checkpointer)), metrics=metrics).process_records(kcl_input(records(SEQ), checkpointer))
    assert metrics.calls == [("batch_applied", 1, 1, 0), ("lease_gone",)]


def test_a_failed_batch_is_counted_and_flushed_before_the_processor_exits():
    metrics = FakeMetrics()
    exits = Exits()

    class NotingExit:
        def __call__(self, code):
            exits.append((code, list(metrics.calls)))

    proc = ReplicationProcessor(FailingApplier(NonRetryableWriteError("AccessDeniedException", "no")),
                                exit_fn=NotingExit(), sleep=Sleeps(), metrics=metrics)
    proc.process_records(kcl_input(records(SEQ), FakeCheckpointer()))
    assert exits == [(3, [("batch_failed",), ("close", False)])]


def test_metrics_that_fail_cannot_stop_a_batch(monkeypatch):
    """The real publisher, its CloudWatch unreachable: batches and the checkpoint go on, nothing raises."""
    from replicator.kcl.metrics import MetricsPublisher

    def unreachable():
        raise ConnectionError("no route to CloudWatch")

    publisher = MetricsPublisher([], unreachable, interval_s=0.05, final_flush_s=1)
    checkpointer = FakeCheckpointer()
    proc = processor(Applier(FakeWriter(checkpointer)), metrics=publisher)
    proc.initialize(SimpleNamespace(shard_id="shardId-1", sequence_number="TRIM_HORIZON"))
    for seq in ("100", "200", SEQ):
        proc.process_records(kcl_input(records(seq), checkpointer))
        time.sleep(0.06)
    proc.shutdown_requested(kcl_input([], checkpointer))
    assert checkpointer.calls == ["100", "200", SEQ, None]


# --- The real entry point, driven over the MultiLang protocol as the daemon drives it ------------------

class Child:
    """A processor subprocess; its stdout and stderr are read by threads, so every read has a timeout."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
            text=True, encoding="utf-8", bufsize=1,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._drain, args=(self.proc.stdout, self.stdout, self._lines), daemon=True).start()
        self._err = threading.Thread(target=self._drain, args=(self.proc.stderr, self.stderr, None), daemon=True)
        self._err.start()

    @staticmethod
    def _drain(stream, lines, q) -> None:
        for line in stream:
            lines.append(line)
            if q is not None:
                q.put(line)
        if q is not None:
            q.put(None)

    def send(self, message: dict) -> None:
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def expect(self, timeout: float = 30.0) -> dict:
        """The next protocol message on the child's stdout (blank lines around messages are allowed)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no message from the processor in {timeout}s; stderr: {self.stderr[-5:]}")
            if line is None:
                raise AssertionError(f"the processor closed stdout (exit {self.proc.poll()}); stderr: {self.stderr[-5:]}")
            if line.strip():
                return json.loads(line)

    def close(self, timeout: float = 30.0) -> int:
        self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        self._err.join(timeout=timeout)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def kcl_record(data: bytes, seq: str) -> dict:
    return {
        "action": "record",
        "data": base64.b64encode(data).decode("ascii"),
        "partitionKey": "p",
        "sequenceNumber": seq,
        "subSequenceNumber": 0,
        "approximateArrivalTimestamp": 1700000000000,
    }


INITIALIZE = {"action": "initialize", "shardId": "shardId-1", "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}


@pytest.fixture
def child_factory(moto_endpoint, tmp_path):
    """Starts processors whose destination is `table` on the moto server, configured as `replicator run` does."""
    started: list[Child] = []

    def start(table: str, argv: list[str] | None = None, env: dict[str, str] | None = None, **settings) -> Child:
        properties = tmp_path / "p.properties"
        ReplicationPath(**{
            "source_region": "us-east-1", "source_table": "source-table", "destination_region": "us-east-1",
            "destination_table": table, "destination_endpoint": moto_endpoint, "write_concurrency": 2,
            "dont_publish_cloudwatch": True, **settings,
        }).write_properties(properties)
        child_env = {**os.environ, **(env or {}), "REPLICATOR_PROPERTIES": str(properties)}
        child = Child(argv or [str(VENV_BIN / "replicator-processor")], child_env, cwd=tmp_path)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def protocol_messages(lines: list[str]) -> list[dict]:
    """Every non-blank stdout line, parsed; fails if any is not a protocol message."""
    messages = [json.loads(line) for line in lines if line.strip()]
    assert all(isinstance(m, dict) and "action" in m for m in messages), messages
    return messages


def test_the_processor_speaks_the_multilang_protocol(moto_endpoint, child_factory):
    table = unique_table("dest")
    client = endpoint_client(moto_endpoint)
    create_pk_table(client, table)
    client.put_item(TableName=table, Item={"pk": {"S": "c"}, "v": {"S": "stale"}})
    child = child_factory(table)

    child.send(INITIALIZE)
    assert child.expect() == {"action": "status", "responseFor": "initialize"}

    batch = [
        kcl_record(encode_record("INSERT", {"pk": {"S": "a"}}, {"pk": {"S": "a"}, "v": {"N": "1"}}, "100"), "100"),
        kcl_record(encode_record("MODIFY", {"pk": {"S": "b"}}, {"pk": {"S": "b"}, "v": {"B": b"\x00"}}, "200"), "200"),
        kcl_record(encode_record("REMOVE", {"pk": {"S": "c"}}, None, SEQ), SEQ),
    ]
    child.send({"action": "processRecords", "records": batch, "millisBehindLatest": 0})
    checkpoint = child.expect()
    assert checkpoint["action"] == "checkpoint" and checkpoint["sequenceNumber"] == SEQ
    items = {i["pk"]["S"]: i for i in client.scan(TableName=table)["Items"]}  # durable before the checkpoint
    assert items == {"a": {"pk": {"S": "a"}, "v": {"N": "1"}}, "b": {"pk": {"S": "b"}, "v": {"B": b"\x00"}}}
    child.send({"action": "checkpoint", "sequenceNumber": SEQ, "subSequenceNumber": None, "error": None})
    assert child.expect() == {"action": "status", "responseFor": "processRecords"}

    child.send({"action": "shutdownRequested"})
    checkpoint = child.expect()
    assert checkpoint["action"] == "checkpoint" and checkpoint["sequenceNumber"] is None
    child.send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None, "error": None})
    assert child.expect() == {"action": "status", "responseFor": "shutdownRequested"}
    assert child.close() == 0

    assert [m["action"] for m in protocol_messages(child.stdout)] == [
        "status", "checkpoint", "status", "checkpoint", "status"
    ]
    logs = [json.loads(line) for line in child.stderr if line.strip()]
    assert all("event" in entry for entry in logs), logs
    assert "batch_applied" in [entry["event"] for entry in logs]


STRAY_OUTPUT = (
    "import os, replicator.kcl.processor as p, replicator.changes.applier as a\n"
    "real = a.Applier.apply\n"
    "def noisy(self, records):\n"
    "    print('stray print from a library')\n"
    "    os.write(1, b'stray bytes on descriptor 1\\n')\n"
    "    return real(self, records)\n"
    "a.Applier.apply = noisy\n"
    "p.main()\n"
)


def test_stray_output_in_the_processor_does_not_reach_the_protocol(moto_endpoint, child_factory):
    table = unique_table("dest")
    create_pk_table(endpoint_client(moto_endpoint), table)
    child = child_factory(table, [str(VENV_BIN / "python"), "-c", STRAY_OUTPUT])
    child.send(INITIALIZE)
    assert child.expect()["responseFor"] == "initialize"
    record = encode_record("INSERT", {"pk": {"S": "a"}}, {"pk": {"S": "a"}}, SEQ)
    child.send({"action": "processRecords", "records": [kcl_record(record, SEQ)], "millisBehindLatest": 0})
    assert child.expect()["sequenceNumber"] == SEQ
    child.send({"action": "checkpoint", "sequenceNumber": SEQ, "subSequenceNumber": None, "error": None})
    assert child.expect() == {"action": "status", "responseFor": "processRecords"}
    assert child.close() == 0
    protocol_messages(child.stdout)
    assert any("stray print" in line for line in child.stderr)
    assert any("stray bytes" in line for line in child.stderr)


def test_a_missing_destination_stops_the_processor_without_a_checkpoint(moto_endpoint, child_factory):
    child = child_factory(unique_table("missing"))
    child.send(INITIALIZE)
    assert child.expect()["responseFor"] == "initialize"
    record = encode_record("INSERT", {"pk": {"S": "a"}}, {"pk": {"S": "a"}}, SEQ)
    child.send({"action": "processRecords", "records": [kcl_record(record, SEQ)], "millisBehindLatest": 0})
    assert child.proc.wait(timeout=30) == 3
    child.close()
    assert [m["action"] for m in protocol_messages(child.stdout)] == ["status"]  # initialize only: no checkpoint
    logs = [json.loads(line) for line in child.stderr if line.strip().startswith("{")]
    (failure,) = [entry for entry in logs if entry["event"] == "batch_not_applied"]
    assert "ResourceNotFoundException" in failure["error"]


def test_an_item_too_large_once_versioned_stops_the_processor_naming_its_key(moto_endpoint, child_factory):
    table = unique_table("dest")
    create_pk_table(endpoint_client(moto_endpoint), table)
    stream_arn = "arn:aws:dynamodb:us-east-1:123456789012:table/source-table/stream/2026-11-30T12:00:36.727926"
    child = child_factory(table, version_attribute="_rv", env={"REPLICATOR_STREAM_ARN": stream_arn})
    child.send(INITIALIZE)
    assert child.expect()["responseFor"] == "initialize"
    item = {"pk": {"S": "big"}, "blob": {"S": "x" * 404_960}}  # fits the server's limit, not once versioned
    record = encode_record("INSERT", {"pk": {"S": "big"}}, item, SEQ)
    child.send({"action": "processRecords", "records": [kcl_record(record, SEQ)], "millisBehindLatest": 0})
    assert child.proc.wait(timeout=30) == 3
    child.close()
    logs = [json.loads(line) for line in child.stderr if line.strip().startswith("{")]
    (failure,) = [entry for entry in logs if entry["event"] == "batch_not_applied"]
    assert "Item size has exceeded" in failure["error"] and '{"pk":{"S":"big"}}' in failure["error"]


@pytest.mark.parametrize("destination", ["present", "missing"], ids=["stdin-closed", "non-retryable-exit"])
def test_a_rate_limited_processor_leaves_no_bucket_file_however_it_ends(moto_endpoint, child_factory, tmp_path,
                                                                        destination):
    table = unique_table("dest")
    if destination == "present":
        create_pk_table(endpoint_client(moto_endpoint), table)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    child = child_factory(table, max_writes_per_second=100, env={"XDG_RUNTIME_DIR": str(runtime)})
    child.send(INITIALIZE)
    assert child.expect()["responseFor"] == "initialize"
    (bucket,) = (runtime / f"replicator-buckets-{os.getuid()}").iterdir()
    assert bucket.name.endswith(f"-{os.getpid()}.bucket")  # named after its worker: here, this test
    record = encode_record("INSERT", {"pk": {"S": "a"}}, {"pk": {"S": "a"}}, SEQ)
    child.send({"action": "processRecords", "records": [kcl_record(record, SEQ)], "millisBehindLatest": 0})
    if destination == "present":
        assert child.expect()["sequenceNumber"] == SEQ
        child.send({"action": "checkpoint", "sequenceNumber": SEQ, "subSequenceNumber": None, "error": None})
        assert child.expect() == {"action": "status", "responseFor": "processRecords"}
        assert child.close() == 0
    else:
        assert child.proc.wait(timeout=30) == 3
        child.close()
    assert list((runtime / f"replicator-buckets-{os.getuid()}").iterdir()) == []


def test_the_processor_refuses_to_start_without_its_properties(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REPLICATOR_PROPERTIES"}
    result = subprocess.run([str(VENV_BIN / "replicator-processor")], env=env, cwd=tmp_path, input="",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout.strip() == ""
    (entry,) = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entry["event"] == "processor_not_started" and "REPLICATOR_PROPERTIES" in entry["error"]


def test_the_processor_publishes_its_metrics_to_the_given_endpoint_at_shutdown(moto_endpoint, child_factory):
    """build_processor's wiring, for real: a processor with metrics on, its source stream and CloudWatch on the
    moto server; the batch's records are the stream's own, so PendingReplicationCount is counted after them."""
    from datetime import datetime, timedelta, timezone

    source, dest = unique_table("src"), unique_table("dest")
    client = endpoint_client(moto_endpoint)
    create_pk_table(client, source, stream_view="NEW_AND_OLD_IMAGES")
    create_pk_table(client, dest)
    for key in ("a", "b", "c"):
        client.put_item(TableName=source, Item={"pk": {"S": key}})
    streams = boto3.client("dynamodbstreams", region_name="us-east-1", endpoint_url=moto_endpoint)
    arn = client.describe_table(TableName=source)["Table"]["LatestStreamArn"]
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    stream_records = streams.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    created = int(time.time() * 1000) - 250
    batch = [kcl_record(encode_record("INSERT", r["dynamodb"]["Keys"], r["dynamodb"]["NewImage"],
                                      r["dynamodb"]["SequenceNumber"], created), r["dynamodb"]["SequenceNumber"])
             for r in stream_records[:2]]  # the third stays pending

    child = child_factory(dest, source_table=source, source_endpoint=moto_endpoint, dont_publish_cloudwatch=False,
                          cloudwatch_endpoint=moto_endpoint)
    child.send({**INITIALIZE, "shardId": shard})
    assert child.expect()["responseFor"] == "initialize"
    child.send({"action": "processRecords", "records": batch, "millisBehindLatest": 120})
    last = batch[-1]["sequenceNumber"]
    assert child.expect()["sequenceNumber"] == last
    child.send({"action": "checkpoint", "sequenceNumber": last, "subSequenceNumber": None, "error": None})
    assert child.expect() == {"action": "status", "responseFor": "processRecords"}
    child.send({"action": "shutdownRequested"})
    assert child.expect()["action"] == "checkpoint"
    child.send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None, "error": None})
    assert child.expect() == {"action": "status", "responseFor": "shutdownRequested"}
    assert child.close() == 0
    protocol_messages(child.stdout)

    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_endpoint)
    dims = [{"Name": "TableName", "Value": source}, {"Name": "ReceivingRegion", "Value": "us-east-1"},
            {"Name": "TaskName", "Value": ReplicationPath(source_region="us-east-1", source_table=source,
                                                          destination_region="us-east-1",
                                                          destination_table=dest).application_name}]
    now = datetime.now(timezone.utc)

    def stat(name: str, statistic: str) -> list[float]:
        query = {"Id": "q", "MetricStat": {"Metric": {"Namespace": "DynamoDBReplicator", "MetricName": name,
                                                      "Dimensions": dims}, "Period": 3600, "Stat": statistic}}
        answer = cloudwatch.get_metric_data(MetricDataQueries=[query], StartTime=now - timedelta(hours=1),
                                            EndTime=now + timedelta(minutes=5))
        return answer["MetricDataResults"][0]["Values"]

    assert stat("ReplicationLatency", "SampleCount") == [2.0]
    assert 250 <= stat("ReplicationLatency", "Minimum")[0] < 30_000
    assert stat("MillisBehindLatest", "Maximum") == [120.0]
    assert stat("Records", "Sum") == [2.0] and stat("Puts", "Sum") == [2.0]
    assert stat("PendingReplicationCount", "Maximum") == [1.0]
