"""TableWriter: BatchWriteItem in chunks of 25, retried until durable, or a clear non-retryable error."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws
from structlog.testing import capture_logs

from replicator import clients
from replicator.changes import writer as writer_module
from replicator.errors import NonRetryableWriteError
from replicator.changes.squash import squash
from replicator.changes.writer import TableWriter
from unit_helpers import create_pk_table, delete_change, put_change

TABLE = "dest"


def client_error(code: str, status: int = 400, message: str = "scripted") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "BatchWriteItem",
    )


class FakeClient:
    """Records batch_write_item calls; `handler(requests, call_number)` scripts the answer for each."""

    def __init__(self, handler=None) -> None:
        self.calls: list[list[dict]] = []
        self._handler = handler or (lambda requests, n: {})
        self._lock = threading.Lock()

    def batch_write_item(self, RequestItems):  # noqa: N803 - boto3's spelling
        assert list(RequestItems) == [TABLE]
        requests = RequestItems[TABLE]
        with self._lock:
            self.calls.append(list(requests))
            n = len(self.calls)
        return self._handler(requests, n)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_writer(sleeps):
    made: list[TableWriter] = []

    def make(client, **kwargs) -> TableWriter:
        kwargs.setdefault("sleep", sleeps)
        w = TableWriter(client, TABLE, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def puts(n: int, prefix: str = "k"):
    return [put_change(f"{prefix}{i}", str(i), v={"N": str(i)}) for i in range(n)]


def test_requests_go_in_chunks_of_at_most_25_and_each_once(make_writer):
    client = FakeClient()
    changes = puts(60)
    stats = make_writer(client).write(changes)
    assert sorted(len(call) for call in client.calls) == [10, 25, 25]
    sent = [r["PutRequest"]["Item"]["pk"]["S"] for call in client.calls for r in call]
    assert sorted(sent) == sorted(f"k{i}" for i in range(60))
    assert (stats.puts, stats.deletes, stats.requests, stats.retries) == (60, 0, 3, 0)


def test_deletes_send_the_key_and_puts_the_whole_item(make_writer):
    client = FakeClient()
    put = put_change("a", "1", v={"M": {"b": {"B": b"\x00"}}})
    stats = make_writer(client).write([put, delete_change("b", "2")])
    assert client.calls == [
        [
            {"PutRequest": {"Item": {"pk": {"S": "a"}, "v": {"M": {"b": {"B": b"\x00"}}}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}},
        ]
    ]
    assert (stats.puts, stats.deletes) == (1, 1)


def test_empty_batch_sends_nothing(make_writer):
    client = FakeClient()
    stats = make_writer(client).write([])
    assert client.calls == []
    assert stats.requests == 0


def test_unprocessed_items_are_sent_again_until_none_remain(make_writer, sleeps):
    changes = puts(10)
    requests = [{"PutRequest": {"Item": c.new_image}} for c in changes]

    def handler(sent, n):
        if n == 1:
            return {"UnprocessedItems": {TABLE: requests[3:7]}}
        if n == 2:
            return {"UnprocessedItems": {TABLE: requests[5:6]}}
        return {"UnprocessedItems": {}}

    client = FakeClient(handler)
    stats = make_writer(client).write(changes)
    assert client.calls == [requests, requests[3:7], requests[5:6]]
    assert stats.retries == 2
    assert stats.requests == 3
    assert len(sleeps) == 2 and all(s > 0 for s in sleeps)


RETRYABLE = [
    pytest.param(lambda: client_error("ProvisionedThroughputExceededException"), id="throughput"),
    pytest.param(lambda: client_error("ThrottlingException"), id="throttling"),
    pytest.param(lambda: client_error("InternalServerError", 500), id="http-500"),
    pytest.param(lambda: client_error("SomethingNew", 503), id="http-503-unknown-code"),
    pytest.param(lambda: EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
                 id="connection"),
]


@pytest.mark.parametrize("error", RETRYABLE)
def test_transient_failures_are_retried_until_the_write_succeeds(make_writer, sleeps, error):
    def handler(sent, n):
        if n <= 3:
            raise error()
        return {}

    client = FakeClient(handler)
    stats = make_writer(client, backoff_cap_s=0.5).write(puts(3))
    assert len(client.calls) == 4
    assert client.calls[-1] == client.calls[0]
    assert stats.retries == 3
    assert len(sleeps) == 3
    assert all(0 < s <= 0.5 for s in sleeps)


def test_backoff_is_capped(make_writer, sleeps):
    def handler(sent, n):
        if n <= 15:
            raise client_error("ThrottlingException")
        return {}

    make_writer(FakeClient(handler), backoff_base_s=1.0, backoff_cap_s=0.25).write(puts(1))
    assert len(sleeps) == 15
    assert all(0 < s <= 0.25 for s in sleeps)


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException", "ValidationException"])
def test_non_retryable_errors_raise_with_the_code_and_are_not_retried(make_writer, sleeps, code):
    def handler(sent, n):
        raise client_error(code, message="Requested resource not found")

    client = FakeClient(handler)
    with pytest.raises(NonRetryableWriteError) as info:
        make_writer(client).write(puts(3))
    assert info.value.code == code
    assert code in str(info.value) and "Requested resource not found" in str(info.value)
    assert len(client.calls) == 1
    assert sleeps == []


class LazyExecutor:
    """Runs a submitted chunk only when the writer asks for its result: shows what write() waits for."""

    def __init__(self, max_workers=None, thread_name_prefix=""):
        pass

    def submit(self, fn, *args):
        class LazyFuture(Future):
            def result(self, timeout=None):
                if not self.done():
                    try:
                        self.set_result(fn(*args))
                    except BaseException as exc:  # noqa: BLE001 - handed to the caller as a real pool would
                        self.set_exception(exc)
                return super().result(timeout)

        return LazyFuture()

    def shutdown(self, wait=True):
        pass


def test_a_failed_chunk_still_waits_for_the_other_chunks(make_writer, monkeypatch):
    monkeypatch.setattr(writer_module, "ThreadPoolExecutor", LazyExecutor)

    def handler(sent, n):
        if n == 1:
            raise client_error("ValidationException")
        return {}

    client = FakeClient(handler)
    with pytest.raises(NonRetryableWriteError):
        make_writer(client).write(puts(60))
    assert [len(call) for call in client.calls] == [25, 25, 10]


def test_a_failed_chunk_with_a_real_pool_raises_after_the_others_are_written(make_writer):
    def handler(sent, n):
        if sent[0]["PutRequest"]["Item"]["pk"]["S"] == "k0":
            raise client_error("AccessDeniedException")
        return {}

    client = FakeClient(handler)
    with pytest.raises(NonRetryableWriteError) as info:
        make_writer(client, max_in_flight=2).write(puts(75))
    assert info.value.code == "AccessDeniedException"
    assert sorted(len(call) for call in client.calls) == [25, 25, 25]


def test_writes_land_in_a_real_table(make_writer):
    with mock_aws():
        setup = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_table(setup, TABLE)
        client = clients.dynamodb("us-east-1", None)
        w = make_writer(client)
        first = [
            put_change(f"k{i}", str(i), v={"N": str(i)}, b={"B": bytes([i])}, m={"M": {"l": {"L": [{"S": "x"}]}}})
            for i in range(50)
        ]
        second = [delete_change(f"k{i}", str(100 + i)) for i in range(0, 50, 7)]  # k0, k7, ..., k49
        second += [put_change("k1", "200", v={"N": "-0.000000000000000000000000000000000001"}),
                   put_change("k2", "201", v={"NULL": True})]
        assert len(first) + len(second) == 60
        w.write(squash(first))
        w.write(squash(second))

        expected = {c.keys["pk"]["S"]: c.new_image for c in first}
        for c in second:
            if c.is_delete:
                del expected[c.keys["pk"]["S"]]
            else:
                expected[c.keys["pk"]["S"]] = c.new_image
        items = setup.scan(TableName=TABLE)["Items"]
        assert {item["pk"]["S"]: item for item in items} == expected
        assert len(items) == 50 - 8


def counting_throttle(times: int):
    def handler(sent, n):
        if n <= times:
            raise client_error("ThrottlingException", message="Rate exceeded")
        return {}

    return handler


def test_an_outage_logs_one_retry_line_per_interval(make_writer):
    w = make_writer(FakeClient(counting_throttle(20)), clock=lambda: 1000.0, log_interval_s=10.0)
    with capture_logs() as logs:
        w.write(puts(1))
    retrying = [e for e in logs if e["event"] == "destination_write_retrying"]
    assert len(retrying) == 1
    assert retrying[0]["log_level"] == "warning"
    assert retrying[0]["table"] == TABLE
    assert "ThrottlingException" in retrying[0]["error"]


def test_retry_lines_resume_after_the_interval_with_the_suppressed_count(make_writer):
    times = iter([0.0, 1.0, 2.0, 3.0, 15.0, 16.0])
    w = make_writer(FakeClient(counting_throttle(6)), clock=lambda: next(times), log_interval_s=10.0)
    with capture_logs() as logs:
        w.write(puts(1))
    retrying = [e for e in logs if e["event"] == "destination_write_retrying"]
    assert [e["retries_since_last_log"] for e in retrying] == [0, 3]


class CapacityReportingClient(FakeClient):
    """Answers with a scripted ConsumedCapacity (and leaves the last item unprocessed once)."""

    def __init__(self, units: float) -> None:
        super().__init__(lambda requests, n: {
            "ConsumedCapacity": [{"TableName": TABLE, "CapacityUnits": units}],
            **({"UnprocessedItems": {TABLE: requests[-1:]}} if n == 1 else {}),
        })

    def batch_write_item(self, RequestItems, ReturnConsumedCapacity=None):  # noqa: N803 - boto3's spelling
        assert ReturnConsumedCapacity == "TOTAL"
        return super().batch_write_item(RequestItems)


@pytest.mark.parametrize(("reported", "charged"), [(1.0, [24.0, 1.0]), (60.0, [60.0, 60.0])],
                         ids=["under-reported-as-moto-does", "large-items"])
def test_a_rate_limit_is_charged_at_least_one_unit_per_item_written(make_writer, reported, charged):
    units: list[float] = []
    writer = make_writer(CapacityReportingClient(reported), on_consumed=units.append)
    writer.write([put_change(f"k{i}") for i in range(25)])
    assert units == charged


def test_with_a_deadline_an_unavailable_destination_is_reported_per_key_not_retried_forever(make_writer):
    now = [0.0]

    def throttle_second_request(requests, n):
        if any(r["PutRequest"]["Item"]["pk"]["S"] in ("k30", "k31") for r in requests):
            now[0] += 1.0  # each attempt costs a second of the caller's time
            raise client_error("ThrottlingException")
        return {}

    client = FakeClient(throttle_second_request)
    writer = make_writer(client, clock=lambda: now[0], max_in_flight=1)
    outcome = writer.write_all(puts(60), deadline=5.0)
    # The second request (k25..k49) never got through; the first and third did.
    assert set(outcome.failures) == {c.key_id for c in puts(60)[25:50]}
    assert all(isinstance(e, writer_module.DeadlinePassed) for e in outcome.failures.values())
    assert 4 <= sum(1 for call in client.calls if len(call) == 25 and call[0]["PutRequest"]["Item"]["pk"]["S"] == "k25") <= 6


def test_the_changes_of_a_failed_request_are_not_counted_as_written(make_writer):
    def refuse_second_request(requests, n):
        if requests[0]["PutRequest"]["Item"]["pk"]["S"] == "k25":
            raise client_error("ValidationException")
        return {}

    outcome = make_writer(FakeClient(refuse_second_request), max_in_flight=1).write_all(puts(60))
    assert len(outcome.failures) == 25
    assert (outcome.stats.puts, outcome.stats.deletes, outcome.stats.requests) == (35, 0, 2)
