"""changes.shape: projection, the item filter and TTL expiries, alone and in the applier's pipeline."""

from __future__ import annotations

import json
from decimal import Decimal

import boto3
import pytest
from hypothesis import given, settings, strategies as st
from moto import mock_aws

from replicator.changes.applier import Applier
from replicator.changes.codec import decode_record, encode_record
from replicator.changes.formats import DynamoDBStreamRecords, KeysOnlyRecords, KinesisCdcRecords, SourceRecord
from replicator.changes.reader import SourceReader
from replicator.changes.shape import TTL_IDENTITY, ReplicaShape, is_ttl_expiry, plain_item, ttl_capability
from replicator.changes.versions import Versioning
from replicator.changes.writer import TableWriter
from replicator.errors import ReplicatorError

from unit_helpers import create_pk_table

TTL_REMOVE = {"eventName": "REMOVE", "userIdentity": dict(TTL_IDENTITY)}


# --- projection -------------------------------------------------------------------------------------------

ITEM = {"pk": {"S": "a"}, "name": {"S": "Ann"}, "email": {"S": "a@x"}, "n": {"N": "1"}}


def test_exclude_drops_the_named_attributes_and_keeps_the_key():
    shape = ReplicaShape.build({"exclude_attributes": "email, n"})
    assert shape.project(ITEM, ["pk"]) == {"pk": {"S": "a"}, "name": {"S": "Ann"}}


def test_include_keeps_the_named_attributes_and_always_the_key():
    shape = ReplicaShape.build({"include_attributes": "name"})
    assert shape.project(ITEM, ["pk"]) == {"pk": {"S": "a"}, "name": {"S": "Ann"}}


def test_excluding_a_key_or_the_version_attribute_is_refused_in_one_line():
    shape = ReplicaShape.build({"exclude_attributes": "email,pk"})
    with pytest.raises(ReplicatorError, match="--exclude-attributes names 'pk', a key attribute") as exc:
        shape.check_keys(["pk"])
    assert "\n" not in str(exc.value)
    with pytest.raises(ReplicatorError, match="excludeAttributes names 'v', the version attribute"):
        ReplicaShape.build({"exclude_attributes": "v"}).check_keys(["pk"], "v", {"exclude_attributes": "excludeAttributes"})
    ReplicaShape.build({"include_attributes": "pk,name"}).check_keys(["pk"], "v")  # naming it to keep it is harmless


def test_include_and_exclude_together_are_refused_naming_the_shells_settings():
    with pytest.raises(ReplicatorError, match="REPLICATOR_INCLUDE_ATTRIBUTES and REPLICATOR_EXCLUDE_ATTRIBUTES"):
        ReplicaShape.build({"include_attributes": "a", "exclude_attributes": "b"},
                           {"include_attributes": "REPLICATOR_INCLUDE_ATTRIBUTES",
                            "exclude_attributes": "REPLICATOR_EXCLUDE_ATTRIBUTES"})
    with pytest.raises(ReplicatorError, match="empty attribute name"):
        ReplicaShape.build({"exclude_attributes": "a,,b"})


def test_ttl_deletes_takes_replicate_or_skip():
    assert ReplicaShape.build({"ttl_deletes": "SKIP"}).ttl_deletes == "skip"
    assert ReplicaShape.build({"ttl_deletes": ""}).ttl_deletes == "replicate"
    with pytest.raises(ReplicatorError, match="--ttl-deletes is 'drop': choose replicate or skip"):
        ReplicaShape.build({"ttl_deletes": "drop"})


# --- the filter -------------------------------------------------------------------------------------------

def test_a_filter_that_does_not_compile_is_one_line():
    with pytest.raises(ReplicatorError, match=r"^--filter 'tenant ==' is not a JMESPath expression") as exc:
        ReplicaShape.build({"filter": "tenant == "})
    assert "\n" not in str(exc.value)


def test_the_filter_sees_plain_json():
    item = {"pk": {"S": "a"}, "n": {"N": "12345678901234567890123456789012345678"}, "f": {"N": "2.50"},
            "tags": {"SS": ["x", "y"]}, "ns": {"NS": ["1", "2.5"]}, "b": {"B": b"\x00\x01"}, "m": {"M": {"ok": {"BOOL": True}}},
            "l": {"L": [{"NULL": True}]}}
    assert plain_item(item) == {"pk": "a", "n": 12345678901234567890123456789012345678, "f": 2.5, "tags": ["x", "y"],
                                "ns": [1, 2.5], "b": "AAE=", "m": {"ok": True}, "l": [None]}
    assert ReplicaShape.build({"filter": "contains(tags, 'y') && f > `2.4` && m.ok"}).matches(item)
    assert ReplicaShape.build({"filter": "n == `12345678901234567890123456789012345678`"}).matches(item)
    assert not ReplicaShape.build({"filter": "missing"}).matches(item)  # null is false
    assert ReplicaShape.build({"filter": "`0`"}).matches(item)  # 0 is true in JMESPath


