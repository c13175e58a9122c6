"""The record codec: stream JSON <-> boto3 attribute values, and records to changes."""

from __future__ import annotations

import base64
import json
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from replicator.changes.codec import (
    RecordFormatError, check_number, decode_record, decode_value, encode_record, encode_value, key_id,
)

EDGE_NUMBERS = [
    "0",
    "-0",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "12345678901234567890123456789012345678",
    "-0.000000000000000000000000000000000001",
    "0.000000000000000000000000000000000001",
    "1E+125",
    "-1.5",
]

numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1).map(str),
    st.builds(
        lambda sign, whole, frac: f"{sign}{whole}.{frac}",
        st.sampled_from(["", "-"]),
        st.integers(min_value=0, max_value=10**18),
        st.from_regex(r"\A[0-9]{1,19}\Z"),
    ),
)
names = st.text(min_size=1, max_size=8)
strings = st.text(max_size=16)  # includes "" and any unicode, astral planes too
scalars = st.one_of(
    strings.map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    st.binary(max_size=16).map(lambda b: {"B": b}),
    st.booleans().map(lambda b: {"BOOL": b}),
    st.just({"NULL": True}),
    st.lists(strings, min_size=1, max_size=4, unique=True).map(lambda v: {"SS": v}),
    st.lists(numbers, min_size=1, max_size=4, unique=True).map(lambda v: {"NS": v}),
    st.lists(st.binary(max_size=8), min_size=1, max_size=4, unique=True).map(lambda v: {"BS": v}),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4).map(lambda v: {"L": v}),
        st.dictionaries(names, children, max_size=4).map(lambda v: {"M": v}),
    ),
    max_leaves=24,
)
key_values = st.one_of(
    strings.filter(bool).map(lambda s: {"S": s}),
    numbers.map(lambda n: {"N": n}),
    st.binary(min_size=1, max_size=16).map(lambda b: {"B": b}),
)
items = st.tuples(key_values, st.dictionaries(names.filter(lambda n: n != "pk"), values, max_size=6)).map(
    lambda kv: ({"pk": kv[0]}, {**kv[1], "pk": kv[0]})
)

DEEP = {
    "M": {
        "a": {"L": [{"M": {}}, {"L": []}, {"L": [{"M": {"b": {"BS": [b"", b"\x00\xff"]}}}]}]},
        "": {"M": {"c": {"N": "-0.000000000000000000000000000000000001"}, "d": {"S": ""}}},
    }
}


def through_json(value):
    return json.loads(json.dumps(value))


@settings(max_examples=300, deadline=None)
@given(values)
@example(DEEP)
@example({"L": []})
@example({"M": {}})
@example({"B": b""})
@example({"S": "\u00e9\u4e2d\U0001f600"})
def test_attribute_value_round_trips_through_stream_json(value):
    assert decode_value(through_json(encode_value(value))) == value


def test_stream_binary_is_base64_and_decodes_to_bytes():
    """The adapter writes binary as base64 text; boto3 wants bytes, at any depth."""
    stream = {"M": {"b": {"B": "AP8="}, "l": {"L": [{"BS": ["", "AQ=="]}]}}}
    assert decode_value(stream) == {"M": {"b": {"B": b"\x00\xff"}, "l": {"L": [{"BS": [b"", b"\x01"]}]}}}
    assert encode_value(decode_value(stream)) == stream


@settings(max_examples=150, deadline=None)
@given(items, st.sampled_from(["INSERT", "MODIFY"]), st.one_of(st.none(), st.integers(0, 2**41)))
def test_upsert_record_round_trips_the_whole_item(keys_item, event, created_ms):
    keys, item = keys_item
    change = decode_record(encode_record(event, keys, item, "4200000000000000000001", created_ms, old_image=keys))
    assert change.new_image == item
    assert change.keys == keys
    assert not change.is_delete
    assert change.sequence_number == "4200000000000000000001"
    assert change.created_ms == created_ms


@settings(max_examples=100, deadline=None)
@given(items)
def test_remove_record_is_a_delete_of_the_keys(keys_item):
    keys, item = keys_item
    change = decode_record(encode_record("REMOVE", keys, None, "7", 1700000000000, old_image=item))
    assert change.new_image is None
    assert change.is_delete
    assert change.keys == keys
    assert change.created_ms == 1700000000000


def _record(keys_json: str, event: str = "REMOVE") -> bytes:
    return f'{{"eventName": "{event}", "dynamodb": {{"Keys": {keys_json}, "SequenceNumber": "1"}}}}'.encode()


