"""Items compare by value, as DynamoDB holds them: numbers whatever their spelling, sets in any order.

A database may return a number in the spelling it was sent (moto does), so a replica can hold ``1.0``
where the primary holds ``1``; diff-tables must not call that a discrepancy, or --repair never clears it.
"""

from __future__ import annotations

from decimal import Decimal, Rounded

import boto3
import boto3.dynamodb.types
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from replicator.changes.codec import RecordFormatError, canonical_number, decode_record, encode_record, key_id
from replicator.changes.squash import squash
from replicator.tables.compare import compare_tables, normalise, normalise_value
from replicator.tables.diff import diff_tables
from replicator.tables.records import diff_record
from replicator.tables.spec import open_table
from unit_helpers import create_pk_table

BIG = "15" + "0" * 99  # 1.5E+100 written out


def same(a: dict, b: dict) -> bool:
    return normalise({"x": a}) == normalise({"x": b})


# A DynamoDB number: up to 38 significant digits, magnitude 1E-130 to below 1E+126.
number_parts = st.tuples(
    st.booleans(),
    st.integers(min_value=0, max_value=10**38 - 1),
    st.integers(min_value=-130, max_value=87),
)
STYLES = ["plain", "e", "E", "e+", "leading_zeros", "trailing_zeros", "python_e"]


def spell(parts: tuple[bool, int, int], style: str, pad: int) -> str:
    """One spelling of (-1)^negative * digits * 10^exponent; ``pad`` zeros go wherever the style puts them."""
    negative, digits, exponent = parts
    sign = "-" if negative else ""
    plain = format(Decimal(f"{digits}E{exponent}"), "f")
    if style == "plain":
        return sign + plain
    if style in ("e", "E", "e+"):  # the digits shifted left by pad, the exponent down by pad
        shifted = exponent - pad
        mark = "e" if style != "E" else "E"
        plus = "+" if style == "e+" and shifted >= 0 else ""
        return f"{sign}{digits * 10**pad}{mark}{plus}{shifted}"
    if style == "leading_zeros":
        return sign + "0" * pad + plain
    if style == "trailing_zeros":
        return sign + plain + ("" if "." in plain else ".") + "0" * pad
    return sign + format(Decimal(f"{digits}E{exponent}"), "e")


spellings = st.tuples(st.sampled_from(STYLES), st.integers(min_value=0, max_value=5))


@pytest.mark.parametrize("spelling", ["1", "1.0", "01", "1e0", "1E+0", "10E-1", "0.1e1", "1.000"])
def test_spellings_of_one(spelling):
    assert canonical_number(spelling) == "1"
    assert same({"N": spelling}, {"N": "1"})


@pytest.mark.parametrize("spelling", ["0", "-0", "0.0", "-0.000", "0e5", "-0E-130", "00"])
def test_spellings_of_zero(spelling):
    assert canonical_number(spelling) == "0"
    assert same({"N": spelling}, {"N": "0"})


def test_big_number_written_out_equals_its_scientific_form():
    assert same({"N": "1.5E+100"}, {"N": BIG})
    assert not same({"N": "1.5E+100"}, {"N": BIG + "0"})
    assert not same({"N": "1.5E+100"}, {"N": "1.5E-100"})


def test_not_a_number_is_a_record_format_error():
    for text in ("", "abc", "NaN", "Infinity", "1..0"):
        with pytest.raises(RecordFormatError):
            canonical_number(text)


@settings(max_examples=300, deadline=None)
@given(number_parts, spellings, spellings)
def test_any_two_spellings_of_a_number_compare_equal(parts, one, two):
    a, b = spell(parts, *one), spell(parts, *two)
    assert Decimal(a) == Decimal(b)  # the spellings are right
    assert canonical_number(a) == canonical_number(b)
    assert same({"N": a}, {"N": b})


@settings(max_examples=300, deadline=None)
@given(number_parts, number_parts, spellings, spellings)
def test_different_numbers_compare_unequal(first, second, one, two):
    a, b = spell(first, *one), spell(second, *two)
    assume(Decimal(a) != Decimal(b))
    assert canonical_number(a) != canonical_number(b)
    assert not same({"N": a}, {"N": b})


