"""backup-table and restore-table end to end on the local server (its DynamoDB and its S3), run as a user runs them.

One module-scoped server and one source table of 20,000 items, backed up once with ``--segments 4`` to
``s3://backups/backups`` through the server's S3; that backup is restored by restore-table and imported by
the server's own ImportTable, both compared with the source. The table holds every attribute type
(2,000 items of ``every_type_item``, whose list holds an empty map), four items near DynamoDB's 400 KB
limit (one with an empty map too), and 17,996 small items (a string and a number).

Sized for moto, which costs about 5 ms of server CPU per request and reads an item of every type about
five times slower than a small one (about 450 against 2,500 items/s here, the serialising of its nested
values): with all 20,000 of every type the file took 5.4 minutes, nearly all of it in the four full
scans of compare_tables; with this mix, about a minute and a half. The table is filled with BatchWriteItem,
8 requests in flight, and the other tests use small tables of their own.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from replicator.local.server import LocalServer, use_local_credentials
from replicator.local.workload import create_table, every_type_item
from replicator.tables.compare import compare_tables

pytestmark = pytest.mark.integration

REPLICATOR = str(Path(sys.executable).parent / "replicator")
REGION = "us-east-1"
BUCKET = "backups"
ITEMS = 20_000
RICH = 2_000
"""Items of every attribute type among ITEMS; the others are small (see the module docstring)."""
SEGMENTS = 4


@pytest.fixture(scope="module")
def db() -> Iterator[LocalServer]:
    use_local_credentials()
    with LocalServer() as local:
        local.client(REGION, "s3").create_bucket(Bucket=BUCKET)
        yield local


def cli(db: LocalServer, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``replicator ARGS`` against the local server: its DynamoDB for either table, its S3 for s3:// URLs."""
    endpoints = ["--s3-endpoint", db.endpoint]
    endpoints += ["--source-endpoint", db.endpoint] if args[0] == "backup-table" else ["--destination-endpoint", db.endpoint]
    return subprocess.run([REPLICATOR, *args, *endpoints], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def one_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("replicator: error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def put_all(client: Any, table: str, items: Sequence[dict[str, Any]], in_flight: int = 8) -> None:
    """BatchWriteItem of 25, ``in_flight`` at a time (as bench.common.put_all: bench/ is not importable here)."""
    def write(chunk: Sequence[dict[str, Any]]) -> None:
        pending = [{"PutRequest": {"Item": item}} for item in chunk]
        while pending:
            pending = client.batch_write_item(RequestItems={table: pending}).get("UnprocessedItems", {}).get(table, [])

    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(write, [items[i : i + 25] for i in range(0, len(items), 25)]))


def keys_under(db: LocalServer, prefix: str) -> list[str]:
    s3, found, token = db.client(REGION, "s3"), [], {}
    while True:
        page = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix, **token)
        found += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return sorted(found)
        token = {"ContinuationToken": page["NextContinuationToken"]}


