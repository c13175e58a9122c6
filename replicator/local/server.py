"""The local server: moto's AWS services on one port, speaking HTTP/1.1 and HTTP/2 cleartext.

One moto server stands in for every region: DynamoDB, DynamoDB Streams, Kinesis, S3 and CloudWatch, with
resources kept apart by the region a client signs for, so one endpoint is the natural picture of two regions.
moto's own WSGI application is served by hypercorn because KCL 3 forces its Kinesis client onto HTTP/2, which
moto's bundled Werkzeug server does not speak; hypercorn answers HTTP/1.1 and HTTP/2 (prior knowledge or
Upgrade) on the same port.

The rule this module adds to moto: **each DynamoDB, DynamoDB Streams or Kinesis request is atomic**. Stock moto
appends a stream record after the table write, outside any lock, numbering it ``len(records) + start``; under
concurrent writers a stream then gets duplicated sequence numbers, steps backwards, and records out of the
order of their items' writes, and a consumer checkpointing past a duplicate drops a change. DynamoDB Streams
promises unique, increasing sequence numbers that follow each key's writes, and a replicator tested on
anything less proves nothing. So ``SerialisedRequests`` runs those services' requests one at a time under one
lock (a table write and its stream record together); moto is bound to one core by the GIL anyway. The other
services run concurrently, as moto runs them.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from replicator.changes.codec import decode_item
from replicator.errors import ReplicatorError
from replicator.local import accounts

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}
# The JSON protocols whose requests must not interleave (X-Amz-Target prefixes).
SERIALISED_TARGETS = ("DynamoDB_", "DynamoDBStreams_", "Kinesis_")
# Large enough for S3 multipart parts and ImportTable sources; hypercorn's default is 16 MiB.
MAX_BODY_BYTES = 1 << 30
# Threads serving requests: the KCL, its processors and a test's writers and probes all talk at once.
REQUEST_THREADS = 64

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class SerialisedRequests:
    """WSGI middleware: DynamoDB, DynamoDB Streams and Kinesis requests run one at a time.

    The whole response is produced under the lock, so no write and its stream record can interleave with
    another request of those services, and no scan can see a table in the middle of a write.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        self.lock = threading.RLock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(SERIALISED_TARGETS):
            return _never_empty(self.app(environ, start_response))
        with self.lock:
            body = self.app(environ, start_response)
            try:
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close:
                    close()


def _never_empty(body: Iterable[bytes]) -> Iterator[bytes]:
    """The response's chunks, or one empty chunk if it has none.

    hypercorn's WSGI wrapper (0.18) starts a response with its first chunk, so a response of no chunks at all
    (moto's answer to a HEAD request, such as S3's HeadObject and HeadBucket) is never started and reaches
    the client as a 500."""
    try:
        empty = True
        for chunk in body:
            empty = False
            yield chunk
        if empty:
            yield b""
    finally:
        close = getattr(body, "close", None)
        if close:
            close()


class DynamoDBJsonLines:
    """ImportTable's reader of DYNAMODB_JSON files: one ``{"Item": {...}}`` object per line, as DynamoDB reads them.

    moto reads import files with py_partiql_parser's ``JsonParser``, which drops every line holding an empty
    map (``{"M": {}}``) while reporting the import COMPLETED, leaves JSON escapes undecoded and exceeds the
    recursion limit on large files. A line of DynamoDB JSON is plain JSON, so the standard library reads it
    exactly; binary goes to moto as bytes, as its request parser hands it over (as base64 text moto would
    size it at 4/3 and refuse a 390 KB binary). ``JsonParser`` is used by moto for table imports alone, and
    the server installs this in its own process only."""

    @staticmethod
    def parse(original: str) -> Iterator[dict[str, Any]]:
        for line in original.splitlines():
            if line.strip():
                yield {"Item": decode_item(json.loads(line)["Item"])}


def is_within_segment(item: Any, segments: tuple[None, None] | tuple[int, int]) -> bool:
    """moto's ``Item.is_within_segment`` (which segment of a parallel Scan holds an item), for binary keys too.

    moto places an item by the first byte of the MD5 of its partition key's text, got with ``.encode``; a
    binary key's value is bytes, which has no ``.encode``, so every Scan with Segment of a table keyed by B
    answered 500 (copy-table and backup-table of such a table failed with --segments above 1). Bytes are
    hashed as they are; an S or N key keeps moto's segment. The server installs this in its own process only."""
    segment, total = segments
    if total is None:
        return True
    value = item.hash_key.value
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return hashlib.md5(data).digest()[0] % total == segment