def test_an_item_the_filter_cannot_evaluate_does_not_match():
    shape = ReplicaShape.build({"filter": "abs(name) > `1`"})
    assert not shape.matches({"pk": {"S": "a"}, "name": {"S": "x"}})


# The property: for filters built from comparisons, &&, || and !, the shape's verdict is the plain-Python
# model's, on any item.
TENANTS = ["eu", "us", "ap"]
items = st.fixed_dictionaries(
    {"pk": st.just({"S": "k"})},
    optional={
        "tenant": st.sampled_from(TENANTS).map(lambda t: {"S": t}),
        "size": st.integers(-1000, 1000).map(lambda n: {"N": str(n)}),
        "price": st.decimals(-100, 100, places=2, allow_nan=False).map(lambda d: {"N": str(d)}),
        "active": st.booleans().map(lambda b: {"BOOL": b}),
    },
)


def _leaf():
    return st.one_of(
        st.sampled_from(TENANTS).map(lambda t: (f"tenant == '{t}'", lambda i, t=t: i.get("tenant") == t)),
        st.integers(-1000, 1000).map(lambda n: (f"size > `{n}`", lambda i, n=n: isinstance(i.get("size"), int) and i["size"] > n)),
        st.integers(-100, 100).map(lambda n: (f"price <= `{n}.5`", lambda i, n=n: i.get("price") is not None and i["price"] <= n + 0.5)),
        st.just(("active", lambda i: i.get("active") is True)),
    )


def _combine(children):
    return st.one_of(
        st.tuples(children, children).map(lambda ab: (f"({ab[0][0]}) && ({ab[1][0]})",
                                                       lambda i, a=ab[0][1], b=ab[1][1]: a(i) and b(i))),
        st.tuples(children, children).map(lambda ab: (f"({ab[0][0]}) || ({ab[1][0]})",
                                                       lambda i, a=ab[0][1], b=ab[1][1]: a(i) or b(i))),
        children.map(lambda a: (f"!({a[0]})", lambda i, f=a[1]: not f(i))),
    )


def _model_item(item):
    out = {}
    for name, value in item.items():
        (tag, inner), = value.items()
        out[name] = {"S": lambda v: v, "BOOL": lambda v: v, "N": lambda v: float(Decimal(v)) if "." in v else int(v)}[tag](inner)
    return out


@settings(max_examples=300, deadline=None)
@given(expression=st.recursive(_leaf(), _combine, max_leaves=6), item=items)
def test_the_filter_agrees_with_a_plain_python_model(expression, item):
    text, model = expression
    assert ReplicaShape.build({"filter": text}).matches(item) == bool(model(_model_item(item)))


# --- TTL detection ----------------------------------------------------------------------------------------

def test_a_ttl_expiry_is_a_remove_by_dynamodbs_service_principal():
    assert is_ttl_expiry(TTL_REMOVE)
    assert not is_ttl_expiry({"eventName": "REMOVE"})  # a user's delete
    assert not is_ttl_expiry({"eventName": "REMOVE", "userIdentity": {"type": "Service", "principalId": "x"}})
    assert not is_ttl_expiry({**TTL_REMOVE, "eventName": "MODIFY"})


def _stream_record(event, pk, seq, image=None, ttl=False):
    record = json.loads(encode_record(event, {"pk": {"S": pk}}, image, seq))
    if ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    return SourceRecord(json.dumps(record).encode(), seq)


def test_every_format_that_can_carry_userIdentity_marks_expiries():
    assert decode_record(_stream_record("REMOVE", "a", "1", ttl=True).data).ttl_expiry
    assert not decode_record(_stream_record("REMOVE", "a", "1").data).ttl_expiry
    cdc = {"eventName": "REMOVE", "userIdentity": dict(TTL_IDENTITY), "tableName": "t",
           "dynamodb": {"ApproximateCreationDateTime": 1700000000000, "Keys": {"pk": {"S": "a"}}}}
    assert KinesisCdcRecords().decode(SourceRecord(json.dumps(cdc).encode(), "9"))[0].ttl_expiry
    assert KeysOnlyRecords((("pk", "S"),)).decode(_stream_record("REMOVE", "a", "1", ttl=True))[0].ttl_expiry


