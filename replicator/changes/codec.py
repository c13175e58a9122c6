"""The record codec: a DynamoDB stream record, as the adapter serialises it, to a change we can apply.

The adapter's RecordObjectMapper writes each stream record as JSON: eventName (INSERT, MODIFY, REMOVE)
and a ``dynamodb`` object with Keys, NewImage, OldImage, SequenceNumber and ApproximateCreationDateTime
(epoch milliseconds). Attribute values are DynamoDB JSON with binary as base64. boto3's low-level client
takes the same shape except that binary is ``bytes``, so decoding only has to turn B and BS back into
bytes, at any depth. Numbers stay strings: a 38-digit N round-trips exactly, with no float in between.

A number has many spellings (``1``, ``1.0``, ``01``, ``1e0``; ``-0`` and ``0``) that DynamoDB treats as one
value, and a database may hand a number back in the spelling it was sent. So wherever numbers are
compared (key identities here, item images in ``tables.compare``) they go through :func:`canonical_number`.
Which numbers DynamoDB stores at all (38 significant digits, magnitudes 1E-130 to 9.99...E+125) is
:func:`check_number`'s rule, for whatever produces changes: one it refuses can never be written.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from binascii import a2b_base64
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

AttributeValue = dict[str, Any]
Item = dict[str, AttributeValue]

UPSERT_EVENTS = frozenset({"INSERT", "MODIFY"})
REMOVE_EVENT = "REMOVE"


class RecordFormatError(ValueError):
    """A stream record we cannot apply; retrying will not help, skipping would lose a change."""


@dataclass(frozen=True, slots=True)
class Change:
    """The state of one item after one stream record: a new image to put, or a key to delete."""

    key_id: str
    keys: Item
    new_image: Item | None
    sequence_number: str
    created_ms: int | None
    read_through: bool = False
    """The record names the key only (a keys-only record, a KEYS_ONLY or OLD_IMAGE stream): the item's
    present state is read from the source before writing (``reader``)."""
    ttl_expiry: bool = False
    """A REMOVE that DynamoDB's TTL made (:func:`is_ttl_expiry`), which a path may leave out (``shape``)."""

    @property
    def is_delete(self) -> bool:
        return self.new_image is None


_HOLDS_BINARY = frozenset({"B", "BS", "M", "L"})
"""The tags whose value is, or may contain, binary: every other value is the same in both forms."""


def decode_value(value: AttributeValue) -> AttributeValue:
    """One attribute value from stream JSON (base64 binary) to boto3 form (bytes).

    A value without binary in it (S, N, BOOL, NULL, SS, NS) is returned as it is, not copied: the decoders
    own what they parse, and those values are most of an item (measured: half the decoding's CPU)."""
    if len(value) != 1:
        raise RecordFormatError(f"attribute value {value!r} has not exactly one type tag")
    (tag, inner), = value.items()
    if tag not in _HOLDS_BINARY:
        return value
    if tag == "B":
        return {"B": a2b_base64(inner)}  # what base64.b64decode does, without its Python wrapper
    if tag == "BS":
        return {"BS": [a2b_base64(b) for b in inner]}
    if tag == "M":
        return {"M": {k: decode_value(v) for k, v in inner.items()}}
    return {"L": [decode_value(v) for v in inner]}


def encode_value(value: AttributeValue) -> AttributeValue:
    """The inverse of :func:`decode_value`: boto3 form to stream JSON."""
    (tag, inner), = value.items()
    if tag == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if tag == "BS":
        return {"BS": [base64.b64encode(bytes(b)).decode("ascii") for b in inner]}
    if tag == "M":
        return {"M": {k: encode_value(v) for k, v in inner.items()}}
    if tag == "L":
        return {"L": [encode_value(v) for v in inner]}
    return {tag: inner}


def decode_item(item: Item) -> Item:
    try:
        return {name: decode_value(value) for name, value in item.items()}
    except (binascii.Error, ValueError, TypeError, AttributeError) as exc:
        if isinstance(exc, RecordFormatError):
            raise
        raise RecordFormatError(f"malformed attribute value in {str(item)[:200]}: {exc}") from exc