def test_key_id_is_equal_for_equal_keys_whatever_the_order():
    one = decode_record(_record('{"pk": {"S": "a"}, "sk": {"N": "1"}}'))
    two = decode_record(_record('{"sk": {"N": "1"}, "pk": {"S": "a"}}'))
    other = decode_record(_record('{"pk": {"S": "a"}, "sk": {"N": "2"}}'))
    assert one.key_id == two.key_id
    assert one.key_id != other.key_id
    assert key_id({"pk": {"S": "a"}, "sk": {"N": "1"}}) == key_id({"sk": {"N": "1"}, "pk": {"S": "a"}})


def test_binary_keys_decode_to_bytes_and_identify_the_key():
    key = base64.b64encode(b"\x00\x01\xfe\xff").decode()
    change = decode_record(_record(f'{{"pk": {{"B": "{key}"}}}}'))
    assert change.keys == {"pk": {"B": b"\x00\x01\xfe\xff"}}
    same = decode_record(encode_record("INSERT", change.keys, {**change.keys, "v": {"N": "1"}}, "2"))
    other = decode_record(encode_record("REMOVE", {"pk": {"B": b"\x00\x01\xfe"}}, None, "3"))
    assert same.key_id == change.key_id
    assert other.key_id != change.key_id


@pytest.mark.parametrize("event", ["INSERT", "MODIFY"])
def test_upsert_without_new_image_names_the_stream_view_type_to_use(event):
    with pytest.raises(RecordFormatError, match="NEW_AND_OLD_IMAGES"):
        decode_record(encode_record(event, {"pk": {"S": "a"}}, None, "9"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{not json",
        b"\xff\xfe\x00",
        b"[]",
        b'"a string"',
        b'{"eventName": "INSERT"}',
        b'{"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1"}}',
        b'{"dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1"}}',
    ],
)
def test_malformed_records_raise_record_format_error(data):
    with pytest.raises(RecordFormatError):
        decode_record(data)


def test_unknown_event_name_raises_and_names_it():
    with pytest.raises(RecordFormatError, match="UPDATE"):
        decode_record(_record('{"pk": {"S": "a"}}', event="UPDATE"))


def test_an_untagged_value_is_a_record_format_error_not_a_guess():
    data = b'{"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1", ' \
           b'"NewImage": {"pk": {"S": "a"}, "m": {}}}}'
    with pytest.raises(RecordFormatError, match="exactly one type tag"):
        decode_record(data)


def test_a_value_with_two_type_tags_is_a_record_format_error():
    data = b'{"eventName": "INSERT", "dynamodb": {"Keys": {"pk": {"S": "a"}}, "SequenceNumber": "1", ' \
           b'"NewImage": {"pk": {"S": "a"}, "x": {"S": "1", "N": "1"}}}}'
    with pytest.raises(RecordFormatError, match="type tag"):
        decode_record(data)


@given(numbers)
def test_every_number_dynamodb_stores_passes_check_number(number):
    check_number(number)


@pytest.mark.parametrize("number", [
    "9.9999999999999999999999999999999999999E+125", "-9.9999999999999999999999999999999999999E+125", "1E-130",
    "-1E-130", "1" + "0" * 125, "0E+999", "-0.0", "12345678901234567890123456789012345678000", "+1", ".5", "5.",
    "0.000123456789012345678901234567890123456780",
])
def test_check_number_accepts_the_edges_of_dynamodb_s_range(number):
    check_number(number)


@pytest.mark.parametrize("number, problem", [
    ("1.5e999", "largest magnitude, 9.9999999999999999999999999999999999999E+125"),
    ("1E+126", "largest magnitude"),
    ("10E+125", "largest magnitude"),
    ("-1E-131", "smallest magnitude, 1E-130"),
    ("0.09E-129", "smallest magnitude"),
    ("123456789012345678901234567890123456789", "39 significant digits"),
    ("1.00000000000000000000000000000000000001", "39 significant digits"),
    ("NaN", "no NaN or infinity"),
    ("-Infinity", "no NaN or infinity"),
    ("", "is not a number"),
    (" 1", "is not a number"),
    ("1_000", "is not a number"),
    ("0x10", "is not a number"),
    ("1e", "is not a number"),
])
def test_check_number_refuses_what_dynamodb_refuses_saying_why(number, problem):
    with pytest.raises(RecordFormatError, match=re.escape(problem)):
        check_number(number)
