"""Operating the daemon: a destination outage, and two workers under repeated kill -9."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from replicator.local.sandbox import Sandbox
from replicator.local.workload import FIRST_REPLICATION_TIMEOUT_S, LagProbe, MixedWorkload

pytestmark = pytest.mark.integration


def rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def checkpoints(sandbox: Sandbox) -> dict[str, str]:
    items = sandbox.source.scan(TableName=sandbox.path.application_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items}


def events(log_text: str, name: str) -> list[dict]:
    return [json.loads(line) for line in log_text.splitlines() if line.startswith("{") and f'"{name}"' in line]


# Longer than the writer's 30 s read timeout, so that requests sent into the outage time out and are retried.
OUTAGE_S = 45


def test_destination_outage_retries_with_bounded_memory_never_checkpoints_ahead_and_catches_up(tmp_path: Path) -> None:
    with Sandbox(tmp_path, separate_destination=True) as sandbox:
        daemon = sandbox.start_daemon()
        probe = LagProbe(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table)
        assert probe.measure_once(FIRST_REPLICATION_TIMEOUT_S) is not None, "the daemon never replicated"
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=300, seed=31)
        writer = threading.Thread(target=workload.run, args=(6000, 100))  # 60 s of writes
        writer.start()
        time.sleep(10)

        sandbox.destination_server.pause()  # it accepts connections and answers nothing: a hung destination
        outage_started = time.monotonic()
        before = checkpoints(sandbox)
        memory: list[float] = []
        while time.monotonic() - outage_started < OUTAGE_S:
            assert checkpoints(sandbox) == before, "checkpointed while the destination was down"
            memory += [m for pid in sandbox.processor_pids(daemon) if (m := rss_mb(pid)) is not None]
            time.sleep(1)
        sandbox.destination_server.resume()
        restarted = time.monotonic()

        writer.join()
        diff = sandbox.wait_for_equality(timeout_s=240)
        caught_up_s = time.monotonic() - restarted
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert daemon.poll() is None, "the daemon gave up during the outage"

        assert len(memory) >= 20, memory
        assert max(memory) < 200 and max(memory) - min(memory) < 20, memory
        retries = events(sandbox.daemon_log(0), "destination_write_retrying")
        assert 1 <= len(retries) <= OUTAGE_S / 10 + 2, len(retries)  # once per 10 s interval, not per record
        print(f"outage: processor RSS {min(memory):.0f}-{max(memory):.0f} MB, {len(retries)} retry log lines, "
              f"caught up {caught_up_s:.1f} s after the destination came back")


def test_two_workers_survive_repeated_kill_9_of_either_one(tmp_path: Path) -> None:
    rng = random.Random(41)
    with Sandbox(tmp_path) as sandbox:
        workers = [sandbox.start_daemon(), sandbox.start_daemon()]
        workload = MixedWorkload(sandbox.source, sandbox.source_table, keys=300, seed=42)
        writer = threading.Thread(target=workload.run, args=(7000, 100))  # 70 s of writes
        writer.start()

        kills = 0
        chaos_started = time.monotonic()
        while time.monotonic() - chaos_started < 60:
            time.sleep(rng.uniform(3, 7))
            victim = rng.randrange(len(workers))
            sandbox.kill_daemon(workers[victim])  # the whole process group: Java and its processors
            kills += 1
            workers[victim] = sandbox.start_daemon()  # as supervisord would
        writer.join()

        diff = sandbox.wait_for_equality(timeout_s=420)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert kills >= 8
        assert workload.stats.operations == 7000
        print(f"chaos: {kills} kill -9 in {time.monotonic() - chaos_started:.0f} s, equal afterwards")


def test_a_killed_processor_stops_the_daemon_loudly_and_its_shard_is_processed_again(tmp_path: Path) -> None:
    with Sandbox(tmp_path, path_settings={"shutdown_grace_millis": 5000}) as sandbox:
        daemon = sandbox.start_daemon()
        probe = LagProbe(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table)
        assert probe.measure_once(FIRST_REPLICATION_TIMEOUT_S) is not None, "the daemon never replicated"
        processors = sandbox.processor_pids(daemon)
        assert processors, "no record processor found under the daemon"

        os.kill(processors[0], signal.SIGKILL)  # a processor dies (a bug, the OOM killer)
        daemon.wait(timeout=120)
        assert daemon.returncode != 0
        assert "Child process exited with value: 137" in sandbox.daemon_log(0)  # 128 + SIGKILL, in the daemon's log

        MixedWorkload(sandbox.source, sandbox.source_table, keys=100, seed=51).run(500, rate=250)
        sandbox.start_daemon()
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0


def put_round(sandbox: Sandbox, keys: range, rev: int) -> None:
    for i in keys:
        sandbox.source.put_item(TableName=sandbox.source_table,
                                Item={"pk": {"S": f"z{i}"}, "sk": {"N": "0"}, "rev": {"N": str(rev)}})


def test_a_frozen_worker_that_wakes_after_losing_its_lease_cannot_move_the_replica_back(tmp_path: Path) -> None:
    """The zombie: worker A is frozen (SIGSTOP) with a batch in flight, worker B takes the shard over and
    writes newer images and deletes, then A wakes and its stale writes reach the destination. With
    versionAttribute they are refused and the replica still equals the source."""
    from holding_proxy import HoldingProxy

    from replicator.local.sandbox import LOCAL_KCL_SETTINGS

    with Sandbox(tmp_path, path_settings={"version_attribute": "_rv", "write_concurrency": 4}) as sandbox:
        proxy = HoldingProxy(sandbox.destination_server.port).start()
        zombie_properties = tmp_path / "zombie.properties"
        sandbox.path.model_copy(update={"destination_endpoint": proxy.endpoint}).write_properties(
            zombie_properties, extra=LOCAL_KCL_SETTINGS)
        zombie = sandbox.start_daemon(zombie_properties)  # first, so it holds the shard (and the leader lock)
        probe = LagProbe(sandbox.source, sandbox.source_table, sandbox.destination, sandbox.destination_table)
        assert probe.measure_once(FIRST_REPLICATION_TIMEOUT_S) is not None, "the first worker never replicated"
        sandbox.start_daemon()  # the worker that will take over, writing to the destination directly
        put_round(sandbox, range(40), rev=1)
        assert sandbox.wait_for_equality(timeout_s=120).discrepancies == 0

        proxy.hold()
        put_round(sandbox, range(40), rev=2)
        deadline = time.monotonic() + 60
        while proxy.held_requests == 0:
            assert time.monotonic() < deadline, "the first worker never sent the second round's writes"
            time.sleep(0.1)
        os.killpg(zombie.pid, signal.SIGSTOP)  # Java and its processor, mid-batch
        frozen = time.monotonic()

        # Worker B takes the shard over from A's checkpoint (after round 1) and replays round 2 ...
        diff = sandbox.wait_for_equality(timeout_s=300)
        assert diff.discrepancies == 0, "the second worker never took the shard over"
        takeover_s = time.monotonic() - frozen
        # ... then writes newer images and deletes over the same keys.
        for i in range(10):
            sandbox.source.delete_item(TableName=sandbox.source_table, Key={"pk": {"S": f"z{i}"}, "sk": {"N": "0"}})
        put_round(sandbox, range(10, 40), rev=3)
        assert sandbox.wait_for_equality(timeout_s=120).discrepancies == 0

        held = proxy.held_requests
        proxy.release()  # A's stale round-2 writes reach the destination ...
        os.killpg(zombie.pid, signal.SIGCONT)  # ... and A goes on with the rest of its batch
        deadline = time.monotonic() + 120
        while not (applied := [e for e in events(sandbox.daemon_log(0), "batch_applied") if e["stale"]]):
            assert time.monotonic() < deadline, "the woken worker never finished its batch"
            time.sleep(0.5)
        time.sleep(2)

        diff = sandbox.diff()
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:2], diff.extraneous[:2])
        item = sandbox.destination.get_item(TableName=sandbox.destination_table,
                                            Key={"pk": {"S": "z0"}, "sk": {"N": "0"}})["Item"]
        assert "_rv_tombstone" in item  # the delete's tombstone, which refused z0's stale round-2 put
        stale = sum(e["stale"] for e in applied)
        assert stale >= held >= 1
        assert events(sandbox.daemon_log(0), "checkpoint_refused"), "the woken worker checkpointed a lost lease"
        proxy.close()
        print(f"zombie: {held} writes held in flight when frozen, takeover {takeover_s:.0f} s after SIGSTOP, "
              f"{stale} stale writes refused after SIGCONT; replica equal to the source")
