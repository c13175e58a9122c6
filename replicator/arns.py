"""Table ARNs: wherever a table is named, ``arn:aws:dynamodb:REGION:ACCOUNT:table/NAME`` names it too.

DynamoDB takes a table's ARN as the TableName of a data-plane call, so a table in another account that a
resource-based policy shares is reached by its ARN with no role at all; the ARN also says the table's
region, which is then not given again. A region option that disagrees with the ARN is refused rather than
one of the two silently winning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from replicator.errors import ReplicatorError

_TABLE_ARN = re.compile(r"^arn:aws[a-z-]*:dynamodb:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
                        r"table/(?P<name>[A-Za-z0-9_.-]{3,255})$")


@dataclass(frozen=True)
class TableArn:
    arn: str
    region: str
    account: str
    name: str


def parse_table_arn(text: str) -> TableArn | None:
    """The parts of a table ARN, or None if ``text`` is not one (a plain table name)."""
    match = _TABLE_ARN.match(text.strip())
    if not match:
        return None
    return TableArn(text.strip(), match["region"], match["account"], match["name"])


def looks_like_arn(text: str) -> bool:
    return text.strip().startswith("arn:")


def region_for(table: str, region: str | None, table_option: str, region_option: str) -> str | None:
    """The region of ``table``: the ARN's if it is one (refusing a disagreeing ``region``), else ``region``."""
    arn = parse_table_arn(table)
    if arn is None:
        if looks_like_arn(table):
            raise ReplicatorError(f"{table_option} {table!r} is not a table ARN: give one like "
                                  "arn:aws:dynamodb:eu-west-1:222222222222:table/orders, or the table's name")
        return region
    if region is not None and region != arn.region:
        raise ReplicatorError(f"{table_option} {arn.arn} is in {arn.region} but {region_option} is {region}: "
                              "drop the region (the ARN says it) or make the two agree")
    return arn.region