def encode_item(item: Item) -> Item:
    return {name: encode_value(value) for name, value in item.items()}


_CANONICAL_INTEGER = re.compile(r"-?[1-9](?:[0-9]{0,36}[1-9])?")
"""An integer of at most 38 digits with no leading or trailing zero: ``canonical_number`` leaves it as it is."""


def canonical_number(text: str) -> str:
    """One spelling per value of a DynamoDB number: ``1.5E+100`` for 15 and 99 zeros, ``1`` for ``1.0``, ``0``
    for ``-0``.

    Exact at any length: the digits lose their trailing zeros into the exponent, with no rounding, so two
    spellings give one string exactly when they are one value (DynamoDB's 38 digits and exponents of -130
    to +125 are far inside what this handles)."""
    if isinstance(text, str) and _CANONICAL_INTEGER.fullmatch(text):
        return text  # already its one spelling (most keys): Decimal would give it back unchanged
    try:
        number = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise RecordFormatError(f"{text!r} is not a DynamoDB number") from None
    if not number.is_finite():
        raise RecordFormatError(f"{text!r} is not a DynamoDB number: it is not finite")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return "0"
    exponent += len(digits) - len(significant)
    return str(Decimal((sign, tuple(map(int, significant)), exponent)))


_NUMBER_SYNTAX = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NUMBER_DIGITS = 38
NUMBER_LARGEST = "9.9999999999999999999999999999999999999E+125"
NUMBER_SMALLEST = "1E-130"


def check_number(text: Any) -> None:
    """Raise RecordFormatError unless ``text`` (an N's string) is a number DynamoDB stores.

    DynamoDB refuses a number of more than 38 significant digits, a magnitude above
    9.9999999999999999999999999999999999999E+125 or below 1E-130 (zero aside), and NaN or Infinity; a change
    carrying one can never be written, and retrying it stops its shard for good. So whatever produces changes
    checks its numbers here, where the rule is stated once. Leading and trailing zeros are not significant
    (``1000`` is 1E+3); the spelling is a decimal with an optional sign, point and exponent."""
    if not isinstance(text, str) or not _NUMBER_SYNTAX.fullmatch(text):
        if isinstance(text, str) and text.strip().lstrip("+-").lower() in ("nan", "inf", "infinity"):
            raise RecordFormatError(f"{text} is not a DynamoDB number: DynamoDB has no NaN or infinity")
        raise RecordFormatError(f"{repr(text)[:60]} is not a number (digits, with an optional sign, point and "
                                "exponent)")
    number = Decimal(text)
    if number.is_zero():
        return
    shown = text if len(text) <= 60 else f"{text[:57]}..."
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    if digits > NUMBER_DIGITS:
        raise RecordFormatError(f"{shown} has {digits} significant digits, and DynamoDB keeps at most "
                                f"{NUMBER_DIGITS}: round it, or store it as a string")
    if number.adjusted() > 125:
        raise RecordFormatError(f"{shown} is beyond DynamoDB's largest magnitude, {NUMBER_LARGEST}: "
                                "store it as a string")
    if number.adjusted() < -130:
        raise RecordFormatError(f"{shown} is below DynamoDB's smallest magnitude, {NUMBER_SMALLEST} (zero aside): "
                                "round it to 0, or store it as a string")


def key_id(stream_keys: Item) -> str:
    """A stable identity for a primary key, from its stream JSON (binary keys are already base64 text).

    Numbers are canonical, so ``{"N": "1"}`` and ``{"N": "1.0"}``, one key to DynamoDB, are one key here:
    squash keeps one change for it, and the table tools match a replica item to its primary's."""
    if not isinstance(stream_keys, dict):
        return json.dumps(stream_keys, sort_keys=True, separators=(",", ":"))
    canonical = {}
    for name, value in stream_keys.items():
        if isinstance(value, dict) and len(value) == 1 and isinstance(value.get("N"), str):
            try:
                value = {"N": canonical_number(value["N"])}
            except RecordFormatError as exc:
                raise RecordFormatError(f"key attribute {name!r}: {exc}") from None
        canonical[name] = value
    return json.dumps(canonical, sort_keys=True, separators=(",", ":"))


