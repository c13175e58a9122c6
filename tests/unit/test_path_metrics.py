"""The path's CloudWatch metrics: statistic sets, one PutMetricData an interval, dimensions, off means off,
failures swallowed, pending records counted; on moto in-process."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws
from structlog.testing import capture_logs

from replicator import clients
from replicator.changes.formats import SourceRecord
from replicator.changes.applier import Applier, BatchResult, Latency
from replicator.changes.codec import encode_record
from replicator.changes.writer import WriteStats
from replicator.kcl import metrics
from replicator.kcl.config import ReplicationPath
from replicator.kcl.streams import DynamoDBStream
from replicator.kcl.metrics import NAMESPACE, MetricsPublisher, PendingCounter
from replicator.kcl.processor import build_processor
from unit_helpers import create_pk_table

PATH = ReplicationPath(source_region="us-east-1", source_table="orders", destination_region="eu-west-1",
                       destination_table="orders-replica")
DIMS = metrics.dimensions(PATH)


class Recording:
    """A real (moto) CloudWatch client that also keeps every PutMetricData call's datums."""

    def __init__(self, client=None, fail: BaseException | None = None) -> None:
        self.client = client
        self.fail = fail
        self.calls: list[list[dict]] = []
        self._lock = threading.Lock()

    def put_metric_data(self, Namespace, MetricData):  # noqa: N803 - boto3's spelling
        with self._lock:
            self.calls.append(MetricData)
        if self.fail is not None:
            raise self.fail
        assert Namespace == NAMESPACE
        return self.client.put_metric_data(Namespace=Namespace, MetricData=MetricData)


def result(records: int, latency: Latency | None, puts: int = 0, deletes: int = 0, retries: int = 0,
           stale: int = 0, ttl_skipped: int = 0) -> BatchResult:
    writes = WriteStats(puts=puts, deletes=deletes, requests=1, retries=retries, stale=stale)
    return BatchResult(records=records, writes=writes, last_sequence_number="1", latency=latency,
                       ttl_skipped=ttl_skipped)


def read_back(cw, name: str, stat: str, dims=DIMS) -> list[float]:
    now = datetime.now(timezone.utc)
    answer = cw.get_metric_data(
        MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {"Namespace": NAMESPACE, "MetricName": name,
                                                                 "Dimensions": dims},
                                                      "Period": 3600, "Stat": stat}}],
        StartTime=now - timedelta(hours=1), EndTime=now + timedelta(minutes=5),
    )
    return answer["MetricDataResults"][0]["Values"]


@pytest.fixture
def cloudwatch():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def test_latency_of_a_batch_is_a_statistic_set_of_its_records():
    applier = Applier(type("W", (), {"write": lambda self, changes: WriteStats(puts=len(changes))})(),
                      clock_ms=lambda: 10_000)
    batch = [SourceRecord(encode_record("INSERT", {"pk": {"S": k}}, {"pk": {"S": k}}, seq, created), seq)
             for k, seq, created in [("a", "1", 9_000), ("b", "2", 9_500), ("a", "3", 9_900)]]
    applied = applier.apply(batch)
    assert applied.latency == Latency(count=3, sum_ms=1000 + 500 + 100, min_ms=100, max_ms=1000)
    assert applied.lag_ms_max == 1000


def test_an_interval_is_published_as_statistic_sets_and_counts(cloudwatch):
    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent)
    publisher.batch_applied(result(3, Latency(3, 600, 100, 300), puts=2, deletes=1, retries=4), 250)
    publisher.batch_applied(result(2, Latency(2, 2000, 900, 1100), puts=1, stale=1, ttl_skipped=1), 50)
    publisher.batch_failed()
    assert publisher.publish() == 1

    (data,) = sent.calls
    by_name = {d["MetricName"]: d for d in data}
    assert by_name["ReplicationLatency"]["StatisticValues"] == {
        "SampleCount": 5.0, "Sum": 2600.0, "Minimum": 100.0, "Maximum": 1100.0}
    assert by_name["ReplicationLatency"]["Unit"] == "Milliseconds"
    assert by_name["MillisBehindLatest"]["StatisticValues"] == {
        "SampleCount": 2.0, "Sum": 300.0, "Minimum": 50.0, "Maximum": 250.0}
    assert {n: by_name[n]["Value"] for n in metrics.COUNTS} == {
        "Records": 5.0, "Puts": 3.0, "Deletes": 1.0, "Retries": 4.0, "StaleWrites": 1.0, "FailedBatches": 1.0,
        "TtlDeletesSkipped": 1.0}
    assert all(by_name[n]["Unit"] == "Count" for n in metrics.COUNTS)
    assert "PendingReplicationCount" not in by_name  # no counter given

    # CloudWatch (moto) derives every statistic right from the set.
    assert read_back(cloudwatch, "ReplicationLatency", "Average") == [520.0]
    assert read_back(cloudwatch, "ReplicationLatency", "Minimum") == [100.0]
    assert read_back(cloudwatch, "ReplicationLatency", "Maximum") == [1100.0]
    assert read_back(cloudwatch, "ReplicationLatency", "SampleCount") == [5.0]
    assert read_back(cloudwatch, "Records", "Sum") == [5.0]


