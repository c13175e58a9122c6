"""bootstrap under a hostile writer: the path runs while the table loads, and the replica ends equal.

Each test pre-fills a source, starts ``replicator bootstrap`` as a user runs it (the console script), and
keeps puts, updates and deletes of the same keys (every attribute type: numbers, sets, binary) coming in
bursts all through a load that is rate-capped to last several times longer than a burst. A lag probe
measures the path's backlog all along. Afterwards the replica equals the source (ignoring the version
attribute, tombstones read as absent), and every key deleted during the load is absent.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replicator.changes.versions import replica_view
from replicator.local.sandbox import LOCAL_KCL_SETTINGS, Sandbox
from replicator.local.workload import LagProbe, MixedWorkload, every_type_item, key_of
from replicator.tables.compare import compare_tables, scan_items

pytestmark = pytest.mark.integration

REPLICATOR = str(Path(sys.executable).parent / "replicator")
VERSION = "replicator_version"
KEYS = 3000
BURST_OPS, BURST_RATE, PAUSE_S = 150, 75.0, 1.0
"""A burst: 150 writes in 2 s, then a pause; the load (KEYS at --write-units) lasts several bursts."""


def put_all(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": i}} for i in items[start:start + 25]]})


def events(text: str, event: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()
            if line.startswith("{") and f'"event": "{event}"' in line]


def run_bootstrap(tmp_path: Path, sb: Sandbox, *args: str, write_units: int) -> dict[str, Any]:
    """bootstrap with the hostile writer in bursts until its load has finished, a lag probe all along."""
    rng = random.Random(8)
    put_all(sb.source, sb.source_table, [every_type_item(key_of(i)["pk"]["S"], i, rng, rev=0) for i in range(KEYS)])
    settings = {**LOCAL_KCL_SETTINGS, "parentShardPollIntervalMillis": "1000", "idleTimeBetweenReadsInMillis": "200",
                "dontPublishCloudwatch": "true"}
    stderr_path = tmp_path / "bootstrap.stderr"
    daemon_log = tmp_path / "daemon.log"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [REPLICATOR, "bootstrap", f"us-east-1/{sb.source_table}", f"eu-west-1/{sb.destination_table}",
             "--source-endpoint", sb.source_server.endpoint, "--destination-endpoint", sb.destination_server.endpoint,
             "--write-units", str(write_units), *args,
             "--state-file", str(tmp_path / "load.json"), "--write-properties", str(tmp_path / "boot.properties"),
             *[a for k, v in settings.items() for a in ("--kcl-property", f"{k}={v}")],
             "--daemon-log", str(daemon_log), "--start-timeout", "240", "--check-timeout", "240",
             "--exit-after-check", "--json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ),
        )
        workload = MixedWorkload(sb.source, sb.source_table, keys=KEYS, seed=21, first_rev=10**6)
        probe = LagProbe(sb.source, sb.source_table, sb.destination, sb.destination_table, interval_s=0.5,
                         timeout_s=120)
        bursts: list[tuple[float, float]] = []
        probing = False
        try:
            deadline = time.monotonic() + 400
            while not events(stderr_path.read_text(), "path_started"):
                assert proc.poll() is None and time.monotonic() < deadline, stderr_path.read_text()[-3000:]
                time.sleep(0.5)
            probe.start()
            probing = True
            # Bursts until the load is over, and one more after it, while the check runs.
            while True:
                loaded = "copy_finished" in (text := stderr_path.read_text()) or "restore_finished" in text
                began = time.time()
                workload.run(BURST_OPS, BURST_RATE)
                bursts.append((began, time.time()))
                assert proc.poll() is None or loaded, text[-3000:]
                if loaded or time.monotonic() > deadline:
                    break
                time.sleep(PAUSE_S)
            probe.stop()  # before the check ends: its last probe is then replicated too
            out, _ = proc.communicate(timeout=400)
        finally:
            if probing:
                probe.stop()
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=90)
    log_text = stderr_path.read_text()
    assert proc.returncode == 0, (out, log_text[-3000:], daemon_log.read_text()[-3000:])
    summary = json.loads(out.strip().splitlines()[-1])
    return {"summary": summary, "log": log_text, "workload": workload, "probe": probe, "bursts": bursts}


def assert_exact(sb: Sandbox, run: dict[str, Any], load_started: str, load_finished: str) -> None:
    summary, log_text, workload, probe = run["summary"], run["log"], run["workload"], run["probe"]
    assert summary["equal"] and summary["daemon_exit_status"] == 0, summary
    assert summary["version_attribute"] == VERSION

    # The load ran several bursts long, with the writer hostile all through it.
    started = events(log_text, load_started)[0]["timestamp"]
    finished = events(log_text, load_finished)[0]["timestamp"]
    from datetime import datetime

    t0, t1 = (datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp() for t in (started, finished))
    burst_s = BURST_OPS / BURST_RATE
    assert t1 - t0 >= 4 * burst_s, (t1 - t0, burst_s)
    during = [b for b in run["bursts"] if b[0] < t1 and b[1] > t0]
    assert len(during) >= 3, run["bursts"]
    assert workload.stats.deletes >= 50 and workload.stats.updates >= 100
    # Some loaded items met keys the path had written first: the condition held them back.
    assert summary["skipped"] > 0, summary

    # The replica is the source, exactly (numbers by value, sets unordered, the version attribute ignored).
    diff = compare_tables(sb.source, sb.source_table, sb.destination, sb.destination_table, VERSION)
    assert diff.discrepancies == 0, (diff.missing[:1], diff.different[:1], diff.extraneous[:1])

    # Every pre-filled key the writer deleted (absent from the source now) is absent from the replica.
    present = {(i["pk"]["S"], i["sk"]["N"]) for i in scan_items(sb.source, sb.source_table)}
    deleted = [key_of(i) for i in range(KEYS) if (key_of(i)["pk"]["S"], str(i)) not in present]
    assert len(deleted) >= 30, len(deleted)
    for key in deleted:
        found = sb.destination.get_item(TableName=sb.destination_table, Key=key, ConsistentRead=True).get("Item")
        assert replica_view(found, VERSION) is None, (key, found)

    # The path's backlog stayed bounded all through the load: every probe was replicated, and soon.
    assert probe.timeouts == 0 and len(probe.samples_ms) >= 10, (probe.timeouts, len(probe.samples_ms))
    assert max(probe.samples_ms) < 30_000, sorted(probe.samples_ms)[-5:]


def test_bootstrap_load_scan_under_a_hostile_writer(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sandbox") as sb:
        run = run_bootstrap(tmp_path, sb, "--load", "scan", "--segments", "2", "--page-size", "50", write_units=150)
        assert_exact(sb, run, "copy_started", "copy_finished")
        assert run["summary"]["read"] > KEYS // 2
        # A DynamoDB stream path starts at LATEST, before the load (item 4 of issue 20).
        assert "initialPositionInStream=LATEST" in (tmp_path / "boot.properties").read_text().splitlines()
        (started,) = events(run["log"], "path_started")
        assert started["timestamp"] < events(run["log"], "copy_started")[0]["timestamp"]


def test_bootstrap_load_export_under_a_hostile_writer(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sandbox") as sb:
        sb.source.update_continuous_backups(TableName=sb.source_table,
                                            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        sb.source_server.client(service="s3").create_bucket(Bucket="bootstrap-exports")
        run = run_bootstrap(tmp_path, sb, "--load", "export", "--export-bucket", "s3://bootstrap-exports/tables",
                            write_units=150)
        assert_exact(sb, run, "restore_started", "restore_finished")
        summary, log_text = run["summary"], run["log"]
        assert summary["export"].startswith("s3://bootstrap-exports/tables/AWSDynamoDB/")
        (path_started,) = events(log_text, "path_started")
        (loading,) = events(log_text, "export_loading")
        assert loading["after_path_start_s"] >= 0
        assert events(log_text, "export_completed")
