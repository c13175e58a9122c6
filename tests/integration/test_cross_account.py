"""Across accounts on the local server: a table path from account 111111111111 into a replica in account
222222222222 through --destination-role-arn, and a path that keeps replicating while its sessions renew."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicator.local import accounts
from replicator.local.sandbox import DESTINATION_ACCOUNT, DESTINATION_REGION, SOURCE_ACCOUNT, SOURCE_REGION, Sandbox
from replicator.local.workload import MixedWorkload
from replicator.tables.compare import compare_tables

pytestmark = pytest.mark.integration


def status(sandbox: Sandbox) -> list[dict]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "replicator"), "status", "--properties", str(sandbox.properties), "--json"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, **sandbox.env},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_table_path_replicates_into_another_account_through_a_role(tmp_path: Path) -> None:
    with Sandbox(tmp_path, cross_account=True) as sandbox:
        endpoint = sandbox.source_server.endpoint
        assert sandbox.path.destination_role_arn == f"arn:aws:iam::{DESTINATION_ACCOUNT}:role/replicator-writer"
        daemon = sandbox.start_daemon()
        stats = MixedWorkload(sandbox.source, sandbox.source_table, keys=200, seed=19).run(800, rate=400)
        assert stats.deletes > 0
        diff = sandbox.wait_for_equality(timeout_s=240)  # the replica read with account 222222222222's credentials
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert diff.scanned > 100

        # The replica is in the destination account only; the lease table is in the source account.
        replica_arn = sandbox.destination.describe_table(TableName=sandbox.destination_table)["Table"]["TableArn"]
        assert replica_arn.split(":")[4] == DESTINATION_ACCOUNT
        source_account_there = sandbox.client_with(sandbox.env, endpoint, DESTINATION_REGION)
        assert sandbox.destination_table not in source_account_there.list_tables()["TableNames"]
        assert sandbox.path.application_name in sandbox.source.list_tables()["TableNames"]
        assert sandbox.path.application_name not in sandbox.client_with(
            sandbox.destination_env, endpoint, SOURCE_REGION).list_tables()["TableNames"]
        # The source table is the source account's: the server's default account has no such table.
        assert sandbox.source_table not in sandbox.source_server.client(SOURCE_REGION).list_tables()["TableNames"]

        properties = sandbox.properties.read_text()
        assert "destinationRoleArn=" in properties and "destinationExternalId=" in properties
        logs = sandbox.daemon_log(0)
        for secret in (sandbox.env["AWS_SECRET_ACCESS_KEY"], sandbox.env["AWS_SESSION_TOKEN"]):
            assert secret not in properties and secret not in logs
        assert '"credentials_assumed"' in logs and sandbox.path.destination_role_arn in logs

        shards = status(sandbox)
        assert shards and all(s["owner"] for s in shards)
        assert sandbox.stop_daemon(daemon) == 0


def test_a_path_keeps_replicating_across_credential_renewals(tmp_path: Path) -> None:
    """Sessions renewed every few seconds (REPLICATOR_CREDENTIALS_LIFETIME_S): the processors' (botocore)
    for the destination role, and the launcher's (the SDK's STS provider) for the lease table's role."""
    leases_role = f"arn:aws:iam::{SOURCE_ACCOUNT}:role/replicator-leases"
    with Sandbox(tmp_path, cross_account=True, path_settings={"kcl_role_arn": leases_role}) as sandbox:
        accounts.create_role(sandbox.source_server.endpoint, SOURCE_ACCOUNT, "replicator-leases", SOURCE_ACCOUNT)
        sandbox.env["REPLICATOR_CREDENTIALS_LIFETIME_S"] = "4"
        sandbox.start_daemon()
        warm_up = {"pk": {"S": "warm-up"}, "sk": {"N": "0"}}
        sandbox.source.put_item(TableName=sandbox.source_table, Item=warm_up)
        deadline = time.monotonic() + 180
        while "Item" not in sandbox.destination.get_item(TableName=sandbox.destination_table, Key=warm_up):
            assert time.monotonic() < deadline, "the daemon replicated nothing in 180 s"
            time.sleep(0.5)
        # About 12 s of writes once the processor runs: its sessions renew while it writes batches.
        MixedWorkload(sandbox.source, sandbox.source_table, keys=100, seed=5).run(1200, rate=100)
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])

        def renewed(text: str) -> bool:
            assumed = sum(1 for line in text.splitlines() if line.startswith("{") and '"credentials_assumed"' in line
                          and sandbox.path.destination_role_arn in line)  # the processors' (JSON) lines
            return assumed >= 3 and "Side kcl has a renewed session of role " + leases_role in text

        logs = sandbox.daemon_log_when(0, renewed, timeout_s=60)
        assert renewed(logs), logs[-4000:]
        # Written after the renewals: replicated with the new sessions.
        MixedWorkload(sandbox.source, sandbox.source_table, keys=100, seed=6, first_rev=10_000).run(300, rate=200)
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert sandbox.path.application_name in sandbox.source.list_tables()["TableNames"]


def test_bootstrap_loads_and_replicates_into_a_replica_named_by_its_arn_through_a_role(tmp_path: Path) -> None:
    import os
    import threading

    from replicator.local.sandbox import DESTINATION_EXTERNAL_ID, LOCAL_KCL_SETTINGS

    with Sandbox(tmp_path / "sandbox", cross_account=True) as sandbox:
        endpoint = sandbox.source_server.endpoint
        MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=7).run(300, rate=300)
        replica_arn = f"arn:aws:dynamodb:{DESTINATION_REGION}:{DESTINATION_ACCOUNT}:table/{sandbox.destination_table}"
        settings = {**LOCAL_KCL_SETTINGS, "idleTimeBetweenReadsInMillis": "200", "dontPublishCloudwatch": "true"}
        # Writes while bootstrap copies and starts replicating, so that the check waits for the daemon.
        writer = threading.Thread(target=MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=8,
                                                       first_rev=10_000).run, args=(600, 60))
        writer.start()
        done = subprocess.run(
            [str(Path(sys.executable).parent / "replicator"), "bootstrap", f"us-east-1/{sandbox.source_table}",
             replica_arn, "--source-endpoint", endpoint, "--destination-endpoint", endpoint,
             "--destination-role-arn", str(sandbox.path.destination_role_arn),
             "--destination-external-id", DESTINATION_EXTERNAL_ID,
             "--write-properties", str(tmp_path / "boot.properties"),
             *[a for k, v in settings.items() for a in ("--kcl-property", f"{k}={v}")],
             "--daemon-log", str(tmp_path / "daemon.log"), "--check-timeout", "240", "--exit-after-check", "--json"],
            capture_output=True, text=True, timeout=400, env={**os.environ, **sandbox.env}, cwd=tmp_path,
        )
        writer.join()
        (tmp_path / "bootstrap.out").write_text(done.stdout + "\n----\n" + done.stderr)
        assert done.returncode == 0, done.stdout[-1500:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert summary["equal"] and summary["daemon_exit_status"] == 0 and summary["loaded"] > 0, summary
        # A bootstrap's path is fenced: compare as it does, the version attribute left out.
        diff = compare_tables(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table,
                              summary["version_attribute"])
        assert diff.discrepancies == 0
        written = (tmp_path / "boot.properties").read_text()
        assert "destinationRoleArn=" in written and sandbox.env["AWS_SECRET_ACCESS_KEY"] not in written
