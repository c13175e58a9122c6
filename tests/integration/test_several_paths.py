"""Several paths in one daemon (one JVM) from a paths directory, on the local server: three table paths and
a binlog Kinesis path replicate a mixed workload exactly; a path file added while it runs starts (SIGHUP);
a file removed stops its path (the 30 s poll finds it; its leases are handed back); a deleted destination
stops its path alone (status and its FailedBatches say so) while the others stay exact and the daemon keeps
running, and SIGHUP starts it again once its cause is fixed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from replicator.changes.binlog import BinlogProducer
from replicator.changes.codec import encode_item
from replicator.kcl import metrics, stopped
from replicator.kcl.config import ReplicationPath
from replicator.kcl.launcher import spawn_daemon
from replicator.local.sandbox import DESTINATION_REGION, LOCAL_KCL_SETTINGS, SOURCE_REGION, Sandbox
from replicator.local.workload import MixedWorkload, create_table, every_type_item, key_of
from replicator.tables.compare import compare_tables

from metric_series import series

pytestmark = pytest.mark.integration

SCHEMA = (("pk", "S"), ("sk", "N"))
TABLES = ("alpha", "beta", "gamma")
METRICS_INTERVAL_S = 2


def table_path(sandbox: Sandbox, table: str) -> ReplicationPath:
    return ReplicationPath(source_region=SOURCE_REGION, source_table=table, source_endpoint=sandbox.source_server.endpoint,
                           destination_region=DESTINATION_REGION, destination_table=f"{table}-replica",
                           destination_endpoint=sandbox.destination_server.endpoint,
                           **{k: v for k, v in sandbox._settings().items() if k != "source_format"})


def failed_batches(sandbox: Sandbox, table: str, since: datetime) -> float:
    """The Sum of the path's FailedBatches since ``since``, as an SRE's alarm on the path would read it."""
    cloudwatch = sandbox.source_server.client(service="cloudwatch")
    dims = metrics.dimensions(table_path(sandbox, table))
    return sum(value for _, value in series(cloudwatch, dims, "FailedBatches", "Sum", since, period=3600))


def add_table_path(sandbox: Sandbox, table: str, directory: Path | None) -> ReplicationPath:
    create_table(sandbox.source, table)
    create_table(sandbox.destination, f"{table}-replica", None)
    path = table_path(sandbox, table)
    if directory is not None:
        write_path_file(path, directory / f"{table}.properties")
    return path


def write_path_file(path: ReplicationPath, target: Path) -> None:
    """Written aside and renamed in, as a tool filling a paths directory should, so the daemon never reads half a file."""
    partial = target.with_name(f".{target.name}.partial")
    path.write_properties(partial, extra=LOCAL_KCL_SETTINGS)
    partial.rename(target)


def binlog_actions(sandbox: Sandbox, count: int, rng: random.Random, first_rev: int) -> list[dict[str, Any]]:
    """Puts, deletes and batches applied to the source table in order, and the same as binlog actions."""
    actions = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.6:
            index = rng.randrange(120)
            item = every_type_item(key_of(index)["pk"]["S"], index, rng, first_rev + n)
            sandbox.source.put_item(TableName=sandbox.source_table, Item=item)
            actions.append({"Action": "PutItem", "Data": encode_item(item)})
        elif roll < 0.8:
            key = key_of(rng.randrange(120))
            sandbox.source.delete_item(TableName=sandbox.source_table, Key=key)
            actions.append({"Action": "DeleteItem", "Data": encode_item(key)})
        else:
            entries, requests = [], []
            for index in rng.sample(range(120), rng.randint(2, 5)):
                item = every_type_item(key_of(index)["pk"]["S"], index, rng, first_rev + n)
                entries.append(encode_item(item))
                requests.append({"PutRequest": {"Item": item}})
            sandbox.source.batch_write_item(RequestItems={sandbox.source_table: requests})
            actions.append({"Action": "BatchWrite", "Data": entries})
    return actions


def wait_exact(sandbox: Sandbox, pairs: list[tuple[str, str]], daemon: subprocess.Popen[bytes],
               timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    pending = list(pairs)
    while pending and time.monotonic() < deadline:
        assert daemon.poll() is None, f"daemon exited with {daemon.returncode}; see {sandbox.workdir}"
        pending = [(s, d) for s, d in pending
                   if compare_tables(sandbox.source, s, sandbox.destination, d).discrepancies]
        if pending:
            time.sleep(1)
    for source, destination in pending:
        diff = compare_tables(sandbox.source, source, sandbox.destination, destination)
        assert diff.discrepancies == 0, (source, diff.missing[:2], diff.different[:1], diff.extraneous[:2])


def java_processes(daemon: subprocess.Popen[bytes]) -> list[int]:
    """The java processes of the daemon's session (`replicator run` execs Java, which spawns the processors)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
        if int(rest[3]) == daemon.pid and comm == "java":  # session id
            found.append(int(stat.parent.name))
    return found