def build_app() -> WSGIApp:
    """moto's server application (every service, dispatched by signature and target), made atomic, with
    table imports read as DynamoDB reads them, parallel scans of binary keys answered and exports written in
    DynamoDB's layout (``exports``)."""
    import py_partiql_parser
    from moto.dynamodb.models.dynamo_type import Item
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    py_partiql_parser.JsonParser = DynamoDBJsonLines
    Item.is_within_segment = is_within_segment
    from replicator.local import exports

    exports.install()  # DynamoDB's export layout, as of the request; ListExports and ListImports answered
    accounts.install()  # STS refuses what AWS's refuses (local.accounts)
    return SerialisedRequests(DomainDispatcherApplication(create_backend_app))


def keep_full_collections_short() -> None:
    """After each full garbage collection, move the survivors out of the collector's sight (``gc.freeze``).

    The server holds every table, stream record and shard in Python objects, and a full collection walks all
    of them while every request waits: measured on the benchmark, such pauses grew with the data to 0.5-1.2 s
    once 20,000 items were in, and each was a stall every client saw (the lag benchmark's p99). Frozen, the
    data is walked once; later collections walk only what came since. Cycles among frozen objects are never
    reclaimed: a slow leak that a local server, living for a trial or a test run, can afford."""

    def after(phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()

    gc.callbacks.append(after)


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until SIGINT or SIGTERM, then return (after in-flight requests finish)."""
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config as HypercornConfig

    keep_full_collections_short()

    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.wsgi_max_body_size = MAX_BODY_BYTES
    config.accesslog = None
    config.errorlog = None  # hypercorn's own errors; moto's are answered as HTTP errors
    config.graceful_timeout = 5
    app = build_app()
    endpoint = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=REQUEST_THREADS, thread_name_prefix="moto"))
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = asyncio.ensure_future(hypercorn_serve(app, config, shutdown_trigger=stop.wait, mode="wsgi"))
        await _until_listening(host, port, server)
        if on_ready:
            on_ready(endpoint)
        await server

    try:
        _check_free(host, port)
        asyncio.run(run())
    except OSError as exc:
        raise _listen_error(host, port, exc) from exc


def _listen_error(host: str, port: int, exc: OSError) -> ReplicatorError:
    """A failed bind, blaming the option at fault: the host when it resolves to no address of this machine
    (``999.1.1.1``, an unknown name, another machine's address), the port otherwise (in use, privileged)."""
    reason = exc.strerror or str(exc)
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return ReplicatorError(f"cannot listen on {host}:{port} ({reason}): --host {host} is not an IPv4 address "
                               "or name of this machine; give one, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 "
                               "(every interface)")
    return ReplicatorError(f"cannot listen on {host}:{port} ({reason}): choose another --port")


def _check_free(host: str, port: int) -> None:
    """Fail before serving if another process listens there: the readiness probe would reach it instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as hypercorn binds: TIME_WAIT is no obstacle
        sock.bind((host, port))


async def _until_listening(host: str, port: int, server: asyncio.Future[None]) -> None:
    """hypercorn binds inside ``serve``; wait until it accepts, or surface its bind error."""
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    while not server.done():
        try:
            _, writer = await asyncio.open_connection(probe_host, port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.02)
    server.result()


def free_port() -> int:
    """A port the OS says is free now (for servers that need not be found at a fixed address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_local_credentials() -> None:
    """moto accepts any credentials, but boto3 and the AWS SDK want some."""
    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)


def local_client(endpoint: str, service: str = "dynamodb", region: str = "us-east-1") -> Any:
    """A boto3 client of the local server, with a few retries and room for concurrent requests."""
    use_local_credentials()
    config = Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=32)
    return boto3.session.Session().client(service, region_name=region, endpoint_url=endpoint, config=config)


class LocalServer:
    """``replicator local`` as a child process on a free loopback port; a context manager.

    A child process rather than a thread: the server then has a core and a GIL of its own, as a remote
    database would, and a test can pause it (``pause``/``resume``) to play a hung destination.
    """

    def __init__(self, port: int | None = None, log_path: os.PathLike[str] | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, region: str = "us-east-1", service: str = "dynamodb") -> Any:
        return local_client(self.endpoint, service, region)

    def start(self, timeout_s: float = 60.0) -> "LocalServer":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        argv = [sys.executable, "-m", "replicator.local.server", "--port", str(self.port)]
        self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ReplicatorError(f"the local server exited with status {self.process.returncode} "
                                      f"on port {self.port}" + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                client.list_tables(Limit=1)
                return self
            except (BotoCoreError, ClientError):
                time.sleep(0.1)
        self.stop()
        raise ReplicatorError(f"the local server did not answer on port {self.port} within {timeout_s:.0f}s")

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted, nothing is answered (a hung or partitioned database)."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "LocalServer":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()


def main() -> None:
    """``python -m replicator.local.server --port P``: what ``LocalServer`` runs (no click, starts fast)."""
    import argparse

    parser = argparse.ArgumentParser(prog="replicator-local-server")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = parser.parse_args()
    serve(args.host, args.port, on_ready=lambda endpoint: print(endpoint, flush=True))


if __name__ == "__main__":
    main()