def test_dimensions_name_the_source_table_the_receiving_region_and_the_task(cloudwatch):
    publisher = MetricsPublisher(DIMS, lambda: cloudwatch)
    publisher.batch_applied(result(1, Latency(1, 5, 5, 5)), 0)
    publisher.publish()
    found = cloudwatch.list_metrics(Namespace=NAMESPACE, MetricName="ReplicationLatency")["Metrics"]
    assert [sorted((d["Name"], d["Value"]) for d in m["Dimensions"]) for m in found] == [sorted([
        ("TableName", "orders"), ("ReceivingRegion", "eu-west-1"), ("TaskName", PATH.application_name)])]


def test_an_interval_without_batches_sends_zero_counts_and_no_empty_statistic_sets(cloudwatch):
    sent = Recording(cloudwatch)
    MetricsPublisher(DIMS, lambda: sent).publish()
    (data,) = sent.calls
    assert sorted(d["MetricName"] for d in data) == sorted(metrics.COUNTS)
    assert all(d["Value"] == 0 for d in data)


def test_many_batches_in_one_interval_make_one_put_metric_data_call(cloudwatch):
    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent, interval_s=3600)
    publisher.started("shardId-1", "TRIM_HORIZON")
    for i in range(200):
        publisher.batch_applied(result(10, Latency(10, 10 * (i + 1), i + 1, i + 1), puts=10), 0)
    publisher.close()  # the final flush, from the background thread
    assert len(sent.calls) == 1
    assert read_back(cloudwatch, "ReplicationLatency", "SampleCount") == [2000.0]
    assert read_back(cloudwatch, "Records", "Sum") == [2000.0]


def test_the_background_thread_publishes_every_interval_and_flushes_once_at_close(cloudwatch):
    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent, interval_s=0.2)
    publisher.started("shardId-1", "TRIM_HORIZON")
    deadline = time.monotonic() + 10
    while len(sent.calls) < 2 and time.monotonic() < deadline:
        publisher.batch_applied(result(1, Latency(1, 7, 7, 7)), 0)
        time.sleep(0.02)
    publisher.close()
    publisher.close()  # a second close sends nothing more
    calls = len(sent.calls)
    assert calls >= 3
    time.sleep(0.5)
    assert len(sent.calls) == calls  # the thread has stopped
    records = sum(d["Value"] for data in sent.calls for d in data if d["MetricName"] == "Records")
    samples = sum(d["StatisticValues"]["SampleCount"] for data in sent.calls for d in data
                  if d["MetricName"] == "ReplicationLatency")
    assert records == samples > 0  # every batch counted exactly once


def test_more_datums_than_one_call_takes_are_split(cloudwatch, monkeypatch):
    monkeypatch.setattr(metrics, "MAX_DATUMS_PER_CALL", 4)
    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent)
    publisher.batch_applied(result(1, Latency(1, 5, 5, 5)), 3)
    assert publisher.publish() == 3  # 9 datums: two statistic sets and 7 counts
    assert [len(c) for c in sent.calls] == [4, 4, 1]


@pytest.mark.parametrize("error", [EndpointConnectionError(endpoint_url="http://cloudwatch.invalid"),
                                   RuntimeError("anything at all")], ids=["unreachable", "unexpected"])
def test_publishing_errors_are_swallowed_and_logged_at_most_once_per_five_minutes(error):
    now = [1000.0]
    sent = Recording(fail=error)
    publisher = MetricsPublisher(DIMS, lambda: sent, clock=lambda: now[0])
    with capture_logs() as logs:
        for _ in range(5):
            publisher.batch_applied(result(1, Latency(1, 5, 5, 5)), 0)
            assert publisher.publish() == 0
            now[0] += 30
        now[0] += 300
        publisher.publish()
    warnings = [e for e in logs if e["event"] == "metrics_not_published"]
    assert len(sent.calls) == 6
    assert len(warnings) == 2
    assert warnings[1]["suppressed_since_last"] == 4
    assert warnings[0]["log_level"] == "warning"


def test_a_client_that_cannot_even_be_made_is_swallowed_too():
    def broken():
        raise ValueError("no region")

    with capture_logs() as logs:
        assert MetricsPublisher(DIMS, broken).publish() == 0
    assert [e["event"] for e in logs] == ["metrics_not_published"]


def test_a_close_waits_for_a_hung_cloudwatch_at_most_the_final_flush_time():
    release = threading.Event()

    class Hung:
        def put_metric_data(self, **kwargs):
            release.wait(10)

    publisher = MetricsPublisher(DIMS, Hung, final_flush_s=0.3)
    publisher.started("shardId-1", None)
    started = time.monotonic()
    publisher.close()
    assert time.monotonic() - started < 2
    release.set()


