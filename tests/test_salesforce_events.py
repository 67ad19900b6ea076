"""connectors/salesforce/events.py: Outbound Message SOAP and Flow JSON → Events, pure."""
import json
from datetime import datetime, timezone
from xml.sax.saxutils import escape

import pytest

from adapter.errors import MalformedWebhook
from connectors.salesforce.fields import to_18
from connectors.salesforce.events import (
    ack_response, org_matches, parse_flow_payload, parse_outbound_message,
)

ORG = "00D5g000004ABCDEAW"
ACTION = "04k5g000000XYZ1AAA"


def notification(notification_id: str, sobject: str, fields: dict) -> str:
    body = "".join(
        f'<sf:{name} xsi:nil="true"/>' if value is None else f"<sf:{name}>{escape(value)}</sf:{name}>"
        for name, value in fields.items()
    )
    return (f"<Notification><Id>{notification_id}</Id>"
            f'<sObject xsi:type="sf:{sobject}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">{body}</sObject>'
            "</Notification>")


def outbound_message(*notifications: str, session_id: str | None = "00D5g!AQ4AQFakeSession", org: str = ORG) -> bytes:
    session = '<SessionId xsi:nil="true"/>' if session_id is None else f"<SessionId>{session_id}</SessionId>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>{ACTION}</ActionId>{session}"
        "<EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/59.0/00D5g000004ABCD</EnterpriseUrl>"
        "<PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/59.0/00D5g000004ABCD</PartnerUrl>"
        + "".join(notifications) +
        "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def opportunity(n: int = 1, **extra) -> str:
    fields = {"Id": f"0065g00000{n:05d}AAA"[:18], "OwnerId": "0055g000001AAAAAAA",
              "LastModifiedDate": "2024-05-01T09:30:00.000Z", "LastModifiedById": "0055g000009ZZZZAAA", **extra}
    return notification(f"04l5g00000{n:05d}AAA"[:18], "Opportunity", fields)


def test_one_opportunity_notification():
    message = parse_outbound_message(outbound_message(opportunity()))
    assert message.organization_id == ORG and message.action_id == ACTION
    assert message.session_id == "00D5g!AQ4AQFakeSession"
    assert "FakeSession" not in repr(message)  # a live credential never reaches a log line
    assert message.partner_url.endswith("/services/Soap/u/59.0/00D5g000004ABCD")
    [event] = message.notifications
    assert (event.crm, event.object_type, event.object_id) == ("salesforce", "opportunity", "0065g0000000001AAA")
    assert event.occurred_at == datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    assert event.key == "00D5g000004ABCD:04l5g0000000001AAA:0065g0000000001AAA:2024-05-01T09:30:00.000Z"
    assert event.source_id == "0055g000009ZZZZAAA"
    assert event.raw["fields"]["OwnerId"] == "0055g000001AAAAAAA"
    assert "FakeSession" not in json.dumps(dict(event.raw))


def test_lead_with_nil_and_absent_fields_and_nil_session():
    lead = notification("04l5g0000000002AAA", "Lead", {
        "Id": "00Q5g000000ABCD", "OwnerId": None, "SystemModstamp": "2024-05-02T10:00:00.000Z"})
    message = parse_outbound_message(outbound_message(lead, session_id=None))
    assert message.session_id is None
    [event] = message.events
    assert event.object_type == "lead"
    assert event.object_id == to_18("00Q5g000000ABCD")  # keyed by the 18-character form
    assert len(event.object_id) == 18
    assert event.raw["fields"]["OwnerId"] is None
    assert event.key.endswith(":2024-05-02T10:00:00.000Z")  # SystemModstamp when LastModifiedDate is absent
    assert event.source_id is None


def test_a_hundred_notifications_and_stable_keys():
    body = outbound_message(*(opportunity(n) for n in range(100)))
    message = parse_outbound_message(body)
    assert len(message.notifications) == 100
    assert len({e.key for e in message.notifications}) == 100
    assert [e.key for e in parse_outbound_message(body).notifications] == [e.key for e in message.notifications]


def test_more_than_a_hundred_notifications_is_malformed():
    with pytest.raises(MalformedWebhook, match="at most 100"):
        parse_outbound_message(outbound_message(*(opportunity(n) for n in range(101))))


