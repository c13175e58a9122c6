"""The real chain, end to end: the local server's stream, the adapter, KCL 3, our processor, its other region."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from replicator.kcl.config import task_name
from replicator.local.sandbox import Sandbox
from replicator.local.workload import MixedWorkload

pytestmark = pytest.mark.integration


def processed_records(log_text: str) -> int:
    """Records the processors of one daemon applied, from their batch_applied events."""
    total = 0
    for line in log_text.splitlines():
        if line.startswith("{") and '"batch_applied"' in line:
            total += json.loads(line)["records"]
    return total


def checkpoints(sandbox: Sandbox) -> dict[str, str]:
    items = sandbox.source.scan(TableName=sandbox.path.application_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items}


def records_after(sandbox: Sandbox, checkpoint_of: dict[str, str]) -> int:
    """How many stream records follow each shard's checkpoint, read to the end of the stream."""
    streams = sandbox.source_server.client(service="dynamodbstreams")
    arn = sandbox.source.describe_table(TableName=sandbox.source_table)["Table"]["LatestStreamArn"]
    total = 0
    for shard_id, checkpoint in checkpoint_of.items():
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, SequenceNumber=checkpoint,
                                              ShardIteratorType="AFTER_SEQUENCE_NUMBER")["ShardIterator"]
        while records := (page := streams.get_records(ShardIterator=iterator, Limit=1000))["Records"]:
            total += len(records)
            iterator = page["NextShardIterator"]
    return total


def shard_status(sandbox: Sandbox) -> list[dict]:
    """`replicator status --json` for the sandbox's path, run as a user would."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "replicator"), "status", "--properties", str(sandbox.properties), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.5)


def test_replicates_mixed_workload_and_resumes_from_checkpoint_after_sigterm(tmp_path: Path) -> None:
    with Sandbox(tmp_path) as sandbox:
        daemon = sandbox.start_daemon()
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=300, seed=11)
        first = workload.run(1200, rate=400)

        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert diff.scanned > 150

        expected_table = task_name("us-east-1", sandbox.source_table, "eu-west-1", sandbox.destination_table)
        assert sandbox.path.application_name == expected_table
        assert expected_table in sandbox.source.list_tables()["TableNames"]

        assert sandbox.stop_daemon(daemon) == 0, sandbox.daemon_log(0)[-3000:]
        stopped_at = checkpoints(sandbox)
        assert stopped_at and all(c not in ("TRIM_HORIZON", "LATEST") for c in stopped_at.values())

        second = MixedWorkload(sandbox.source, sandbox.source_table, keys=300, seed=12, first_rev=10_000).run(1000, rate=400)
        assert first.operations + second.operations >= 2000
        assert sandbox.diff().discrepancies > 0

        # `replicator status` shows the backlog the stopped daemon left, and its leases handed back (so the
        # next worker need not wait for them to expire).
        waiting = shard_status(sandbox)
        assert sum(s["behind_records"] for s in waiting) > 0
        assert all(s["checkpoint"] == stopped_at[s["shard_id"]] for s in waiting)
        assert all(s["owner"] is None and s["state"] == "unassigned" for s in waiting), waiting

        sandbox.start_daemon()
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])

        # Resumed from the checkpoint: the restarted daemon saw exactly the records written while it was stopped
        # (more than the operations: moto's UpdateItem that creates an item emits two INSERT records).
        after = records_after(sandbox, stopped_at)
        resumed = processed_records(sandbox.daemon_log_when(1, lambda text: processed_records(text) >= after))
        assert resumed == after
        # The checkpoint follows the last write by a moment.
        wait_until(lambda: all(s["behind_records"] == 0 and s["state"] == "active" for s in shard_status(sandbox)),
                   30, "status to show every shard caught up")


@pytest.mark.parametrize("view", ["KEYS_ONLY", "OLD_IMAGE"])
def test_a_stream_without_new_images_is_replicated_by_reading_each_item_through(tmp_path: Path, view: str) -> None:
    """A source stream whose records carry no new image: the processor reads the items from the source, so
    the replica still equals it, deletes included."""
    with Sandbox(tmp_path, source_stream_view=view) as sandbox:
        sandbox.start_daemon()
        MixedWorkload(sandbox.source, sandbox.source_table, keys=200, seed=21).run(800, rate=400)
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert diff.scanned > 100


def test_non_retryable_error_stops_without_checkpoint_and_records_come_again(tmp_path: Path) -> None:
    """A processor's non-retryable exit stops the daemon at once: with nothing else to wait for, it does
    not wait out shutdownGraceMillis (60 s here) for the processor that has already exited."""
    with Sandbox(tmp_path, path_settings={"shutdown_grace_millis": 60_000}) as sandbox:
        daemon = sandbox.start_daemon()
        key = {"pk": {"S": "warm-up"}, "sk": {"N": "0"}}
        sandbox.source.put_item(TableName=sandbox.source_table, Item=key)
        wait_until(lambda: "Item" in sandbox.destination.get_item(TableName=sandbox.destination_table, Key=key),
                   180, "the daemon to replicate a first item")
        sandbox.source.delete_item(TableName=sandbox.source_table, Key=key)
        wait_until(lambda: "Item" not in sandbox.destination.get_item(TableName=sandbox.destination_table, Key=key),
                   60, "the delete to replicate")
        wait_until(lambda: all(c not in ("TRIM_HORIZON", "LATEST") for c in checkpoints(sandbox).values()),
                   30, "a checkpoint")
        before = checkpoints(sandbox)

        sandbox.destination.delete_table(TableName=sandbox.destination_table)
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=50, seed=3)
        workload.run(100, rate=200)

        daemon.wait(timeout=120)
        exited = datetime.now(timezone.utc)
        assert daemon.returncode not in (0, None)
        failures = [json.loads(line) for line in sandbox.daemon_log(0).splitlines()
                    if line.startswith("{") and '"batch_not_applied"' in line]
        assert len(failures) == 1 and "ResourceNotFoundException" in failures[0]["error"]
        stopping_s = (exited - datetime.fromisoformat(failures[0]["timestamp"].replace("Z", "+00:00"))).total_seconds()
        print(f"processor's failure to the daemon's exit: {stopping_s:.1f} s")
        assert stopping_s < 15, f"the daemon took {stopping_s:.1f} s to stop after its processor's failure"
        assert checkpoints(sandbox) == before, "checkpointed past records that were never written"

        from replicator.local.workload import create_table

        create_table(sandbox.destination, sandbox.destination_table, None)
        sandbox.start_daemon()
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0 and diff.scanned > 0
