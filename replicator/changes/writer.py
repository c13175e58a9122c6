"""The writer: makes a set of changes durable in the destination table, or says why it cannot.

BatchWriteItem takes 25 requests at a time; several requests run at once. Throttling, 5xx answers,
connection errors and UnprocessedItems are retried with capped exponential backoff and full jitter until
they succeed: the processor must not checkpoint past a record that is not written, and giving up would
do exactly that. Anything else (missing table, access denied, validation) cannot be fixed by retrying and
is raised as :class:`NonRetryableWriteError`.

With a :class:`~replicator.versions.Versioning`, each change is instead one PutItem conditional on the
replica holding an older version (see ``versions``): BatchWriteItem takes no conditions. A refused
condition is not an error: the replica already holds that change or a newer one, and it is counted as
``stale``. A versioned write the destination refuses names its item's key in the error: one request is
one item, and an item near DynamoDB's 400 KB limit can exceed it once the version is added.

bootstrap's loader (``tables.load``) writes the same way, one PutItem per item, with a condition of its
own (the key's absence); a refused condition there is a loaded item skipped, counted as ``stale`` too.

The counts say what was written: ``puts`` and ``deletes`` leave out stale writes and the changes of
requests that failed, so a batch's log line and metrics never claim writes that did not happen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_never, wait_random_exponential

from replicator import log
from replicator.changes.codec import Change
from replicator.errors import NonRetryableWriteError
from replicator.changes.versions import Versioning

BATCH_LIMIT = 25

RETRYABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "LimitExceededException",
        "TransactionInProgressException",
    }
)

_log = log.get("replicator.changes.writer")


class _Unprocessed(Exception):
    """Some requests came back in UnprocessedItems; they are sent again after a backoff."""


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _Unprocessed):
        return True
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in RETRYABLE_CODES or status >= 500
    return False


def to_request(change: Change) -> dict[str, Any]:
    if change.new_image is None:
        return {"DeleteRequest": {"Key": change.keys}}
    return {"PutRequest": {"Item": change.new_image}}


@dataclass
class WriteStats:
    puts: int = 0
    deletes: int = 0
    requests: int = 0
    retries: int = 0
    stale: int = 0
    """Versioned writes refused because the replica already held that version or a newer one."""


@dataclass
class WriteOutcome:
    stats: WriteStats
    failures: dict[str, BaseException]
    """The keys (``Change.key_id``) not durable, each with why, in the order they were submitted."""


class DeadlinePassed(Exception):
    """Writes kept failing for a retryable reason until the caller's deadline (a Lambda's remaining time)."""


@dataclass
class _OutageLog:
    """Logs retries at most once per interval, with counts, so an outage is not one line per record."""

    interval_s: float
    clock: Callable[[], float]
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last: float = float("-inf")
    _suppressed: int = 0

    def retrying(self, table: str, exc: BaseException | None, sleep_s: float) -> None:
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        _log.warning(
            "destination_write_retrying",
            table=table,
            error=_describe(exc),
            backoff_s=round(sleep_s, 3),
            retries_since_last_log=suppressed,
        )


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code')}: {err.get('Message')}"
    return repr(exc)


class TableWriter:
    """Writes changes to one table with BatchWriteItem, several requests in flight."""

    def __init__(
        self,
        client: Any,
        table: str,
        *,
        max_in_flight: int = 8,
        backoff_base_s: float = 0.05,
        backoff_cap_s: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        log_interval_s: float = 10.0,
        before_request: Callable[[], None] | None = None,
        on_consumed: Callable[[float], None] | None = None,
        versioning: Versioning | None = None,
        charge: Callable[[int], None] | None = None,
        put_request: Callable[[str, Change], dict[str, Any]] | None = None,
    ) -> None:
        """``before_request`` runs before each BatchWriteItem (a rate limiter's wait); ``on_consumed``, if
        given, asks for ReturnConsumedCapacity and receives each response's write units; ``versioning``
        makes every write conditional on the replica's version (one PutItem per change); ``charge``, if
        given, is called with the number of items before each request (a cap on items written per second);
        ``put_request``, like ``versioning``, makes each change one conditional PutItem, built by it from the
        table's name and the change (bootstrap's loader: ``tables.load``), and reports its units."""
        if versioning is not None and on_consumed is not None:
            raise ValueError("versioned writes do not report consumed capacity: pass versioning or on_consumed")
        if versioning is not None and put_request is not None:
            raise ValueError("pass versioning or put_request, not both")
        self._client = client
        self._table = table
        self._sleep = sleep
        self._clock = clock
        self._wait = wait_random_exponential(multiplier=backoff_base_s, max=backoff_cap_s)
        self._pool = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="batch-write")
        self._outage = _OutageLog(interval_s=log_interval_s, clock=clock)
        self._before_request = before_request
        self._on_consumed = on_consumed
        self._versioning = versioning
        self._charge = charge
        self._put_request = put_request

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def write(self, changes: Sequence[Change]) -> WriteStats:
        """Return once every change is durable; raise NonRetryableWriteError if one can never be."""
        outcome = self.write_all(changes)
        if outcome.failures:
            raise next(iter(outcome.failures.values()))
        return outcome.stats

    def write_all(self, changes: Sequence[Change], deadline: float | None = None) -> "WriteOutcome":
        """Write every change, retrying until durable or (with ``deadline``, on the writer's clock) until
        the deadline passes; report which keys are not durable instead of raising.

        A request that fails takes all its changes with it, even those the service may have written:
        writing them again is harmless, while claiming one durable that is not would lose it."""
        stats = WriteStats()
        if self._versioning is not None:
            groups = [[c] for c in changes]
            jobs = [(self._write_versioned, (c, self._versioning.put_item_request(self._table, c))) for c in changes]
        elif self._put_request is not None:
            groups = [[c] for c in changes]
            jobs = [(self._write_versioned, (c, self._put_request(self._table, c))) for c in changes]
        else:
            groups = [list(changes[i : i + BATCH_LIMIT]) for i in range(0, len(changes), BATCH_LIMIT)]
            jobs = [(self._write_chunk, [to_request(c) for c in group]) for group in groups]
        futures = [self._pool.submit(job, payload, deadline) for job, payload in jobs]
        failures: dict[str, BaseException] = {}
        for group, future in zip(groups, futures):  # wait for all, even after a failure: nothing left in flight
            try:
                sent, retries, stale = future.result()
            except BaseException as exc:  # noqa: BLE001 - reported to the caller
                failures.update((c.key_id, exc) for c in group)
                continue
            stats.requests += sent
            stats.retries += retries
            stats.stale += stale
            if not stale:  # a refused (stale) write wrote nothing
                stats.puts += sum(1 for c in group if c.new_image is not None)
                stats.deletes += sum(1 for c in group if c.new_image is None)
        return WriteOutcome(stats, failures)

    def _retrying(self, attempt: Callable[[], None], deadline: float | None) -> None:
        """Run ``attempt`` until it succeeds, fails for a reason retrying cannot fix, or the deadline
        passes (then :class:`DeadlinePassed`)."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            self._outage.retrying(self._table, exc, state.upcoming_sleep)

        retrying = Retrying(
            retry=retry_if_exception(is_retryable),
            wait=self._wait,
            stop=stop_never if deadline is None else (lambda state: self._clock() >= deadline),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            retrying(attempt)
        except Exception as exc:
            if is_retryable(exc):
                raise DeadlinePassed(f"{self._table}: still failing at the deadline: {_describe(exc)}") from exc
            if not isinstance(exc, ClientError):
                raise
            err = exc.response.get("Error", {})
            raise NonRetryableWriteError(err.get("Code", "ClientError"), err.get("Message", str(exc))) from exc

    def _write_versioned(self, job: tuple[Change, dict[str, Any]], deadline: float | None) -> tuple[int, int, int]:
        change, request = job
        sent = 0
        stale = 0

        def attempt() -> None:
            nonlocal sent, stale
            sent += 1
            if self._before_request is not None:
                self._before_request()
            if self._charge is not None:
                self._charge(1)
            try:
                if self._on_consumed is None:
                    self._client.put_item(**request)
                else:
                    response = self._client.put_item(**request, ReturnConsumedCapacity="TOTAL")
                    self._on_consumed(max(1.0, response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                if self._on_consumed is not None:
                    self._on_consumed(1.0)  # a refused condition still costs a write unit
                stale = 1

        try:
            self._retrying(attempt, deadline)
        except NonRetryableWriteError as exc:
            # One item per request: name it, so that the item can be found (one too large once versioned).
            raise NonRetryableWriteError(exc.code, f"{exc.message} (item key {change.key_id})") from exc
        return sent, sent - 1, stale

    def _write_chunk(self, chunk: list[dict[str, Any]], deadline: float | None) -> tuple[int, int, int]:
        pending = chunk
        sent = 0

        def attempt() -> None:
            nonlocal pending, sent
            sent += 1
            if self._before_request is not None:
                self._before_request()
            if self._charge is not None:
                self._charge(len(pending))
            if self._on_consumed is None:
                response = self._client.batch_write_item(RequestItems={self._table: pending})
            else:
                response = self._client.batch_write_item(
                    RequestItems={self._table: pending}, ReturnConsumedCapacity="TOTAL"
                )
            unprocessed = response.get("UnprocessedItems", {}).get(self._table, [])
            if self._on_consumed is not None:
                # Every item written costs at least one write unit; a service that reports less (moto
                # reports one per request) must not let a rate limit be exceeded.
                reported = sum(c.get("CapacityUnits", 0.0) for c in response.get("ConsumedCapacity", []))
                self._on_consumed(max(reported, float(len(pending) - len(unprocessed))))
            if unprocessed:
                pending = unprocessed
                raise _Unprocessed(f"{len(unprocessed)} unprocessed items")

        self._retrying(attempt, deadline)
        return sent, sent - 1, 0
