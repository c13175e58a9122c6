"""restore-table: a backup's items (backup-table's, a DynamoDB export's, mapbox's) written into a table.

It reads ``URL/<jobid>`` written by backup-table (see ``backup``); a DynamoDB JSON full export to S3,
``.../AWSDynamoDB/<export id>``, through its ``manifest-files.json`` (a JSON line per data file, with the
file's whole key in the bucket, item count and MD5); or ``prefix/<jobid>`` written by mapbox's
dynamodb-replicator ``backup-table`` (``<jobid>/<segment>``, gzip, one bare DynamoDB JSON item per line,
no manifest), since teams moving off that tool hold such backups. Each segment or data file is read as a
gzip stream, line by line, and written in batches of 250 items through the daemon's writer
(BatchWriteItem, several requests in flight, retried until durable), rate-capped by ``--write-units`` as
copy-table is.

The rules it keeps:

* Only a complete backup is restored. Its manifest must exist (a backup run that died wrote none), must
  list every segment 0 to N-1 once, with counts adding up to its itemCount and keys inside the backup's
  own folder (an export's likewise, against its summary), and every segment must exist with the size the
  manifest gives, all before anything is written. A URL one level off (a manifest file, a folder inside
  an export, a prefix holding several backups or exports) is refused naming the folder to give. Each
  segment's MD5 and item count are checked as it is read: reading it twice would double the restore's
  reads, so a segment whose bytes are damaged (same size, other content) is found at its end, after its
  items were written; the restore then stops naming it, without marking it done.
* Keys must fit the table, checked before writing: the backup's key schema (from its manifest) against
  the table's, and the first item. Every item's key is checked as it is read too, so an item that does not
  fit stops the restore with its segment and line rather than with DynamoDB's ValidationException.
* A table that holds items is written into only with ``force``: a restore puts the backup's items over
  any of the same keys and leaves the others, which a restore should not do unasked.
* Resumable as copy-table is: after each batch is durable, the segment's count of lines written goes to a
  state file; ``--resume`` skips the segments done and, in the others, the lines already written (read
  again, not written). At most one batch per segment is written twice, and puts are idempotent. The
  state file records a digest of the manifest (its time, each file's key, count, size and MD5), and a
  resume against another backup under the same name (``backup-table --overwrite``) is refused: skipping
  the old backup's line counts in the new one's segments would mix the two.
* Memory stays flat whatever the backup's size: a segment is a stream, and a batch is 250 items.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicator.credentials import DEFAULT, Credentials
from replicator import log
from replicator.changes.codec import Change, Item, RecordFormatError, decode_item
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.changes.writer import TableWriter
from replicator.errors import NonRetryableWriteError, ReplicatorError
from replicator.tables.backup import FORMAT, manifest_key
from replicator.tables.copy import (
    DEFAULT_PAGE_SIZE, MAX_SEGMENT_THREADS, CopyState, ProgressReporter, check_state_path, put_changes, rate_limit,
    run_segments,
)
from replicator.tables.spec import Table, check_item_key, key_schema_of, scan_pages, show_keys
from replicator.tables.store import HashingReader, S3Store, Store, open_job

EXPORT_MANIFEST = "manifest-files.json"
EXPORT_SUMMARY = "manifest-summary.json"
FULL_EXPORTS = "restore-table reads DynamoDB JSON full exports only"
_SEGMENT_NAME = re.compile(r"^(0|[1-9][0-9]*)$")

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
    bare: bool = False
    """Lines are bare items (mapbox's backup-table), not ``{"Item": ...}``."""


@dataclass
class Backup:
    url: str
    kind: str
    """``backup-table``, ``dynamodb-export`` or ``mapbox-backup``."""
    files: list[BackupFile]
    key_schema: list[tuple[str, str]] | None
    """Known from a backup-table manifest; an export's manifests and mapbox's backups do not give it."""
    identity: str = ""
    """A digest of what the manifest says (its time, each file's key, count, size and MD5): a resume
    against a backup replaced under the same name is refused by it."""

    @property
    def items(self) -> int:
        return sum(f.items or 0 for f in self.files)


class RestoreState(CopyState):
    """copy-table's state file, its positions counting the lines of each segment already written."""

    tool = "restore-table"
    work = "restore"
    content = "backup"
    replaced = "the backup under that name was replaced since, e.g. by backup-table --overwrite"


def default_state_path(name: str, destination: Table) -> Path:
    return Path(f".restore-table.{name}.{destination.spec.region}.{destination.spec.file_name}.json")


# --- finding and checking a backup ---------------------------------------------------------------


def _json(store: Store, key: str, what: str) -> Any:
    try:
        return json.loads(store.read(key))
    except ValueError as exc:
        raise ReplicatorError(f"{store.url_of(key)} is not {what}: {exc}") from None


def find_backup(store: Store, name: str) -> Backup:
    """The backup at ``store/name`` from its manifest (or, for mapbox's backup-table, its segments); one
    error when there is no complete one, naming the folder to give when the URL is one level off."""
    url = store.url_of(name)
    if store.exists(manifest_key(name)):
        return _our_backup(store, name)
    if store.exists(f"{name}/{EXPORT_MANIFEST}"):
        return _export(store, name)
    found = store.keys(name)
    _refuse_one_level_off(store, name, found)
    mapbox = _mapbox_backup(store, name, found)
    if mapbox is not None:
        return mapbox
    why = (f"{len(found)} objects are there but not the manifest: the backup did not finish (or is still running)"
           if found else "nothing is there")
    raise ReplicatorError(f"no complete backup at {url}: {store.url_of(manifest_key(name))} does not exist, nor "
                          f"a DynamoDB export's {url}/{EXPORT_MANIFEST}; {why}")


def _refuse_one_level_off(store: Store, name: str, found: list[str]) -> None:
    """A URL that names a file of a backup, a folder inside an export, or a folder of several backups or
    exports: one error naming the folder to give instead."""
    url = store.url_of(name)
    if store.exists(name):
        if name.endswith(".manifest.json"):
            folder = store.url_of(name[: -len(".manifest.json")])
            raise ReplicatorError(f"{url} is a backup's manifest: give the backup's folder, {folder}")
        what = "a DynamoDB export's manifest" if name in (EXPORT_MANIFEST, EXPORT_SUMMARY) else "a file"
        raise ReplicatorError(f"{url} is {what}, not a backup's folder: give the folder, {store.url}")
    if store.exists(EXPORT_MANIFEST):
        raise ReplicatorError(f"{url} is inside the DynamoDB export at {store.url}: give that folder, {store.url}")
    exports = sorted(k[: -len(EXPORT_MANIFEST) - 1] for k in found if k.endswith(f"/{EXPORT_MANIFEST}"))
    if exports:
        raise ReplicatorError(f"{url} holds {len(exports)} DynamoDB exports, not one: give an export's folder, "
                              + " or ".join(store.url_of(e) for e in exports[:3]))
    backups = sorted(k[: -len(".manifest.json")] for k in found if k.endswith(".manifest.json"))
    if backups:
        raise ReplicatorError(f"{url} holds {len(backups)} backups, not one: give a backup's folder URL/<jobid>, "
                              + " or ".join(store.url_of(b) for b in backups[:3]))


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _under(key: str, folder: str) -> str | None:
    """``key`` relative to ``folder`` when it lies inside it (no ``..``, ``.`` or empty part), else None."""
    if not key.startswith(folder + "/"):
        return None
    rest = key[len(folder) + 1 :]
    return rest if all(part not in ("", ".", "..") for part in rest.split("/")) else None


def _our_backup(store: Store, name: str) -> Backup:
    """A backup-table backup. Its manifest's files must be every segment 0 to N-1 once, their counts must
    add up to its itemCount, and every key must lie in the backup's own folder: a manifest edited or cut
    short would otherwise restore part of the backup, or another's, and say nothing."""
    key = manifest_key(name)
    where = store.url_of(key)
    manifest = _json(store, key, "a backup-table manifest")
    try:
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}")
        files = [BackupFile(f"segment {int(f['segment'])}", str(f["key"]), int(f["itemCount"]), int(f["bytes"]),
                            str(f["md5Checksum"])) for f in manifest["files"]]
        segments, total = int(manifest["segments"]), int(manifest["itemCount"])
        listed = [int(f["segment"]) for f in manifest["files"]]
        key_schema = key_schema_of(manifest)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReplicatorError(f"{where} is not a backup-table manifest ({exc})") from None
    if segments < 1 or sorted(listed) != list(range(segments)):
        missing = sorted(set(range(segments)) - set(listed))
        raise ReplicatorError(f"{where} is damaged: it lists segments {_ranges(listed)} of {segments} (missing "
                              f"{_ranges(missing)}, each once): restore from another backup, or back up again")
    if sum(f.items or 0 for f in files) != total:
        raise ReplicatorError(f"{where} is damaged: its segments hold {sum(f.items or 0 for f in files)} items but "
                              f"its itemCount is {total}: restore from another backup, or back up again")
    for f in files:
        if _under(f.key, name) is None:
            raise ReplicatorError(f"{where} is damaged: {f.name} is {f.key!r}, outside the backup's folder "
                                  f"{store.url_of(name)}: restore from another backup, or back up again")
    files.sort(key=lambda f: int(f.name.split()[1]))
    identity = _digest(manifest.get("created"), [(f.key, f.items, f.size, f.md5) for f in files])
    return Backup(store.url_of(name), "backup-table", files, key_schema, identity)


