"""restore-table: a backup's items (backup-table's, or a DynamoDB export's) written into a table.

It reads ``URL/<jobid>`` written by backup-table (see ``backup``), or a DynamoDB export to S3,
``.../AWSDynamoDB/<export id>``, through its ``manifest-files.json`` (a JSON line per data file under
``data/``, with the file's item count and MD5). Each segment or data file is read as a gzip stream, line by
line, and written in batches of 250 items through the daemon's writer (BatchWriteItem, several requests in
flight, retried until durable), rate-capped by ``--write-units`` as copy-table is.

The rules it keeps:

* Only a complete backup is restored. Its manifest must exist (a backup run that died wrote none), and
  every segment must exist with the size the manifest gives before anything is written. Each segment's
  MD5 and item count are checked as it is read: reading it twice would double the restore's reads, so a
  segment whose bytes are damaged (same size, other content) is found at its end, after its items were
  written; the restore then stops naming it, without marking it done.
* Keys must fit the table, checked before writing: the backup's key schema (from its manifest) against
  the table's, and the first item. Every item's key is checked as it is read too, so an item that does not
  fit stops the restore with its segment and line rather than with DynamoDB's ValidationException.
* A table that holds items is written into only with ``force``: a restore puts the backup's items over
  any of the same keys and leaves the others, which a restore should not do unasked.
* Resumable as copy-table is: after each batch is durable, the segment's count of lines written goes to a
  state file; ``--resume`` skips the segments done and, in the others, the lines already written (read
  again, not written). At most one batch per segment is written twice, and puts are idempotent.
* Memory stays flat whatever the backup's size: a segment is a stream, and a batch is 250 items.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicator import log
from replicator.changes.codec import Item, RecordFormatError, decode_item
from replicator.changes.writer import TableWriter
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.tables.backup import FORMAT, manifest_key
from replicator.tables.copy import (
    DEFAULT_PAGE_SIZE, MAX_SEGMENT_THREADS, CopyState, ProgressReporter, put_changes, rate_limit, run_segments,
)
from replicator.tables.spec import Table, check_item_key, key_schema_of, scan_pages, show_keys
from replicator.tables.store import HashingReader, Store, open_job

EXPORT_MANIFEST = "manifest-files.json"
EXPORT_SUMMARY = "manifest-summary.json"

_log = log.get("replicator.tables.restore")


@dataclass(frozen=True)
class BackupFile:
    """One segment of a backup, or one data file of an export, and what its manifest says of it."""

    name: str
    """How messages name it: ``segment 3``, or ``data file <name>.json.gz``."""
    key: str
    items: int | None
    size: int | None
    md5: str | None


@dataclass
class Backup:
    url: str
    kind: str
    """``backup-table`` or ``dynamodb-export``."""
    files: list[BackupFile]
    key_schema: list[tuple[str, str]] | None
    """Known from a backup-table manifest; an export's manifests do not give it."""

    @property
    def items(self) -> int:
        return sum(f.items or 0 for f in self.files)


class RestoreState(CopyState):
    """copy-table's state file, its positions counting the lines of each segment already written."""

    tool = "restore-table"
    work = "restore"


def default_state_path(name: str, destination: Table) -> Path:
    return Path(f".restore-table.{name}.{destination.spec.region}.{destination.name}.json")


# --- finding and checking a backup ---------------------------------------------------------------


def _json(store: Store, key: str, what: str) -> Any:
    try:
        return json.loads(store.read(key))
    except ValueError as exc:
        raise ReplicatorError(f"{store.url_of(key)} is not {what}: {exc}") from None


def find_backup(store: Store, name: str) -> Backup:
    """The backup at ``store/name`` from its manifest; one error when there is no complete one."""
    url = store.url_of(name)
    if store.exists(manifest_key(name)):
        return _our_backup(store, name)
    if store.exists(f"{name}/{EXPORT_MANIFEST}"):
        return _export(store, name)
    found = store.keys(name)
    why = (f"{len(found)} objects are there but not the manifest: the backup did not finish (or is still running)"
           if found else "nothing is there")
    raise ReplicatorError(f"no complete backup at {url}: {store.url_of(manifest_key(name))} does not exist, nor "
                          f"a DynamoDB export's {url}/{EXPORT_MANIFEST}; {why}")


