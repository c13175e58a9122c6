"""backup-table and restore-table on moto (in process): layout, format, refusals, resume, DynamoDB exports, CLI."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws
from structlog.testing import capture_logs

from replicator.changes.codec import decode_item, encode_item
from replicator.changes.writer import TableWriter
from replicator.cli.tools import backup_table_command, restore_table_command
from replicator.errors import ReplicatorError
from replicator.local.workload import create_table, every_type_item
from replicator.tables import backup as backup_module
from replicator.tables import store as store_module
from replicator.tables.backup import backup_table
from replicator.tables.compare import compare_tables
from replicator.tables.copy import ProgressReporter
from replicator.tables.restore import restore_table
from replicator.tables.spec import open_table
from replicator.tables.store import open_store
from unit_helpers import VENV_BIN, endpoint_client, unique_table

REGION = "us-east-1"
BUCKET = "backups"
ITEMS = 40


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """src (40 items of every attribute type), empty dst with the same keys, other (another key schema), a bucket.

    The working directory is a temporary one, so restore's default state files land there."""
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        for name in ("src", "dst"):
            create_table(client, name, None)
        client.create_table(TableName="other", KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
        rng = random.Random(11)
        items = [every_type_item(f"p{i % 7}", i, rng, 1) for i in range(ITEMS)]
        for start in range(0, ITEMS, 25):
            client.batch_write_item(RequestItems={"src": [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]})
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        yield client, s3


def table(name: str) -> Any:
    return open_table(f"{REGION}/{name}", None)


def equal(client: Any, a: str = "src", b: str = "dst") -> bool:
    diff = compare_tables(client, a, client, b)
    return diff.scanned == ITEMS and diff.discrepancies == 0


def count(client: Any, name: str) -> int:
    return len(client.scan(TableName=name, ConsistentRead=True)["Items"])


def keys_under(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def get(s3: Any, key: str) -> bytes:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()


def put(s3: Any, key: str, body: bytes) -> None:
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def back_up(url: str = f"s3://{BUCKET}/nightly", **kwargs: Any) -> backup_module.BackupResult:
    return backup_table(table("src"), url, progress=False, **{"segments": 3, **kwargs})


def restore(url: str, into: str = "dst", **kwargs: Any) -> Any:
    return restore_table(url, table(into), progress=False, **kwargs)


# --- round trips, layout and format --------------------------------------------------------------


def test_round_trip_through_s3_keeps_every_attribute_type_and_lays_segments_out_for_import_table(aws):
    client, s3 = aws
    result = back_up()
    assert result.complete and result.items == ITEMS and result.segments_run == [0, 1, 2]
    jobid = result.jobid
    assert len(jobid) == 32 and result.url == f"s3://{BUCKET}/nightly/{jobid}"
    # Only the segments under <jobid>/ (ImportTable reads every object there); the manifest beside the folder.
    assert keys_under(s3, f"nightly/{jobid}/") == [f"nightly/{jobid}/{s}" for s in range(3)]
    assert result.manifest == f"s3://{BUCKET}/nightly/{jobid}.manifest.json"
    manifest = json.loads(get(s3, f"nightly/{jobid}.manifest.json"))
    assert manifest["table"] == "us-east-1/src" and manifest["segments"] == 3 and manifest["itemCount"] == ITEMS
    assert [a["AttributeName"] for a in manifest["KeySchema"]] == ["pk", "sk"]
    for f in manifest["files"]:
        body = get(s3, f"nightly/{f['key']}")
        assert f["bytes"] == len(body)
        assert f["md5Checksum"] == base64.b64encode(hashlib.md5(body).digest()).decode()
        assert f["itemCount"] == len(gzip.decompress(body).splitlines())
    assert sum(f["itemCount"] for f in manifest["files"]) == ITEMS

    restored = restore(f"s3://{BUCKET}/nightly/{jobid}")
    assert restored.restored == ITEMS and restored.kind == "backup-table"
    assert equal(client)


def test_segment_lines_are_dynamodb_json_items_with_base64_binary(aws):
    client, s3 = aws
    result = back_up(segments=1)
    lines = gzip.decompress(get(s3, f"nightly/{result.jobid}/0")).decode("utf-8").splitlines()
    assert len(lines) == ITEMS
    by_key = {(i["pk"]["S"], i["sk"]["N"]): i for i in client.scan(TableName="src")["Items"]}
    for line in lines:
        record = json.loads(line)
        assert list(record) == ["Item"]
        item = record["Item"]
        assert set(item["n38"]) == {"N"} and isinstance(item["n38"]["N"], str)
        original = by_key[(item["pk"]["S"], item["sk"]["N"])]
        assert item["b"] == {"B": base64.b64encode(original["b"]["B"]).decode()}
        assert decode_item(item) == original


def test_round_trip_through_a_directory_and_a_file_url(aws, tmp_path):
    client, _ = aws
    result = back_up(str(tmp_path / "bk"), jobid="monday")
    root = tmp_path / "bk"
    assert sorted(p.name for p in (root / "monday").iterdir()) == ["0", "1", "2"]
    assert (root / "monday.manifest.json").is_file()
    assert not list(root.rglob(".*partial*"))
    restored = restore(f"file://{root}/monday")
    assert restored.restored == ITEMS and equal(client)


# --- incomplete and damaged backups --------------------------------------------------------------


def test_one_segment_per_run_writes_the_manifest_when_the_last_segment_finishes(aws):
    client, s3 = aws
    first = back_up(jobid="split", segments=2, segment=1)
    assert not first.complete and first.manifest is None
    assert keys_under(s3, "nightly/split.manifest.json") == []
    with pytest.raises(ReplicatorError, match=r"no complete backup at s3://backups/nightly/split: "
                                              r"s3://backups/nightly/split\.manifest\.json does not exist"):
        restore(f"s3://{BUCKET}/nightly/split")
    with pytest.raises(ReplicatorError, match="split .* in 2 segments, not of us-east-1/src in 3"):
        back_up(jobid="split", segments=3, segment=0)
    second = back_up(jobid="split", segments=2, segment=0)
    assert second.complete and first.items + second.items == ITEMS
    restore(f"s3://{BUCKET}/nightly/split")
    assert equal(client)


def test_a_backup_that_dies_leaves_no_manifest_and_is_refused(aws, monkeypatch):
    client, s3 = aws
    real = backup_module.scan_pages

    def dies_in_segment_2(table: Any, **kwargs: Any) -> Any:
        for n, page in enumerate(real(table, **kwargs)):
            if kwargs["segment"] == 2 and n == 1:
                raise RuntimeError("machine lost")
            yield page

    monkeypatch.setattr(backup_module, "scan_pages", dies_in_segment_2)
    with pytest.raises(RuntimeError, match="machine lost"):
        back_up(jobid="dead", page_size=3)
    assert keys_under(s3, "nightly/dead.manifest.json") == []
    assert "nightly/dead/2" not in keys_under(s3, "nightly/dead/")  # an object appears whole or not at all
    with pytest.raises(ReplicatorError, match="no complete backup at .*dead.*did not finish"):
        restore(f"s3://{BUCKET}/nightly/dead")
    assert count(client, "dst") == 0


def test_a_missing_segment_is_refused_by_name_before_any_write(aws):
    client, s3 = aws
    result = back_up()
    s3.delete_object(Bucket=BUCKET, Key=f"nightly/{result.jobid}/1")
    with pytest.raises(ReplicatorError, match=rf"segment 1 of the backup at .* is missing: .*{result.jobid}/1 does not exist"):
        restore(result.url)
    assert count(client, "dst") == 0


def test_a_truncated_segment_is_refused_by_name_before_any_write(aws, tmp_path):
    client, _ = aws
    result = back_up(str(tmp_path / "bk"))
    segment = tmp_path / "bk" / result.jobid / "2"
    segment.write_bytes(segment.read_bytes()[:-10])
    with pytest.raises(ReplicatorError, match=r"segment 2 of the backup at .* is damaged: .* bytes, its manifest says .* \(truncated\)"):
        restore(result.url)
    assert count(client, "dst") == 0


def test_a_segment_whose_checksum_differs_is_refused_by_name(aws):
    _, s3 = aws
    result = back_up(segments=2)
    key = f"nightly/{result.jobid}.manifest.json"
    manifest = json.loads(get(s3, key))
    manifest["files"][1]["md5Checksum"] = base64.b64encode(b"\0" * 16).decode()
    put(s3, key, json.dumps(manifest).encode())
    with pytest.raises(ReplicatorError, match=r"segment 1 of the backup at .* is damaged: MD5 .* where its manifest says AAAA"):
        restore(result.url)


def test_nothing_at_the_url_is_no_backup(aws):
    with pytest.raises(ReplicatorError, match=r"no complete backup at s3://backups/nowhere/x: .*nothing is there"):
        restore(f"s3://{BUCKET}/nowhere/x")


# --- jobids, destinations, keys ------------------------------------------------------------------


def test_a_used_jobid_is_refused_unless_overwrite(aws):
    client, s3 = aws
    back_up(jobid="daily")
    with pytest.raises(ReplicatorError, match="jobid daily already holds a complete backup at s3://backups/nightly/daily: "
                                              "pass --overwrite"):
        back_up(jobid="daily")
    client.put_item(TableName="src", Item={"pk": {"S": "new"}, "sk": {"N": "1000"}})
    again = back_up(jobid="daily", segments=2, overwrite=True)
    assert again.complete and again.items == ITEMS + 1
    # The old segment 2 went with the old backup: the new one has only its own two.
    assert keys_under(s3, "nightly/daily/") == ["nightly/daily/0", "nightly/daily/1"]
    assert json.loads(get(s3, "nightly/daily.manifest.json"))["itemCount"] == ITEMS + 1


def test_a_jobid_holding_an_unfinished_backup_is_refused_too(aws, tmp_path):
    (tmp_path / "bk" / "half").mkdir(parents=True)
    (tmp_path / "bk" / "half" / "0").write_bytes(b"")
    with pytest.raises(ReplicatorError, match="jobid half already holds 1 objects of an unfinished backup"):
        back_up(str(tmp_path / "bk"), jobid="half")


def test_restoring_into_a_table_with_items_needs_force(aws):
    client, _ = aws
    result = back_up()
    client.put_item(TableName="dst", Item={"pk": {"S": "mine"}, "sk": {"N": "1"}})
    with pytest.raises(ReplicatorError, match="us-east-1/dst is not empty: .* pass --force"):
        restore(result.url)
    assert count(client, "dst") == 1
    assert restore(result.url, force=True).restored == ITEMS
    assert count(client, "dst") == ITEMS + 1


def test_a_table_with_another_key_schema_is_one_clear_error(aws):
    client, _ = aws
    result = back_up()
    with pytest.raises(ReplicatorError, match=r"has the key schema \[pk S, sk N\] but us-east-1/other has \[id S\]"):
        restore(result.url, into="other")
    assert count(client, "other") == 0


# --- resume --------------------------------------------------------------------------------------


def test_resume_skips_the_segments_and_lines_already_written(aws, monkeypatch):
    client, s3 = aws
    result = back_up()
    sizes = [f["itemCount"] for f in json.loads(get(s3, f"nightly/{result.jobid}.manifest.json"))["files"]]
    batch = 3
    assert sizes[1] > batch
    real_write = TableWriter.write
    durable = {"items": 0}

    def ctrl_c_in_segment_1(self: TableWriter, changes: Any) -> Any:
        # One segment at a time (readers=1): segment 0 whole, then one batch of segment 1, then Ctrl-C.
        if durable["items"] >= sizes[0] + batch:
            raise KeyboardInterrupt
        stats = real_write(self, changes)
        durable["items"] += len(changes)
        return stats

    monkeypatch.setattr(TableWriter, "write", ctrl_c_in_segment_1)
    with pytest.raises(KeyboardInterrupt):
        restore(result.url, readers=1, batch_items=batch)
    assert count(client, "dst") == sizes[0] + batch
    state_file = Path(f".restore-table.{result.jobid}.us-east-1.dst.json")
    assert state_file.exists()
    monkeypatch.setattr(TableWriter, "write", real_write)
    with pytest.raises(ReplicatorError, match="state file .* from an earlier restore exists: pass --resume"):
        restore(result.url)
    for item in client.scan(TableName="dst")["Items"]:  # emptied, so the table shows what the resumed run writes
        client.delete_item(TableName="dst", Key={"pk": item["pk"], "sk": item["sk"]})

    resumed = restore(result.url, resume=True, batch_items=batch)
    assert resumed.segments_run == [1, 2] and resumed.skipped == batch
    assert resumed.restored == ITEMS - sizes[0] - batch == count(client, "dst")
    assert not state_file.exists()


# --- DynamoDB exports ----------------------------------------------------------------------------


def write_export(s3: Any, export: str, files: dict[str, list[dict[str, Any]]]) -> None:
    """A DynamoDB export's layout: manifest-summary.json, manifest-files.json, data/*.json.gz, _started."""
    entries = []
    for name, items in files.items():
        body = gzip.compress("".join(json.dumps({"Item": encode_item(i)}) + "\n" for i in items).encode())
        key = f"{export}/data/{name}"
        put(s3, key, body)
        entries.append({"itemCount": len(items), "md5Checksum": base64.b64encode(hashlib.md5(body).digest()).decode(),
                        "etag": hashlib.md5(body).hexdigest(), "dataFileS3Key": key})
    put(s3, f"{export}/_started", b"")
    put(s3, f"{export}/manifest-files.json", "".join(json.dumps(e) + "\n" for e in entries).encode())
    put(s3, f"{export}/manifest-summary.json", json.dumps({
        "version": "2020-06-30", "exportType": "FULL_EXPORT", "outputFormat": "DYNAMODB_JSON",
        "itemCount": sum(len(i) for i in files.values()), "manifestFilesS3Key": f"{export}/manifest-files.json",
    }).encode())


def test_restore_from_a_dynamodb_export_layout(aws):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    export = "exports/AWSDynamoDB/01700000000000-abcdef12"
    write_export(s3, export, {"aaa.json.gz": items[:25], "bbb.json.gz": items[25:], "empty.json.gz": []})
    result = restore(f"s3://{BUCKET}/{export}/")
    assert result.kind == "dynamodb-export" and result.restored == ITEMS and result.segments == 3
    assert equal(client)


def test_an_export_is_checked_by_data_file_and_key_schema(aws):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    export = "exports/AWSDynamoDB/01700000000001-00000000"
    write_export(s3, export, {"aaa.json.gz": items[:20], "bbb.json.gz": items[20:]})
    # Exports say nothing of keys: the first item is checked against the table before anything is written.
    with pytest.raises(ReplicatorError, match=r"data file aaa.json.gz of .*, line 1: the item does not fit the key "
                                              r"schema of us-east-1/other \[id S\]: key attribute 'id' must be S"):
        restore(f"s3://{BUCKET}/{export}", into="other")
    assert count(client, "other") == 0
    put(s3, f"{export}/data/bbb.json.gz", gzip.compress(b'{"Item": {"pk": {"S": "x"}, "sk": {"N": "1"}}}\n'))
    with pytest.raises(ReplicatorError, match="data file bbb.json.gz of the backup at .* is damaged: 1 items where its "
                                              "manifest says 20; .*MD5"):
        restore(f"s3://{BUCKET}/{export}")


# --- the store -----------------------------------------------------------------------------------


def test_s3_objects_stream_in_parts_and_appear_only_whole(aws, monkeypatch):
    _, s3 = aws
    monkeypatch.setattr(store_module, "PART_BYTES", 5 * 1024 * 1024)  # S3's smallest part
    store = open_store(f"s3://{BUCKET}/raw", region=REGION)
    data = os.urandom(11 * 1024 * 1024 + 7)
    writer = store.open_write("big")
    for start in range(0, len(data), 1 << 20):
        writer.write(data[start : start + (1 << 20)])
    assert store.size("big") is None  # parts uploaded, nothing visible until commit
    written = writer.commit()
    assert written.size == len(data) and get(s3, "raw/big") == data
    assert written.md5 == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert s3.head_object(Bucket=BUCKET, Key="raw/big")["ETag"].endswith('-3"')  # 5 + 5 + 1 MiB
    aborted = store.open_write("gone")
    aborted.write(data)
    aborted.abort()
    assert store.size("gone") is None
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_local_object_appears_only_at_commit(tmp_path):
    store = open_store(f"file://{tmp_path}", region=REGION)
    writer = store.open_write("job/0")
    writer.write(b"abc")
    assert store.size("job/0") is None
    writer.commit()
    assert (tmp_path / "job" / "0").read_bytes() == b"abc" and store.keys("job") == ["job/0"]
    aborted = store.open_write("job/1")
    aborted.write(b"x")
    aborted.abort()
    assert store.keys("job") == ["job/0"]


def test_progress_counts_bytes_for_backups():
    reporter = ProgressReporter(10, 0, tty=False, interval_s=0.0, event="backup_progress", show_bytes=True)
    with capture_logs() as logs:
        reporter.advance(4, 1000)
    reporter.close()
    (event,) = [e for e in logs if e["event"] == "backup_progress"]
    assert event["items"] == 4 and event["bytes"] == 1000


# --- the command line ----------------------------------------------------------------------------


def one_error_line(result: Any, expected: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("replicator: error: ") and expected in lines[0], result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_cli_backup_and_restore_with_json(aws, tmp_path):
    client, _ = aws
    runner = CliRunner()
    backed = runner.invoke(backup_table_command, ["us-east-1/src", f"s3://{BUCKET}/cli", "--segments", "2", "--json"])
    assert backed.exit_code == 0, backed.output + backed.stderr
    payload = json.loads(backed.stdout.strip().splitlines()[-1])
    assert payload["complete"] and payload["items"] == ITEMS and f"Backup job {payload['jobid']}" in backed.stdout
    restored = runner.invoke(restore_table_command, [f"s3://{BUCKET}/cli/{payload['jobid']}", "us-east-1/dst", "--json"])
    assert restored.exit_code == 0, restored.output + restored.stderr
    assert json.loads(restored.stdout.strip().splitlines()[-1])["restored"] == ITEMS
    assert equal(client)


@pytest.mark.parametrize("args, expected", [
    (["us-east-1/nope", f"s3://{BUCKET}/x"], "us-east-1/nope"),
    (["us-east-1/src", "ftp://host/x"], "is not a backup location"),
    (["us-east-1/src", "s3://no-such-bucket/x"], "bucket no-such-bucket does not exist"),
    (["us-east-1/src", f"s3://{BUCKET}/x", "--jobid", "../up"], "--jobid '../up'"),
    (["us-east-1/src", f"s3://{BUCKET}/x", "--segment", "3", "--segments", "2"], "--segment 3 is out of range"),
])
def test_cli_backup_bad_input_is_one_line_and_status_2(aws, args, expected):
    one_error_line(CliRunner().invoke(backup_table_command, args), expected)


def test_cli_backup_used_jobid_is_one_line_and_status_2(aws):
    runner = CliRunner()
    assert runner.invoke(backup_table_command, ["us-east-1/src", f"s3://{BUCKET}/x", "--jobid", "j1"]).exit_code == 0
    one_error_line(runner.invoke(backup_table_command, ["us-east-1/src", f"s3://{BUCKET}/x", "--jobid", "j1"]),
                   "jobid j1 already holds a complete backup")


@pytest.mark.parametrize("args, expected", [
    ([f"s3://{BUCKET}/x/none", "us-east-1/dst"], "no complete backup at s3://backups/x/none"),
    ([f"s3://{BUCKET}", "us-east-1/dst"], "names no backup"),
    (["s3://no-such-bucket/x/j", "us-east-1/dst"], "bucket no-such-bucket does not exist"),
    ([f"s3://{BUCKET}/x/j", "us-east-1/nope"], "us-east-1/nope"),
    (["gopher://x/y", "us-east-1/dst"], "is not a backup location"),
])
def test_cli_restore_bad_input_is_one_line_and_status_2(aws, args, expected):
    one_error_line(CliRunner().invoke(restore_table_command, args), expected)


def test_the_local_server_starts_responses_without_a_body():
    """moto answers a HEAD (S3's HeadObject, HeadBucket: how backups check objects) with no chunks at all, which
    hypercorn would turn into a 500; the local server's middleware hands it one empty chunk."""
    from replicator.local.server import SerialisedRequests

    closed = []

    class NoChunks(list):
        def close(self) -> None:
            closed.append(True)

    def head(environ: dict[str, Any], start_response: Any) -> Any:
        start_response("200 OK", [("Content-Length", "3")])
        return NoChunks()

    app = SerialisedRequests(head)
    assert list(app({"REQUEST_METHOD": "HEAD"}, lambda *a: None)) == [b""] and closed == [True]
    assert list(SerialisedRequests(lambda e, s: [b"a", b"b"])({}, lambda *a: None)) == [b"a", b"b"]


# --- hardening (issue 17) ------------------------------------------------------------------------


def interrupt_after(monkeypatch: pytest.MonkeyPatch, items: int) -> Any:
    """TableWriter.write raises KeyboardInterrupt once ``items`` are durable; returns the real write."""
    real_write = TableWriter.write
    durable = {"items": 0}

    def write(self: TableWriter, changes: Any) -> Any:
        if durable["items"] >= items:
            raise KeyboardInterrupt
        stats = real_write(self, changes)
        durable["items"] += len(changes)
        return stats

    monkeypatch.setattr(TableWriter, "write", write)
    return real_write


def test_resume_against_a_backup_replaced_under_the_same_jobid_is_refused(aws, monkeypatch):
    """A resume skips, in each segment, the lines its state file counts as written: against another backup
    under the same jobid that would keep the old backup's items and skip the new one's."""
    client, _ = aws
    back_up(jobid="nightly")
    real_write = interrupt_after(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        restore(f"s3://{BUCKET}/nightly/nightly", readers=1, batch_items=3)
    monkeypatch.setattr(TableWriter, "write", real_write)
    written = count(client, "dst")
    state_file = Path(".restore-table.nightly.us-east-1.dst.json")
    before = state_file.read_bytes()
    client.put_item(TableName="src", Item={"pk": {"S": "new"}, "sk": {"N": "1000"}})
    back_up(jobid="nightly", overwrite=True)
    with pytest.raises(ReplicatorError, match=r"state file .* is of another backup than the one at "
                                              r"s3://backups/nightly/nightly now \(the backup under that name was "
                                              r"replaced since, e.g. by backup-table --overwrite\): resuming would mix"):
        restore(f"s3://{BUCKET}/nightly/nightly", resume=True)
    assert count(client, "dst") == written and state_file.read_bytes() == before
    # The same backup resumes as before.
    state_file.unlink()
    restore(f"s3://{BUCKET}/nightly/nightly", force=True)
    assert count(client, "dst") == ITEMS + 1


def edit_manifest(root: Path, jobid: str, change: Any) -> None:
    path = root / f"{jobid}.manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, expected", [
    (lambda m: m.update(files=m["files"][:2]), r"it lists segments 0, 1 of 3 \(missing 2, each once\)"),
    (lambda m: m.update(files=[]), r"it lists segments none of 3 \(missing 0, 1, 2, each once\)"),
    (lambda m: m.update(files=[*m["files"], m["files"][0]]), r"it lists segments 0, 0, 1, 2 of 3 \(missing none, each once\)"),
    (lambda m: m.update(itemCount=m["itemCount"] + 1), rf"its segments hold {ITEMS} items but its itemCount is {ITEMS + 1}"),
    (lambda m: m["files"][0].update(key="../other/0"), r"segment 0 is '\.\./other/0', outside the backup's folder"),
    (lambda m: m["files"][0].update(key="other/0"), r"segment 0 is 'other/0', outside the backup's folder"),
    (lambda m: m["files"][0].update(key="job/../other/0"), r"segment 0 is 'job/\.\./other/0', outside"),
])
def test_a_manifest_that_does_not_account_for_every_segment_is_refused_before_any_write(aws, tmp_path, change, expected):
    client, _ = aws
    root = tmp_path / "bk"
    back_up(str(root), jobid="other")
    back_up(str(root), jobid="job")
    edit_manifest(root, "job", change)
    with pytest.raises(ReplicatorError, match=rf"{root}/job\.manifest\.json is damaged: {expected}"):
        restore(str(root / "job"))
    assert count(client, "dst") == 0 and not list(tmp_path.glob(".restore-table*"))


def test_export_data_files_are_found_by_their_whole_key_inside_the_export(aws):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    export = "exports/AWSDynamoDB/01700000000002-00000000"
    write_export(s3, export, {"a.json.gz": items[:25], "sub/b.json.gz": items[25:]})
    assert restore(f"s3://{BUCKET}/{export}").restored == ITEMS and equal(client)


def edit_export(s3: Any, export: str, key: str, change: Any) -> None:
    if key == "manifest-files.json":
        entries = [json.loads(line) for line in get(s3, f"{export}/{key}").splitlines()]
        change(entries)
        put(s3, f"{export}/{key}", "".join(json.dumps(e) + "\n" for e in entries).encode())
    else:
        summary = json.loads(get(s3, f"{export}/{key}"))
        change(summary)
        put(s3, f"{export}/{key}", json.dumps(summary).encode())


@pytest.mark.parametrize("key, change, expected", [
    ("manifest-files.json", lambda e: e.pop(), r"manifest-files\.json is damaged: its data files hold 20 items but "
                                               r"manifest-summary\.json says 40"),
    ("manifest-files.json", lambda e: e.clear(), r"its data files hold 0 items but manifest-summary\.json says 40"),
    ("manifest-files.json", lambda e: e[0].update(dataFileS3Key="exports/AWSDynamoDB/other/data/a.json.gz"),
     r"line 1 is damaged: dataFileS3Key 'exports/AWSDynamoDB/other/data/a\.json\.gz' is outside the export's folder"),
    ("manifest-files.json", lambda e: e[0].update(dataFileS3Key=f"{EXPORT}/data/../../other/data/a.json.gz"),
     r"line 1 is damaged: dataFileS3Key .* is outside the export's folder"),
    ("manifest-summary.json", lambda s: s.update(exportType="INCREMENTAL_EXPORT"),
     r"restore-table reads DynamoDB JSON full exports only: .* is an incremental export \(INCREMENTAL_EXPORT\)"),
    ("manifest-summary.json", lambda s: s.update(outputFormat="ION"),
     r"restore-table reads DynamoDB JSON full exports only: .* is an export in ION"),
])
def test_an_export_whose_manifests_do_not_add_up_is_refused_before_any_write(aws, key, change, expected):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    write_export(s3, EXPORT, {"a.json.gz": items[:20], "b.json.gz": items[20:]})
    edit_export(s3, EXPORT, key, change)
    with pytest.raises(ReplicatorError, match=expected):
        restore(f"s3://{BUCKET}/{EXPORT}")
    assert count(client, "dst") == 0


EXPORT = "exports/AWSDynamoDB/01700000000003-00000000"


def mapbox_segment(items: list[dict[str, Any]]) -> bytes:
    """A segment as mapbox's backup-table writes it: gzip, Dyno.serialize of each item (bare DynamoDB JSON,
    binary as base64), a newline after each."""
    return gzip.compress("".join(json.dumps(encode_item(i), separators=(",", ":")) + "\n" for i in items).encode())


def test_restore_reads_a_backup_of_mapboxs_backup_table(aws):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    put(s3, "mapbox/my-job-id/0", mapbox_segment(items[:15]))
    put(s3, "mapbox/my-job-id/1", mapbox_segment(items[15:]))
    put(s3, "mapbox/my-job-id/2", mapbox_segment([]))
    assert json.loads(gzip.decompress(get(s3, "mapbox/my-job-id/0")).splitlines()[0])["b"]["B"]  # base64 text
    result = restore(f"s3://{BUCKET}/mapbox/my-job-id")
    assert (result.kind, result.restored, result.segments) == ("mapbox-backup", ITEMS, 3)
    assert equal(client)
    # Its key schema comes from the destination table: a table with other keys is refused before any write.
    with pytest.raises(ReplicatorError, match=r"segment 0 of .*, line 1: the item does not fit the key schema of "
                                              r"us-east-1/other"):
        restore(f"s3://{BUCKET}/mapbox/my-job-id", into="other")
    assert count(client, "other") == 0


def test_a_mapbox_backup_with_a_gap_in_its_segments_is_refused(aws):
    client, s3 = aws
    items = client.scan(TableName="src")["Items"]
    put(s3, "mapbox/gap/0", mapbox_segment(items[:15]))
    put(s3, "mapbox/gap/2", mapbox_segment(items[15:]))
    with pytest.raises(ReplicatorError, match=r"the mapbox backup at s3://backups/mapbox/gap lacks segments 1 of 0 to 2"):
        restore(f"s3://{BUCKET}/mapbox/gap")
    assert count(client, "dst") == 0


@pytest.mark.parametrize("url, expected", [
    ("exports", rf"s3://backups/exports holds 1 DynamoDB exports, not one: give an export's folder, s3://backups/{EXPORT}$"),
    ("exports/AWSDynamoDB", rf"holds 1 DynamoDB exports, not one: give an export's folder, s3://backups/{EXPORT}$"),
    (f"{EXPORT}/data", rf"s3://backups/{EXPORT}/data is inside the DynamoDB export at s3://backups/{EXPORT}: give that folder"),
    (f"{EXPORT}/manifest-files.json", rf"is a DynamoDB export's manifest, not a backup's folder: give the folder, "
                                      rf"s3://backups/{EXPORT}$"),
    ("nightly/nightly.manifest.json", r"is a backup's manifest: give the backup's folder, s3://backups/nightly/nightly$"),
    ("nightly", r"s3://backups/nightly holds 1 backups, not one: give a backup's folder URL/<jobid>, "
                r"s3://backups/nightly/nightly$"),
])
def test_a_url_one_level_off_names_the_folder_to_give(aws, url, expected):
    client, s3 = aws
    write_export(s3, EXPORT, {"a.json.gz": client.scan(TableName="src")["Items"]})
    back_up(jobid="nightly")
    with pytest.raises(ReplicatorError, match=expected):
        restore(f"s3://{BUCKET}/{url}")
    assert count(client, "dst") == 0


def test_backup_into_a_directory_it_cannot_write_is_refused_before_scanning(aws, monkeypatch):
    scans = []
    monkeypatch.setattr(backup_module, "scan_pages", lambda *a, **k: scans.append(1) or iter(()))
    with pytest.raises(ReplicatorError, match=r"cannot write into the directory /proc: .*; choose a directory you "
                                              r"can write, or fix its permissions"):
        back_up("/proc", jobid="j")
    assert scans == []
    one_error_line(CliRunner().invoke(backup_table_command, ["us-east-1/src", "/proc"]),
                   "cannot write into the directory /proc")


@pytest.mark.parametrize("place", ["/proc/state.json", "{tmp}/missing/state.json", "{tmp}"])
def test_a_state_file_that_cannot_be_written_is_refused_before_any_write(aws, tmp_path, place):
    from replicator.cli.tools import copy_table_command
    from replicator.tables.copy import copy_table

    client, _ = aws
    path = place.format(tmp=tmp_path)
    result = back_up(str(tmp_path / "bk"))
    with pytest.raises(ReplicatorError, match=rf"--state-file {path} (cannot be written|is a directory)"):
        restore(result.url, state_path=Path(path))
    with pytest.raises(ReplicatorError, match=rf"--state-file {path} (cannot be written|is a directory)"):
        copy_table(table("src"), table("dst"), state_path=Path(path), progress=False)
    assert count(client, "dst") == 0 and not (tmp_path / "missing").exists()
    for command, args in ((restore_table_command, [result.url, "us-east-1/dst"]),
                          (copy_table_command, ["us-east-1/src", "us-east-1/dst"])):
        ran = CliRunner().invoke(command, [*args, "--state-file", path])
        if Path(path).is_dir():  # click's own usage error (dir_okay=False), status 2 too
            assert ran.exit_code == 2 and "is a directory" in ran.stderr
        else:
            one_error_line(ran, f"--state-file {path} cannot be written")
    assert count(client, "dst") == 0


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_backups_markers_manifests_and_state_files_are_private_on_local_disk(aws, tmp_path, monkeypatch):
    previous = os.umask(0o022)
    try:
        private_files(tmp_path)
    finally:
        os.umask(previous)


def private_files(tmp_path: Path) -> None:
    from replicator.tables.copy import copy_table

    root = tmp_path / "bk"
    back_up(str(root), jobid="j")
    files = [p for p in root.rglob("*") if p.is_file()]
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    assert len(files) == 7 and len(folders) == 3  # 3 segments, 3 markers, the manifest; root, j/, j.segments/
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    assert {p.name: mode(p) for p in folders} == {p.name: 0o700 for p in folders}
    restore(str(root / "j"), keep_state=True)
    assert mode(Path(".restore-table.j.us-east-1.dst.json")) == 0o600
    copy_table(table("src"), table("dst"), state_path=tmp_path / "copy.json", keep_state=True,
               progress=False)
    assert mode(tmp_path / "copy.json") == 0o600


# --- SIGTERM, in a real process ------------------------------------------------------------------


def wait_for_progress(state_file: Path, proc: Any, timeout: float = 60) -> None:
    """Until the state file records a durable page (the job is under way), or the process ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if any(p["copied"] for p in json.loads(state_file.read_text())["positions"].values()):
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError("no progress within the timeout")


@pytest.mark.parametrize("command", ["restore-table", "copy-table"])
def test_sigterm_stops_copy_and_restore_as_ctrl_c_does_with_the_resume_hint(tmp_path, moto_endpoint, command):
    """SIGTERM (kill, a service manager) ends the job as Ctrl-C does: each segment stops after its page, the
    state file stays, the hint is printed, and the exit status is 143 (128 + SIGTERM) where Ctrl-C's is 130."""
    client = endpoint_client(moto_endpoint)
    total = 750
    src, dst = unique_table("sigterm-src"), unique_table("sigterm-dst")
    for name in (src, dst):
        create_table(client, name, None)
    for start in range(0, total, 25):
        client.batch_write_item(RequestItems={src: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "sk": {"N": str(i)},
                                                                             "v": {"S": "x" * 100}}}}
                                                    for i in range(start, start + 25)]})
    state_file = tmp_path / "state.json"
    if command == "restore-table":
        backup = backup_table(open_table(f"{REGION}/{src}", moto_endpoint), str(tmp_path / "bk"), segments=1,
                              progress=False)
        # Three batches of 250 items, 2.5 s each at 100 units a second (moto charges a unit an item).
        args = [backup.url, f"{REGION}/{dst}", "--write-units", "100", "--in-flight", "1"]
    else:
        args = [f"{REGION}/{src}", f"{REGION}/{dst}", "--segments", "1", "--page-size", "10", "--read-units", "2",
                "--source-endpoint", moto_endpoint]
    proc = subprocess.Popen([str(VENV_BIN / "replicator"), command, *args, "--destination-endpoint", moto_endpoint,
                             "--state-file", str(state_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        wait_for_progress(state_file, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 143, stderr
    assert "replicator: interrupted: run the same command with --resume to continue" in stderr
    assert "Traceback" not in stderr and state_file.exists()
    assert 0 < client.scan(TableName=dst, Select="COUNT")["Count"] < total
