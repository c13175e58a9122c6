"""Kinesis paths end to end on the local server: our launcher (a plain KCL scheduler) on a 2-shard stream,
our processor, the replica in another region; one test per record format."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from replicator.changes.binlog import BinlogProducer
from replicator.changes.codec import decode_item, encode_item, key_id
from replicator.changes.formats import CDC_VERSION_ATTRIBUTE
from replicator.changes.versions import replica_view
from replicator.kcl.config import ReplicationPath
from replicator.kcl.streams import KinesisStream
from replicator.local.feeds import cdc_records, ship, shuffled
from replicator.local.sandbox import LOCAL_KCL_SETTINGS, Sandbox
from replicator.local.workload import MixedWorkload, create_table, every_type_item, key_of
from replicator.tables.compare import normalise

pytestmark = pytest.mark.integration

SCHEMA = (("pk", "S"), ("sk", "N"))


def processed(log_text: str, field: str = "records") -> int:
    return sum(json.loads(line)[field] for line in log_text.splitlines()
               if line.startswith("{") and '"batch_applied"' in line)


def checkpoints(sandbox: Sandbox) -> dict[str, str]:
    items = sandbox.source.scan(TableName=sandbox.path.application_name, ConsistentRead=True)["Items"]
    return {i["leaseKey"]["S"]: i["checkpoint"]["S"] for i in items}


def records_after(sandbox: Sandbox, checkpoint_of: dict[str, str]) -> int:
    stream = KinesisStream(sandbox.kinesis, sandbox.kinesis_stream)
    total = 0
    for shard, checkpoint in checkpoint_of.items():
        iterator = stream.iterator_after(shard, checkpoint)
        while True:
            records, iterator = stream.page(iterator, 1000)
            total += len(records)
            if not records or iterator is None:
                break
    return total


def status(sandbox: Sandbox) -> list[dict]:
    done = subprocess.run([str(Path(sys.executable).parent / "replicator"), "status", "--properties",
                           str(sandbox.properties), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def binlog_actions(sandbox: Sandbox, count: int, rng: random.Random, first_rev: int) -> list[dict]:
    """Random PutItem, DeleteItem and BatchWrite actions (DynamoDB JSON), each also applied to the source
    table in order, as the lazy-replication design's fast consumer applies them to the primary."""
    actions = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.6:
            index = rng.randrange(200)
            item = every_type_item(key_of(index)["pk"]["S"], index, rng, first_rev + n)
            sandbox.source.put_item(TableName=sandbox.source_table, Item=item)
            actions.append({"Action": "PutItem", "Data": encode_item(item)})
        elif roll < 0.8:
            key = key_of(rng.randrange(200))
            sandbox.source.delete_item(TableName=sandbox.source_table, Key=key)
            actions.append({"Action": "DeleteItem", "Data": encode_item(key)})
        else:
            entries, requests = [], []
            for index in rng.sample(range(200), rng.randint(2, 6)):
                if rng.random() < 0.7:
                    item = every_type_item(key_of(index)["pk"]["S"], index, rng, first_rev + n)
                    entries.append(encode_item(item))
                    requests.append({"PutRequest": {"Item": item}})
                else:
                    entries.append({"Delete": encode_item(key_of(index))})
                    requests.append({"DeleteRequest": {"Key": key_of(index)}})
            sandbox.source.batch_write_item(RequestItems={sandbox.source_table: requests})
            actions.append({"Action": "BatchWrite", "Data": entries})
    return actions


def leader(sandbox: Sandbox) -> str | None:
    """The worker holding KCL 3's leader lock, from the path's coordinator state table."""
    items = sandbox.source.scan(TableName=f"{sandbox.path.application_name}-CoordinatorState", ConsistentRead=True)["Items"]
    owners = [i["ownerName"]["S"] for i in items if "ownerName" in i]
    return owners[0] if owners else None


