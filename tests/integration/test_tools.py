"""The table tools on the local server, run as a user runs them: the `replicator` console script."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replicator.tables.compare import compare_tables, normalise, scan_items
from replicator.tables.copy import copy_table
from replicator.local.server import LocalServer, use_local_credentials
from replicator.tables.spec import open_table
from replicator.local.workload import create_table, every_type_item

pytestmark = pytest.mark.integration

REPLICATOR = str(Path(sys.executable).parent / "replicator")
SRC_REGION, DST_REGION = "us-east-1", "eu-west-1"


@pytest.fixture(scope="module")
def db() -> Iterator[LocalServer]:
    use_local_credentials()
    with LocalServer() as local:
        yield local


_counter = iter(range(10**6))


@pytest.fixture
def pair(db: LocalServer) -> tuple[Any, str, Any, str]:
    """A fresh source table (us-east-1) and empty destination (eu-west-1) with the workload's key schema."""
    n = next(_counter)
    source, destination = db.client(SRC_REGION), db.client(DST_REGION)
    create_table(source, f"src-{n}", None)
    create_table(destination, f"dst-{n}", None)
    return source, f"src-{n}", destination, f"dst-{n}"


def cli(db: LocalServer, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [REPLICATOR, *args, "--source-endpoint", db.endpoint, "--destinationEndpoint", db.endpoint],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ),
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def put_all(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        pending = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        while pending:
            pending = client.batch_write_item(RequestItems={table: pending}).get("UnprocessedItems", {}).get(table, [])


def small_items(count: int, prefix: str = "k") -> list[dict[str, Any]]:
    return [{"pk": {"S": f"{prefix}{i % 50}"}, "sk": {"N": str(i)}, "v": {"S": f"value {i}"}} for i in range(count)]


# --- copy-table -------------------------------------------------------------------------------------


def test_copy_table_copies_every_type_and_items_near_400_kb_exactly(db, pair):
    source, src, destination, dst = pair
    rng = random.Random(3)
    items = [every_type_item(f"key-{i % 37}", i, rng, rev=i) for i in range(400)]
    # DynamoDB's limit is 400 KB including attribute names: these are ~390 KB.
    items.append({"pk": {"S": "big"}, "sk": {"N": "1"}, "s": {"S": "é" * (195 * 1024)}})
    items.append({"pk": {"S": "big"}, "sk": {"N": "2"}, "b": {"B": rng.randbytes(390 * 1024)}})
    items.append({"pk": {"S": "big"}, "sk": {"N": "3"}, "l": {"L": [{"S": "x" * 1024}] * 380},
                  "ss": {"SS": [f"{i:05d}" + "y" * 1000 for i in range(8)]}})
    put_all(source, src, items)

    result = cli(db, "copy-table", f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}", "--segments", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Estimate: ")
    assert last_json(result)["copied"] == len(items)
    diff = compare_tables(source, src, destination, dst)
    assert diff.scanned == len(items) and diff.replica_scanned == len(items)
    assert diff.discrepancies == 0, (diff.missing[:1], diff.different[:1], diff.extraneous[:1])
    # Byte for byte, not only equal after normalising sets.
    copied = {(i["pk"]["S"], i["sk"]["N"]): i for i in scan_items(destination, dst)}
    assert copied[("big", "2")] == items[-2]
    assert copied[("big", "1")] == items[-3]


