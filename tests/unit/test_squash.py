"""Squash: the last change per key wins, in the order of those last changes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from replicator.changes.squash import squash

from unit_helpers import delete_change, put_change


def summary(changes):
    """(pk, 'put' value | 'delete', sequence number) for each change, in order."""
    return [
        (c.keys["pk"]["S"], "delete" if c.is_delete else c.new_image["v"]["N"], c.sequence_number) for c in changes
    ]


def test_put_then_delete_is_a_delete():
    assert summary(squash([put_change("a", "1", v={"N": "1"}), delete_change("a", "2")])) == [("a", "delete", "2")]


def test_delete_then_put_is_a_put():
    assert summary(squash([delete_change("a", "1"), put_change("a", "2", v={"N": "7"})])) == [("a", "7", "2")]


def test_last_of_three_puts_wins():
    changes = [put_change("a", str(i), v={"N": str(i)}) for i in (1, 2, 3)]
    assert summary(squash(changes)) == [("a", "3", "3")]


def test_distinct_keys_are_all_kept_in_order():
    changes = [put_change(k, str(i), v={"N": str(i)}) for i, k in enumerate("abc")]
    assert summary(squash(changes)) == [("a", "0", "0"), ("b", "1", "1"), ("c", "2", "2")]


def test_result_is_in_the_order_of_each_keys_last_change():
    changes = [
        put_change("a", "1", v={"N": "1"}),
        put_change("b", "2", v={"N": "2"}),
        put_change("a", "3", v={"N": "3"}),
        delete_change("c", "4"),
        put_change("b", "5", v={"N": "5"}),
    ]
    assert summary(squash(changes)) == [("a", "3", "3"), ("c", "delete", "4"), ("b", "5", "5")]


def test_empty_batch_squashes_to_nothing():
    assert squash([]) == []


operations = st.lists(
    st.tuples(st.sampled_from("abcde"), st.one_of(st.none(), st.integers(0, 99))), max_size=60
)


def apply_all(model: dict, changes) -> dict:
    for change in changes:
        pk = change.keys["pk"]["S"]
        if change.is_delete:
            model.pop(pk, None)
        else:
            model[pk] = change.new_image
    return model


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 9)), operations)
def test_squashed_batch_leaves_the_same_state_as_the_whole_batch(initial, ops):
    changes = [
        delete_change(pk, str(i)) if value is None else put_change(pk, str(i), v={"N": str(value)})
        for i, (pk, value) in enumerate(ops)
    ]
    start = {pk: {"pk": {"S": pk}, "v": {"N": str(v)}} for pk, v in initial.items()}
    squashed = squash(changes)
    assert apply_all(dict(start), squashed) == apply_all(dict(start), changes)
    assert len({c.key_id for c in squashed}) == len(squashed)  # one request per key, as BatchWriteItem requires