def test_objects_baton_does_not_handle_are_acknowledged_but_ignored():
    contact = notification("04l5g0000000003AAA", "Contact", {"Id": "0035g000000ABCDAAA"})
    task = notification("04l5g0000000004AAA", "Task", {"Id": "00T5g000000ABCDAAA"})
    message = parse_outbound_message(outbound_message(contact, task))
    assert message.ignored == ("04l5g0000000003AAA",)
    assert [e.object_type for e in message.events] == ["task"]  # resolved to its record by the worker


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&lol3;</OrganizationId></notifications>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>&xxe;</OrganizationId></notifications>"""
DTD_ONLY = b"""<?xml version="1.0"?><!DOCTYPE notifications SYSTEM "http://evil.example/x.dtd">
<notifications xmlns="http://soap.sforce.com/2005/09/outbound"/>"""


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY, DTD_ONLY], ids=["laughs", "xxe", "dtd"])
def test_dtds_and_entities_are_refused(body):
    with pytest.raises(MalformedWebhook, match="refused XML"):
        parse_outbound_message(body)


@pytest.mark.parametrize("body,problem", [
    (b"", "empty body"),
    (b"<notifications", "malformed XML"),
    (b"<soapenv:Envelope xmlns:soapenv='http://schemas.xmlsoap.org/soap/envelope/'/>", "no notifications"),
    (outbound_message(opportunity(), org="not-an-org"), "OrganizationId"),
    (outbound_message(notification("04l5g0000000002AAA", "Lead", {"OwnerId": "005"})), "no valid sf:Id"),
    (outbound_message(opportunity(LastModifiedDate="yesterday")), "not a date-time"),
])
def test_malformed_messages(body, problem):
    with pytest.raises(MalformedWebhook, match=problem):
        parse_outbound_message(body)


def test_org_matches_on_fifteen_characters():
    assert org_matches("00D5g000004ABCDEAW", "00D5g000004ABCD")
    assert org_matches("00D5g000004ABCD", "00D5g000004ABCDEAW")
    assert not org_matches("00D5g000004ABCE", "00D5g000004ABCD")
    assert not org_matches("00D5g", "00D5g")
    assert not org_matches(None, "00D5g000004ABCD") and not org_matches("00D5g000004ABCD", "")


def test_ack_response_is_the_soap_salesforce_expects():
    from defusedxml.ElementTree import fromstring

    root = fromstring(ack_response())
    ack = root.find(".//{http://soap.sforce.com/2005/09/outbound}notificationsResponse/"
                    "{http://soap.sforce.com/2005/09/outbound}Ack")
    assert root.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert ack.text == "true"
    assert b"<Ack>false</Ack>" in ack_response(ack=False)


def flow(*events, org=ORG) -> bytes:
    return json.dumps({"orgId": org, "events": list(events)}).encode()


def test_flow_payload():
    message = parse_flow_payload(flow(
        {"object": "Opportunity", "id": "0065g0000000001AAA", "change": "owner",
         "occurredAt": "2024-05-01T09:30:00Z", "changedBy": "0055g000009ZZZZAAA", "ownerId": "0055g000001AAAAAAA"},
        {"object": "Case", "id": "5005g000000ABCD"},
        {"object": "Contact", "id": "0035g000000ABCDAAA"},
    ))
    assert message.organization_id == ORG
    owner, case = message.events
    assert (owner.object_type, owner.kind, owner.property_name, owner.property_value) == (
        "opportunity", "owner", "OwnerId", "0055g000001AAAAAAA")
    assert owner.occurred_at == datetime(2024, 5, 1, 9, 30, tzinfo=timezone.utc)
    assert owner.key == "00D5g000004ABCD:flow:0065g0000000001AAA:owner:2024-05-01T09:30:00Z"
    assert owner.source_id == "0055g000009ZZZZAAA"
    assert (case.object_type, case.kind, case.object_id, case.occurred_at) == ("case", "updated", to_18("5005g000000ABCD"), None)
    assert message.ignored == ("Contact:0035g000000ABCDAAA",)


def test_flow_event_id_keys_the_event():
    [event] = parse_flow_payload(flow({"object": "Lead", "id": "00Q5g000000ABCDAAO", "eventId": "e-1"})).events
    assert event.key == "00D5g000004ABCD:flow:e-1:00Q5g000000ABCDAAO"


@pytest.mark.parametrize("body,problem", [
    (b"{", "malformed JSON"),
    (b"[]", "JSON object"),
    (json.dumps({"events": []}).encode(), "orgId"),
    (json.dumps({"orgId": ORG}).encode(), "events must be a list"),
    (flow({"id": "0065g0000000001AAA"}), r"events\[0\].object"),
    (flow({"object": "Opportunity", "id": "nope"}), r"events\[0\].id"),
    (flow({"object": "Opportunity", "id": "00Q5g000000ABCDAAO"}), "not a Opportunity"),
    (flow({"object": "Lead", "id": "00Q5g000000ABCDAAO", "occurredAt": "soon"}), "not a date-time"),
    (flow(*({"object": "Lead", "id": "00Q5g000000ABCDAAO"} for _ in range(201))), "at most 200"),
])
def test_malformed_flow_payloads(body, problem):
    with pytest.raises(MalformedWebhook, match=problem):
        parse_flow_payload(body)