def test_binlog_replicates_exactly_over_two_workers_a_kill_9_and_a_restart_from_the_checkpoint(tmp_path: Path) -> None:
    with Sandbox(tmp_path, kinesis_stream="actions", path_settings={"source_format": "binlog"}) as sandbox:
        workers = {}
        for worker in ("worker-a", "worker-b"):
            properties = tmp_path / f"{worker}.properties"
            sandbox.path.write_properties(properties, extra={**LOCAL_KCL_SETTINGS, "workerId": worker})
            workers[worker] = (properties, sandbox.start_daemon(properties))
        producer = BinlogProducer(sandbox.kinesis, "actions", SCHEMA)
        rng = random.Random(5)
        assert producer.put_actions(binlog_actions(sandbox, 600, rng, 1)) >= 600
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        deadline = time.monotonic() + 60
        while {s["owner"] for s in status(sandbox)} != {"worker-a", "worker-b"} and time.monotonic() < deadline:
            time.sleep(1)
        assert {s["owner"] for s in status(sandbox)} == {"worker-a", "worker-b"}  # the two split the shards

        # kill -9 the worker that is not the leader (a killed leader's lock outlives it for minutes):
        # the other takes its shard over.
        victim = "worker-b" if leader(sandbox) == "worker-a" else "worker-a"
        survivor = "worker-a" if victim == "worker-b" else "worker-b"
        sandbox.kill_daemon(workers[victim][1])
        producer.put_actions(binlog_actions(sandbox, 300, rng, 10_000))
        diff = sandbox.wait_for_equality(timeout_s=180)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        assert {s["owner"] for s in status(sandbox)} == {survivor}

        # SIGTERM, more actions while it is stopped, a restart: it resumes from the checkpoints.
        sandbox.stop_daemon(workers[survivor][1])
        stopped_at = checkpoints(sandbox)
        before = producer.sent
        producer.put_actions(binlog_actions(sandbox, 300, rng, 20_000))
        assert sum(s["behind_records"] for s in status(sandbox)) == producer.sent - before  # status shows the backlog

        restarted = sandbox.start_daemon(workers[survivor][0])
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        after = records_after(sandbox, stopped_at)
        log = sandbox.daemon_log_when(sandbox.daemons.index(restarted), lambda text: processed(text) >= after)
        assert processed(log) == after == producer.sent - before


def test_dynamodb_cdc_out_of_order_and_repeated_never_moves_an_item_back_and_replays_from_a_time(tmp_path: Path) -> None:
    with Sandbox(tmp_path, kinesis_stream="changes", path_settings={"source_format": "dynamodb-cdc"}) as sandbox:
        streams = sandbox.source_server.client(service="dynamodbstreams")
        arn = sandbox.source.describe_table(TableName=sandbox.source_table)["Table"]["LatestStreamArn"]
        rng = random.Random(9)
        MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=21).run(900, rate=400)
        first = cdc_records(streams, arn, sandbox.source_table)
        other = [{**r, "tableName": "customers"} for r in first[:50]]  # another table on the same stream
        # Random partition keys: one item's changes land on both shards, so they truly arrive out of order.
        ship(sandbox.kinesis, "changes", shuffled(first + other, window=40, duplicates=0.1, rng=rng),
             lambda record: str(rng.random()))

        # More changes after a point in time, which a second path replays into an empty replica.
        replay_from = math.ceil(time.time()) + 1
        time.sleep(replay_from - time.time() + 1)
        MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=22, first_rev=50_000).run(400, rate=400)
        later = cdc_records(streams, arn, sandbox.source_table, after_sequence=max(r["_sequence"] for r in first))
        ship(sandbox.kinesis, "changes", shuffled(later, window=20, duplicates=0.1, rng=rng), lambda r: str(rng.random()))
        replay = sandbox.destination
        create_table(replay, "replay", None)
        replay_path = ReplicationPath(**{**sandbox.path.model_dump(exclude_none=True), "destination_table": "replay",
                                         "initial_position": "AT_TIMESTAMP",
                                         "initial_timestamp": datetime.fromtimestamp(replay_from, timezone.utc)})
        replay_path.write_properties(tmp_path / "replay.properties", extra=LOCAL_KCL_SETTINGS)

        sandbox.start_daemon()
        sandbox.start_daemon(tmp_path / "replay.properties")
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])
        log = sandbox.daemon_log_when(0, lambda text: processed(text, "skipped") >= 50)
        assert processed(log, "skipped") >= 50
        assert processed(log, "stale") > 0  # late and repeated changes were refused

        expected: dict[str, dict] = {}
        for record in sorted(later, key=lambda r: r["dynamodb"]["ApproximateCreationDateTime"]):
            expected[key_id(record["dynamodb"]["Keys"])] = record
        want = {k: normalise(decode_item(r["dynamodb"]["NewImage"])) for k, r in expected.items()
                if r["eventName"] != "REMOVE"}

        def replayed() -> dict[str, dict]:
            seen = {}
            for item in replay.scan(TableName="replay", ConsistentRead=True)["Items"]:
                view = replica_view(item, CDC_VERSION_ATTRIBUTE)
                if view is not None:
                    seen[key_id(encode_item({"pk": view["pk"], "sk": view["sk"]}))] = normalise(view)
            return seen

        deadline = time.monotonic() + 120
        while replayed() != want and time.monotonic() < deadline:
            time.sleep(1)
        assert replayed() == want
        assert processed(sandbox.daemon_log(1)) < len(first)  # it started at the time, not the stream's start


