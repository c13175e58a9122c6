"""Compare two tables item by item: what the replica is missing, has different, or has extra.

Used by the demo and the tests to prove a replica equal to its source; the same comparison underlies
the consistency tools.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from replicator.changes.codec import Item, key_id, encode_item
from replicator.changes.versions import replica_view


def scan_items(client: Any, table: str, consistent: bool = True) -> Iterator[Item]:
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(TableName=table, ConsistentRead=consistent):
        yield from page["Items"]


def key_attributes(client: Any, table: str) -> list[str]:
    return [k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]]


def normalise(value: Any) -> Any:
    """Sets have no order; everything else compares as it is."""
    if isinstance(value, dict):
        if len(value) == 1:
            (tag, inner), = value.items()
            if tag in ("SS", "NS", "BS"):
                return {tag: sorted(inner)}
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


@dataclass
class TableDiff:
    scanned: int = 0
    replica_scanned: int = 0
    missing: list[Item] = field(default_factory=list)
    different: list[tuple[Item, Item]] = field(default_factory=list)
    extraneous: list[Item] = field(default_factory=list)

    @property
    def discrepancies(self) -> int:
        return len(self.missing) + len(self.different) + len(self.extraneous)


def compare_tables(primary: Any, primary_table: str, replica: Any, replica_table: str,
                   version_attribute: str | None = None) -> TableDiff:
    """Full scan of both tables (consistent reads), compared in memory: for tests and the demo's tables.

    A versioned replica is compared as its readers see it (see ``versions.replica_view``)."""
    keys = key_attributes(primary, primary_table)

    def index(items: Iterator[Item | None]) -> dict[str, Item]:
        return {key_id(encode_item({k: item[k] for k in keys})): item for item in items if item is not None}

    source = index(scan_items(primary, primary_table))
    target = index(replica_view(item, version_attribute) for item in scan_items(replica, replica_table))
    diff = TableDiff(scanned=len(source), replica_scanned=len(target))
    for kid, item in source.items():
        other = target.get(kid)
        if other is None:
            diff.missing.append(item)
        elif normalise(other) != normalise(item):
            diff.different.append((item, other))
    diff.extraneous = [item for kid, item in target.items() if kid not in source]
    return diff