def test_dont_publish_cloudwatch_makes_no_publisher_and_no_client(monkeypatch):
    made = []
    monkeypatch.setattr(clients, "cloudwatch", lambda *a, **k: made.append(a))
    path = PATH.model_copy(update={"dont_publish_cloudwatch": True})
    assert metrics.for_path(path, None) is metrics.NO_METRICS
    with mock_aws():
        processor = build_processor(path)
    assert processor._metrics is metrics.NO_METRICS
    processor._metrics.started("shardId-1", None)
    processor._metrics.close()
    assert made == []


def test_the_publisher_goes_to_the_source_region_and_the_given_endpoint(monkeypatch):
    made = []
    monkeypatch.setattr(clients, "cloudwatch", lambda region, endpoint, credentials: made.append((region, endpoint))
                        or Recording(fail=RuntimeError()))  # credentials: the path's cloudwatch side
    path = PATH.model_copy(update={"cloudwatch_endpoint": "http://127.0.0.1:1", "metrics_interval_seconds": 7})
    publisher = metrics.for_path(path, None)
    assert isinstance(publisher, MetricsPublisher) and publisher._interval_s == 7
    publisher.publish()
    assert made == [("us-east-1", "http://127.0.0.1:1")]


# --- PendingReplicationCount: records after the checkpoint, counted ------------------------------------

@pytest.fixture
def stream():
    """A moto table with a stream and 7 records; (streams client, arn, shard id, sequence numbers)."""
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_table(ddb, "orders", stream_view="NEW_AND_OLD_IMAGES")
        for i in range(7):
            ddb.put_item(TableName="orders", Item={"pk": {"S": f"k{i}"}})
        # botocore sends ARN-addressed calls to account endpoints, which moto in-process does not serve
        streams = boto3.client("dynamodbstreams", region_name="us-east-1",
                               endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")
        arn = ddb.describe_table(TableName="orders")["Table"]["LatestStreamArn"]
        shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard,
                                              ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        seqs = [r["dynamodb"]["SequenceNumber"] for r in streams.get_records(ShardIterator=iterator)["Records"]]
        assert len(seqs) == 7
        yield streams, arn, shard, seqs


def test_pending_counts_the_records_after_the_checkpoint(stream):
    streams, arn, shard, seqs = stream
    counter = PendingCounter(lambda: DynamoDBStream(streams, arn, "orders"))
    assert counter.count(shard, None) == 7  # nothing checkpointed yet: from the initial position
    assert counter.count(shard, "TRIM_HORIZON") == 7
    assert counter.count(shard, seqs[1]) == 5
    assert counter.count(shard, seqs[-1]) == 0
    assert counter.count(shard, "SHARD_END") == 0
    assert PendingCounter(lambda: DynamoDBStream(streams, None, "orders")).count(shard, seqs[3]) == 3  # finds the stream itself


def test_pending_reads_at_most_its_pages_and_is_then_a_lower_bound(stream, monkeypatch):
    streams, arn, shard, seqs = stream
    monkeypatch.setattr(metrics, "PENDING_PAGE", 2)
    assert PendingCounter(lambda: DynamoDBStream(streams, arn, "orders"), pages=2).count(shard, None) == 4
    assert PendingCounter(lambda: DynamoDBStream(streams, arn, "orders"), pages=5).count(shard, None) == 7


def test_the_published_pending_follows_the_checkpoint_and_is_zero_at_shard_end(stream):
    streams, arn, shard, seqs = stream
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent, pending=PendingCounter(lambda: DynamoDBStream(streams, arn, "orders")))

    def pending() -> float:
        return next(d["Value"] for d in sent.calls[-1] if d["MetricName"] == "PendingReplicationCount")

    publisher.started(shard, "TRIM_HORIZON")
    publisher.publish()
    assert pending() == 7
    publisher.checkpointed(seqs[4])
    publisher.publish()
    assert pending() == 2
    publisher.close(shard_ended=True)
    assert pending() == 0


def test_after_the_lease_is_gone_pending_is_left_to_the_new_owner(stream):
    streams, arn, shard, seqs = stream
    sent = Recording(boto3.client("cloudwatch", region_name="us-east-1"))
    publisher = MetricsPublisher(DIMS, lambda: sent, pending=PendingCounter(lambda: DynamoDBStream(streams, arn, "orders")))
    publisher.started(shard, seqs[0])
    publisher.lease_gone()
    publisher.close()
    assert [d for d in sent.calls[-1] if d["MetricName"] == "PendingReplicationCount"] == []


def test_a_pending_count_that_fails_leaves_it_out_and_sends_the_rest(cloudwatch):
    class Unreadable:
        def count(self, shard_id, checkpoint):
            raise EndpointConnectionError(endpoint_url="http://streams.invalid")

    sent = Recording(cloudwatch)
    publisher = MetricsPublisher(DIMS, lambda: sent, pending=Unreadable())
    publisher.started("shardId-1", "1")
    with capture_logs() as logs:
        publisher.close()
    assert sorted(d["MetricName"] for d in sent.calls[0]) == sorted(metrics.COUNTS)
    assert [e["event"] for e in logs] == ["metrics_pending_not_counted"]