def test_ttl_capability_says_what_each_source_can_do():
    skip = ReplicaShape.build({"ttl_deletes": "skip"})
    assert ttl_capability(skip, "dynamodb") is None and ttl_capability(skip, "dynamodb-cdc") is None
    assert "finds the item gone" in ttl_capability(skip, "dynamodb", read_through=True)
    assert "bare key" in ttl_capability(skip, "keys-only")
    with pytest.raises(ReplicatorError, match="binlog records are a producer's own writes"):
        ttl_capability(skip, "binlog")
    assert ttl_capability(ReplicaShape(), "binlog") is None


# --- in the pipeline (moto in-process) --------------------------------------------------------------------

@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_pk_table(client, "src")
        create_pk_table(client, "dst")
        yield client


def _items(client, table="dst"):
    return {i["pk"]["S"]: i for i in client.scan(TableName=table, ConsistentRead=True)["Items"]}


def test_items_move_in_and_out_of_the_filter_and_lose_excluded_attributes(ddb):
    shape = ReplicaShape.build({"filter": "tenant == 'eu'", "exclude_attributes": "email"})
    applier = Applier(TableWriter(ddb, "dst"), DynamoDBStreamRecords(), shape=shape)
    eu = {"tenant": {"S": "eu"}, "email": {"S": "x@y"}}
    us = {"tenant": {"S": "us"}, "email": {"S": "x@y"}}
    applier.apply([_stream_record("INSERT", "a", "1", {"pk": {"S": "a"}, **eu}),
                   _stream_record("INSERT", "b", "2", {"pk": {"S": "b"}, **us})])
    assert _items(ddb) == {"a": {"pk": {"S": "a"}, "tenant": {"S": "eu"}}}
    # a leaves the filter, b enters it: a is deleted, b written whole (projected) from its new image
    applier.apply([_stream_record("MODIFY", "a", "3", {"pk": {"S": "a"}, **us}),
                   _stream_record("MODIFY", "b", "4", {"pk": {"S": "b"}, **eu})])
    assert _items(ddb) == {"b": {"pk": {"S": "b"}, "tenant": {"S": "eu"}}}


def test_the_filter_acts_on_a_keys_final_state_after_squash(ddb):
    applier = Applier(TableWriter(ddb, "dst"), DynamoDBStreamRecords(),
                      shape=ReplicaShape.build({"filter": "tenant == 'eu'"}))
    result = applier.apply([_stream_record("INSERT", "a", "1", {"pk": {"S": "a"}, "tenant": {"S": "eu"}}),
                            _stream_record("MODIFY", "a", "2", {"pk": {"S": "a"}, "tenant": {"S": "us"}})])
    assert _items(ddb) == {} and result.writes.deletes == 1


def test_a_filtered_out_item_leaves_a_tombstone_under_the_fence(ddb):
    fence = Versioning("v", "2026-01-01T00:00:00.000000")
    applier = Applier(TableWriter(ddb, "dst", versioning=fence), DynamoDBStreamRecords(),
                      shape=ReplicaShape.build({"filter": "tenant == 'eu'"}))
    applier.apply([_stream_record("MODIFY", "a", "5", {"pk": {"S": "a"}, "tenant": {"S": "us"}})])
    # a stale put from before the item left the filter is refused by the tombstone
    result = applier.apply([_stream_record("MODIFY", "a", "4", {"pk": {"S": "a"}, "tenant": {"S": "eu"}})])
    (item,) = _items(ddb).values()
    assert "v_tombstone" in item and "tenant" not in item and result.writes.stale == 1


def test_keys_only_filters_the_item_read_from_the_source(ddb):
    ddb.put_item(TableName="src", Item={"pk": {"S": "a"}, "tenant": {"S": "eu"}, "email": {"S": "e"}})
    ddb.put_item(TableName="src", Item={"pk": {"S": "b"}, "tenant": {"S": "us"}})
    ddb.put_item(TableName="dst", Item={"pk": {"S": "b"}, "tenant": {"S": "eu"}})  # b was eu once
    applier = Applier(TableWriter(ddb, "dst"), KeysOnlyRecords((("pk", "S"),)), SourceReader(ddb, "src"),
                      shape=ReplicaShape.build({"filter": "tenant == 'eu'", "include_attributes": "tenant"}))
    applier.apply([SourceRecord(b'{"pk": "a"}', "1"), SourceRecord(b'{"pk": "b"}', "2")])
    assert _items(ddb) == {"a": {"pk": {"S": "a"}, "tenant": {"S": "eu"}}}


