"""The shard shim and the zygote (kcl/shard.py, kcl/zygote.py): a processor forked from the preloaded parent
behaves as one the daemon started itself, and the lifetimes hold (no processor outlives its shim, no zygote its
daemon). The processor tests of test_processor.py that start a processor run again here through the shim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicator.kcl.config import ReplicationPath
from test_processor import (  # noqa: F401 - the tests imported are collected again here, through the shim
    INITIALIZE,
    Child,
    test_a_missing_destination_stops_the_processor_without_a_checkpoint,
    test_a_rate_limited_processor_leaves_no_bucket_file_however_it_ends,
    test_an_item_too_large_once_versioned_stops_the_processor_naming_its_key,
    test_the_processor_publishes_its_metrics_to_the_given_endpoint_at_shutdown,
    test_the_processor_speaks_the_multilang_protocol,
)
from unit_helpers import VENV_BIN, create_pk_table, endpoint_client, unique_table

SHIM = [str(VENV_BIN / "python"), "-c", "from replicator.kcl.shard import main; main()"]
"""What the replicator-processor console script runs (the shared venv's script may predate the entry point)."""


@pytest.fixture
def runtime(tmp_path) -> Path:
    """A private XDG_RUNTIME_DIR per test, so that each test's zygote is its own (found by its socket)."""
    path = tmp_path / "xdg"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def child_factory(moto_endpoint, tmp_path, runtime):
    """test_processor's child_factory, with the shim as the processor's executable."""
    started: list[Child] = []

    def start(table: str, argv: list[str] | None = None, env: dict[str, str] | None = None, **settings) -> Child:
        properties = tmp_path / "p.properties"
        ReplicationPath(**{
            "source_region": "us-east-1", "source_table": "source-table", "destination_region": "us-east-1",
            "destination_table": table, "destination_endpoint": moto_endpoint, "write_concurrency": 2,
            "dont_publish_cloudwatch": True, **settings,
        }).write_properties(properties)
        child_env = {"XDG_RUNTIME_DIR": str(runtime), **os.environ, **(env or {}),
                     "REPLICATOR_PROPERTIES": str(properties)}
        child = Child(argv or SHIM, child_env, cwd=tmp_path)
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()


def zygotes_of(runtime: Path, daemon_pid: int) -> list[int]:
    """The pids of the zygotes serving ``daemon_pid`` under ``runtime`` (found by their socket's path; their
    forked processors keep their command line, and are told apart by their parent)."""
    socket = str(runtime / f"replicator-zygote-{os.getuid()}" / f"zygote-{daemon_pid}.sock")
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"replicator.kcl.zygote" in argv and socket.encode() in argv:
            found.append(int(entry.name))
    return [pid for pid in found if parent_of(pid) not in found]


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().split(") ")[1].split()[1])
    except OSError:
        return 0


