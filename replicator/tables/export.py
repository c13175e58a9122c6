"""A point-in-time export of the source for bootstrap's ``--load export``: asked for, waited for, found.

DynamoDB exports a table with PITR to S3 without reading capacity: ``AWSDynamoDB/<export id>/`` holds
``manifest-summary.json`` (the export's time, ARN, item count), ``manifest-files.json`` (a line per data
file with its key, item count and MD5) and ``data/*.json.gz``. restore-table reads that layout
(``tables.restore``), and bootstrap loads it through the same reader. What this module adds is the time:
the export is the table as of its ``ExportTime``, and bootstrap loads it only if its path had started
by then (every change after the export time is then in the stream the path reads).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from replicator import log
from replicator.credentials import DEFAULT, Credentials
from replicator.errors import ReplicatorError
from replicator.tables.restore import EXPORT_SUMMARY
from replicator.tables.spec import Table
from replicator.tables.store import open_job

_log = log.get("replicator.tables.export")

PROGRESS_INTERVAL_S = 10.0


def bucket_of(url: str) -> tuple[str, str]:
    """``s3://bucket[/prefix]`` as (bucket, prefix)."""
    parsed = urlparse(url.strip())
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ReplicatorError(f"--export-bucket {url!r} is not an S3 URL: give s3://BUCKET[/PREFIX]")
    return parsed.netloc, parsed.path.strip("/")


def request_export(source: Table, bucket: str, prefix: str, s3_credentials: Credentials = DEFAULT) -> dict[str, Any]:
    """Ask for a full DynamoDB JSON export of ``source`` as of now; its ExportDescription. A bucket reached
    through ``--s3-role-arn`` is in that role's account, which DynamoDB must be told (S3BucketOwner)."""
    kwargs: dict[str, Any] = {"TableArn": source.description["TableArn"], "S3Bucket": bucket,
                              "ExportFormat": "DYNAMODB_JSON", "ExportType": "FULL_EXPORT"}
    if s3_credentials.account is not None:
        kwargs["S3BucketOwner"] = s3_credentials.account
    if prefix:
        kwargs["S3Prefix"] = prefix
    try:
        description = source.client.export_table_to_point_in_time(**kwargs)["ExportDescription"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ReplicatorError(f"{source.spec} refused the export to s3://{bucket}/{prefix}: "
                              f"{error.get('Code')}: {error.get('Message')}") from None
    _log.info("export_requested", export_arn=description["ExportArn"], export_time=_iso(description.get("ExportTime")),
              bucket=bucket, prefix=prefix)
    return description


def wait_for_export(source: Table, arn: str, *, poll_s: float = 5.0, interval_s: float = PROGRESS_INTERVAL_S) -> dict[str, Any]:
    """Poll DescribeExport until the export is COMPLETED (a progress line every ``interval_s``); FAILED is an error."""
    started = last = time.monotonic()
    while True:
        description = source.client.describe_export(ExportArn=arn)["ExportDescription"]
        status = description.get("ExportStatus")
        if status == "COMPLETED":
            _log.info("export_completed", export_arn=arn, items=description.get("ItemCount"),
                      bytes=description.get("BilledSizeBytes"), waited_s=round(time.monotonic() - started, 1))
            return description
        if status == "FAILED":
            raise ReplicatorError(f"the export {arn} failed: {description.get('FailureCode')}: "
                                  f"{description.get('FailureMessage')}; fix the cause (bucket, permissions) and "
                                  "bootstrap again with another --task-name")
        if time.monotonic() - last >= interval_s:
            last = time.monotonic()
            _log.info("export_progress", export_arn=arn, status=status, waited_s=round(last - started, 1))
        time.sleep(poll_s)


def export_url(description: dict[str, Any]) -> str:
    """The export's folder, ``s3://bucket/[prefix/]AWSDynamoDB/<export id>``, as restore-table takes it."""
    manifest = description.get("ExportManifest") or ""
    if manifest.endswith("/" + EXPORT_SUMMARY):
        folder = manifest[: -len(EXPORT_SUMMARY) - 1]
    else:
        export_id = description["ExportArn"].rpartition("/export/")[2]
        prefix = description.get("S3Prefix") or ""
        folder = f"{prefix.strip('/')}/AWSDynamoDB/{export_id}".lstrip("/")
    return f"s3://{description['S3Bucket']}/{folder}"


def export_time(url: str, *, region: str, s3_endpoint: str | None, s3_credentials: Credentials = DEFAULT) -> float:
    """The epoch time an export at ``url`` is of, from its manifest-summary.json."""
    store, name = open_job(url, region=region, s3_endpoint=s3_endpoint, s3_credentials=s3_credentials)
    key = f"{name}/{EXPORT_SUMMARY}"
    if not store.exists(key):
        raise ReplicatorError(f"{store.url_of(key)} does not exist: give a DynamoDB export's folder "
                              "(.../AWSDynamoDB/<export id>), whose summary holds its export time")
    try:
        return export_time_of_summary(json.loads(store.read(key)))
    except (ValueError, KeyError, TypeError) as exc:
        raise ReplicatorError(f"{store.url_of(key)} is not a DynamoDB export summary with an exportTime ({exc})") from None


def export_time_of_summary(summary: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(summary["exportTime"]).replace("Z", "+00:00")).timestamp()


def check_after_start(export_at: float, path_started_at: float, url: str) -> None:
    """The export is of a time the path was already running at, or loading it could lose a change. Both
    are compared to the millisecond, the precision of an export's time."""
    if round(export_at * 1000) < int(path_started_at * 1000):
        raise ReplicatorError(
            f"the export at {url} is of {_iso(export_at)}, before the path started ({_iso(path_started_at)}): changes "
            "made between the two are in neither; export again (--export-bucket) once the path runs")


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value).astimezone()
    return value.isoformat()
