"""The local server's table exports, in DynamoDB's layout, as of the moment they are asked for.

moto (5.2.5) writes an export as one ``<prefix>/AWSDynamoDB/<uuid>/data/<uuid>.gz`` object with no
manifest, gives it an ARN under ``table/<table ARN>/import/``, needs an ``S3Prefix``, answers ListExports
without a TableArn and every ListImports with HTTP 500. A tool that reads exports (restore-table,
bootstrap's ``--load export``) tested against that proves nothing about AWS's exports. This module keeps
what DynamoDB documents (the developer guide's "DynamoDB table export output format"):

* ``[<prefix>/]AWSDynamoDB/<export id>/``: ``_started`` (empty), ``data/<name>.json.gz`` (gzip, one
  ``{"Item": <DynamoDB JSON>}`` per line, up to ``ITEMS_PER_FILE`` items a file), ``manifest-files.json`` (a
  JSON line per data file: ``itemCount``, ``md5Checksum`` (the file's MD5, base64), ``etag`` (its MD5, hex,
  as S3's ETag of a one-part object) and ``dataFileS3Key``), ``manifest-summary.json`` (version, exportArn,
  startTime, endTime, tableArn, tableId, exportTime, s3Bucket, s3Prefix, manifestFilesS3Key,
  billedSizeBytes, itemCount, outputFormat, exportType) and ``manifest-files.checksum`` /
  ``manifest-summary.checksum`` holding each manifest's MD5 (base64).
* The export id is ``<epoch ms, 14 digits>-<8 hex digits>`` and the ARN ``<table ARN>/export/<export id>``.
* The point in time: the items are read when the request is answered, under the server's lock on DynamoDB
  requests (``server.SerialisedRequests``), so the export is the table exactly as of its ExportTime, with
  every write acknowledged before it and none after. The server keeps no history of a table, so an
  ExportTime more than ``NOW_TOLERANCE_S`` from now is refused with a ValidationException naming it.
* ListExports (with or without TableArn) and ListImports answer from the exports and imports made.

The server installs this in its own process only (``install``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import secrets
import time
from datetime import datetime, timezone
from typing import Any

ITEMS_PER_FILE = 1000
"""DynamoDB writes at least one file per partition; the local server, one per this many items."""
NOW_TOLERANCE_S = 60.0
"""How far from now an asked-for ExportTime may be: the server has no history to export from."""
SUMMARY_VERSION = "2020-06-30"


def export_id(now: float) -> str:
    return f"{int(now * 1000):014d}-{secrets.token_hex(4)}"


def md5_base64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(epoch * 1000) % 1000:03d}Z"


def layout(*, lines: list[str], folder: str, bucket: str, prefix: str, arn: str, table_arn: str, table_id: str,
           export_time: float, start_time: float, end_time: float) -> dict[str, bytes]:
    """Every object of an export of ``lines`` (item lines, ``{"Item": ...}``) under ``folder``, by key."""
    objects: dict[str, bytes] = {f"{folder}/_started": b""}
    entries = []
    billed = 0
    for start in range(0, len(lines), ITEMS_PER_FILE) or [0]:
        chunk = lines[start : start + ITEMS_PER_FILE]
        if not chunk and lines:
            continue
        raw = "".join(line + "\n" for line in chunk).encode("utf-8")
        body = gzip.compress(raw, mtime=0)
        billed += len(raw)
        key = f"{folder}/data/{secrets.token_hex(13)}.json.gz"
        objects[key] = body
        entries.append({"itemCount": len(chunk), "md5Checksum": md5_base64(body),
                        "etag": hashlib.md5(body).hexdigest(), "dataFileS3Key": key})
    files = "".join(json.dumps(e) + "\n" for e in entries).encode()
    summary = json.dumps({
        "version": SUMMARY_VERSION, "exportArn": arn, "startTime": iso(start_time), "endTime": iso(end_time),
        "tableArn": table_arn, "tableId": table_id, "exportTime": iso(export_time), "s3Bucket": bucket,
        "s3Prefix": prefix or None, "s3SseAlgorithm": "AES256", "s3SseKmsKeyId": None,
        "manifestFilesS3Key": f"{folder}/manifest-files.json", "billedSizeBytes": billed, "itemCount": len(lines),
        "outputFormat": "DYNAMODB_JSON", "exportType": "FULL_EXPORT",
    }).encode()
    objects[f"{folder}/manifest-files.json"] = files
    objects[f"{folder}/manifest-files.checksum"] = md5_base64(files).encode()
    objects[f"{folder}/manifest-summary.json"] = summary
    objects[f"{folder}/manifest-summary.checksum"] = md5_base64(summary).encode()
    return objects


def install() -> None:
    """Replace moto's TableExport and its export, list-exports and list-imports answers (see the docstring)."""
    import moto.dynamodb.models as models
    from moto.core.responses import ActionResult
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.models.table_export import TableExport
    from moto.dynamodb.models.utilities import dynamo_json_dump
    from moto.dynamodb.responses import DynamoHandler

    class LayoutExport(TableExport):  # type: ignore[misc]
        """moto's export thread, writing DynamoDB's layout from the items read when it was asked for."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.export_time = self.start_time = time.time()
            self.end_time: float | None = None
            self.export_id = export_id(self.export_time)
            self.arn = f"{self.table.table_arn}/export/{self.export_id}"
            self.s3_prefix = (self.s3_prefix or "").strip("/")
            self.folder = "/".join(p for p in (self.s3_prefix, "AWSDynamoDB", self.export_id) if p)
            self.lines = [dynamo_json_dump(item.to_json(root_attr_name="Item")) for item in self.table.all_items()]
            self.item_count = len(self.lines)

        def _backup_to_s3_file(self, s3_backend: Any) -> None:
            self.end_time = time.time()
            objects = layout(lines=self.lines, folder=self.folder, bucket=self.s3_bucket, prefix=self.s3_prefix,
                             arn=self.arn, table_arn=self.table.table_arn,
                             table_id=str(getattr(self.table, "table_id", self.table.name)),
                             export_time=self.export_time, start_time=self.start_time, end_time=self.end_time)
            for key, body in objects.items():
                s3_backend.put_object(bucket_name=self.s3_bucket, key_name=key, value=body)
            self.processed_bytes = sum(len(line) + 1 for line in self.lines)
            self.lines = []
            self.status = "COMPLETED"

        def response(self) -> dict[str, Any]:
            out = super().response()
            out.update(ExportTime=_datetime(self.export_time), StartTime=_datetime(self.start_time),
                       ExportManifest=f"{self.folder}/manifest-summary.json", S3Prefix=self.s3_prefix or None)
            if self.end_time is not None and self.status == "COMPLETED":
                out["EndTime"] = _datetime(self.end_time)
            return {k: v for k, v in out.items() if v is not None}

    models.TableExport = LayoutExport
    original_export = DynamoHandler.export_table_to_point_in_time

    def export_table_to_point_in_time(self: Any) -> Any:
        asked = self.body.get("ExportTime")
        if asked is not None:
            at = asked.timestamp() if isinstance(asked, datetime) else float(asked)
            if abs(time.time() - at) > NOW_TOLERANCE_S:
                raise MockValidationException(
                    f"the local server exports a table as of now only (ExportTime {iso(at)} is "
                    f"{time.time() - at:.0f} s from now; it keeps no history): omit ExportTime")
        self.body.setdefault("S3Prefix", "")
        return original_export(self)

    def list_exports(self: Any) -> Any:
        table_arn = self.body.get("TableArn")
        exports = [e for e in self.dynamodb_backend.table_exports.values()
                   if table_arn is None or e.table.table_arn == table_arn]
        return ActionResult({"ExportSummaries": [
            {"ExportArn": e.arn, "ExportStatus": e.status, "ExportType": e.export_type} for e in exports]})

    def list_imports(self: Any) -> Any:
        table_arn = self.body.get("TableArn")
        imports = [i for i in self.dynamodb_backend.table_imports.values()
                   if table_arn is None or i.table_arn == table_arn]
        return ActionResult({"ImportSummaryList": [
            {"ImportArn": i.arn, "ImportStatus": i.status, "TableArn": i.table_arn,
             "S3BucketSource": i.s3_source, "InputFormat": "DYNAMODB_JSON"} for i in imports]})

    DynamoHandler.export_table_to_point_in_time = export_table_to_point_in_time
    DynamoHandler.list_exports = list_exports
    DynamoHandler.list_imports = list_imports


def _datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, timezone.utc)
