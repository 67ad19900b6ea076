from adapter.model import RecordRef
from connectors.hubspot.own_activity import KEEP, OwnActivityLedger, decode_stamps, encode_stamps


def test_stamps_round_trip_sorted_without_duplicates():
    value = encode_stamps([1763305200456, 1763305200123, 1763305200456])
    assert value == "1763305200123,1763305200456"
    assert decode_stamps(value) == {1763305200123, 1763305200456}


def test_only_the_newest_stamps_are_kept():
    stamps = list(range(1_000, 1_000 + KEEP + 5))
    assert decode_stamps(encode_stamps(stamps)) == set(stamps[-KEEP:])


def test_an_unreadable_value_decodes_to_what_can_be_read():
    assert decode_stamps(None) == frozenset()
    assert decode_stamps("") == frozenset()
    assert decode_stamps("12, x,-3,,34") == {12, 34}


def test_the_ledger_carries_the_last_load_and_forgets_the_oldest_records():
    ledger = OwnActivityLedger(limit=2)
    a, b, c = (RecordRef("hubspot", "deal", i) for i in "abc")
    ledger.remember(a, {1})
    ledger.remember(b, {2})
    ledger.remember(a, {3})  # a load replaces what an earlier one saw
    ledger.remember(c, {4})
    assert ledger.carried(a) == {3}
    assert ledger.carried(b) == frozenset()  # forgotten: the least recently loaded
    assert ledger.carried(c) == {4}
