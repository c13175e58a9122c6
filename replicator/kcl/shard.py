"""`replicator-processor`, the executable the MultiLangDaemon spawns per shard: a shim over a forked processor.

A processor built from scratch costs about 50 MB of its own (boto3's imports and service models, parsed in
every process); one forked from a parent that has loaded them all (``kcl.zygote``) shares those pages. So
this process, which keeps only the standard library loaded (about 6 MB of its own), hands its stdin, stdout
and stderr over a unix socket (SCM_RIGHTS) to the daemon's zygote, which forks the shard's processor onto
them, and then waits to exit with that processor's status. The daemon still sees one process per shard
speaking the MultiLang protocol on its pipes, and every rule of ``kcl.processor`` holds in the forked one.

Rules it keeps:

* one zygote per daemon (this process's parent): started by the first shim that finds none, under a lock,
  so two shims starting at once start one; its socket is named after the daemon's pid, so a restarted daemon
  never reaches an old zygote; `replicator run` starts it ahead (``start_ahead``), holding that lock until
  it answers, so that the first shard's processor does not wait for its loading (about a second);
* the shim ignores SIGTERM and SIGINT as the processor does (the daemon ends processors through the
  protocol); a shim killed otherwise (SIGKILL) closes its socket, and the zygote then kills its processor;
* the processor's exit status becomes the shim's: its code, or the same signal;
* no zygote, no loss: if one cannot be reached or started, the shim says so on stderr (one JSON line) and
  runs the processor itself, as before; ``REPLICATOR_ZYGOTE=off`` asks for that directly.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import NoReturn

from replicator.kcl import rundir

ZYGOTE_ENV = "REPLICATOR_ZYGOTE"
LOCK_FD_ENV = "REPLICATOR_ZYGOTE_LOCK_FD"
"""The descriptor of the start lock a zygote started ahead holds until it answers (``start_ahead``)."""
DAEMON_PID_ENV = "REPLICATOR_DAEMON_PID"  # kcl.ratelimit reads it: the bucket is the daemon's, not the zygote's
START_TIMEOUT_S = 60.0
"""How long the first shim waits for a zygote to load everything (about a second; more on a loaded machine)."""


def zygote_directory() -> Path:
    """This user's directory for zygote sockets (``rundir``; OSError if anyone else could use it)."""
    return rundir.private_directory("zygote")


def socket_path(daemon_pid: int) -> Path:
    return zygote_directory() / f"zygote-{daemon_pid}.sock"


def _connect(path: Path) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(path))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None


def zygote_command(path: Path, daemon_pid: int) -> list[str]:
    """The zygote of ``daemon_pid`` on socket ``path``, as the first shim and `replicator run` start it."""
    return [sys.executable, "-m", "replicator.kcl.zygote", str(path), str(daemon_pid)]


def connect_or_start(daemon_pid: int) -> socket.socket:
    """A connection to the daemon's zygote, starting it first if there is none (raises OSError)."""
    path = socket_path(daemon_pid)
    sock = _connect(path)
    if sock is not None:
        return sock
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)  # started by another shim while this one waited for the lock
        if sock is not None:
            return sock
        path.unlink(missing_ok=True)  # a zygote that died leaves its socket file
        import subprocess  # only the first shim starts a zygote: the others do without this import

        zygote = subprocess.Popen(
            zygote_command(path, daemon_pid),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,  # stderr: ours, until it is ready
        )
        assert zygote.stdout is not None
        answered, _, _ = select.select([zygote.stdout], [], [], START_TIMEOUT_S)
        ready = zygote.stdout.readline() if answered else b""  # "ready", or nothing: it said why on stderr
        zygote.stdout.close()
        if ready.strip() != b"ready":
            raise OSError(f"the zygote did not start (exit status {zygote.poll()})")
    sock = _connect(path)
    if sock is None:
        raise OSError(f"the zygote at {path} does not answer")
    return sock


def start_ahead(daemon_pid: int, env: dict[str, str]) -> None:
    """Start the zygote of the daemon that is about to be ``daemon_pid`` (raises OSError).

    It inherits the start lock, taken here, and lets it go once it answers: a shim that comes earlier waits
    for it under the lock, as for a zygote another shim started. If it fails, the lock goes with it and the
    first shim starts one, as without this. This process's own copy of the lock's descriptor is closed by
    the exec that follows (it is not inheritable)."""
    if env.get(ZYGOTE_ENV) == "off":
        return
    path = socket_path(daemon_pid)
    lock = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    path.unlink(missing_ok=True)
    import subprocess  # replicator run's import, not a shim's

    subprocess.Popen(
        zygote_command(path, daemon_pid),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, pass_fds=(lock,),
        env={**env, LOCK_FD_ENV: str(lock)},
    )


def hand_over(sock: socket.socket) -> None:
    """Send this process's environment, directory, arguments and standard descriptors to the zygote."""
    request = {"env": dict(os.environ), "cwd": os.getcwd(), "argv": sys.argv}
    socket.send_fds(sock, [json.dumps(request).encode()], [0, 1, 2])
    # Only the processor may hold the protocol's pipes: the daemon sees their end when the processor's ends.
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)


def mirror(status: bytes) -> NoReturn:
    """Exit as the processor did: ``exit N`` or ``signal N``; a zygote gone without a word is a failure."""
    kind, _, number = status.decode().partition(" ")
    if kind == "signal":
        if int(number) not in (signal.SIGKILL, signal.SIGSTOP):  # which have no handler to reset
            signal.signal(int(number), signal.SIG_DFL)
        os.kill(os.getpid(), int(number))
        time.sleep(1)  # a signal that does not end a process (SIGCHLD ...) falls through to exit 1
    os._exit(int(number) if kind == "exit" else 1)


def in_process() -> NoReturn:
    from replicator.kcl.processor import main as processor_main

    processor_main()
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.environ.get(ZYGOTE_ENV) == "off":
        in_process()
    daemon_pid = os.getppid()
    os.environ[DAEMON_PID_ENV] = os.environ.get(DAEMON_PID_ENV) or str(daemon_pid)
    try:
        sock = connect_or_start(daemon_pid)
        hand_over(sock)
    except OSError as exc:
        print(json.dumps({"event": "zygote_unavailable", "level": "warning", "error": str(exc),
                          "logger": "replicator.kcl.shard"}), file=sys.stderr, flush=True)
        in_process()
    while True:
        try:
            status = sock.recv(64)
        except InterruptedError:
            continue
        mirror(status)
