"""The processors' preloaded parent: one per daemon, it forks each shard's processor (see ``kcl.shard``).

It imports everything a record processor imports and loads the service models of its clients into one
session (``clients.share_session``), then freezes those objects out of the garbage collector's reach
(``gc.freeze``), so that the processors it forks keep sharing those pages instead of each parsing its own.
Each request on its unix socket carries a shim's environment, directory, arguments and its stdin, stdout and
stderr (SCM_RIGHTS); the child forked for it takes them as its own and runs ``kcl.processor.main``, exactly
as a processor started by the daemon would.

Lifetimes, the rules it keeps:

* it never outlives its daemon: it watches the daemon's pid (a pidfd) and exits when the daemon has; each
  processor it forked is then killed with it (PR_SET_PDEATHSIG), as each would have ended at its stdin's end;
* a processor never outlives its shim: when a shim's connection closes (a shim killed), its processor is
  killed (SIGKILL, as the daemon's own kill would have been);
* each processor's exit status goes back to its shim (``exit N`` or ``signal N``), which exits with it;
* like the processors, it ignores SIGTERM and SIGINT sent to the daemon's process group (it is in that group,
  so a SIGKILL of the group still ends it); it holds no pipe of the daemon's once it has started.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import selectors
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn

from replicator.kcl.shard import LOCK_FD_ENV

PR_SET_PDEATHSIG = 1
MAX_REQUEST = 1 << 20
"""A request is a shim's environment (kilobytes) as JSON: one datagram of the socket (SOCK_SEQPACKET)."""


def preload() -> None:
    """Everything a processor imports, and its clients' service models, loaded once here."""
    import replicator.kcl.processor  # noqa: F401 - the point is the import
    from replicator import clients

    clients.share_session(preload=("dynamodb", "cloudwatch"))


def run_processor(request: dict[str, Any], fds: list[int], zygote_pid: int) -> NoReturn:
    """In the forked child: become the shim's processor, and exit with its status."""
    code = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != zygote_pid:  # the zygote died before the line above
            os._exit(1)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            if fd > 2:
                os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = list(request["argv"])
        from replicator.kcl.processor import main

        main()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as an uncaught exception would be, then exit 1
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


class Zygote:
    """The accept, fork and reap loop: single-threaded, so that every fork copies one thread."""

    def __init__(self, path: Path, daemon_pid: int) -> None:
        self._path = path
        self._daemon = os.pidfd_open(daemon_pid)  # ProcessLookupError when the daemon is already gone
        old_umask = os.umask(0o077)
        try:
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            self._listener.bind(str(path))
        finally:
            os.umask(old_umask)
        self._listener.listen(64)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wake_w)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, "accept")
        self._selector.register(self._daemon, selectors.EVENT_READ, "daemon")
        self._selector.register(self._wake_r, selectors.EVENT_READ, "child")
        self._shims: dict[int, socket.socket] = {}  # processor pid -> its shim's connection
        self._processors: dict[socket.socket, int] = {}

    def serve(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data == "daemon":
                    self._path.unlink(missing_ok=True)
                    return  # the processors die with this process (PR_SET_PDEATHSIG)
                if key.data == "accept":
                    self._accept()
                elif key.data == "child":
                    self._reap()
                else:
                    self._shim_spoke(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        conn, _ = self._listener.accept()
        try:
            message, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 3)
            request = json.loads(message)
        except (OSError, ValueError):
            conn.close()
            return
        if len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        zygote_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            self._close_in_child(conn)
            run_processor(request, fds, zygote_pid)
        for fd in fds:
            os.close(fd)
        self._shims[pid] = conn
        self._processors[conn] = pid
        self._selector.register(conn, selectors.EVENT_READ, "shim")

    def _close_in_child(self, conn: socket.socket) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        self._selector.close()
        self._listener.close()
        for other in [conn, *self._processors]:
            other.close()
        for fd in (self._daemon, self._wake_r, self._wake_w):
            os.close(fd)

    def _shim_spoke(self, conn: socket.socket) -> None:
        """A shim never sends after its request: readable means closed, its shim gone."""
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if data or conn not in self._processors:
            return
        pid = self._processors.pop(conn)
        self._selector.unregister(conn)
        conn.close()
        if self._shims.pop(pid, None) is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # reaped below

    def _reap(self) -> None:
        while True:
            try:
                os.read(self._wake_r, 512)
            except BlockingIOError:
                break
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self._shims.pop(pid, None)
            if conn is None:
                continue  # its shim was gone first
            answer = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"
            try:
                conn.send(answer.encode())
            except OSError:
                pass
            self._processors.pop(conn, None)
            self._selector.unregister(conn)
            conn.close()


def main() -> None:
    """``python -m replicator.kcl.zygote SOCKET DAEMON_PID``, as a shim starts it: "ready" on stdout once it
    answers on SOCKET; then it lets go of its standard descriptors, the first shim's."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path, daemon_pid = Path(sys.argv[1]), int(sys.argv[2])
    preload()
    zygote = Zygote(path, daemon_pid)
    if LOCK_FD_ENV in os.environ:  # started ahead by `replicator run`: the shims may come now
        os.close(int(os.environ.pop(LOCK_FD_ENV)))
    gc.collect()
    gc.freeze()  # what is loaded now stays shared: the collector of a child never writes to it
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    zygote.serve()


if __name__ == "__main__":
    main()
