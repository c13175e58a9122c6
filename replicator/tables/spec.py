"""What the table tools share: `region/table` specs, their clients and descriptions, and primary keys.

A table is named ``region/table`` (``us-east-1/orders``) or by its ARN
(``arn:aws:dynamodb:eu-west-1:222222222222:table/orders``, which DynamoDB takes as a table name: a table
another account shares by a resource-based policy, or one reached through a role), and reached at an optional
endpoint (the local server, or any DynamoDB-compatible endpoint) with its side's credentials (a role, a
profile, or the default chain: ``replicator.credentials``). A key is given as plain JSON (``{"id": "abc", "n": 3}``,
binary as base64 text) or as DynamoDB JSON (``{"id": {"S": "abc"}, "n": {"N": "3"}}``) and is checked
against the table's key schema before any request is made. A tool that writes SRC's items into DST
refuses the two when they are one table (``check_not_onto_itself``, the rule every path shares).
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from botocore.exceptions import ClientError

from replicator import clients
from replicator.arns import looks_like_arn, parse_table_arn
from replicator.credentials import DEFAULT, Credentials
from replicator.kcl import checks
from replicator.changes.codec import Item, encode_item, key_id
from replicator.changes.self_path import locate, onto_itself
from replicator.errors import ReplicatorError, client_error

# A region is lower-case words and digits joined by dashes; a table name is 3-255 of [A-Za-z0-9_.-].
_SPEC = re.compile(r"^(?P<region>[a-z]{2}(?:-[a-z0-9]+)+)/(?P<table>[A-Za-z0-9_.-]{3,255})$")
SCALAR_KEY_TYPES = ("S", "N", "B")


@dataclass(frozen=True)
class TableSpec:
    region: str
    table: str
    """The table's name (without the ARN's region and account)."""
    arn: str | None = None
    """The ARN it was given by, if so: what the requests name it by."""

    @property
    def request_name(self) -> str:
        return self.arn or self.table

    @property
    def file_name(self) -> str:
        """The table in a state file's name: a name, with the ARN's account if given (no slashes)."""
        return f"{self.arn.split(':')[4]}.{self.table}" if self.arn else self.table

    def __str__(self) -> str:
        return self.arn or f"{self.region}/{self.table}"


def check_not_onto_itself(source: str, source_endpoint: str | None, destination: str,
                          destination_endpoint: str | None) -> None:
    """SRC and DST (``region/table``) are not one table at one endpoint (``changes.self_path``)."""
    src, dst = parse_spec(source), parse_spec(destination)
    problem = onto_itself(locate(src.region, src.request_name, source_endpoint),
                          locate(dst.region, dst.request_name, destination_endpoint))
    if problem:
        raise ReplicatorError(f"SRC {src} and DST {dst}: {problem}")


def parse_spec(text: str) -> TableSpec:
    arn = parse_table_arn(text)
    if arn is not None:
        return TableSpec(arn.region, arn.name, arn.arn)
    match = _SPEC.match(text.strip())
    if not match:
        what = "a table ARN" if looks_like_arn(text) else "region/table"
        raise ReplicatorError(
            f"{text!r} is not {what}: write the table as e.g. us-east-1/orders "
            "(a region, a slash, a table name of 3-255 letters, digits, '_', '-' or '.') or by its ARN, "
            "arn:aws:dynamodb:us-east-1:222222222222:table/orders"
        )
    return TableSpec(match["region"], match["table"])


@dataclass
class Table:
    """One table: its client and what DescribeTable said about it."""

    spec: TableSpec
    client: Any
    endpoint: str | None
    description: dict[str, Any] = field(repr=False)
    credentials: Credentials = DEFAULT

    @property
    def name(self) -> str:
        """What requests name the table by: its ARN if it was given one, else its name."""
        return self.spec.request_name

    @property
    def key_schema(self) -> list[tuple[str, str]]:
        """[(attribute name, S|N|B)], partition key first."""
        return key_schema_of(self.description)

    @property
    def key_names(self) -> list[str]:
        return [name for name, _ in self.key_schema]

    def key_of(self, item: Item) -> Item:
        return {name: item[name] for name in self.key_names}

    def key_id(self, item: Item) -> str:
        return key_id(encode_item(self.key_of(item)))

    @property
    def item_count(self) -> int:
        return int(self.description.get("ItemCount", 0))

    @property
    def size_bytes(self) -> int:
        return int(self.description.get("TableSizeBytes", 0))

    def refresh(self) -> None:
        self.description = describe(self.client, self.spec, self.endpoint)


def key_schema_of(description: dict[str, Any]) -> list[tuple[str, str]]:
    """[(attribute name, S|N|B)], partition key first, from DescribeTable's KeySchema and AttributeDefinitions
    (or a backup manifest's copy of them)."""
    types = {a["AttributeName"]: a["AttributeType"] for a in description.get("AttributeDefinitions", [])}
    ordered = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
    return [(k["AttributeName"], types.get(k["AttributeName"], "?")) for k in ordered]


def describe(client: Any, spec: TableSpec, endpoint: str | None) -> dict[str, Any]:
    where = f" at {endpoint}" if endpoint else ""
    return checks.describe(
        client,
        spec.request_name,
        f"table {spec}{where}",
        "check the table name and region, and the endpoint option",
        "check the endpoint option and the network",
    )


def open_table(text: str, endpoint: str | None, *, pool: int = 32, side: str | None = None,
               credentials: Credentials = DEFAULT) -> Table:
    """Parse ``region/table`` or a table ARN, make its client and describe it; every problem is a
    ReplicatorError. ``side`` names the endpoint's option in a message (``"source"``: --source-endpoint)."""
    spec = parse_spec(text)
    # The tools read with a few standard retries; writes go through TableWriter, which retries without end.
    client = clients.dynamodb(spec.region, endpoint, pool=pool, retries=5, side=side, credentials=credentials)
    return Table(spec=spec, client=client, endpoint=endpoint, description=describe(client, spec, endpoint),
                 credentials=credentials)


def show_keys(key_schema: Sequence[tuple[str, str]]) -> str:
    """``[pk S, sk N]``: a key schema as the messages write it."""
    return "[" + ", ".join(f"{name} {type_}" for name, type_ in key_schema) + "]"


def check_same_keys(primary: Table, replica: Table) -> None:
    if primary.key_schema != replica.key_schema:
        raise ReplicatorError(
            f"key schemas differ: {primary.spec} has {show_keys(primary.key_schema)} but {replica.spec} has "
            f"{show_keys(replica.key_schema)}; the tables must share their key schema"
        )


def check_item_key(table: Table, item: Item, where: str) -> None:
    """The item has each key attribute of ``table``, of its type; else one error saying ``where`` it is."""
    for name, type_ in table.key_schema:
        value = item.get(name)
        if isinstance(value, dict) and list(value) == [type_]:
            continue
        found = "does not have it" if value is None else f"has it as {'/'.join(value) if isinstance(value, dict) else value!r}"
        raise ReplicatorError(
            f"{where}: the item does not fit the key schema of {table.spec} {show_keys(table.key_schema)}: "
            f"key attribute {name!r} must be {type_}, and the item {found}"
        )


class _Num(str):
    """A JSON number token, kept as its text so a 38-digit key is not rounded through a float."""


def _is_dynamodb_json(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SCALAR_KEY_TYPES + (
        "M", "L", "SS", "NS", "BS", "BOOL", "NULL")


def _number(text: str, name: str) -> str:
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ReplicatorError(f"key attribute {name!r}: {text!r} is not a number") from None
    if not number.is_finite():
        raise ReplicatorError(f"key attribute {name!r}: {text!r} is not a finite number")
    return text


def _binary(text: Any, name: str) -> bytes:
    if not isinstance(text, str):
        raise ReplicatorError(f"key attribute {name!r} is binary: give it as base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReplicatorError(f"key attribute {name!r} is binary: {text!r} is not valid base64") from None


def parse_key(text: str, table: Table) -> Item:
    """A primary key in boto3 form from plain JSON or DynamoDB JSON, checked against the key schema."""
    try:
        raw = json.loads(text, parse_float=_Num, parse_int=_Num)
    except ValueError as exc:
        raise ReplicatorError(
            f"KEY is not valid JSON ({exc}): give it as '{{\"id\": \"abc\"}}' or '{{\"id\": {{\"S\": \"abc\"}}}}'"
        ) from None
    if not isinstance(raw, dict):
        raise ReplicatorError("KEY must be a JSON object of the key attributes, e.g. '{\"id\": \"abc\"}'")
    schema = dict(table.key_schema)
    wanted = ", ".join(f"{n} ({t})" for n, t in table.key_schema)
    if set(raw) != set(schema):
        raise ReplicatorError(
            f"KEY has attributes [{', '.join(sorted(raw))}] but the key of {table.spec} is [{wanted}]"
        )
    key: Item = {}
    for name, value in raw.items():
        expected = schema[name]
        if _is_dynamodb_json(value):
            (tag, inner), = value.items()
            if tag != expected or not isinstance(inner, str) or isinstance(inner, _Num):
                raise ReplicatorError(f"key attribute {name!r} must be of type {expected} in {table.spec}, not {value!r}")
            if tag == "B":
                key[name] = {"B": _binary(inner, name)}
            elif tag == "N":
                key[name] = {"N": _number(inner, name)}
            else:
                key[name] = {"S": inner}
            continue
        if isinstance(value, (dict, list, bool)) or value is None:
            raise ReplicatorError(f"key attribute {name!r} must be of type {expected} in {table.spec}, not {value!r}")
        key[name] = _plain(value, expected, name)
    for name, value in key.items():
        if value.get("S") == "" or value.get("B") == b"":
            raise ReplicatorError(f"key attribute {name!r} is empty: DynamoDB keys cannot be empty")
    return key


def _plain(value: str, expected: str, name: str) -> dict[str, Any]:
    is_number = isinstance(value, _Num)
    if expected == "N":
        if not is_number:
            raise ReplicatorError(f"key attribute {name!r} is a number in its table, not the string {value!r}")
        return {"N": _number(str(value), name)}
    if is_number:
        raise ReplicatorError(f"key attribute {name!r} is of type {expected} in its table, not the number {value}")
    if expected == "B":
        return {"B": _binary(value, name)}
    return {"S": value}


def check_segments(segment: int | None, segments: int | None) -> None:
    """--segment I needs --segments N with 0 <= I < N; N is 1 to 1,000,000 (DynamoDB's limit)."""
    if segments is not None and not 1 <= segments <= 1_000_000:
        raise ReplicatorError(f"--segments {segments} is out of range: give 1 to 1000000")
    if segment is not None:
        if segments is None:
            raise ReplicatorError(f"--segment {segment} needs --segments N, the total the table is split into")
        if not 0 <= segment < segments:
            raise ReplicatorError(f"--segment {segment} is out of range: with --segments {segments} give 0 to {segments - 1}")


def scan_pages(
    table: Table,
    *,
    segment: int = 0,
    segments: int = 1,
    start_key: Item | None = None,
    limit: int | None = None,
    consistent: bool = True,
    keys_only: bool = False,
    also: Sequence[str] = (),
    before_request: Callable[[], None] | None = None,
    on_consumed: Callable[[float], None] | None = None,
) -> Iterator[tuple[list[Item], Item | None]]:
    """One segment of a parallel Scan, page by page: (items, LastEvaluatedKey or None at the end).

    ``keys_only`` reads the key attributes, and those named in ``also``."""
    kwargs: dict[str, Any] = {"TableName": table.name, "ConsistentRead": consistent}
    if segments > 1:
        kwargs.update(Segment=segment, TotalSegments=segments)
    if limit:
        kwargs["Limit"] = limit
    if keys_only:
        kwargs.update(_key_projection(table, also))
    if on_consumed is not None:
        kwargs["ReturnConsumedCapacity"] = "TOTAL"
    if start_key:
        kwargs["ExclusiveStartKey"] = start_key
    while True:
        if before_request is not None:
            before_request()
        try:
            page = table.client.scan(**kwargs)
        except ClientError as exc:
            raise ReplicatorError(f"cannot scan {table.spec}: {client_error(exc)}") from None
        if on_consumed is not None:
            on_consumed(page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0))
        last = page.get("LastEvaluatedKey")
        yield page["Items"], last
        if not last:
            return
        kwargs["ExclusiveStartKey"] = last


def _key_projection(table: Table, also: Sequence[str] = ()) -> dict[str, Any]:
    names = {f"#k{i}": name for i, name in enumerate([*table.key_names, *also])}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


BATCH_GET_LIMIT = 100


def batch_get(table: Table, keys: list[Item], *, keys_only: bool = False, sleep: Callable[[float], None] = time.sleep) -> list[Item]:
    """The items of ``keys`` that exist, with consistent reads; UnprocessedKeys are retried with backoff."""
    found: list[Item] = []
    extra = _key_projection(table) if keys_only else {}
    for start in range(0, len(keys), BATCH_GET_LIMIT):
        request: dict[str, Any] = {"Keys": keys[start : start + BATCH_GET_LIMIT], "ConsistentRead": True, **extra}
        attempt = 0
        while request:
            try:
                response = table.client.batch_get_item(RequestItems={table.name: request})
            except ClientError as exc:
                raise ReplicatorError(f"cannot read items of {table.spec} (BatchGetItem): {client_error(exc)}") from None
            found.extend(response.get("Responses", {}).get(table.name, []))
            request = response.get("UnprocessedKeys", {}).get(table.name)
            if request:
                attempt += 1
                sleep(min(5.0, 0.05 * 2**attempt) * random.random())
    return found