def _our_backup(store: Store, name: str) -> Backup:
    key = manifest_key(name)
    manifest = _json(store, key, "a backup-table manifest")
    try:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
        files = [BackupFile(f"segment {f['segment']}", str(f["key"]), int(f["itemCount"]), int(f["bytes"]),
                            str(f["md5Checksum"])) for f in manifest["files"]]
        key_schema = key_schema_of(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReplicatorError(f"{store.url_of(key)} is not a backup-table manifest ({exc})") from None
    return Backup(store.url_of(name), "backup-table", files, key_schema)


def _export(store: Store, name: str) -> Backup:
    summary_key = f"{name}/{EXPORT_SUMMARY}"
    if store.exists(summary_key):
        summary = _json(store, summary_key, "a DynamoDB export summary")
        if summary.get("outputFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON" or summary.get("exportType") == "INCREMENTAL_EXPORT":
            raise ReplicatorError(
                f"{store.url_of(name)} is a {summary.get('exportType', 'FULL_EXPORT')} in "
                f"{summary.get('outputFormat')}: restore-table reads full exports in DYNAMODB_JSON")
    key = f"{name}/{EXPORT_MANIFEST}"
    files = []
    for number, line in enumerate(store.read(key).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            data_file = str(entry["dataFileS3Key"]).rsplit("/", 1)[-1]
            files.append(BackupFile(f"data file {data_file}", f"{name}/data/{data_file}", int(entry["itemCount"]), None,
                                    entry.get("md5Checksum")))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReplicatorError(f"{store.url_of(key)} line {number} is not a DynamoDB export manifest entry ({exc})") from None
    return Backup(store.url_of(name), "dynamodb-export", files, None)


def check_files(store: Store, backup: Backup) -> None:
    """Every file of the backup is there, with its manifest's size where the manifest gives one."""
    for f in backup.files:
        size = store.size(f.key)
        if size is None:
            raise ReplicatorError(f"{f.name} of the backup at {backup.url} is missing: {store.url_of(f.key)} does not exist")
        if f.size is not None and size != f.size:
            raise ReplicatorError(f"{f.name} of the backup at {backup.url} is damaged: {store.url_of(f.key)} has "
                                  f"{size} bytes, its manifest says {f.size}" + (" (truncated)" if size < f.size else ""))


def _items(stream: Any, f: BackupFile) -> Any:
    """(line number, item) of a gzip stream of export lines; a line that is not one is an error naming it."""
    number = 0
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as lines:
            for number, line in enumerate(lines, 1):
                try:
                    item = decode_item(json.loads(line)["Item"])
                except (ValueError, KeyError, TypeError, AttributeError, RecordFormatError) as exc:
                    raise ReplicatorError(f"{f.name} line {number} is not an item line {{\"Item\": ...}} ({exc})") from None
                yield number, item
    except (EOFError, OSError, zlib.error) as exc:
        raise ReplicatorError(f"{f.name} is damaged after line {number}: not a whole gzip stream ({exc})") from None


def _first_item(store: Store, backup: Backup) -> tuple[BackupFile, Item] | None:
    for f in backup.files:
        if f.items == 0:
            continue
        stream = store.open_read(f.key)
        try:
            for _, item in _items(stream, f):
                return f, item
        finally:
            stream.close()
    return None


def check_keys(store: Store, backup: Backup, destination: Table) -> None:
    """The backup's key schema (when its manifest has one) and its first item fit ``destination``."""
    if backup.key_schema is not None and backup.key_schema != destination.key_schema:
        raise ReplicatorError(
            f"the backup at {backup.url} has the key schema {show_keys(backup.key_schema)} but {destination.spec} "
            f"has {show_keys(destination.key_schema)}: restore it into a table with the backup's key schema")
    first = _first_item(store, backup)
    if first is not None:
        check_item_key(destination, first[1], f"{first[0].name} of {backup.url}, line 1")


def is_empty(table: Table) -> bool:
    page, _ = next(scan_pages(table, limit=1, keys_only=True, consistent=False))
    return not page


# --- the restore ---------------------------------------------------------------------------------


@dataclass
class RestoreResult:
    url: str
    kind: str
    restored: int
    """Items written by this run."""
    skipped: int
    """Lines a resumed run found already written and read past."""
    segments: int
    segments_run: list[int]
    seconds: float
    write_units: float
    resumed: bool
    state_file: str

    @property
    def items_per_s(self) -> float:
        return self.restored / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url, "kind": self.kind, "restored": self.restored, "skipped": self.skipped,
            "segments": self.segments, "segments_run": self.segments_run, "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items_per_s, 1), "write_units": self.write_units, "resumed": self.resumed,
            "state_file": self.state_file,
        }


def restore_table(
    url: str,
    destination: Table,
    *,
    s3_endpoint: str | None = None,
    write_units: float | None = None,
    max_in_flight: int = 8,
    resume: bool = False,
    force: bool = False,
    state_path: Path | None = None,
    batch_items: int = DEFAULT_PAGE_SIZE,
    readers: int = MAX_SEGMENT_THREADS,
    progress: bool | None = None,
    keep_state: bool = False,
) -> RestoreResult:
    """Restore the backup at ``url`` (``URL/<jobid>`` or an export's folder) into ``destination``; see the
    module docstring. ``readers`` is how many segments are read at once."""
    store, name = open_job(url, region=destination.spec.region, s3_endpoint=s3_endpoint)
    store.check()
    backup = find_backup(store, name)
    check_files(store, backup)
    check_keys(store, backup, destination)
    state_path = state_path or default_state_path(name, destination)
    # An interrupted restore's state file is answered first (by start_or_resume: pass --resume), since the
    # table it left is not empty either.
    if not (resume or force or state_path.exists()) and not is_empty(destination):
        raise ReplicatorError(f"{destination.spec} is not empty: a restore would mix the backup's items with the "
                              "table's; pass --force to write into it anyway")
    total = len(backup.files)
    state = RestoreState.start_or_resume(state_path, backup.url, str(destination.spec), resume=resume, segments=total,
                                         segment=None, default_segments=lambda: total)

    writes = rate_limit(write_units)
    writer = TableWriter(destination.client, destination.name, max_in_flight=max_in_flight,
                         before_request=writes.wait, on_consumed=writes.consume)
    already = sum(p.copied for p in state.positions.values())
    reporter = ProgressReporter(backup.items, already, tty=progress, label="restoring", event="restore_progress",
                                show_bytes=True)
    pending = [s for s, p in sorted(state.positions.items()) if not p.done]
    _log.info("restore_started", url=backup.url, kind=backup.kind, table=str(destination.spec), segments=total,
              segments_to_run=len(pending), resumed=resume, state_file=str(state_path))
    counts = {"restored": 0, "skipped": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def write(s: int, items: list[Item]) -> None:
        try:
            writer.write(put_changes(destination, items))
        except NonRetryableWriteError as exc:
            raise ReplicatorError(f"{backup.files[s].name}: {destination.spec} refused a write: {exc}") from None
        position = state.positions[s]
        position.copied += len(items)
        state.save()
        with lock:
            counts["restored"] += len(items)

    def run_file(s: int) -> None:
        f, position = backup.files[s], state.positions[s]
        skip = position.copied
        stream = HashingReader(store.open_read(f.key))
        batch: list[Item] = []
        read = lines = 0
        try:
            for lines, item in _items(stream, f):
                if lines <= skip:
                    continue
                check_item_key(destination, item, f"{f.name} of {backup.url}, line {lines}")
                batch.append(item)
                if len(batch) >= batch_items:
                    write(s, batch)
                    reporter.advance(len(batch), stream.size - read)
                    read, batch = stream.size, []
                    if stop.is_set():
                        return
            stream.drain()
        finally:
            stream.close()
        if batch:
            write(s, batch)
        reporter.advance(len(batch), stream.size - read)
        with lock:
            counts["skipped"] += min(skip, lines)
        _verify(f, backup.url, lines, stream)
        position.done = True
        state.save()

    started = time.monotonic()
    try:
        run_segments(pending, run_file, stop, name="restore-segment", max_threads=readers)
    finally:
        reporter.close()
        writer.close()
    if not keep_state:
        state_path.unlink(missing_ok=True)
    result = RestoreResult(url=backup.url, kind=backup.kind, restored=counts["restored"], skipped=counts["skipped"],
                           segments=total, segments_run=pending, seconds=time.monotonic() - started,
                           write_units=writes.consumed, resumed=resume, state_file=str(state_path))
    _log.info("restore_finished", **result.as_json())
    return result


def _verify(f: BackupFile, url: str, lines: int, stream: HashingReader) -> None:
    """The segment read whole is the one its manifest describes: item count, size and MD5."""
    problems = []
    if f.items is not None and lines != f.items:
        problems.append(f"{lines} items where its manifest says {f.items}")
    if f.size is not None and stream.size != f.size:
        problems.append(f"{stream.size} bytes where its manifest says {f.size}")
    if f.md5 is not None and stream.md5 != f.md5:
        problems.append(f"MD5 {stream.md5} where its manifest says {f.md5}")
    if problems:
        raise ReplicatorError(f"{f.name} of the backup at {url} is damaged: " + "; ".join(problems))