def _ranges(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return ", ".join(str(n) for n in sorted(numbers)[:10]) + (", ..." if len(numbers) > 10 else "")


def _export(store: Store, name: str) -> Backup:
    """A DynamoDB export. Only a full export in DynamoDB JSON holds the table as lines restore-table reads.
    Each data file is found by its whole ``dataFileS3Key`` (a key in the bucket), which must lie inside
    the export's folder, and the files' counts must add up to the summary's itemCount."""
    url = store.url_of(name)
    summary_key = f"{name}/{EXPORT_SUMMARY}"
    summary: dict[str, Any] = {}
    if store.exists(summary_key):
        summary = _json(store, summary_key, "a DynamoDB export summary")
        if not isinstance(summary, dict):
            raise ReplicatorError(f"{store.url_of(summary_key)} is not a DynamoDB export summary")
        if summary.get("exportType", "FULL_EXPORT") != "FULL_EXPORT":
            raise ReplicatorError(f"{FULL_EXPORTS}: {url} is an incremental export ({summary.get('exportType')}), "
                                  "the changes of a period rather than the table; restore a full export")
        if summary.get("outputFormat", "DYNAMODB_JSON") != "DYNAMODB_JSON":
            raise ReplicatorError(f"{FULL_EXPORTS}: {url} is an export in {summary.get('outputFormat')}; export the "
                                  "table again with ExportFormat DYNAMODB_JSON")
    folder = _export_folder(store, name, summary)
    key = f"{name}/{EXPORT_MANIFEST}"
    files = []
    for number, line in enumerate(store.read(key).decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            data_key = str(entry["dataFileS3Key"])
            md5 = entry.get("md5Checksum")
            files.append(BackupFile(f"data file {data_key.rsplit('/', 1)[-1]}", data_key, int(entry["itemCount"]),
                                    None, str(md5) if md5 is not None else None))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReplicatorError(f"{store.url_of(key)} line {number} is not a DynamoDB export manifest entry ({exc})") from None
        if data_key.endswith(".ion.gz"):
            raise ReplicatorError(f"{FULL_EXPORTS}: {url} is an export in ION; export the table again with "
                                  "ExportFormat DYNAMODB_JSON")
        rest = _under(data_key, folder)
        if rest is None:
            raise ReplicatorError(f"{store.url_of(key)} line {number} is damaged: dataFileS3Key {data_key!r} is "
                                  f"outside the export's folder {folder}/: restore from another export")
        files[-1] = BackupFile(files[-1].name, f"{name}/{rest}", files[-1].items, None, files[-1].md5)
    listed = sum(f.items or 0 for f in files)
    if "itemCount" in summary and listed != int(summary["itemCount"]):
        raise ReplicatorError(f"{store.url_of(key)} is damaged: its data files hold {listed} items but "
                              f"{EXPORT_SUMMARY} says {summary['itemCount']}: restore from another export")
    if not files and "itemCount" not in summary:
        raise ReplicatorError(f"{store.url_of(key)} lists no data files and there is no {EXPORT_SUMMARY} to say the "
                              "table was empty: restore from another export")
    identity = _digest(summary.get("exportArn"), summary.get("endTime"), [(f.key, f.items, f.md5) for f in files])
    return Backup(url, "dynamodb-export", files, None, identity)


def _export_folder(store: Store, name: str, summary: dict[str, Any]) -> str:
    """The export's folder as its bucket names it, which dataFileS3Key is relative to: from the summary's
    manifestFilesS3Key (right even when the export was copied elsewhere), else the S3 URL's own prefix."""
    manifest = summary.get("manifestFilesS3Key")
    if isinstance(manifest, str) and manifest.endswith(f"/{EXPORT_MANIFEST}"):
        return manifest[: -len(EXPORT_MANIFEST) - 1]
    if isinstance(store, S3Store):
        return store.bucket_key(name)
    raise ReplicatorError(f"{store.url_of(name)} has no {EXPORT_SUMMARY} (with manifestFilesS3Key) to tell where its "
                          "data files are: copy the whole export folder")


def _mapbox_backup(store: Store, name: str, found: list[str]) -> Backup | None:
    """A backup by mapbox's dynamodb-replicator ``backup-table``: ``<jobid>/<segment>`` objects, gzip, one bare
    DynamoDB JSON item per line, no manifest and no markers. Told from an unfinished backup of ours by its
    lines (ours are ``{"Item": ...}``) and the absence of markers. With no manifest, only a gap in the
    segment numbers shows a missing segment; the key schema comes from the destination table."""
    if not found or store.keys(f"{name}.segments"):
        return None
    numbers = [rest for rest in (k[len(name) + 1 :] for k in found)]
    if not all(_SEGMENT_NAME.match(n) for n in numbers):
        return None
    segments = sorted(int(n) for n in numbers)
    first = next((line for line in (_first_line(store, f"{name}/{s}") for s in segments) if line != {}), None)
    if first is None or list(first) == ["Item"]:
        return None
    if segments != list(range(len(segments))):
        missing = sorted(set(range(segments[-1] + 1)) - set(segments))
        raise ReplicatorError(f"the mapbox backup at {store.url_of(name)} lacks segments {_ranges(missing)} of 0 to "
                              f"{segments[-1]}: restore it once every segment's backup-table run has finished")
    files = [BackupFile(f"segment {s}", f"{name}/{s}", None, None, None, bare=True) for s in segments]
    identity = _digest([(f.key, store.size(f.key)) for f in files])
    return Backup(store.url_of(name), "mapbox-backup", files, None, identity)


def _first_line(store: Store, key: str) -> dict[str, Any] | None:
    """The first line of a gzip object as a JSON object; None when it is not one (or the object is empty)."""
    stream = store.open_read(key)
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as lines:
            line = lines.readline()
        value = json.loads(line) if line else {}
    except (EOFError, OSError, zlib.error, ValueError):
        return None
    finally:
        stream.close()
    return value if isinstance(value, dict) else None


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
                    value = json.loads(line)
                    item = decode_item(value if f.bare else value["Item"])
                except (ValueError, KeyError, TypeError, AttributeError, RecordFormatError) as exc:
                    shape = "a DynamoDB JSON item" if f.bare else "an item line {\"Item\": ...}"
                    raise ReplicatorError(f"{f.name} line {number} is not {shape} ({exc})") from None
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
    present: int = 0
    """Items not written because the table already had their key (bootstrap's conditional load)."""
    left_out: int = 0
    """Items read but not written: filtered out, or expired (``changes.shape``; bootstrap's load of an export)."""

    @property
    def items_per_s(self) -> float:
        return self.restored / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url, "kind": self.kind, "restored": self.restored, "skipped": self.skipped,
            "present": self.present, "left_out": self.left_out,
            "segments": self.segments, "segments_run": self.segments_run, "seconds": round(self.seconds, 3),
            "items_per_s": round(self.items_per_s, 1), "write_units": self.write_units, "resumed": self.resumed,
            "state_file": self.state_file,
        }


def restore_table(
    url: str,
    destination: Table,
    *,
    s3_endpoint: str | None = None,
    s3_credentials: Credentials = DEFAULT,
    write_units: float | None = None,
    max_in_flight: int = 8,
    resume: bool = False,
    force: bool = False,
    state_path: Path | None = None,
    batch_items: int = DEFAULT_PAGE_SIZE,
    readers: int = MAX_SEGMENT_THREADS,
    progress: bool | None = None,
    keep_state: bool = False,
    put_request: Callable[[str, Change], dict[str, Any]] | None = None,
    shape: ReplicaShape = KEEP_ALL,
) -> RestoreResult:
    """Restore the backup at ``url`` (``URL/<jobid>`` or an export's folder) into ``destination``; see the
    module docstring. ``readers`` is how many segments are read at once; ``put_request`` makes each write
    one conditional PutItem (bootstrap's load of an export, ``tables.load``), the refused ones counted as
    ``present``. ``shape`` leaves out or trims items as a path with the same options would."""
    store, name = open_job(url, region=destination.spec.region, s3_endpoint=s3_endpoint,
                           s3_credentials=s3_credentials)
    store.check()
    backup = find_backup(store, name)
    check_files(store, backup)
    check_keys(store, backup, destination)
    state_path = state_path or default_state_path(name, destination)
    check_state_path(state_path, resume)
    # An interrupted restore's state file is answered first (by start_or_resume: pass --resume), since the
    # table it left is not empty either.
    if not (resume or force or state_path.exists()) and not is_empty(destination):
        raise ReplicatorError(f"{destination.spec} is not empty: a restore would mix the backup's items with the "
                              "table's; pass --force to write into it anyway")
    total = len(backup.files)
    state = RestoreState.start_or_resume(state_path, backup.url, str(destination.spec), resume=resume, segments=total,
                                         segment=None, default_segments=lambda: total, identity=backup.identity)

    writes = rate_limit(write_units)
    writer = TableWriter(destination.client, destination.name, max_in_flight=max_in_flight,
                         before_request=writes.wait, on_consumed=writes.consume, put_request=put_request)
    already = sum(p.copied for p in state.positions.values())
    reporter = ProgressReporter(backup.items, already, tty=progress, label="restoring", event="restore_progress",
                                show_bytes=True)
    pending = [s for s, p in sorted(state.positions.items()) if not p.done]
    _log.info("restore_started", url=backup.url, kind=backup.kind, table=str(destination.spec), segments=total,
              segments_to_run=len(pending), resumed=resume, state_file=str(state_path))
    counts = {"restored": 0, "skipped": 0, "present": 0, "left_out": 0}
    now_s = time.time()  # "expired" is decided against one moment, the restore's start
    lock = threading.Lock()
    stop = threading.Event()

    def write(s: int, items: list[Item]) -> None:
        kept = shape.views(items, destination.key_names, now_s)
        try:
            stale = writer.write(put_changes(destination, kept)).stale if kept else 0
        except NonRetryableWriteError as exc:
            raise ReplicatorError(f"{backup.files[s].name}: {destination.spec} refused a write: {exc}") from None
        position = state.positions[s]
        position.copied += len(items)
        state.save()
        with lock:
            counts["restored"] += len(kept) - stale
            counts["present"] += stale
            counts["left_out"] += len(items) - len(kept)

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
                           write_units=writes.consumed, resumed=resume, state_file=str(state_path),
                           present=counts["present"], left_out=counts["left_out"])
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
