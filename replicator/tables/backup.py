"""backup-table: a table's items, one object per scan segment, to S3 or a directory, in DynamoDB's export format.

The layout, with URL ``s3://bucket/prefix`` or a directory::

    URL/<jobid>/<segment>                 the items of scan segment 0 to N-1: gzip, one line per item
    URL/<jobid>.segments/<segment>.json   a segment's done marker: its item count, size and MD5
    URL/<jobid>.manifest.json             the manifest, written last

A line is ``{"Item": {...}}`` in DynamoDB JSON with binary as base64: what DynamoDB's export to S3 writes
and what ImportTable reads (InputFormat DYNAMODB_JSON, InputCompressionType GZIP, S3KeyPrefix
``prefix/<jobid>/`` with its trailing slash). Only segments live under ``<jobid>/``, because ImportTable
reads every object under its prefix as data; the markers and the manifest sit beside the folder.

The rules it keeps:

* A backup is complete only when its manifest exists, and the manifest is written last, from the
  segments' markers; a segment object appears only whole (``store``). So a run that dies (kill -9, a lost
  machine) leaves no manifest, and restore-table refuses such a backup by name.
* ``--segment I`` runs one segment, e.g. one per machine, all with the same ``--jobid`` and
  ``--segments N``. Each run writes its segment and then its marker; whichever run then finds all N markers
  writes the manifest from them. So the last run to finish completes the backup, with no coordinator. Two
  runs finishing together both write it, with the same content but for its time: harmless.
* A jobid that already holds anything (a manifest, a marker, a segment) is refused, since writing into
  it would mix two backups; ``--overwrite`` replaces it, deleting the manifest first so that the old
  backup stops looking complete before any of it is replaced. With ``--segment I`` the other segments'
  objects and markers are expected (other machines' work): only segment I and the manifest count, and
  the markers present must agree on N and the table.
* Memory stays flat whatever the table's size: each segment streams its scan pages (250 items, as
  copy-table) through gzip into its object's writer, which spools S3 parts to disk.
* Gzip level 6 (zlib's default) rather than Python's 9: nearly the same size, several times less CPU.
"""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from replicator.credentials import DEFAULT, Credentials
from replicator import log
from replicator.changes.codec import Item, encode_item
from replicator.errors import ReplicatorError
from replicator.tables.copy import DEFAULT_PAGE_SIZE, ProgressReporter, default_segments, rate_limit, run_segments
from replicator.tables.spec import Table, check_segments, scan_pages
from replicator.changes.shape import KEEP_ALL, ReplicaShape
from replicator.tables.store import Store, open_store

FORMAT = "replicator-backup"
FORMAT_VERSION = 1
COMPRESS_LEVEL = 6

_log = log.get("replicator.tables.backup")
_JOBID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def new_jobid() -> str:
    return uuid.uuid4().hex


def check_jobid(jobid: str) -> None:
    if not 1 <= len(jobid) <= 128 or not set(jobid) <= _JOBID_CHARS or jobid.startswith("."):
        raise ReplicatorError(f"--jobid {jobid!r}: give 1 to 128 letters, digits, '_', '-' or '.', not starting with '.'")


def segment_key(jobid: str, segment: int) -> str:
    return f"{jobid}/{segment}"


def marker_key(jobid: str, segment: int) -> str:
    return f"{jobid}.segments/{segment}.json"


def manifest_key(jobid: str) -> str:
    return f"{jobid}.manifest.json"


def item_line(item: Item) -> str:
    """One item as a line of DynamoDB's export format."""
    return json.dumps({"Item": encode_item(item)}, separators=(",", ":")) + "\n"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _key_description(table: Table) -> dict[str, Any]:
    """The table's KeySchema and its key attributes' definitions, as CreateTable (and ImportTable) take them."""
    names = set(table.key_names)
    return {
        "KeySchema": table.description["KeySchema"],
        "AttributeDefinitions": [a for a in table.description.get("AttributeDefinitions", []) if a["AttributeName"] in names],
    }


@dataclass
class BackupResult:
    jobid: str
    url: str
    """Where the segments are: URL/<jobid>."""
    manifest: str | None
    """The manifest's URL once the backup is complete; None while other segments' runs have not finished."""
    items: int
    bytes: int
    segments: int
    segments_run: list[int]
    seconds: float
    read_units: float

    @property
    def complete(self) -> bool:
        return self.manifest is not None

    @property
    def items_per_s(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "jobid": self.jobid, "url": self.url, "manifest": self.manifest, "complete": self.complete,
            "items": self.items, "bytes": self.bytes, "segments": self.segments, "segments_run": self.segments_run,
            "seconds": round(self.seconds, 3), "items_per_s": round(self.items_per_s, 1), "read_units": self.read_units,
        }


class _Stopped(Exception):
    """Another segment failed, or Ctrl-C: this one leaves its object unwritten too, and ends quietly (the
    failure is the other segment's to report)."""