def children_of(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def path_file(tmp_path: Path, moto_endpoint: str) -> Path:
    """A path's properties file, its replica a new table on the moto server."""
    table = unique_table("dest")
    create_pk_table(endpoint_client(moto_endpoint), table)
    properties = tmp_path / "p.properties"
    ReplicationPath(source_region="us-east-1", source_table="source-table", destination_region="us-east-1",
                    destination_table=table, destination_endpoint=moto_endpoint,
                    dont_publish_cloudwatch=True).write_properties(properties)
    return properties


def started_processor(child_factory, moto_endpoint) -> Child:
    table = unique_table("dest")
    create_pk_table(endpoint_client(moto_endpoint), table)
    child = child_factory(table)
    child.send(INITIALIZE)
    assert child.expect() == {"action": "status", "responseFor": "initialize"}
    return child


def test_shims_share_one_zygote_whose_children_are_the_processors(child_factory, moto_endpoint, runtime):
    first, second = started_processor(child_factory, moto_endpoint), started_processor(child_factory, moto_endpoint)
    (zygote,) = zygotes_of(runtime, os.getpid())
    processors = children_of(zygote)
    assert len(processors) == 2
    # the shims run no processor: the first one started the zygote, the second found it
    assert children_of(first.proc.pid) == [zygote] and children_of(second.proc.pid) == []
    assert first.close() == 0 and second.close() == 0
    wait_until(lambda: children_of(zygote) == [])


def test_a_killed_shim_kills_its_processor(child_factory, moto_endpoint, runtime):
    child = started_processor(child_factory, moto_endpoint)
    (zygote,) = zygotes_of(runtime, os.getpid())
    (processor,) = children_of(zygote)
    child.proc.kill()
    wait_until(lambda: not alive(processor))
    assert alive(zygote)


def test_a_processor_killed_by_a_signal_is_mirrored_by_its_shim(child_factory, moto_endpoint, runtime):
    child = started_processor(child_factory, moto_endpoint)
    (zygote,) = zygotes_of(runtime, os.getpid())
    (processor,) = children_of(zygote)
    os.kill(processor, signal.SIGKILL)
    assert child.proc.wait(timeout=15) == -signal.SIGKILL


def test_the_zygote_and_its_processors_end_with_their_daemon(tmp_path, moto_endpoint, runtime):
    properties = path_file(tmp_path, moto_endpoint)
    # A stand-in daemon: it spawns the shim on a pipe it keeps open, then waits to be killed.
    daemon = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         f"p = subprocess.Popen({SHIM!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)\ntime.sleep(120)"],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "REPLICATOR_PROPERTIES": str(properties)})
    try:
        wait_until(lambda: zygotes_of(runtime, daemon.pid) and children_of(zygotes_of(runtime, daemon.pid)[0]))
        (zygote,) = zygotes_of(runtime, daemon.pid)
        (processor,) = children_of(zygote)
    finally:
        daemon.kill()
        daemon.wait()
    wait_until(lambda: not alive(zygote) and not alive(processor))
    assert not (runtime / f"replicator-zygote-{os.getuid()}" / f"zygote-{daemon.pid}.sock").exists()


def test_without_a_zygote_the_shim_runs_the_processor_itself_and_says_so(child_factory, moto_endpoint, runtime):
    (runtime / f"replicator-zygote-{os.getuid()}").write_text("")  # not a directory: no socket can be made
    child = started_processor(child_factory, moto_endpoint)
    assert zygotes_of(runtime, os.getpid()) == []
    assert child.close() == 0
    assert any('"zygote_unavailable"' in line for line in child.stderr)


def test_a_zygote_started_ahead_by_replicator_run_serves_the_first_shim(tmp_path, moto_endpoint, runtime):
    properties = path_file(tmp_path, moto_endpoint)
    # As `replicator run` does: start the zygote ahead for this pid, then exec the daemon (a stand-in that
    # spawns one shim at once, before the zygote can have loaded, and waits).
    line = (json.dumps(INITIALIZE) + "\n").encode()
    stand_in = ("import subprocess, time\n"
                f"p = subprocess.Popen({SHIM!r}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
                f"p.stdin.write({line!r}); p.stdin.flush()\n"
                "answer = b''\n"
                "while not answer.strip(): answer = p.stdout.readline()\n"
                "print(answer.decode().strip(), flush=True); time.sleep(120)")
    daemon = subprocess.Popen(
        [sys.executable, "-c", "import os, sys\nfrom replicator.kcl import launcher\n"
         f"launcher.exec_daemon([sys.executable, '-c', {stand_in!r}], dict(os.environ))"],
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime), "REPLICATOR_PROPERTIES": str(properties)},
        stdout=subprocess.PIPE)
    try:
        assert daemon.stdout is not None
        assert '"responseFor": "initialize"' in daemon.stdout.readline().decode().replace('":"', '": "')
        (zygote,) = zygotes_of(runtime, daemon.pid)
        assert parent_of(zygote) == daemon.pid  # started by replicator run, not by the shim
        (shim,) = [pid for pid in children_of(daemon.pid) if pid != zygote]
        assert children_of(shim) == [] and len(children_of(zygote)) == 1
    finally:
        daemon.kill()
        daemon.wait()
