"""The lazy consumer's cap: at most N items written per second by one worker, across all its shards.

KCL runs one processor process per shard, so the bucket cannot live in one process's memory. It lives in
a small file named after the worker (the daemon's pid, every processor's parent) and the path, locked with
``flock`` for the few microseconds each request takes from it. A request takes as many tokens as the items
it writes, and may leave the bucket in debt; the processor then sleeps until the debt is paid, so the rate
over any stretch longer than a second is the cap, and a burst is at most one second's worth.

``flock`` excludes other processes only: the writer's threads share one open file, so a thread lock is held
around it too, or two threads would read the same state and one take would be lost (a CI run measured the
cap exceeded by a third before it was added).
"""

from __future__ import annotations

import fcntl
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

_STATE = struct.Struct("<dd")  # tokens, time of the last refill (epoch seconds: shared across processes)


class SharedTokenBucket:
    def __init__(self, path: Path, rate: float, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._path = path
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._threads = threading.Lock()

    @classmethod
    def for_worker(cls, application_name: str, rate: float) -> "SharedTokenBucket":
        """The bucket of the worker this processor belongs to: its parent daemon, on this host."""
        name = f"replicator-rate-{application_name}-{os.getppid()}.bucket"
        return cls(Path(tempfile.gettempdir()) / name, rate)

    def take(self, items: int) -> float:
        """Take ``items`` tokens, sleeping as long as the bucket is in debt; return the seconds slept."""
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                raw = os.pread(self._fd, _STATE.size, 0)
                tokens, last = _STATE.unpack(raw) if len(raw) == _STATE.size else (self._rate, now)
                tokens = min(self._rate, tokens + (now - last) * self._rate) - items
                os.pwrite(self._fd, _STATE.pack(tokens, now), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        wait = -tokens / self._rate if tokens < 0 else 0.0
        if wait:
            self._sleep(wait)
        return wait

    def close(self) -> None:
        os.close(self._fd)
