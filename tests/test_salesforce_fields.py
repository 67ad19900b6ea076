"""connectors/salesforce/fields.py: the neutral ↔ Salesforce mapping, pure."""
from datetime import datetime, timedelta, timezone

import pytest

from adapter.manifest import load_manifest
from connectors.salesforce.fields import (
    FieldMap, decode_value, encode_value, format_datetime, is_queue_id, org15, parse_datetime, soql_datetime,
    soql_in, soql_quote, to_18, truncate,
)


@pytest.fixture(scope="module")
def field_map():
    return FieldMap(load_manifest())


def test_object_names_come_from_the_manifest(field_map):
    assert field_map.sobject("opportunity") == "Opportunity"
    assert field_map.object_type("Lead") == "lead"
    assert field_map.object_type("Contact") is None
    assert field_map.object_type_of_id("006000000000001AAA") == "opportunity"
    assert field_map.object_type_of_id("500000000000001AAA") == "case"
    with pytest.raises(ValueError, match="no object type 'deal'"):
        field_map.sobject("deal")


def test_every_manifest_field_has_a_salesforce_name(field_map):
    manifest = load_manifest()
    assert [f.api_name for f in field_map.fields] == [raw["salesforce"] for raw in manifest["fields"]]
    assert field_map.api_name("follow_up_status") == "Baton_Follow_Up_Status__c"


def test_encode_writes_salesforce_shapes(field_map):
    at = datetime(2024, 3, 5, 9, 7, 1, 250000, tzinfo=timezone(timedelta(hours=-5)))
    body = field_map.encode({
        "follow_up_status": "overdue", "next_action_due": at, "owner_transfers": 3.0,
        "hours_waiting": 1.5, "sla_breached": None, "next_action": "x" * 300, "owner_of_record": None,
    })
    assert body == {
        "Baton_Follow_Up_Status__c": "overdue",
        "Baton_Next_Action_Due__c": "2024-03-05T14:07:01.250+0000",
        "Baton_Owner_Transfers__c": 3,
        "Baton_Hours_Waiting__c": 1.5,
        "Baton_SLA_Breached__c": False,  # a checkbox is never null
        "Baton_Next_Action__c": "x" * 254 + "…",
        "Baton_Owner_Of_Record__c": None,  # clears the field
    }
    with pytest.raises(ValueError, match="no field 'nope'"):
        field_map.encode({"nope": 1})


def test_decode_reads_what_salesforce_answers(field_map):
    fields = field_map.decode({
        "Baton_Next_Action_Due__c": "2024-03-05T14:07:00.000+0000", "Baton_Owner_Transfers__c": 2.0,
        "Baton_Hours_Waiting__c": 1.25, "Baton_SLA_Breached__c": True, "Baton_Next_Action__c": "",
    })
    assert fields["next_action_due"] == datetime(2024, 3, 5, 14, 7, tzinfo=timezone.utc)
    assert fields["owner_transfers"] == 2 and isinstance(fields["owner_transfers"], int)
    assert fields["hours_waiting"] == 1.25
    assert fields["sla_breached"] is True
    assert fields["next_action"] is None
    assert fields["follow_up_status"] is None  # absent
    assert set(fields) == {f.name for f in field_map.fields}


@pytest.mark.parametrize("kind,value", [
    ("datetime", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)), ("number", 7), ("number", 2.5),
    ("bool", True), ("bool", False), ("string", "Send proposal"), ("enumeration", "on_track"),
])
def test_values_round_trip(kind, value):
    assert decode_value(kind, encode_value(kind, value)) == value


def test_datetimes():
    assert parse_datetime("2024-03-05T14:07:00Z") == datetime(2024, 3, 5, 14, 7, tzinfo=timezone.utc)
    assert parse_datetime(None) is None
    assert format_datetime(datetime(2024, 3, 5, 14, 7)) == "2024-03-05T14:07:00.000+0000"  # naive is UTC
    assert soql_datetime(datetime(2024, 3, 5, 9, 0, tzinfo=timezone(timedelta(hours=-5)))) == "2024-03-05T14:00:00Z"


def test_ids():
    assert to_18("001000000000001") == "001000000000001AAA"
    assert to_18("00Dxx0000001gEH") == "00Dxx0000001gEHEAY"
    assert to_18("001000000000001AAA") == "001000000000001AAA"
    with pytest.raises(ValueError):
        to_18("not-an-id")
    assert is_queue_id("00G000000000001AAA") and not is_queue_id("005000000000001AAA")
    assert org15("00Dxx0000001gEHEAY") == "00Dxx0000001gEH"


def test_soql_literals_are_escaped():
    assert soql_quote("O'Brien \\ co") == "'O\\'Brien \\\\ co'"
    assert soql_in(["a", "b'"]) == "('a','b\\'')"
    with pytest.raises(ValueError):
        soql_in([])
    assert truncate("abc", 3) == "abc" and truncate("abcd", 3) == "ab…"
