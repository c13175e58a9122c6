"""The lazy consumer's cap: at most N items written per second by one worker, across all its shards.

KCL runs one processor process per shard, so the bucket cannot live in one process's memory. It lives in
a small file named after the worker (the daemon's pid, every processor's parent) and the path, locked with
``flock`` for the few microseconds each request takes from it. A request takes as many tokens as the items
it writes, and may leave the bucket in debt; the processor then sleeps until the debt is paid, so the rate
over any stretch longer than a second is the cap, and a burst is at most one second's worth.

The files live in this user's private directory (``rundir``: ``replicator-buckets-<uid>`` in
``$XDG_RUNTIME_DIR``, else ``$TMPDIR`` or /tmp, mode 0700), and one owned or usable by anyone else is refused:
in a shared /tmp another user could otherwise plant the file, or a link in its place, and set or read
the bucket. The file counts the processors that have it open; the last to close it removes it, so a
stopped worker leaves nothing behind, and a worker that is gone without closing (kill -9) has its file
removed by the next processor to open one.

``flock`` excludes other processes only: the writer's threads share one open file, so a thread lock is held
around it too, or two threads would read the same state and one take would be lost (a CI run measured the
cap exceeded by a third before it was added).
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from replicator.errors import ReplicatorError
from replicator.kcl import rundir

_STATE = struct.Struct("<ddq")
"""Tokens, the time of the last refill (epoch seconds: shared across processes), the processors holding it."""
_PREFIX = "rate-"
_SUFFIX = ".bucket"


DAEMON_PID_ENV = "REPLICATOR_DAEMON_PID"
"""The daemon a processor serves, when its parent is not the daemon (a processor forked by ``kcl.zygote``)."""


def daemon_pid() -> int:
    """The worker this processor belongs to: its parent, or the daemon its shard shim was spawned by."""
    return int(os.environ.get(DAEMON_PID_ENV) or os.getppid())


def private_directory() -> Path:
    """This user's directory for bucket files (``rundir``); refused in one line if anyone else could use it."""
    try:
        return rundir.private_directory("buckets")
    except OSError as exc:
        raise ReplicatorError(f"{exc}: remove it, or set XDG_RUNTIME_DIR to a directory of your own") from None


def remove_buckets_of_gone_workers(directory: Path) -> None:
    """Remove the files of workers whose daemon no longer runs (its pid ends the file's name)."""
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        pid = path.name[: -len(_SUFFIX)].rpartition("-")[2]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, as another user


class SharedTokenBucket:
    def __init__(self, path: Path, rate: float, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._path = path
        self._rate = rate
        self._clock = clock
        self._sleep = sleep
        self._threads = threading.Lock()
        self._fd = self._open_and_join()

    @classmethod
    def for_worker(cls, application_name: str, rate: float) -> "SharedTokenBucket":
        """The bucket of the worker this processor belongs to: its parent daemon, on this host."""
        directory = private_directory()
        remove_buckets_of_gone_workers(directory)
        return cls(directory / f"{_PREFIX}{application_name}-{daemon_pid()}{_SUFFIX}", rate)

    def _open_and_join(self) -> int:
        """Open the file and count this processor in; again if the last holder removed it meanwhile."""
        while True:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_nlink:
                    tokens, last, holders = self._read(fd)
                    os.pwrite(fd, _STATE.pack(tokens, last, holders + 1), 0)
                    return fd
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self, fd: int) -> tuple[float, float, int]:
        raw = os.pread(fd, _STATE.size, 0)
        return _STATE.unpack(raw) if len(raw) == _STATE.size else (self._rate, self._clock(), 0)

    def take(self, items: int) -> float:
        """Take ``items`` tokens, sleeping as long as the bucket is in debt; return the seconds slept."""
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = self._clock()
                tokens, last, holders = self._read(self._fd)
                tokens = min(self._rate, tokens + (now - last) * self._rate) - items
                os.pwrite(self._fd, _STATE.pack(tokens, now, holders), 0)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        wait = -tokens / self._rate if tokens < 0 else 0.0
        if wait:
            self._sleep(wait)
        return wait

    def close(self) -> None:
        """Count this processor out; the last one removes the file."""
        with self._threads:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                tokens, last, holders = self._read(self._fd)
                if holders <= 1:
                    if _same_file(self._path, self._fd):
                        self._path.unlink()
                else:
                    os.pwrite(self._fd, _STATE.pack(tokens, last, holders - 1), 0)
            finally:
                os.close(self._fd)  # closing the file releases the lock


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False
