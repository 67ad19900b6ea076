from datetime import datetime, timedelta, timezone

from adapter.visibility import changed_fields, normalise

T = datetime(2026, 11, 16, 15, 0, 0, 123456, tzinfo=timezone.utc)


def test_datetimes_compare_to_the_second():
    assert changed_fields({"next_action_due": T.replace(microsecond=0)}, {"next_action_due": T}) == {}
    assert changed_fields({"next_action_due": T}, {"next_action_due": T + timedelta(seconds=1)})


def test_numbers_empty_strings_and_none():
    assert changed_fields({"owner_transfers": 2.0, "next_action": ""}, {"owner_transfers": 2, "next_action": None}) == {}
    assert changed_fields({}, {"owner_transfers": 0}) == {"owner_transfers": 0}


def test_long_text_is_cut_to_what_the_crm_keeps():
    assert len(normalise("x" * 400)) == 255
