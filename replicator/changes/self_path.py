"""A path onto itself: the same table as source and destination, which every shell refuses.

Replicating a table into itself writes each change back where it came from: with a version attribute
it writes versions into the source's own items, and without one each write is a new change on the
source's stream, which the path replicates again, without end. The daemon (``replicator run``),
bootstrap, copy-table, the Lambda and lambda-local all ask this module, so that they agree on what
counts as the same table: the same region, table name and effective endpoint. A table ARN names its
own region and table; no endpoint is the one boto3 would use (AWS_ENDPOINT_URL_DYNAMODB, else
AWS_ENDPOINT_URL, else the region's AWS endpoint).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TableLocation:
    region: str
    table: str
    endpoint: str

    def __str__(self) -> str:
        return f"{self.region}/{self.table} at {self.endpoint}"


def locate(region: str, table: str, endpoint: str | None) -> TableLocation:
    """Where a table is: ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`` is read as REGION and NAME."""
    parts = table.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[5].startswith("table/"):
        region, table = parts[3], parts[5].removeprefix("table/").split("/", 1)[0]
    if not endpoint:
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        endpoint = (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
                    or f"https://dynamodb.{region}.{suffix}")
    return TableLocation(region, table, endpoint.strip().rstrip("/").lower())


def onto_itself(source: TableLocation, destination: TableLocation) -> str | None:
    """The one line that refuses a path from ``source`` to ``destination``, or None if they differ."""
    if source != destination:
        return None
    return (f"source and destination are the same table {source}: replicating a table onto itself writes its "
            "changes back into it (and replicates them again); replicate into another table, region or endpoint")