def log_when(log: Path, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    content = log.read_text(errors="replace")
    while text not in content and time.monotonic() < deadline:
        time.sleep(0.5)
        content = log.read_text(errors="replace")
    return content


def status(properties: Path) -> list[dict[str, Any]]:
    done = subprocess.run([str(Path(sys.executable).parent / "replicator"), "status", "--properties",
                           str(properties), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_one_daemon_runs_a_directory_of_table_and_kinesis_paths_that_come_go_and_fail_alone(tmp_path: Path) -> None:
    # Every path publishes its metrics (to the local server's CloudWatch, the sandbox's rule) every 2 s.
    settings = {"source_format": "binlog", "dont_publish_cloudwatch": False,
                "metrics_interval_seconds": METRICS_INTERVAL_S}
    with Sandbox(tmp_path / "sandbox", kinesis_stream="actions", path_settings=settings) as sandbox:
        paths_dir = tmp_path / "paths"
        paths_dir.mkdir()
        write_path_file(sandbox.path, paths_dir / "actions.properties")
        for table in TABLES:
            add_table_path(sandbox, table, paths_dir)
        (paths_dir / "notes.txt").write_text("not a path")
        log = tmp_path / "daemon.log"
        started = datetime.now(timezone.utc) - timedelta(minutes=1)
        daemon = spawn_daemon(Path(), open(log, "ab"), options=("--properties-dir", str(paths_dir)))
        sandbox.daemons.append(daemon)

        rng = random.Random(3)
        producer = BinlogProducer(sandbox.kinesis, "actions", SCHEMA)
        producer.put_actions(binlog_actions(sandbox, 300, rng, 1))
        for n, table in enumerate(TABLES):
            MixedWorkload(sandbox.source, table, keys=100, seed=n).run(300, rate=600)
        pairs = [(table, f"{table}-replica") for table in TABLES] + [(sandbox.source_table, sandbox.destination_table)]
        wait_exact(sandbox, pairs, daemon, timeout_s=240)
        assert len(java_processes(daemon)) == 1  # four paths, one JVM

        # A fourth table path dropped into the directory starts on SIGHUP, with what its table already holds.
        add_table_path(sandbox, "delta", None)
        MixedWorkload(sandbox.source, "delta", keys=60, seed=9).run(200, rate=600)
        write_path_file(table_path(sandbox, "delta"), paths_dir / "delta.properties")
        os.kill(daemon.pid, signal.SIGHUP)
        wait_exact(sandbox, [("delta", "delta-replica")], daemon, timeout_s=120)
        assert len(java_processes(daemon)) == 1

        # A copy of delta's file under another name is the same path (one lease table): refused in one line,
        # not a second worker of delta in the JVM.
        (paths_dir / "delta-copy.properties").write_bytes((paths_dir / "delta.properties").read_bytes())
        os.kill(daemon.pid, signal.SIGHUP)
        text = log_when(log, "delta-copy.properties not started", timeout_s=30)
        assert "it is the same path as" in text and "delta.properties" in text
        (paths_dir / "delta-copy.properties").unlink()

        # Its file removed, without SIGHUP: the directory's poll (every 30 s) stops the path and hands its leases back.
        delta = table_path(sandbox, "delta")
        (paths_dir / "delta.properties").unlink()
        text = log_when(log, "its file was removed", timeout_s=45)
        assert "its file was removed" in text
        deadline = time.monotonic() + 60
        owners: list[Any] = [None]
        while time.monotonic() < deadline:
            leases = sandbox.source.scan(TableName=delta.application_name, ConsistentRead=True)["Items"]
            owners = [lease.get("leaseOwner") for lease in leases]
            if leases and not any(owners):
                break
            time.sleep(1)
        assert leases and not any(owners), owners  # handed back, not left to expire
        before = len(sandbox.destination.scan(TableName="delta-replica")["Items"])
        for index in range(1000, 1020):
            sandbox.source.put_item(TableName="delta", Item=every_type_item(f"after-{index}", index, rng, 1))
        time.sleep(8)
        assert len(sandbox.destination.scan(TableName="delta-replica")["Items"]) == before  # no longer replicated

        # gamma's destination deleted: gamma stops alone, status says why, the others stay exact.
        sandbox.destination.delete_table(TableName="gamma-replica")
        MixedWorkload(sandbox.source, "gamma", keys=100, seed=20, first_rev=10_000).run(50, rate=600)
        text = log_when(log, "stopped: a record processor hit a non-retryable error", timeout_s=90)
        assert text.count("stopped: a record processor hit a non-retryable error") == 1
        deadline = time.monotonic() + 60
        shards = status(paths_dir / "gamma.properties")
        while time.monotonic() < deadline and not all(s["state"] == "stopped" for s in shards):
            time.sleep(1)
            shards = status(paths_dir / "gamma.properties")
        assert shards and all(s["state"] == "stopped" for s in shards), shards
        assert "ResourceNotFoundException" in shards[0]["stopped_reason"]
        deadline = time.monotonic() + 30
        while failed_batches(sandbox, "gamma", started) < 1 and time.monotonic() < deadline:
            time.sleep(METRICS_INTERVAL_S)
        assert failed_batches(sandbox, "gamma", started) >= 1  # the alarm a user sets on the path fires
        assert failed_batches(sandbox, "alpha", started) == 0  # and its neighbours' stays quiet
        producer.put_actions(binlog_actions(sandbox, 200, rng, 50_000))
        for n, table in enumerate(TABLES[:2]):
            MixedWorkload(sandbox.source, table, keys=100, seed=30 + n, first_rev=20_000).run(200, rate=600)
        wait_exact(sandbox, pairs[:2] + pairs[3:], daemon, timeout_s=180)
        assert daemon.poll() is None  # the daemon goes on with its other paths

        # The cause fixed (a new, empty replica) and SIGHUP: gamma is checked and started again.
        create_table(sandbox.destination, "gamma-replica", None)
        os.kill(daemon.pid, signal.SIGHUP)
        probe = {"pk": {"S": "after-the-fix"}, "sk": {"N": "1"}}
        sandbox.source.put_item(TableName="gamma", Item=probe)
        deadline = time.monotonic() + 90
        while "Item" not in sandbox.destination.get_item(TableName="gamma-replica", Key=probe, ConsistentRead=True):
            assert time.monotonic() < deadline, f"gamma did not start again; see {log}"
            time.sleep(0.5)
        assert stopped.read(paths_dir / "gamma.properties") is None
        assert {s["state"] for s in status(paths_dir / "gamma.properties")} <= {"active", "unassigned", "handoff"}

        assert sandbox.stop_daemon(daemon) == 0


def test_a_daemon_of_explicit_paths_exits_1_only_when_its_last_path_has_failed(tmp_path: Path) -> None:
    """Two paths named with --properties: the first one's failure leaves the daemon running the other; the
    second one's makes it exit 1, so that a supervisor restarts it."""
    with Sandbox(tmp_path / "sandbox") as sandbox:
        files = []
        for table in ("one", "two"):
            add_table_path(sandbox, table, None)
            files.append(tmp_path / f"{table}.properties")
            write_path_file(table_path(sandbox, table), files[-1])
        log = tmp_path / "daemon.log"
        daemon = spawn_daemon(Path(), open(log, "ab"),
                              options=("--properties", str(files[0]), "--properties", str(files[1])))
        sandbox.daemons.append(daemon)
        for n, table in enumerate(("one", "two")):
            MixedWorkload(sandbox.source, table, keys=50, seed=n).run(100, rate=600)
        wait_exact(sandbox, [("one", "one-replica"), ("two", "two-replica")], daemon, timeout_s=180)

        failed = "stopped: a record processor hit a non-retryable error"
        sandbox.destination.delete_table(TableName="one-replica")
        MixedWorkload(sandbox.source, "one", keys=50, seed=5, first_rev=1000).run(20, rate=600)
        assert failed in log_when(log, failed, timeout_s=90)
        MixedWorkload(sandbox.source, "two", keys=50, seed=6, first_rev=1000).run(50, rate=600)
        wait_exact(sandbox, [("two", "two-replica")], daemon, timeout_s=120)
        assert daemon.poll() is None

        sandbox.destination.delete_table(TableName="two-replica")
        MixedWorkload(sandbox.source, "two", keys=50, seed=7, first_rev=2000).run(20, rate=600)
        assert daemon.wait(timeout=120) == 1
        assert log.read_text(errors="replace").count(failed) == 2
