"""`replicator demo`: the main job on its embedded default, end to end on the local server.

It starts the local server (moto; us-east-1 is the source region, eu-west-1 the destination's), creates
a source table with a NEW_AND_OLD_IMAGES stream and an empty destination, runs the real daemon, and writes a mixed workload (inserts, updates, deletes, every
attribute type) while a probe measures replication lag. Then it compares both tables item by item,
stops the daemon with SIGTERM as a supervisor would, and reports.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import click

from replicator.local.sandbox import DESTINATION_ACCOUNT, SOURCE_ACCOUNT, Sandbox
from replicator.local.workload import FIRST_REPLICATION_TIMEOUT_S, LagProbe, MixedWorkload, percentile


def _say(message: str) -> None:
    click.echo(message)


def run_demo(operations: int, keys: int, rate: int, keep: bool = False, as_lambda: bool = False,
             cross_account: bool = False) -> int:
    """``as_lambda`` runs the Lambda handler under `replicator lambda-local` in place of the daemon;
    ``cross_account`` puts the replica in another account, reached through a role (``Sandbox``)."""
    workdir = Path(tempfile.mkdtemp(prefix="replicator-demo-"))
    started = time.monotonic()
    _say(f"Logs and properties in {workdir} (removed at the end unless the demo fails)")
    sandbox = Sandbox(workdir, cross_account=cross_account)
    succeeded = False
    try:
        sandbox.start()
        _say(f"Local server {sandbox.source_server.endpoint}: source us-east-1/{sandbox.source_table}, "
             f"destination eu-west-1/{sandbox.destination_table}")
        if cross_account:
            _say(f"Source and lease table in account {SOURCE_ACCOUNT}; the replica in account {DESTINATION_ACCOUNT}, "
                 f"written through the role {sandbox.path.destination_role_arn} (external id)")
        if as_lambda:
            _say("Replicating with the Lambda handler under `replicator lambda-local` (no daemon, no lease table)")
            role = (["--destination-role-arn", str(sandbox.path.destination_role_arn), "--destination-external-id",
                     str(sandbox.path.destination_external_id)] if cross_account else [])
            daemon = sandbox.start_lambda_local(*role)
        else:
            _say(f"Lease table (taskName): {sandbox.path.application_name}")
            daemon = sandbox.start_daemon()
        probe = LagProbe(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table)
        first = probe.measure_once(timeout_s=FIRST_REPLICATION_TIMEOUT_S)
        if first is None:
            _say(f"The daemon replicated nothing within {FIRST_REPLICATION_TIMEOUT_S:.0f} s; see daemon-0.log")
            return 1
        _say(f"{'Handler' if as_lambda else 'Daemon'} up: first item replicated {time.monotonic() - started:.1f} s after start")
        probe.start()
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=keys)
        _say(f"Writing {operations} mixed operations over {keys} keys at {rate}/s ...")
        stats = workload.run(operations, rate)
        samples = probe.stop()
        diff = sandbox.wait_for_equality(timeout_s=120)
        _say(f"Source writes: {stats.puts} puts, {stats.updates} updates, {stats.deletes} deletes "
             f"(+{len(samples) + 1} lag probes)")
        _say(f"Items compared: {diff.scanned} in the source, {diff.replica_scanned} in the destination")
        if samples:
            _say(f"Replication lag over {len(samples)} probes: p50 {percentile(samples, 50):.0f} ms, "
                 f"p99 {percentile(samples, 99):.0f} ms, max {max(samples):.0f} ms")
        _say(f"Comparison of both tables: {len(diff.missing)} missing, {len(diff.different)} different, "
             f"{len(diff.extraneous)} extraneous: {diff.discrepancies} discrepancies")
        status = sandbox.stop_daemon(daemon)
        _say(f"{'lambda-local' if as_lambda else 'Daemon'} stopped with SIGTERM: exit status {status}")
        _say(f"Done in {time.monotonic() - started:.0f} s")
        succeeded = diff.discrepancies == 0 and status == 0
        return 0 if succeeded else 1
    except RuntimeError as exc:  # the sandbox's "daemon exited" (its log is in the kept directory)
        _say(f"Demo failed: {exc}")
        return 1
    finally:
        sandbox.stop()
        if succeeded and not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            _say(f"Kept {workdir} for inspection")