@settings(max_examples=200, deadline=None)
@given(st.lists(number_parts, min_size=1, max_size=6,
                unique_by=lambda p: Decimal(f"{'-' if p[0] else ''}{p[1]}E{p[2]}")), st.data())
def test_number_sets_compare_by_value_in_any_order(members, data):
    first = [spell(p, *data.draw(spellings)) for p in members]
    second = data.draw(st.permutations([spell(p, *data.draw(spellings)) for p in members]))
    assert same({"NS": first}, {"NS": second})
    if len(members) > 1:
        assert not same({"NS": first}, {"NS": second[1:]})
    assume(len(set(canonical_number(n) for n in first)) == len(first))
    changed = [str(Decimal(second[0]) + 1), *second[1:]]
    assume(Decimal(changed[0]) not in {Decimal(n) for n in first})
    assert not same({"NS": first}, {"NS": changed})


def pairs() -> st.SearchStrategy[tuple[dict, dict]]:
    """(a, b): one random attribute value twice, numbers spelled independently and sets reordered in b."""
    numbers = st.tuples(number_parts, spellings, spellings).map(
        lambda t: ({"N": spell(t[0], *t[1])}, {"N": spell(t[0], *t[2])}))
    strings = st.text(max_size=6).map(lambda s: ({"S": s}, {"S": s}))
    binary = st.binary(max_size=6).map(lambda b: ({"B": b}, {"B": b}))
    string_sets = st.lists(st.text(max_size=4), min_size=1, max_size=4, unique=True).map(
        lambda v: ({"SS": v}, {"SS": v[::-1]}))
    binary_sets = st.lists(st.binary(max_size=4), min_size=1, max_size=4, unique=True).map(
        lambda v: ({"BS": v}, {"BS": [bytearray(b) for b in v[::-1]]}))
    number_sets = st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=4, unique=True).map(
        lambda v: ({"NS": [str(n) for n in v]}, {"NS": [f"{n}.00" for n in v[::-1]]}))
    others = st.sampled_from([({"BOOL": True}, {"BOOL": True}), ({"NULL": True}, {"NULL": True})])
    scalars = st.one_of(numbers, strings, binary, string_sets, binary_sets, number_sets, others)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(
                lambda ps: ({"L": [a for a, _ in ps]}, {"L": [b for _, b in ps]})),
            st.dictionaries(st.text(max_size=4), children, max_size=4).map(
                lambda d: ({"M": {k: a for k, (a, _) in d.items()}}, {"M": {k: b for k, (_, b) in d.items()}})),
        ),
        max_leaves=16,
    )


@settings(max_examples=200, deadline=None)
@given(pairs())
def test_nested_maps_and_lists_compare_by_value(pair):
    a, b = pair
    assert same(a, b)
    assert normalise_value(a) == normalise_value(b)


