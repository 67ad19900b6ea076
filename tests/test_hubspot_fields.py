"""HubSpot names and encodings (connectors/hubspot/fields.py): pure, no HTTP."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from adapter.manifest import field_specs, load_manifest
from adapter.model import RecordRef
from connectors.hubspot.fields import (
    HubSpotFields, decode_marker, decode_value, encode_marker, encode_value, epoch_ms, format_datetime,
    parse_datetime, text_to_html,
)

UTC = timezone.utc


@pytest.fixture(scope="module")
def fields() -> HubSpotFields:
    return HubSpotFields.from_manifest(load_manifest())


def test_every_manifest_field_maps_to_its_hubspot_property(fields):
    manifest = load_manifest()
    assert {f["name"]: f["hubspot"] for f in manifest["fields"]} == {
        name: fields.property_name(name) for name in fields.specs}
    assert fields.object_name("deal") == "deals" and fields.object_name("ticket") == "tickets"
    with pytest.raises(ValueError, match="no object type"):
        fields.object_name("lead")
    with pytest.raises(ValueError, match="unknown Baton field"):
        fields.property_name("nope")


def test_record_properties_include_baton_fields_and_the_standard_ones(fields):
    deal = fields.record_properties("deal")
    assert {"dealname", "dealstage", "pipeline", "hubspot_owner_id", "createdate"} <= set(deal)
    assert set(fields.property_names) <= set(deal)
    contact = fields.record_properties("contact")
    assert {"firstname", "lastname", "email", "lifecyclestage", "lastmodifieddate"} <= set(contact)
    assert "pipeline" not in contact
    assert "hs_pipeline_stage" in fields.record_properties("ticket")


@pytest.mark.parametrize("kind, value, encoded", [
    ("datetime", datetime(2026, 11, 22, 15, 0, tzinfo=UTC), "2026-11-22T15:00:00.000Z"),
    ("datetime", datetime(2026, 11, 22, 16, 30, 5, 123456, tzinfo=timezone(timedelta(hours=1))),
     "2026-11-22T15:30:05.123Z"),
    ("number", 3, "3"),
    ("number", 2.0, "2"),
    ("number", 2.5, "2.5"),
    ("bool", True, "true"),
    ("bool", False, "false"),
    ("string", "Send proposal", "Send proposal"),
    ("enumeration", "overdue", "overdue"),
    ("datetime", None, ""),
    ("string", None, ""),
])
def test_encode_value(kind, value, encoded):
    assert encode_value(kind, value) == encoded


@pytest.mark.parametrize("kind, value", [
    ("datetime", datetime(2026, 11, 22, 15, 0)),  # naive
    ("datetime", "2026-11-22"),
    ("number", True),
    ("number", "3"),
    ("bool", "true"),
])
def test_encode_value_refuses_wrong_types(kind, value):
    with pytest.raises(ValueError):
        encode_value(kind, value)


@pytest.mark.parametrize("kind, raw, decoded", [
    ("datetime", "2026-11-22T15:00:00.000Z", datetime(2026, 11, 22, 15, 0, tzinfo=UTC)),
    ("datetime", "2026-11-22T16:00:00+01:00", datetime(2026, 11, 22, 15, 0, tzinfo=UTC)),
    ("datetime", "1795359600000", datetime(2026, 11, 22, 15, 0, tzinfo=UTC)),
    ("datetime", "2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
    ("datetime", "not a date", None),
    ("number", "12", 12),
    ("number", "12.0", 12),
    ("number", "12.5", 12.5),
    ("number", "twelve", None),
    ("bool", "true", True),
    ("bool", "false", False),
    ("bool", "maybe", None),
    ("string", "x", "x"),
    ("string", "", None),
    ("datetime", None, None),
])
def test_decode_value(kind, raw, decoded):
    assert decode_value(kind, raw) == decoded


def test_values_survive_a_round_trip(fields):
    values = {
        "follow_up_status": "overdue", "next_action": "Call Maria", "owner_transfers": 3,
        "hours_waiting": 4.5, "sla_breached": True,
        "next_action_due": datetime(2026, 11, 22, 15, 0, 0, 250000, tzinfo=UTC),
    }
    encoded = fields.encode_fields(values)
    assert encoded["baton_next_action_due"] == "2026-11-22T15:00:00.250Z"
    decoded = fields.decode_fields(encoded)
    assert {k: decoded[k] for k in values} == values
    assert decoded["waiting_since"] is None  # absent -> None
    with pytest.raises(ValueError, match="unknown Baton field"):
        fields.encode_fields({"bogus": 1})


def test_parse_datetime_normalises_aware_datetimes_to_utc():
    plus_two = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert parse_datetime(plus_two) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert parse_datetime(plus_two).tzinfo is UTC
    assert parse_datetime(datetime(2026, 1, 1)).tzinfo is UTC


def test_datetime_helpers():
    at = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert epoch_ms(at) == "1795359600000"
    assert format_datetime(at) == "2026-11-22T15:00:00.000Z"
    with pytest.raises(ValueError):
        format_datetime(datetime(2026, 1, 1))


def test_marker_names_the_record_and_decodes_to_the_source():
    ref = RecordRef("hubspot", "deal", "123")
    marker = encode_marker("baton:commitment:456:0", ref)
    assert marker == "baton:commitment:456:0|hubspot:deal:123"
    assert decode_marker(marker) == "baton:commitment:456:0"
    assert decode_marker("baton:prompt") == "baton:prompt"  # a marker without the record part
    assert decode_marker("") is None and decode_marker(None) is None


def test_property_definitions_follow_the_manifest(fields):
    definitions = {d["name"]: d for d in fields.property_definitions()}
    assert len(definitions) == len(field_specs())
    status = definitions["baton_follow_up_status"]
    assert (status["type"], status["fieldType"], status["groupName"]) == ("enumeration", "select", "baton")
    assert [o["value"] for o in status["options"]][:2] == ["ownerless", "queue_owned"]
    assert (definitions["baton_next_action_due"]["type"], definitions["baton_next_action_due"]["fieldType"]) == (
        "datetime", "date")
    assert (definitions["baton_owner_transfers"]["type"], definitions["baton_owner_transfers"]["fieldType"]) == (
        "number", "number")
    breached = definitions["baton_sla_breached"]
    assert (breached["type"], breached["fieldType"]) == ("bool", "booleancheckbox")
    assert [o["value"] for o in breached["options"]] == ["true", "false"]
    assert "options" not in definitions["baton_next_action"]
    marker = fields.marker_definition()
    assert (marker["name"], marker["type"], marker["groupName"]) == ("baton_source", "string", "baton")


def test_text_to_html_escapes_and_keeps_lines():
    assert text_to_html("Ownership transferred: A → B\nWhy: <routing>\n\nLogged by Baton.") == (
        "<p>Ownership transferred: A → B<br>Why: &lt;routing&gt;</p><p>Logged by Baton.</p>")
    assert text_to_html("") == ""