def test_keys_only_records_read_through_so_order_and_repeats_cannot_matter(tmp_path: Path) -> None:
    with Sandbox(tmp_path, kinesis_stream="keys", path_settings={"source_format": "keys-only"}) as sandbox:
        rng = random.Random(13)
        MixedWorkload(sandbox.source, sandbox.source_table, keys=150, seed=31).run(700, rate=400)
        streams = sandbox.source_server.client(service="dynamodbstreams")
        arn = sandbox.source.describe_table(TableName=sandbox.source_table)["Table"]["LatestStreamArn"]
        keys = [r["dynamodb"]["Keys"] for r in cdc_records(streams, arn, sandbox.source_table)]
        # Half as plain JSON objects of the key, half as DynamoDB records with only Keys; shuffled, repeated.
        payloads = [{"pk": k["pk"]["S"], "sk": int(k["sk"]["N"])} if i % 2 else {"eventName": "MODIFY", "dynamodb": {"Keys": k}}
                    for i, k in enumerate(keys)]
        ship(sandbox.kinesis, "keys", shuffled(payloads, window=200, duplicates=0.2, rng=rng),
             lambda p: json.dumps(p.get("pk") or p["dynamodb"]["Keys"]["pk"]))
        sandbox.start_daemon()
        diff = sandbox.wait_for_equality(timeout_s=240)
        assert diff.discrepancies == 0, (diff.missing[:2], diff.different[:1], diff.extraneous[:2])


def test_the_lazy_consumer_writes_at_its_cap_and_status_shows_it_trailing(tmp_path: Path) -> None:
    cap = 60
    with Sandbox(tmp_path, kinesis_stream="lazy",
                 path_settings={"source_format": "binlog", "max_writes_per_second": cap}) as sandbox:
        items = [{"pk": f"k{i % 97}", "sk": i, "v": "x"} for i in range(900)]
        BinlogProducer(sandbox.kinesis, "lazy", SCHEMA).put_actions({"Action": "PutItem", "Data": i} for i in items)
        for item in items:
            sandbox.source.put_item(TableName=sandbox.source_table,
                                    Item={"pk": {"S": item["pk"]}, "sk": {"N": str(item["sk"])}, "v": {"S": "x"}})
        sandbox.start_daemon()
        seen: list[tuple[float, int]] = []
        trailing = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            count = sandbox.destination.scan(TableName=sandbox.destination_table, Select="COUNT")["Count"]
            seen.append((time.monotonic(), count))
            if trailing is None and 300 <= count <= 600:
                trailing = status(sandbox)
            if count >= 900:
                break
            time.sleep(0.25)
        assert seen[-1][1] == 900
        # The rate between a fifth and all of the items (after the bucket's first second of burst):
        start = next((t, c) for t, c in seen if c >= 180)
        rate = (900 - start[1]) / (seen[-1][0] - start[0])
        assert abs(rate - cap) / cap <= 0.10, f"{rate:.1f} items/s against a cap of {cap}"
        assert trailing is not None and sum(s["behind_records"] for s in trailing) > 0
        assert all(s["oldest_waiting_s"] is not None for s in trailing if s["behind_records"])
        assert sandbox.diff().discrepancies == 0

