"""DynamoDB Local: the real database for the demo, the integration tests and the benchmarks.

Its jars and native SQLite library come from Maven Central through daemon/dynamodb-local/pom.xml (run
by `make setup`). It runs with -sharedDb, so every client sees one database whatever region or
credentials it signs with, as two AWS regions' tables would be seen by their own clients.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from replicator.errors import ReplicatorError
from replicator.kcl.launcher import REPO_ROOT, find_java

MAIN_CLASS = "software.amazon.dynamodb.services.local.main.ServerRunner"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


def lib_dir() -> Path:
    return Path(os.environ.get("REPLICATOR_DYNAMODB_LOCAL_LIB", REPO_ROOT / "daemon" / "dynamodb-local" / "target" / "lib"))


def command(port: int, db_path: Path | None = None, heap: str = "1g") -> list[str]:
    lib = lib_dir()
    if not any(lib.glob("DynamoDBLocal-*.jar")):
        raise ReplicatorError(f"DynamoDB Local is not fetched ({lib} has no DynamoDBLocal jar): run `make setup`")
    storage = ["-dbPath", str(db_path)] if db_path else ["-inMemory"]
    return [
        find_java(),
        f"-Xmx{heap}",
        f"-Dsqlite4java.library.path={lib}",
        "-cp",
        str(lib / "*"),
        MAIN_CLASS,
        "-port",
        str(port),
        "-sharedDb",
        "-disableTelemetry",
        *storage,
    ]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def use_local_credentials() -> None:
    """DynamoDB Local accepts any credentials, but boto3 and the AWS SDK want some."""
    for key, value in LOCAL_CREDENTIALS.items():
        os.environ.setdefault(key, value)


class DynamoDBLocal:
    """One DynamoDB Local process on a loopback port; a context manager that waits until it answers."""

    def __init__(self, port: int | None = None, db_path: Path | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.db_path = db_path
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, region: str = "us-east-1", service: str = "dynamodb"):  # noqa: ANN201 - a boto3 client
        use_local_credentials()
        config = Config(retries={"mode": "standard", "total_max_attempts": 3}, max_pool_connections=32)
        return boto3.session.Session().client(service, region_name=region, endpoint_url=self.endpoint, config=config)

    def start(self, timeout_s: float = 60.0) -> "DynamoDBLocal":
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        if self.db_path:
            self.db_path.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(command(self.port, self.db_path), stdout=out, stderr=subprocess.STDOUT)
        client = self.client()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ReplicatorError(f"DynamoDB Local exited with status {self.process.returncode} on port {self.port}")
            try:
                client.list_tables(Limit=1)
                return self
            except (BotoCoreError, ClientError):
                time.sleep(0.2)
        self.stop()
        raise ReplicatorError(f"DynamoDB Local did not answer on port {self.port} within {timeout_s:.0f}s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "DynamoDBLocal":
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException], BaseException, TracebackType]) -> None:
        self.stop()