def backup_table(
    source: Table,
    url: str,
    *,
    jobid: str | None = None,
    segments: int | None = None,
    segment: int | None = None,
    read_units: float | None = None,
    s3_endpoint: str | None = None,
    s3_credentials: Credentials = DEFAULT,
    overwrite: bool = False,
    page_size: int | None = None,
    consistent: bool = True,
    progress: bool | None = None,
    shape: ReplicaShape = KEEP_ALL,
) -> BackupResult:
    """Back ``source`` up to ``url`` (all segments, or the one given); see the module docstring. ``shape``:
    back up the items as a replica of that shape holds them (``changes.shape``)."""
    check_segments(segment, segments)
    shape.check_keys(source.key_names)
    now_s = time.time()
    jobid = jobid or new_jobid()
    check_jobid(jobid)
    store = open_store(url, region=source.spec.region, s3_endpoint=s3_endpoint, s3_credentials=s3_credentials)
    store.check(create=True)
    total = segments or default_segments(source)
    mine = [segment] if segment is not None else list(range(total))
    _claim(store, jobid, source, total, segment, overwrite)

    reads = rate_limit(read_units)
    expected = source.item_count if segment is None else math.ceil(source.item_count / total)
    reporter = ProgressReporter(expected, 0, tty=progress, label="backing up", event="backup_progress", show_bytes=True)
    _log.info("backup_started", table=str(source.spec), url=store.url_of(jobid), jobid=jobid, segments=total,
              segments_to_run=mine)
    counts = {"items": 0, "bytes": 0}
    lock = threading.Lock()
    stop = threading.Event()

    def run_segment(s: int) -> None:
        writer = store.open_write(segment_key(jobid, s))
        items = reported = 0
        try:
            with gzip.GzipFile(fileobj=writer, mode="wb", compresslevel=COMPRESS_LEVEL, mtime=0) as stream:
                for page, _ in scan_pages(source, segment=s, segments=total, limit=page_size or DEFAULT_PAGE_SIZE,
                                          consistent=consistent, before_request=reads.wait, on_consumed=reads.consume):
                    if stop.is_set():
                        raise _Stopped
                    scanned = len(page)
                    page = shape.views(page, source.key_names, now_s)
                    if page:
                        stream.write("".join(item_line(i) for i in page).encode("utf-8"))
                    items += len(page)
                    reporter.advance(scanned, writer.size - reported)
                    reported = writer.size
            written = writer.commit()
        except _Stopped:
            writer.abort()
            return
        except BaseException:
            writer.abort()
            raise
        reporter.advance(0, written.size - reported)
        marker = {"segment": s, "segments": total, "table": str(source.spec), "key": written.key, "itemCount": items,
                  "bytes": written.size, "md5Checksum": written.md5, "finished": _now()}
        store.write(marker_key(jobid, s), json.dumps(marker).encode())
        with lock:
            counts["items"] += items
            counts["bytes"] += written.size

    started = time.monotonic()
    try:
        run_segments(mine, run_segment, stop, name="backup-segment")
    finally:
        reporter.close()
    manifest = _write_manifest_if_complete(store, jobid, source, total)
    result = BackupResult(jobid=jobid, url=store.url_of(jobid), manifest=manifest, items=counts["items"],
                          bytes=counts["bytes"], segments=total, segments_run=mine, seconds=time.monotonic() - started,
                          read_units=reads.consumed)
    _log.info("backup_finished", **result.as_json())
    return result


def _claim(store: Store, jobid: str, source: Table, total: int, segment: int | None, overwrite: bool) -> None:
    """Refuse a jobid that holds a backup (see the module docstring), or clear it with ``overwrite``."""
    where = store.url_of(jobid)
    has_manifest = store.exists(manifest_key(jobid))
    markers = store.keys(f"{jobid}.segments")
    if segment is None:
        objects = store.keys(jobid)
        mine = [*objects, *markers]
    else:
        if markers:  # one marker tells how the other runs split the table: they must all split it alike
            _check_marker(store, markers[0], source, total, jobid)
        mine = [k for k in (segment_key(jobid, segment), marker_key(jobid, segment)) if store.exists(k)]
    if not (has_manifest or mine):
        return
    if not overwrite:
        what = "a complete backup" if has_manifest else f"{len(mine)} objects of an unfinished backup"
        raise ReplicatorError(f"jobid {jobid} already holds {what} at {where}: pass --overwrite to replace it, "
                              "or give another --jobid")
    _log.info("backup_overwriting", url=where, manifest=has_manifest, objects=len(mine))
    store.delete([manifest_key(jobid)])  # first: the old backup must stop looking complete before anything else goes
    store.delete(mine)


def _check_marker(store: Store, key: str, source: Table, total: int, jobid: str) -> dict[str, Any]:
    try:
        marker = json.loads(store.read(key))
        found = (int(marker["segments"]), str(marker["table"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplicatorError(f"{store.url_of(key)} is not a backup-table segment marker ({exc})") from None
    if found != (total, str(source.spec)):
        raise ReplicatorError(
            f"jobid {jobid} at {store.url_of(jobid)} is a backup of {found[1]} in {found[0]} segments, not of "
            f"{source.spec} in {total}: give the same --segments as its other runs, or another --jobid"
        )
    return marker


def _write_manifest_if_complete(store: Store, jobid: str, source: Table, total: int) -> str | None:
    """Once every segment's marker is there, the manifest, from them; None while some are missing."""
    present = set(store.keys(f"{jobid}.segments"))
    wanted = [marker_key(jobid, s) for s in range(total)]
    if not present.issuperset(wanted):
        _log.info("backup_waiting_for_segments", jobid=jobid,
                  missing=[s for s, k in enumerate(wanted) if k not in present][:20])
        return None
    markers = [_check_marker(store, key, source, total, jobid) for key in wanted]
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "jobid": jobid,
        "table": str(source.spec),
        **_key_description(source),
        "dataFormat": "DYNAMODB_JSON",
        "compression": "GZIP",
        "segments": total,
        "itemCount": sum(int(m["itemCount"]) for m in markers),
        "bytes": sum(int(m["bytes"]) for m in markers),
        "created": _now(),
        "files": [{k: m[k] for k in ("segment", "key", "itemCount", "bytes", "md5Checksum")} for m in markers],
    }
    store.write(manifest_key(jobid), json.dumps(manifest, indent=1).encode())
    return store.url_of(manifest_key(jobid))
