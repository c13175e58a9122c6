"""The Lambda handler under `replicator lambda-local`, on the local server: the daemon's hostile workload,
replicated exactly, through a destination outage too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from replicator.local.sandbox import Sandbox
from replicator.local.workload import MixedWorkload

pytestmark = pytest.mark.integration

def events(log_text: str, name: str) -> list[dict]:
    lines = [line for line in log_text.splitlines() if line.startswith("{")]
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def test_the_handler_replicates_the_hostile_workload_exactly(tmp_path: Path) -> None:
    with Sandbox(tmp_path) as sandbox:
        runner = sandbox.start_lambda_local("--batch-size", "50")
        try:
            MixedWorkload(sandbox.source, sandbox.source_table, keys=200, seed=17).run(1500, rate=250)
            diff = sandbox.wait_for_equality(timeout_s=120)
            assert diff.discrepancies == 0, diff
            assert diff.scanned > 50
        finally:
            assert sandbox.stop_daemon(runner) == 0
        applied = events(sandbox.daemon_log(), "batch_applied")
        assert sum(e["records"] for e in applied) >= 1500
        assert all(e["lag_ms_max"] is None or e["lag_ms_max"] >= 0 for e in applied)


def test_a_destination_outage_is_reported_retried_from_the_failed_record_and_caught_up(tmp_path: Path) -> None:
    with Sandbox(tmp_path, separate_destination=True) as sandbox:
        runner = sandbox.start_lambda_local("--batch-size", "50", "--timeout", "8")
        try:
            workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=200, seed=23)
            workload.run(400, rate=200)
            sandbox.destination_server.pause()
            workload.run(600, rate=200)
            time.sleep(10)  # long enough for invocations to reach their deadline and report
            sandbox.destination_server.resume()
            workload.run(400, rate=200)
            diff = sandbox.wait_for_equality(timeout_s=120)
            assert diff.discrepancies == 0, diff
        finally:
            assert sandbox.stop_daemon(runner) == 0
        assert events(sandbox.daemon_log(), "destination_unavailable"), "the outage was never reported"
        assert events(sandbox.daemon_log(), "batch_retrying")
