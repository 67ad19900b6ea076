import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.queue_scripts import SEEN_BUCKET_MS, PackedHints, mark_args, pack_numeric_hints, seen_bucket
from tests.fakes import prefix, queue, redis_server  # noqa: F401

_int64 = st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)
_occurred = st.integers(min_value=0, max_value=253_402_300_799_999)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["hubspot:deal", "hubspot:contact", "x:y"]),
                       st.lists(st.tuples(_int64, _int64, st.one_of(_occurred, st.integers(0, 3 * SEEN_BUCKET_MS))),
                                min_size=1, max_size=20, unique=True),
                       min_size=1, max_size=3))
def test_packed_hints_are_the_integers_as_python_writes_them_one_group_per_day(rows_by_pair):
    packed = pack_numeric_hints("crm:", rows_by_pair, id_column=1, occurred_column=2)
    expected = [(f"crm:{a}:{b}:{c}", pair, str(b), c) for pair, rows in rows_by_pair.items() for a, b, c in rows]
    assert sorted(packed) == sorted(expected) and len(packed) == len(expected)
    for pair, bucket, _, _, occurred in packed.groups:
        assert {seen_bucket(at, 0) for at in occurred} == {bucket}


@pytest.mark.parametrize("value", ["7", True, None, 1.5, 2 ** 64])
def test_anything_but_a_64_bit_integer_is_not_packed(value):
    assert pack_numeric_hints("crm:", {"crm:deal": [(1, 2), (3, value)]}, id_column=0, occurred_column=0) is None


def test_a_prefix_json_would_escape_is_refused():
    with pytest.raises(ValueError):
        pack_numeric_hints('crm"', {"crm:deal": [(1,)]}, id_column=0, occurred_column=0)


def test_packed_arguments_are_those_of_the_same_hints_unpacked():
    day = SEEN_BUCKET_MS
    packed = pack_numeric_hints("h:", {"h:deal": [(1, 10, 5), (2, 11, day + 5)], "h:contact": [(3, 12, 7)]},
                                id_column=1, occurred_column=2)
    assert isinstance(packed, PackedHints) and len(packed.groups) == 3
    assert mark_args(packed, now=0) == mark_args(list(packed), now=0)


def test_the_queue_deduplicates_packed_and_unpacked_hints_alike(queue):
    occurred = 1_763_305_200_000
    packed = pack_numeric_hints("hubspot:", {"hubspot:deal": [(1, 101, occurred), (2, 102, occurred)]},
                                id_column=1, occurred_column=2)
    assert queue.mark_hints(packed).accepted == 2
    queue.redis.delete(queue.pending_key("hubspot", "deal"))
    again = queue.mark_hints([(f"hubspot:2:102:{occurred}", "hubspot:deal", "102", occurred)])
    assert (again.accepted, again.duplicates) == (0, 1)
    assert queue.mark_hints([(f"hubspot:3:103:{occurred}", "hubspot:deal", "103", occurred)]).accepted == 1
    assert queue.mark_hints(packed).duplicates == 2
    assert sorted(m.decode() for m in queue.redis.smembers(queue.pending_key("hubspot", "deal"))) == ["103"]
