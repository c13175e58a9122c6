"""The path's own metrics, end to end: a real daemon on the local server publishes them to the same server's
CloudWatch, and GetMetricData reads them back."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from replicator.kcl import metrics
from replicator.local.sandbox import Sandbox
from replicator.local.workload import MixedWorkload

from metric_series import series

pytestmark = pytest.mark.integration

INTERVAL_S = 2


def wait_until(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f}s waiting for {what}"
        time.sleep(0.5)


def test_latency_and_pending_records_reach_the_local_cloudwatch(tmp_path: Path) -> None:
    settings = {"dont_publish_cloudwatch": False, "metrics_interval_seconds": INTERVAL_S}
    with Sandbox(tmp_path, path_settings=settings) as sandbox:
        assert sandbox.path.cloudwatch_endpoint == sandbox.source_server.endpoint
        cloudwatch = sandbox.source_server.client(service="cloudwatch")  # the source's region, us-east-1
        dims = metrics.dimensions(sandbox.path)
        since = datetime.now(timezone.utc) - timedelta(minutes=1)
        daemon = sandbox.start_daemon()
        key = {"pk": {"S": "warm-up"}, "sk": {"N": "0"}}
        sandbox.source.put_item(TableName=sandbox.source_table, Item=key)
        wait_until(lambda: "Item" in sandbox.destination.get_item(TableName=sandbox.destination_table, Key=key),
                   180, "the daemon to replicate a first item")

        # A few hundred changes while the path runs: several intervals with records waiting.
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=21)
        written = workload.run(600, rate=100)
        writer_stopped = datetime.now(timezone.utc)
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])

        # PendingReplicationCount falls to 0 once the writer has stopped and the path caught up.
        deadline = time.monotonic() + 60
        while True:
            pending = series(cloudwatch, dims, "PendingReplicationCount", "Maximum", since)
            after_stop = [value for at, value in pending if at > writer_stopped]
            if after_stop and after_stop[-1] == 0:
                break
            assert time.monotonic() < deadline, f"PendingReplicationCount never fell to 0: {pending[-10:]}"
            time.sleep(INTERVAL_S)
        during = [value for at, value in pending if at <= writer_stopped]
        assert during and max(during) > 0, f"no record was ever pending while the writer ran: {pending}"

        # ReplicationLatency: one sample per replicated record, each between the source write and now.
        hour = int(timedelta(hours=1).total_seconds())
        (_, samples), = series(cloudwatch, dims, "ReplicationLatency", "SampleCount", since, period=hour)
        (_, records), = series(cloudwatch, dims, "Records", "Sum", since, period=hour)
        (_, minimum), = series(cloudwatch, dims, "ReplicationLatency", "Minimum", since, period=hour)
        (_, maximum), = series(cloudwatch, dims, "ReplicationLatency", "Maximum", since, period=hour)
        (_, average), = series(cloudwatch, dims, "ReplicationLatency", "Average", since, period=hour)
        assert samples == records >= written.operations
        assert 0 < minimum <= average <= maximum < 60_000, (minimum, average, maximum)
        (_, puts), = series(cloudwatch, dims, "Puts", "Sum", since, period=hour)
        (_, deletes), = series(cloudwatch, dims, "Deletes", "Sum", since, period=hour)
        assert puts > 0 and deletes > 0
        (_, failed), = series(cloudwatch, dims, "FailedBatches", "Sum", since, period=hour)
        assert failed == 0

        # KCL's own metrics (metricsLevel SUMMARY) went to the same endpoint through the launcher's
        # cloudWatchEndpoint, in their namespace, the application name. KCL sends its buffer every 10 s
        # (metricsBufferTimeMillis); a stop that ends once the processors have may come before a last
        # flush, so the running daemon is given up to 30 s to send one first.
        deadline = time.monotonic() + 30
        while (not cloudwatch.list_metrics(Namespace=sandbox.path.application_name)["Metrics"]
               and time.monotonic() < deadline):
            time.sleep(1)
        assert sandbox.stop_daemon(daemon) == 0
        kcl_metrics = cloudwatch.list_metrics(Namespace=sandbox.path.application_name)["Metrics"]
        assert kcl_metrics, "KCL published nothing to the local CloudWatch"

        daemon_log = sandbox.daemon_log(0)
        assert '"metrics_not_published"' not in daemon_log and '"metrics_pending_not_counted"' not in daemon_log
        print(f"\nReplicationLatency over {samples:.0f} records: min {minimum:.0f} ms, average {average:.0f} ms, "
              f"max {maximum:.0f} ms; PendingReplicationCount while writing: max {max(during):.0f}; "
              f"{len(kcl_metrics)} KCL metrics")