def decode_record(data: bytes, *, created_unit_ms: int = 1, read_through: bool = False) -> Change:
    """Decode one adapter record (the JSON bytes of ``Record.binary_data``)."""
    try:
        record = json.loads(data)
    except ValueError as exc:
        raise RecordFormatError(f"not a DynamoDB stream record ({exc!r}): {data[:200]!r}") from exc
    return change_from_record(record, created_unit_ms=created_unit_ms, read_through=read_through)


def change_from_record(record: Any, *, created_unit_ms: int = 1, read_through: bool = False) -> Change:
    """One DynamoDB stream record, parsed, to a change.

    ``created_unit_ms`` is what one unit of ApproximateCreationDateTime is worth: 1 for the adapter (epoch
    milliseconds), 1000 for a Lambda event (epoch seconds). With ``read_through`` the record's images are
    not used: the change names the key, and the item is read from the source (KEYS_ONLY, OLD_IMAGE)."""
    try:
        event = record["eventName"]
        body = record["dynamodb"]
        keys = body["Keys"]
        sequence = body["SequenceNumber"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordFormatError(f"not a DynamoDB stream record ({exc!r}): {str(record)[:200]}") from exc
    created_ms = _created_ms(body.get("ApproximateCreationDateTime"), created_unit_ms, sequence)
    if read_through and event in UPSERT_EVENTS | {REMOVE_EVENT}:
        new_image = None
    elif event == REMOVE_EVENT:
        new_image = None
    elif event in UPSERT_EVENTS:
        if "NewImage" not in body:
            raise RecordFormatError(
                f"{event} record {sequence} carries no NewImage: the source stream's view type must be "
                "NEW_IMAGE or NEW_AND_OLD_IMAGES"
            )
        new_image = decode_item(body["NewImage"])
    else:
        raise RecordFormatError(f"unknown eventName {event!r} in record {sequence}")
    return Change(
        key_id=key_id(keys),
        keys=decode_item(keys),
        new_image=new_image,
        sequence_number=sequence,
        created_ms=created_ms,
        read_through=read_through,
        ttl_expiry=event == REMOVE_EVENT and is_ttl_expiry(record),
    )


def is_ttl_expiry(record: Any) -> bool:
    """True for a REMOVE record made by DynamoDB's TTL: its userIdentity is the DynamoDB service principal,
    as AWS documents it (``{"type": "Service", "principalId": "dynamodb.amazonaws.com"}``)."""
    if not isinstance(record, dict) or record.get("eventName") != REMOVE_EVENT:
        return False
    identity = record.get("userIdentity")
    return (isinstance(identity, dict) and identity.get("type") == TTL_IDENTITY["type"]
            and identity.get("principalId") == TTL_IDENTITY["principalId"])


TTL_IDENTITY = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
"""The userIdentity of a REMOVE record made by DynamoDB's Time to Live (AWS's "DynamoDB Streams and Time to
Live"); a user's delete has none."""


def _created_ms(created: Any, unit_ms: int, sequence: str) -> int | None:
    if created is None:
        return None
    try:
        return int(float(created) * unit_ms)
    except (TypeError, ValueError):
        raise RecordFormatError(f"record {sequence}: ApproximateCreationDateTime {created!r} is not a number") from None


def encode_record(
    event: str,
    keys: Item,
    new_image: Item | None,
    sequence_number: str,
    created_ms: int | None = None,
    old_image: Item | None = None,
) -> bytes:
    """Build the adapter's JSON for a record (used by tests and the benchmarks' synthetic input)."""
    body: dict[str, Any] = {
        "Keys": encode_item(keys),
        "SequenceNumber": sequence_number,
        "SizeBytes": 0,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if created_ms is not None:
        body["ApproximateCreationDateTime"] = created_ms
    if new_image is not None:
        body["NewImage"] = encode_item(new_image)
    if old_image is not None:
        body["OldImage"] = encode_item(old_image)
    record = {
        "eventID": sequence_number,
        "eventName": event,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
    }
    return json.dumps(record).encode("utf-8")
