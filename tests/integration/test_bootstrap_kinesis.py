"""bootstrap from a Kinesis dynamodb-cdc stream: an existing export loaded while the path replays from before it.

moto cannot stream a table's changes to Kinesis, so the test feeds the source's own changes to the Kinesis
stream as Kinesis Data Streams for DynamoDB would (``local.feeds``: AWS's record shape, shuffled, some
twice). The source is pre-filled, written to (puts, updates, deletes of the same keys, every attribute
type) and fed before the path's start time, between it and the export, after the export, and all through
the bootstrap; the bootstrap loads the existing export with ``--export URL`` and starts its path at a time
before the export. The replica ends exactly equal to the source (the version attribute ignored), every
deleted key absent.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from replicator.changes.versions import replica_view
from replicator.local.feeds import cdc_records, ship, shuffled
from replicator.local.sandbox import LOCAL_KCL_SETTINGS, Sandbox
from replicator.local.workload import MixedWorkload, every_type_item, key_of
from replicator.tables.compare import compare_tables, scan_items
from replicator.tables.export import export_url

pytestmark = pytest.mark.integration

REPLICATOR = str(Path(sys.executable).parent / "replicator")
VERSION = "replicator_version"
KEYS = 1500


class Feed:
    """Ships the source's new DynamoDB stream records to Kinesis as dynamodb-cdc records. The records are
    rebuilt from the whole stream each time, so one millisecond's records keep their numbering."""

    def __init__(self, sb: Sandbox, rng: random.Random) -> None:
        self.sb, self.rng = sb, rng
        self.streams = sb.source_server.client(service="dynamodbstreams")
        self.arn = sb.source.describe_table(TableName=sb.source_table)["Table"]["LatestStreamArn"]
        self.last = 0
        self.shipped = 0
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            new = [r for r in cdc_records(self.streams, self.arn, self.sb.source_table) if r["_sequence"] > self.last]
            if not new:
                return 0
            self.last = max(r["_sequence"] for r in new)
            # Random partition keys: one item's changes land on both shards, so they arrive out of order.
            sent = ship(self.sb.kinesis, "changes", shuffled(new, window=30, duplicates=0.1, rng=self.rng),
                        lambda _: str(self.rng.random()))
            self.shipped += sent
            return sent


def events(text: str, event: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and f'"event": "{event}"' in line]


def prefill(sb: Sandbox, keys: int, rng: random.Random) -> None:
    items = [every_type_item(key_of(i)["pk"]["S"], i, rng, rev=0) for i in range(keys)]
    for start in range(0, keys, 25):
        sb.source.batch_write_item(RequestItems={sb.source_table: [{"PutRequest": {"Item": i}}
                                                                   for i in items[start:start + 25]]})


def run_bootstrap(tmp_path: Path, sb: Sandbox, workload: MixedWorkload, feed: Feed,
                  *args: str) -> tuple[dict[str, Any], int, str]:
    """bootstrap --source-kinesis-stream with bursts of writes, each fed to Kinesis, until its load is over
    and once more while it checks; its JSON summary (checked equal), the bursts, the daemon's log."""
    settings = {**LOCAL_KCL_SETTINGS, "idleTimeBetweenReadsInMillis": "200", "dontPublishCloudwatch": "true"}
    stderr_path, daemon_log = tmp_path / "bootstrap.stderr", tmp_path / "daemon.log"
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [REPLICATOR, "bootstrap", f"us-east-1/{sb.source_table}", f"eu-west-1/{sb.destination_table}",
             "--source-endpoint", sb.source_server.endpoint, "--destination-endpoint", sb.destination_server.endpoint,
             "--source-kinesis-stream", "changes", "--load", "export", *args,
             "--write-units", "250", "--state-file", str(tmp_path / "load.json"),
             "--write-properties", str(tmp_path / "boot.properties"),
             *[a for k, v in settings.items() for a in ("--kcl-property", f"{k}={v}")],
             "--daemon-log", str(daemon_log), "--start-timeout", "240", "--check-timeout", "240",
             "--exit-after-check", "--json"],
            stdout=subprocess.PIPE, stderr=err, text=True, env=dict(os.environ))
        bursts = 0
        try:
            # Bursts of writes, each fed, until the load is over and once more while the check runs.
            deadline = time.monotonic() + 400
            while True:
                loaded = "restore_finished" in stderr_path.read_text()
                workload.run(100, rate=100)
                feed()
                bursts += 1
                assert proc.poll() is None or loaded, stderr_path.read_text()[-3000:]
                if loaded or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            out, _ = proc.communicate(timeout=400)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=90)
    log_text = stderr_path.read_text()
    assert proc.returncode == 0, (out, log_text[-3000:], daemon_log.read_text()[-3000:])
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["equal"] and summary["daemon_exit_status"] == 0, summary
    return summary, bursts, daemon_log.read_text()


