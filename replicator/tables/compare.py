"""Compare two tables item by item: what the replica is missing, has different, or has extra.

Used by the demo and the tests to prove a replica equal to its source; the same comparison
(:func:`normalise`) underlies the consistency tools, diff-tables and diff-record. Items compare as
DynamoDB sees them, not as they are spelled: a database may return a number in the spelling it was sent,
so numbers (N, and the members of NS) compare by value, and sets (SS, NS, BS) without order, at any
depth inside M and L. Everything else compares exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from replicator.changes.codec import AttributeValue, Item, canonical_number, encode_item, key_id
from replicator.changes.versions import replica_view


def scan_items(client: Any, table: str, consistent: bool = True) -> Iterator[Item]:
    paginator = client.get_paginator("scan")
    for page in paginator.paginate(TableName=table, ConsistentRead=consistent):
        yield from page["Items"]


def key_attributes(client: Any, table: str) -> list[str]:
    return [k["AttributeName"] for k in client.describe_table(TableName=table)["Table"]["KeySchema"]]


def normalise(item: Item) -> dict[str, Any]:
    """An item in a form where two items DynamoDB holds equal are ``==``, and two it holds different are not."""
    return {name: normalise_value(value) for name, value in item.items()}


def _set_member_key(member: Any) -> tuple[bool, Any]:
    """Sorts a set's members by content, binary ones whether bytes, bytearray (boto3) or base64 text (stream JSON)."""
    return (True, member) if isinstance(member, str) else (False, bytes(member))


def normalise_value(value: AttributeValue) -> Any:
    """One attribute value: numbers canonical (see ``codec.canonical_number``), sets sorted, M and L within."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    (tag, inner), = value.items()
    if tag == "N":
        return {tag: canonical_number(inner)}
    if tag == "NS":
        return {tag: sorted(canonical_number(n) for n in inner)}
    if tag in ("SS", "BS"):
        return {tag: sorted(inner, key=_set_member_key)}
    if tag == "M":
        return {tag: normalise(inner)}
    if tag == "L":
        return {tag: [normalise_value(v) for v in inner]}
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