def test_copy_table_killed_part_way_resumes_without_starting_over(db, pair, tmp_path):
    source, src, destination, dst = pair
    total = 3000
    put_all(source, src, small_items(total))
    state = tmp_path / "copy.state.json"
    args = ["copy-table", f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}", "--segments", "2", "--page-size", "25",
            "--state-file", str(state)]
    proc = subprocess.Popen(
        [REPLICATOR, *args, "--write-units", "400", "--source-endpoint", db.endpoint, "--destination-endpoint", db.endpoint],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ),
    )

    def copied_so_far() -> int:
        try:
            return sum(p["copied"] for p in json.loads(state.read_text())["positions"].values())
        except (FileNotFoundError, ValueError):
            return 0

    deadline = time.monotonic() + 60
    while copied_so_far() < 600 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = copied_so_far()
    assert 600 <= before < total, before
    assert compare_tables(source, src, destination, dst).missing, "the kill came too late to test a resume"

    # Without --resume, an interrupted copy is not silently started over.
    refused = cli(db, *args)
    assert refused.returncode == 2 and "--resume" in refused.stderr

    resumed = cli(db, *args, "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    again = last_json(resumed)["copied"]
    # Continued where the state said, re-copying at most one page (25 items) per segment.
    assert total - before <= again <= total - before + 2 * 25, (before, again)
    diff = compare_tables(source, src, destination, dst)
    assert diff.discrepancies == 0 and diff.replica_scanned == total
    assert not state.exists()


def test_segment_runs_together_cover_the_table_exactly_once(db, pair, tmp_path):
    source, src, destination, dst = pair
    total = 1500
    put_all(source, src, small_items(total, prefix="seg"))
    s, d = open_table(f"{SRC_REGION}/{src}", db.endpoint), open_table(f"{DST_REGION}/{dst}", db.endpoint)
    counts = [
        copy_table(s, d, segments=3, segment=i, page_size=100, state_path=tmp_path / f"seg{i}.json", progress=False).copied
        for i in range(3)
    ]
    assert sum(counts) == total and all(0 < c < total for c in counts), counts
    diff = compare_tables(source, src, destination, dst)
    assert diff.discrepancies == 0 and diff.replica_scanned == total


def test_copy_table_write_units_limit_the_rate(db, pair, tmp_path):
    source, src, destination, dst = pair
    put_all(source, src, small_items(300, prefix="rate"))
    s, d = open_table(f"{SRC_REGION}/{src}", db.endpoint), open_table(f"{DST_REGION}/{dst}", db.endpoint)
    result = copy_table(s, d, segments=2, write_units=100, page_size=25, state_path=tmp_path / "r.json", progress=False)
    assert result.copied == 300 and result.write_units == pytest.approx(300)
    # 300 units at 100/s, less a one-second burst (100) and what the last requests in flight take on
    # credit (2 segments x 25 units): at least 1.5 s; unlimited, it takes a fraction of that.
    assert result.seconds >= 1.45, result.seconds


# --- diff-tables ------------------------------------------------------------------------------------


def plant(source: Any, src: str, destination: Any, dst: str) -> dict[str, set[str]]:
    """300 source items copied to the replica, then 5 removed, 4 changed and 3 extra ones added there."""
    items = small_items(300, prefix="d")
    put_all(source, src, items)
    put_all(destination, dst, items)
    missing = items[10:15]
    different = items[100:104]
    for item in missing:
        destination.delete_item(TableName=dst, Key={"pk": item["pk"], "sk": item["sk"]})
    for item in different:
        destination.put_item(TableName=dst, Item={**item, "v": {"S": "changed"}})
    extraneous = small_items(3, prefix="extra")
    put_all(destination, dst, extraneous)
    return {name: {i["sk"]["N"] + "/" + i["pk"]["S"] for i in group}
            for name, group in (("missing", missing), ("different", different), ("extraneous", extraneous))}


def listed(result: subprocess.CompletedProcess[str], kind: str) -> set[str]:
    out = set()
    for line in result.stdout.splitlines():
        if line.startswith(f"  {kind}: "):
            key = json.loads(line.split(": ", 1)[1])
            out.add(key["sk"]["N"] + "/" + key["pk"]["S"])
    return out


def test_diff_tables_finds_exactly_what_was_planted_and_repair_leaves_none(db, pair):
    source, src, destination, dst = pair
    planted = plant(source, src, destination, dst)
    tables = [f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}"]

    found = cli(db, "diff-tables", *tables, "--json")
    assert found.returncode == 1, found.stderr
    counts = last_json(found)
    assert {k: counts[k] for k in ("missing", "different", "extraneous", "scanned")} == {
        "missing": 5, "different": 4, "extraneous": 3, "scanned": 300}
    for kind, keys in planted.items():
        assert listed(found, kind) == keys

    # The same, split into segments run one at a time (as on several machines).
    parts = [last_json(cli(db, "diff-tables", *tables, "--segments", "3", "--segment", str(i), "--json")) for i in range(3)]
    assert [sum(p[k] for p in parts) for k in ("missing", "different", "extraneous", "scanned")] == [5, 4, 3, 300]

    repaired = cli(db, "diff-tables", *tables, "--repair", "--segments", "2", "--json")
    assert repaired.returncode == 0, repaired.stderr
    summary = last_json(repaired)
    assert (summary["written"], summary["deleted"], summary["unrepaired"]) == (9, 3, 0)

    clean = cli(db, "diff-tables", *tables, "--json")
    assert clean.returncode == 0, clean.stdout
    assert {k: last_json(clean)[k] for k in ("missing", "different", "extraneous", "scanned")} == {
        "missing": 0, "different": 0, "extraneous": 0, "scanned": 300}
    assert compare_tables(source, src, destination, dst).discrepancies == 0


def test_diff_tables_backfill_writes_every_primary_item(db, pair):
    source, src, destination, dst = pair
    put_all(source, src, small_items(250, prefix="bf"))
    destination.put_item(TableName=dst, Item={"pk": {"S": "bf0"}, "sk": {"N": "0"}, "v": {"S": "stale"}})
    result = cli(db, "diff-tables", f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}", "--backfill", "--json")
    assert result.returncode == 0, result.stderr
    assert (last_json(result)["scanned"], last_json(result)["written"]) == (250, 250)
    assert compare_tables(source, src, destination, dst).discrepancies == 0


# --- diff-record and replicate-record -------------------------------------------------------------


def test_diff_record_and_replicate_record(db, pair):
    source, src, destination, dst = pair
    tables = [f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}"]
    item = every_type_item("rec", 7, random.Random(1), rev=1)
    source.put_item(TableName=src, Item=item)

    missing = cli(db, "diff-record", *tables, '{"pk": "rec", "sk": 7}', "--json")
    assert missing.returncode == 1 and last_json(missing)["status"] == "missing"

    put = cli(db, "replicate-record", *tables, '{"pk": {"S": "rec"}, "sk": {"N": "7"}}', "--json")
    assert put.returncode == 0 and last_json(put)["action"] == "put", put.stderr
    copied = destination.get_item(TableName=dst, Key={"pk": {"S": "rec"}, "sk": {"N": "7"}})["Item"]
    assert normalise(copied) == normalise(item)

    equal = cli(db, "diff-record", *tables, '{"pk": "rec", "sk": 7}')
    assert equal.returncode == 0 and equal.stdout.startswith("equal: ")

    source.update_item(TableName=src, Key={"pk": {"S": "rec"}, "sk": {"N": "7"}},
                       UpdateExpression="SET s = :s", ExpressionAttributeValues={":s": {"S": "new"}})
    different = cli(db, "diff-record", *tables, '{"pk": "rec", "sk": 7}', "--json")
    assert different.returncode == 1 and last_json(different)["status"] == "different"

    source.delete_item(TableName=src, Key={"pk": {"S": "rec"}, "sk": {"N": "7"}})
    extraneous = cli(db, "diff-record", *tables, '{"pk": "rec", "sk": 7}', "--json")
    assert last_json(extraneous)["status"] == "extraneous"
    deleted = cli(db, "replicate-record", *tables, '{"pk": "rec", "sk": 7}', "--json")
    assert last_json(deleted)["action"] == "delete"
    assert "Item" not in destination.get_item(TableName=dst, Key={"pk": {"S": "rec"}, "sk": {"N": "7"}})


# --- bad input: one line, exit status 2 ------------------------------------------------------------


@pytest.mark.parametrize("args,words", [
    (["diff-tables", "us-east-1/no-such-table", "DST"], "does not exist"),
    (["copy-table", "SRC", "eu-west-1/no-such-table"], "does not exist"),
    (["diff-tables", "orders", "DST"], "region/table"),
    (["copy-table", "us-east-1:orders", "DST"], "region/table"),
    (["diff-record", "SRC", "DST", '{"pk": "a", "sk": 1'], "not valid JSON"),
    (["replicate-record", "SRC", "DST", '{"pk": "a"}'], "KEY has attributes"),
    (["diff-record", "SRC", "DST", '{"pk": "a", "sk": "x"}'], "is a number"),
    (["diff-tables", "SRC", "DST", "--segments", "4", "--segment", "4"], "out of range"),
    (["copy-table", "SRC", "DST", "--segments", "2", "--segment", "-1"], "out of range"),
    (["diff-tables", "SRC", "DST", "--repair", "--backfill"], "exclude"),
    (["copy-table", "SRC", "DST", "--resume", "--state-file", "/nonexistent/state.json"], "no state file"),
])
def test_bad_input_is_one_line_and_exit_2(db, pair, args, words):
    _, src, _, dst = pair
    args = [{"SRC": f"{SRC_REGION}/{src}", "DST": f"{DST_REGION}/{dst}"}.get(a, a) for a in args]
    result = cli(db, *args)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("replicator: error: "), result.stderr
    assert words in lines[0]
    assert "Traceback" not in result.stderr


# --- bootstrap --------------------------------------------------------------------------------------


# bootstrap under live writes (the path runs while the table loads): tests/integration/test_bootstrap.py.


def test_bootstrap_refuses_a_table_without_a_stream(db, pair):
    _, src, _, dst = pair
    result = cli(db, "bootstrap", f"{SRC_REGION}/{src}", f"{DST_REGION}/{dst}")
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "no stream enabled" in result.stderr and "StreamViewType=NEW_AND_OLD_IMAGES" in result.stderr