def test_everything_else_compares_exactly():
    assert not same({"S": "1"}, {"N": "1"})
    assert not same({"S": "1.0"}, {"S": "1"})  # strings are never numbers
    assert not same({"SS": ["1"]}, {"NS": ["1"]})
    assert not same({"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "2.0"}, {"N": "1.0"}]})  # a list keeps its order
    assert same({"L": [{"N": "1"}, {"N": "2"}]}, {"L": [{"N": "1.0"}, {"N": "2.0"}]})
    assert not same({"M": {"a": {"N": "1"}}}, {"L": [{"N": "1"}]})
    assert not same({"M": {"a": {"N": "1"}}}, {"M": {"b": {"N": "1"}}})
    assert not same({"BOOL": True}, {"N": "1"})
    assert not same({"B": b"\x01"}, {"B": b"\x02"})
    assert not same({"BS": [b"\x01", b"\x02"]}, {"BS": [b"\x01"]})
    assert normalise({"a": {"N": "1"}}) != normalise({"a": {"N": "1"}, "b": {"NULL": True}})


def test_key_id_and_squash_treat_number_spellings_as_one_key():
    assert key_id({"pk": {"S": "a"}, "sk": {"N": "1"}}) == key_id({"sk": {"N": "1.0"}, "pk": {"S": "a"}})
    assert key_id({"pk": {"N": BIG}}) == key_id({"pk": {"N": "1.5E+100"}})
    assert key_id({"pk": {"N": "1"}}) != key_id({"pk": {"N": "10"}})
    assert key_id({"pk": {"N": "1"}}) != key_id({"pk": {"S": "1"}})
    first = decode_record(encode_record("INSERT", {"pk": {"N": "1"}}, {"pk": {"N": "1"}, "v": {"S": "old"}}, "1"))
    last = decode_record(encode_record("INSERT", {"pk": {"N": "1.0"}}, {"pk": {"N": "1.0"}, "v": {"S": "new"}}, "2"))
    assert squash([first, last]) == [last]


def test_a_record_whose_number_key_is_not_a_number_is_a_record_format_error():
    data = b'{"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"N": "one"}}, "SequenceNumber": "1"}}'
    with pytest.raises(RecordFormatError):
        decode_record(data)


@pytest.fixture
def number_keyed(monkeypatch):
    """src and dst keyed by a number, on moto, which returns every number in the spelling it was sent.

    moto applies a ProjectionExpression (the tools' keys-only reads) by parsing every attribute with
    boto3's 38-digit context, which traps on ``"15" + 99 zeros`` (it rounds away only zeros, but rounds);
    DynamoDB takes it as 1.5E+100. Turning off that trap lets moto read it as DynamoDB does."""
    monkeypatch.setitem(boto3.dynamodb.types.DYNAMODB_CONTEXT.traps, Rounded, False)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for name in ("src", "dst"):
            create_pk_table(client, name, key_type="N")
        yield client


def test_diff_tools_see_no_difference_in_number_spellings_on_moto(number_keyed):
    client = number_keyed
    primary_item = {"pk": {"N": "1"}, "v": {"N": BIG}, "s": {"NS": ["1", "2.5", "-0"]},
                    "m": {"M": {"l": {"L": [{"N": "10"}, {"S": "x"}]}}}}
    replica_item = {"pk": {"N": "1.0"}, "v": {"N": "1.5E+100"}, "s": {"NS": ["2.50", "0", "1e0"]},
                    "m": {"M": {"l": {"L": [{"N": "1E+1"}, {"S": "x"}]}}}}
    client.put_item(TableName="src", Item=primary_item)
    client.put_item(TableName="dst", Item=replica_item)
    client.put_item(TableName="src", Item={"pk": {"N": "2"}, "v": {"N": "1.5E+100"}})
    client.put_item(TableName="dst", Item={"pk": {"N": "2"}, "v": {"N": "1.5E-100"}})  # really different
    assert client.scan(TableName="dst")["Items"][0]["v"] in ({"N": "1.5E+100"}, {"N": "1.5E-100"})  # kept as sent

    src, dst = open_table("us-east-1/src", None), open_table("us-east-1/dst", None)
    found = diff_tables(src, dst)
    assert (found.scanned, found.replica_scanned, found.missing, found.different, found.extraneous) == (2, 2, 0, 1, 0)
    assert found.samples["different"] == [{"pk": {"N": "2"}}]
    assert diff_tables(src, dst, repair=True).written == 1
    assert diff_tables(src, dst).discrepancies == 0

    assert diff_record(src, dst, {"pk": {"N": "1"}}).status == "equal"
    assert diff_record(src, dst, {"pk": {"N": "1.0"}}).status == "equal"
    assert compare_tables(client, "src", client, "dst").discrepancies == 0
    client.put_item(TableName="dst", Item={**replica_item, "v": {"N": "1.5E+99"}})
    assert diff_record(src, dst, {"pk": {"N": "1"}}).status == "different"
    assert len(compare_tables(client, "src", client, "dst").different) == 1
