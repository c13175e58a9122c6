"""`replicator local`: DynamoDB Local in the foreground, in memory or on disk."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicator.local.server import DynamoDBLocal, free_port
from replicator.local.workload import create_table

pytestmark = pytest.mark.integration
REPLICATOR = str(Path(sys.executable).parent / "replicator")


def serve(*args: str) -> tuple[subprocess.Popen[bytes], DynamoDBLocal]:
    port = free_port()
    proc = subprocess.Popen([REPLICATOR, "local", "--port", str(port), *args], stderr=subprocess.PIPE)
    client_of = DynamoDBLocal(port=port)
    client = client_of.client()
    deadline = time.monotonic() + 60
    while True:
        try:
            client.list_tables()
            return proc, client_of
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"replicator local did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def test_db_path_keeps_tables_across_restarts_and_in_memory_does_not(tmp_path: Path) -> None:
    proc, db = serve("--db-path", str(tmp_path / "data"))
    create_table(db.client(), "kept")
    stop(proc)
    proc, db = serve("--db-path", str(tmp_path / "data"))
    assert db.client().list_tables()["TableNames"] == ["kept"]
    stop(proc)

    proc, db = serve("--in-memory")
    create_table(db.client(), "gone")
    stop(proc)
    proc, db = serve()
    assert db.client().list_tables()["TableNames"] == []
    stop(proc)


def test_both_storage_options_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = subprocess.run([REPLICATOR, "local", "--in-memory", "--db-path", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["replicator: error: choose --in-memory or --db-path DIR, not both"]
