"""The read-through: a change that names only a key becomes the item's present state in the source.

Keys-only records (and DynamoDB streams whose view carries no new image) say that an item changed, not
what it became. So the applier reads each such key from the source table with a strongly consistent
BatchGetItem after squashing, and writes what it finds: the item, or a delete where there is none. A
read sees the source's present, so the order of the records and their duplicates cannot matter, and a
replay converges to the source as it is now. That holds while one key's records are read one batch at a
time (one shard, or one Kinesis partition key per item), so that an older read never lands after a newer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError
from tenacity import Retrying, retry_if_exception, stop_never, wait_random_exponential

from replicator.changes.codec import Change
from replicator.changes.formats import key_identity
from replicator.changes.writer import DeadlinePassed, is_retryable
from replicator.errors import SourceReadError

GET_LIMIT = 100
"""BatchGetItem's most keys per request."""


class _Unprocessed(Exception):
    """Some keys came back in UnprocessedKeys; they are asked again after a backoff."""


class SourceReader:
    """Reads keys' present items from the source table, consistently, retrying what can be retried."""

    def __init__(self, client: Any, table: str, *, backoff_base_s: float = 0.05, backoff_cap_s: float = 5.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._table = table
        self._wait = wait_random_exponential(multiplier=backoff_base_s, max=backoff_cap_s)
        self._sleep = sleep
        self._clock = clock
        self.reads = 0
        """Keys read since the reader was made (for logs and the benchmarks)."""

    def resolve(self, changes: Sequence[Change], deadline: float | None = None) -> list[Change]:
        """``changes`` with every read-through change replaced by the source's present state of its key."""
        wanted = [c for c in changes if c.read_through]
        if not wanted:
            return list(changes)
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), GET_LIMIT):
            for item in self._get([c.keys for c in wanted[start : start + GET_LIMIT]], deadline):
                found[key_identity({name: item[name] for name in wanted[0].keys})] = item
        self.reads += len(wanted)
        return [
            replace(c, new_image=found.get(c.key_id), read_through=False) if c.read_through else c
            for c in changes
        ]

    def _get(self, keys: list[dict[str, Any]], deadline: float | None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        pending = keys

        def attempt() -> None:
            nonlocal pending
            response = self._client.batch_get_item(
                RequestItems={self._table: {"Keys": pending, "ConsistentRead": True}}
            )
            items.extend(response.get("Responses", {}).get(self._table, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self._table, {}).get("Keys", [])
            if unprocessed:
                pending = unprocessed
                raise _Unprocessed(f"{len(unprocessed)} unprocessed keys")

        retrying = Retrying(
            retry=retry_if_exception(lambda exc: isinstance(exc, _Unprocessed) or is_retryable(exc)),
            wait=self._wait,
            stop=stop_never if deadline is None else (lambda state: self._clock() >= deadline),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            retrying(attempt)
        except Exception as exc:
            if isinstance(exc, _Unprocessed) or is_retryable(exc):
                raise DeadlinePassed(f"source {self._table}: still failing at the deadline: {exc}") from exc
            if not isinstance(exc, ClientError):
                raise
            err = exc.response.get("Error", {})
            raise SourceReadError(
                err.get("Code", "ClientError"), f"reading source table {self._table}: {err.get('Message', exc)}"
            ) from exc
        return items
