import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.queue_scripts import PackedHints, mark_args, pack_numeric_hints
from tests.fakes import prefix, queue, redis_server  # noqa: F401

_int64 = st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["hubspot:deal", "hubspot:contact", "x:y"]),
                       st.lists(st.tuples(_int64, _int64, _int64), min_size=1, max_size=20, unique=True),
                       min_size=1, max_size=3))
def test_packed_keys_and_ids_are_the_integers_as_python_writes_them(rows_by_pair):
    packed = pack_numeric_hints("crm:", rows_by_pair, id_column=1)
    expected = [(f"crm:{a}:{b}:{c}", pair, str(b)) for pair, rows in rows_by_pair.items() for a, b, c in rows]
    assert list(packed) == expected and len(packed) == len(expected)


@pytest.mark.parametrize("value", ["7", True, None, 1.5, 2 ** 64])
def test_anything_but_a_64_bit_integer_is_not_packed(value):
    assert pack_numeric_hints("crm:", {"crm:deal": [(1, 2), (3, value)]}, id_column=0) is None


def test_a_prefix_json_would_escape_is_refused():
    with pytest.raises(ValueError):
        pack_numeric_hints('crm"', {"crm:deal": [(1,)]}, id_column=0)


def test_packed_arguments_are_those_of_the_same_hints_unpacked():
    packed = pack_numeric_hints("h:", {"h:deal": [(1, 10), (2, 11)], "h:contact": [(3, 12)]}, id_column=1)
    assert isinstance(packed, PackedHints)
    assert mark_args(packed) == mark_args(list(packed))


def test_the_queue_deduplicates_packed_and_unpacked_hints_alike(queue):
    packed = pack_numeric_hints("hubspot:", {"hubspot:deal": [(1, 101), (2, 102)]}, id_column=1)
    assert queue.mark_hints(packed).accepted == 2
    again = queue.mark_hints([("hubspot:2:102", "hubspot:deal", "102"), ("hubspot:3:103", "hubspot:deal", "103")])
    assert (again.accepted, again.duplicates) == (1, 1)
    assert queue.mark_hints(packed).duplicates == 2
    assert sorted(m.decode() for m in queue.redis.smembers(queue.pending_key("hubspot", "deal"))) == ["101", "102", "103"]