def assert_exact(sb: Sandbox, keys: int, deleted_at_least: int) -> None:
    """The replica is the source, exactly (numbers by value, sets unordered, the version attribute ignored),
    and every pre-filled key deleted since is absent from it."""
    diff = compare_tables(sb.source, sb.source_table, sb.destination, sb.destination_table, VERSION)
    assert diff.discrepancies == 0, (diff.missing[:1], diff.different[:1], diff.extraneous[:1])
    present = {(i["pk"]["S"], i["sk"]["N"]) for i in scan_items(sb.source, sb.source_table)}
    deleted = [key_of(i) for i in range(keys) if (key_of(i)["pk"]["S"], str(i)) not in present]
    assert len(deleted) >= deleted_at_least, len(deleted)
    for key in deleted:
        found = sb.destination.get_item(TableName=sb.destination_table, Key=key, ConsistentRead=True).get("Item")
        assert replica_view(found, VERSION) is None, (key, found)


def test_bootstrap_from_kinesis_loads_an_existing_export_while_the_path_replays_from_before_it(tmp_path: Path) -> None:
    with Sandbox(tmp_path / "sandbox", kinesis_stream="changes", path_settings={"source_format": "dynamodb-cdc"}) as sb:
        rng = random.Random(4)
        feed = Feed(sb, rng)
        prefill(sb, KEYS, rng)
        workload = MixedWorkload(sb.source, sb.source_table, keys=KEYS, seed=23, first_rev=10**6)
        workload.run(300, rate=300)
        before_start = feed()

        # The path's start: a whole second, after every record shipped so far arrived.
        start_at = math.ceil(time.time()) + 1
        time.sleep(start_at - time.time() + 0.5)
        workload.run(300, rate=300)  # between the start and the export: replayed, and in the export too
        replayed_before_export = feed()

        sb.source.update_continuous_backups(TableName=sb.source_table,
                                            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        sb.source_server.client(service="s3").create_bucket(Bucket="exports")
        table_arn = sb.source.describe_table(TableName=sb.source_table)["Table"]["TableArn"]
        asked = sb.source.export_table_to_point_in_time(TableArn=table_arn, S3Bucket="exports", S3Prefix="old",
                                                        ExportFormat="DYNAMODB_JSON")["ExportDescription"]
        while (done := sb.source.describe_export(ExportArn=asked["ExportArn"])["ExportDescription"])["ExportStatus"] \
                != "COMPLETED":
            time.sleep(0.2)
        url = export_url(done)
        workload.run(300, rate=300)  # after the export, before the bootstrap
        feed()

        start_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_at))
        summary, bursts, daemon_text = run_bootstrap(tmp_path, sb, workload, feed, "--export", url,
                                                     "--start-at", start_iso)
        assert summary["replays_from"] == start_at and summary["export"] == url
        assert "initialPositionInStreamExtended=%d" % start_at in (tmp_path / "boot.properties").read_text()
        assert summary["skipped"] > 0, summary  # loaded images met keys the replay had written: held back
        assert bursts >= 2 and workload.stats.deletes >= 50 and workload.stats.updates >= 100

        assert_exact(sb, KEYS, deleted_at_least=30)

        # The path replayed from its start time: every record shipped since (those from before the export
        # among them), none of the pre-fill's nor the first writes'.
        applied = sum(e["records"] for e in events(daemon_text, "batch_applied"))
        assert replayed_before_export <= applied <= feed.shipped - before_start, (applied, feed.shipped, before_start)


def test_bootstrap_from_kinesis_with_an_export_asked_for_once_the_path_runs(tmp_path: Path) -> None:
    """--export-bucket: the path starts at the bootstrap's start (no --start-at), the export is asked after."""
    keys = 400
    with Sandbox(tmp_path / "sandbox", kinesis_stream="changes", path_settings={"source_format": "dynamodb-cdc"}) as sb:
        rng = random.Random(6)
        feed = Feed(sb, rng)
        prefill(sb, keys, rng)
        workload = MixedWorkload(sb.source, sb.source_table, keys=keys, seed=29, first_rev=10**6)
        workload.run(200, rate=300)
        before_start = feed()
        sb.source.update_continuous_backups(TableName=sb.source_table,
                                            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True})
        sb.source_server.client(service="s3").create_bucket(Bucket="exports")
        time.sleep(1.5)  # the path starts in whole seconds, rounded down: after every record shipped so far
        called_at = time.time()
        summary, _, daemon_text = run_bootstrap(tmp_path, sb, workload, feed, "--export-bucket", "s3://exports/now")
        assert int(called_at) <= summary["replays_from"] <= time.time()
        export_at = datetime.fromisoformat(summary["export_time"]).timestamp()
        assert summary["replays_from"] <= export_at and summary["export"].startswith("s3://exports/now/AWSDynamoDB/")
        assert_exact(sb, keys, deleted_at_least=5)
        applied = sum(e["records"] for e in events(daemon_text, "batch_applied"))
        assert 0 < applied <= feed.shipped - before_start  # neither the pre-fill nor the first writes were replayed
