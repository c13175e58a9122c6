"""A TCP proxy in front of the local server that can hold its clients' requests in flight.

The zombie test points one worker's destination at it: while it holds, that worker's write requests have
left the worker but not reached the database, as they would on a congested or partitioned network, so
the worker is certainly in the middle of a batch when it is frozen. Released, the held bytes go on to the
database as they were sent.
"""

from __future__ import annotations

import socket
import threading

REQUEST_MARK = b"DynamoDB_20120810."
"""Each DynamoDB request names its operation in an X-Amz-Target header: DynamoDB_20120810.<Operation>."""


class HoldingProxy:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self.held_requests = 0
        """Requests that arrived while holding (each waits until release)."""

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> "HoldingProxy":
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()
        return self

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self.release()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target_port))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        try:
            while data := src.recv(65536):
                if requests and not self._flowing.is_set():
                    with self._lock:
                        self.held_requests += data.count(REQUEST_MARK)
                    self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