def get(db: LocalServer, key: str) -> bytes:
    return db.client(REGION, "s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def big_items(rng: random.Random) -> list[dict[str, Any]]:
    """Items near 400 KB (DynamoDB's limit, attribute names included), as test_tools' copy-table test has them,
    and one that also holds an empty map at the top."""
    return [
        {"pk": {"S": "big"}, "sk": {"N": "1"}, "s": {"S": "é" * (195 * 1024)}},
        {"pk": {"S": "big"}, "sk": {"N": "2"}, "b": {"B": rng.randbytes(390 * 1024)}},
        {"pk": {"S": "big"}, "sk": {"N": "3"}, "l": {"L": [{"S": "x" * 1024}] * 380},
         "ss": {"SS": [f"{i:05d}" + "y" * 1000 for i in range(8)]}},
        {"pk": {"S": "big"}, "sk": {"N": "4"}, "empty": {"M": {}}, "s": {"S": "z" * (390 * 1024)}},
    ]


def fill(db: LocalServer, table: str, count: int, seed: int, *, rich: int | None = None,
         partitions: int = 997) -> list[dict[str, Any]]:
    """A new table of ``count`` items: four near 400 KB, ``rich`` (default: all the others) of every attribute
    type, and the rest small (a string and a number)."""
    client = db.client(REGION)
    create_table(client, table, None)
    rng = random.Random(seed)
    big = big_items(rng)
    rich = count - len(big) if rich is None else rich
    items = [
        every_type_item(f"key-{i % partitions}", i, rng, rev=i) if i < rich else
        {"pk": {"S": f"key-{i % partitions}"}, "sk": {"N": str(i)}, "v": {"S": f"value {i}"}, "n": {"N": str(i * 7)}}
        for i in range(count - len(big))
    ] + big
    put_all(client, table, items)
    return items


def assert_equal(db: LocalServer, source: str, copy: str, count: int) -> None:
    client = db.client(REGION)
    diff = compare_tables(client, source, client, copy)
    assert (diff.scanned, diff.replica_scanned) == (count, count)
    assert diff.discrepancies == 0, (len(diff.missing), len(diff.different), len(diff.extraneous),
                                     diff.missing[:1], diff.different[:1], diff.extraneous[:1])


@pytest.fixture(scope="module")
def source(db: LocalServer) -> str:
    started = time.monotonic()
    fill(db, "source", ITEMS, seed=20, rich=RICH)
    print(f"\nfilled {ITEMS:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return "source"


@pytest.fixture(scope="module")
def backup(db: LocalServer, source: str) -> dict[str, Any]:
    """The source backed up with 4 segments by the CLI: its --json summary."""
    started = time.monotonic()
    result = cli(db, "backup-table", f"{REGION}/{source}", f"s3://{BUCKET}/backups", "--segments", str(SEGMENTS),
                 "--json")
    assert result.returncode == 0, result.stderr
    summary = last_json(result)
    print(f"backup of {summary['items']:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert result.stdout.startswith(f"Backup job {summary['jobid']} of {REGION}/{source} to s3://{BUCKET}/backups")
    return summary


# --- the 20,000-item backup: layout, restore-table, ImportTable -------------------------------------


def test_backup_writes_one_object_per_segment_and_the_manifest_beside_their_folder(db, backup):
    jobid = backup["jobid"]
    assert backup["complete"] and backup["items"] == ITEMS and backup["segments_run"] == list(range(SEGMENTS))
    assert backup["url"] == f"s3://{BUCKET}/backups/{jobid}"
    assert backup["manifest"] == f"s3://{BUCKET}/backups/{jobid}.manifest.json"
    # Under <jobid>/ (what ImportTable reads) only the segments; markers and manifest beside the folder.
    assert keys_under(db, f"backups/{jobid}/") == [f"backups/{jobid}/{s}" for s in range(SEGMENTS)]
    assert keys_under(db, "backups/") == sorted([
        *(f"backups/{jobid}/{s}" for s in range(SEGMENTS)),
        *(f"backups/{jobid}.segments/{s}.json" for s in range(SEGMENTS)),
        f"backups/{jobid}.manifest.json",
    ])
    manifest = json.loads(get(db, f"backups/{jobid}.manifest.json"))
    assert (manifest["table"], manifest["segments"], manifest["itemCount"]) == (f"{REGION}/source", SEGMENTS, ITEMS)
    assert (manifest["dataFormat"], manifest["compression"]) == ("DYNAMODB_JSON", "GZIP")
    assert manifest["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]
    found = 0
    for f in manifest["files"]:
        body = get(db, f"backups/{f['key']}")
        assert (f["bytes"], f["md5Checksum"]) == (len(body), base64.b64encode(hashlib.md5(body).digest()).decode())
        lines = gzip.decompress(body).splitlines()
        assert len(lines) == f["itemCount"] > 0  # 997 partition keys: every segment holds some
        assert all(list(json.loads(line)) == ["Item"] for line in lines[:50])
        found += len(lines)
    assert found == ITEMS


def test_restore_table_into_an_empty_table_equals_the_source(db, source, backup):
    create_table(db.client(REGION), "restored", None)
    started = time.monotonic()
    result = cli(db, "restore-table", f"s3://{BUCKET}/backups/{backup['jobid']}", f"{REGION}/restored", "--json")
    assert result.returncode == 0, result.stderr
    print(f"restore of {ITEMS:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)
    summary = last_json(result)
    assert (summary["restored"], summary["kind"], summary["segments"]) == (ITEMS, "backup-table", SEGMENTS)
    assert_equal(db, source, "restored", ITEMS)


def test_import_table_of_the_server_reads_the_backup_folder_into_an_equal_table(db, source, backup):
    """DynamoDB's own ImportTable, as `aws dynamodb import-table` runs it: the prefix ends with "/", so the
    markers (<jobid>.segments/) and the manifest, beside the folder, are not read as data. The table holds
    lines with empty maps and items near 400 KB, so this also proves the server reads import files as
    DynamoDB does. Run against moto's stock reader (py_partiql_parser's JsonParser) this import ended FAILED
    after 3 lines with "maximum recursion depth exceeded"; on 40 items of the same kinds that reader
    skipped every line holding an empty map (37) and, keeping JSON escapes undecoded, grew the 195 K "é"
    (written \\u00e9) to 1.2 MB, refused as too large."""
    jobid = backup["jobid"]
    manifest = json.loads(get(db, f"backups/{jobid}.manifest.json"))
    client = db.client(REGION)
    started = time.monotonic()
    arn = client.import_table(
        S3BucketSource={"S3Bucket": BUCKET, "S3KeyPrefix": f"backups/{jobid}/"},
        InputFormat="DYNAMODB_JSON", InputCompressionType="GZIP",
        TableCreationParameters={"TableName": "imported", "KeySchema": manifest["KeySchema"],
                                 "AttributeDefinitions": manifest["AttributeDefinitions"],
                                 "BillingMode": "PAY_PER_REQUEST"},
    )["ImportTableDescription"]["ImportArn"]
    deadline = time.monotonic() + 180
    while (described := client.describe_import(ImportArn=arn)["ImportTableDescription"])["ImportStatus"] == "IN_PROGRESS":
        assert time.monotonic() < deadline, described
        time.sleep(0.5)
    print(f"import of {ITEMS:,} items in {time.monotonic() - started:.1f} s", file=sys.stderr)
    assert described["ImportStatus"] == "COMPLETED", described
    assert (described["ImportedItemCount"], described["ErrorCount"]) == (ITEMS, 0), described
    assert_equal(db, source, "imported", ITEMS)


# --- a backup killed in the middle -------------------------------------------------------------------


def test_a_backup_killed_in_the_middle_leaves_no_manifest_and_restore_refuses_it_by_name(db, tmp_path):
    """kill -9 while segments are still to be read. All 2,500 items share one partition key, so one
    segment holds them all (a Scan segment is a range of partition key hashes) and the other three are
    empty: those finish at once and leave their markers, while the full one, at --read-units 1 (the
    server charges a unit per page), needs its 10 pages at one a second. Killing once a marker is there
    is therefore certainly in the middle: several seconds before the backup could finish."""
    client = db.client(REGION)
    create_table(client, "slow", None)
    put_all(client, "slow", [{"pk": {"S": "one"}, "sk": {"N": str(i)}, "v": {"S": "x" * 100}} for i in range(2500)])
    jobid = "killed"
    err = tmp_path / "backup.stderr"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [REPLICATOR, "backup-table", f"{REGION}/slow", f"s3://{BUCKET}/kill", "--segments", "4", "--jobid", jobid,
             "--read-units", "1", "--source-endpoint", db.endpoint, "--s3-endpoint", db.endpoint],
            stdout=subprocess.DEVNULL, stderr=stderr, env=dict(os.environ))
    try:
        started = time.monotonic()
        while not keys_under(db, f"kill/{jobid}.segments/"):
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() - started < 60, "no segment finished within 60 s"
            time.sleep(0.1)
        running = proc.poll() is None
        manifest_before = keys_under(db, f"kill/{jobid}.manifest.json")
        proc.kill()
    finally:
        proc.kill()
        proc.wait()
    assert running and manifest_before == [], "the backup finished before the kill"
    assert proc.returncode == -9
    assert keys_under(db, f"kill/{jobid}.manifest.json") == []
    # The full segment's object never appeared: at most the three empty ones did, each with its marker.
    segments = keys_under(db, f"kill/{jobid}/")
    assert 1 <= len(segments) <= 3 and len(keys_under(db, f"kill/{jobid}.segments/")) == len(segments)

    create_table(client, "from-killed", None)
    refused = cli(db, "restore-table", f"s3://{BUCKET}/kill/{jobid}", f"{REGION}/from-killed")
    one_error_line(refused, f"no complete backup at s3://{BUCKET}/kill/{jobid}",
                   f"s3://{BUCKET}/kill/{jobid}.manifest.json does not exist", "did not finish")
    assert client.scan(TableName="from-killed", Select="COUNT")["Count"] == 0


# --- a local directory, and bad input on the server's S3 -----------------------------------------


def test_a_directory_backup_round_trips_through_the_cli(db, tmp_path):
    items = fill(db, "small", 300, seed=7, partitions=30)  # with the 390 KB binary
    root = tmp_path / "bk"
    backed = cli(db, "backup-table", f"{REGION}/small", str(root), "--segments", "2", "--json")
    assert backed.returncode == 0, backed.stderr
    summary = last_json(backed)
    jobid = summary["jobid"]
    assert summary["complete"] and summary["items"] == len(items) and summary["url"] == f"{root}/{jobid}"
    assert sorted(p.name for p in (root / jobid).iterdir()) == ["0", "1"]
    assert (root / f"{jobid}.manifest.json").is_file()
    assert not list(root.rglob(".*partial*"))

    create_table(db.client(REGION), "small-restored", None)
    restored = cli(db, "restore-table", f"file://{root}/{jobid}", f"{REGION}/small-restored", "--json",
                   "--state-file", str(tmp_path / "restore.json"))
    assert restored.returncode == 0, restored.stderr
    assert last_json(restored)["restored"] == len(items)
    assert_equal(db, "small", "small-restored", len(items))


def test_a_missing_bucket_on_the_server_is_one_line_and_status_2(db):
    """Through the server's HTTP, where HeadBucket's 404 has no body (see server._never_empty)."""
    create_table(db.client(REGION), "nobucket", None)
    one_error_line(cli(db, "backup-table", f"{REGION}/nobucket", "s3://no-such-bucket/x"),
                   "bucket no-such-bucket does not exist at http://127.0.0.1:")
    one_error_line(cli(db, "restore-table", "s3://no-such-bucket/x/j", f"{REGION}/nobucket"),
                   "bucket no-such-bucket does not exist")