def test_ttl_expiries_are_skipped_and_counted_and_user_deletes_applied(ddb):
    applier = Applier(TableWriter(ddb, "dst"), DynamoDBStreamRecords(), shape=ReplicaShape.build({"ttl_deletes": "skip"}))
    applier.apply([_stream_record("INSERT", k, str(i), {"pk": {"S": k}}) for i, k in enumerate("abc", 1)])
    result = applier.apply([_stream_record("REMOVE", "a", "4", ttl=True), _stream_record("REMOVE", "b", "5"),
                            _stream_record("INSERT", "d", "6", {"pk": {"S": "d"}}),
                            _stream_record("REMOVE", "d", "7", ttl=True)])
    # a and d expired: kept as they were before (d's insert in the same batch still applies); b: a user's delete
    assert sorted(_items(ddb)) == ["a", "c", "d"]
    assert result.ttl_skipped == 2 and result.log_fields()["ttl_skipped"] == 2 and result.writes.deletes == 1


def test_ttl_expiries_replicate_by_default(ddb):
    applier = Applier(TableWriter(ddb, "dst"), DynamoDBStreamRecords())
    applier.apply([_stream_record("INSERT", "a", "1", {"pk": {"S": "a"}}), _stream_record("REMOVE", "a", "2", ttl=True)])
    assert _items(ddb) == {}


def test_apply_partial_counts_the_ttl_expiries_it_skipped(ddb):
    applier = Applier(TableWriter(ddb, "dst"), DynamoDBStreamRecords(), shape=ReplicaShape.build({"ttl_deletes": "skip"}))
    partial = applier.apply_partial([_stream_record("REMOVE", "a", "1", ttl=True), _stream_record("REMOVE", "b", "2")])
    assert partial.first_not_durable is None and partial.result.ttl_skipped == 1


def test_skip_expired_and_view_are_what_the_tools_compare():
    shape = ReplicaShape.build({"skip_expired": "expires", "filter": "tenant == 'eu'", "exclude_attributes": "email"})
    live = {"pk": {"S": "a"}, "tenant": {"S": "eu"}, "email": {"S": "e"}, "expires": {"N": "2000"}}
    assert shape.view(live, ["pk"], now_s=1999.5) == {"pk": {"S": "a"}, "tenant": {"S": "eu"}, "expires": {"N": "2000"}}
    assert shape.view(live, ["pk"], now_s=2000) is None  # expired
    assert shape.view({**live, "expires": {"S": "2000"}}, ["pk"], now_s=3000) is not None  # TTL ignores a non-number
    assert shape.view({**live, "tenant": {"S": "us"}}, ["pk"], now_s=0) is None


# --- the daemon's settings --------------------------------------------------------------------------------

def test_the_daemons_properties_keys_carry_the_shape_and_bad_ones_name_the_key():
    from replicator.kcl.config import build_path, path_from_properties

    path = build_path({"source_region": "us-east-1", "source_table": "src", "destination_region": "eu-west-1",
                       "destination_table": "dst", "exclude_attributes": "email,phone", "filter": "tenant == 'eu'",
                       "ttl_deletes": "skip"})
    props = path.to_properties()
    assert (props["excludeAttributes"], props["filter"], props["ttlDeletes"]) == ("email,phone", "tenant == 'eu'", "skip")
    again = path_from_properties(props).shape
    assert (again.exclude_attributes, again.filter, again.ttl_deletes) == (("email", "phone"), "tenant == 'eu'", "skip")
    with pytest.raises(ReplicatorError, match=r"ttlDeletes \(ttl-deletes\) is 'never': choose replicate or skip"):
        path_from_properties({**props, "ttlDeletes": "never"})
    with pytest.raises(ReplicatorError, match=r"filter 'tenant ==' is not a JMESPath expression"):
        path_from_properties({**props, "filter": "tenant =="})


def test_run_refuses_excluding_the_version_attribute_and_a_ttl_skip_on_binlog():
    from replicator.kcl.checks import check_shape
    from replicator.kcl.config import build_path

    table = {"TableName": "dst", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
             "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}]}
    base = {"source_region": "us-east-1", "source_table": "src", "destination_region": "eu-west-1",
            "destination_table": "dst"}
    with pytest.raises(ReplicatorError, match=r"excludeAttributes \(exclude-attributes\) names 'v', the version"):
        check_shape(build_path({**base, "version_attribute": "v", "exclude_attributes": "v"}), table)
    binlog = {**base, "source_kinesis_stream": "s", "source_format": "binlog", "ttl_deletes": "skip"}
    with pytest.raises(ReplicatorError, match="binlog records"):
        check_shape(build_path(binlog), table)
    note = check_shape(build_path({**base, "ttl_deletes": "skip"}), table, "KEYS_ONLY")
    assert note and note.startswith("ttlDeletes (ttl-deletes) skip on a stream whose view carries no new image")
    assert check_shape(build_path({**base, "ttl_deletes": "skip"}), table, "NEW_IMAGE") is None
