"""Salesforce webhooks → `adapter.model.Event`s.

Two senders, both pure functions on raw bytes (the receivers in `webhooks/salesforce.py`
authenticate first, then call these):

* **Outbound Messages** (SOAP, `http://soap.sforce.com/2005/09/outbound`): up to 100
  `Notification`s per message, each carrying the fields the admin selected. They have no
  signature; the receiver checks `OrganizationId` with `org_matches` and a secret token in
  the URL. Parsed with defusedxml: a DTD, an entity or an external reference is refused.
  Answer with `ack_response()`; anything else makes Salesforce redeliver for 24 hours.
* **Flow / Apex callouts** (JSON), for orgs that cannot use Outbound Messages::

      {"orgId": "00D...",
       "events": [{"object": "Opportunity", "id": "006...", "change": "owner",
                   "occurredAt": "2024-05-01T09:30:00Z",
                   "eventId": "optional, unique per change",
                   "changedBy": "optional 005... user id",
                   "ownerId": "optional new owner id when change is owner"}]}

  `object` is the Salesforce object name, `change` a free word ("owner", "stage",
  "created", "updated", "deleted"; default "updated"). See docs/install-salesforce.md.

Event keys are stable across redeliveries, so the inbox de-duplicates them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping
from xml.etree.ElementTree import Element, ParseError

import defusedxml
import defusedxml.ElementTree as SafeET

from adapter.errors import MalformedWebhook
from adapter.model import Event
from connectors.salesforce.fields import CRM, FieldMap, is_sf_id, org15, parse_datetime, to_18

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100
MAX_FLOW_EVENTS = 200  # one Apex trigger batch

_ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV_NS}">'
    "<soapenv:Body>"
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>{{ack}}</Ack></notificationsResponse>'
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)


@dataclass(frozen=True)
class OutboundMessage:
    """One Outbound Message delivery. `session_id` is a live API credential: never logged."""

    organization_id: str
    action_id: str
    session_id: str | None = field(repr=False)
    enterprise_url: str | None
    partner_url: str | None
    notifications: tuple[Event, ...] = ()
    #: Notification ids of objects Baton does not handle (acknowledged, not queued).
    ignored: tuple[str, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        return self.notifications


@dataclass(frozen=True)
class FlowMessage:
    organization_id: str
    events: tuple[Event, ...] = ()
    ignored: tuple[str, ...] = ()


def org_matches(received: str | None, configured: str | None) -> bool:
    """Compare org ids on their first 15 characters (15- and 18-character forms agree)."""
    if not received or not configured:
        return False
    return len(received.strip()) >= 15 and org15(received) == org15(configured)


def ack_response(ack: bool = True) -> bytes:
    """The SOAP answer Salesforce expects; `ack=False` asks it to deliver again later."""
    return _ACK.format(ack="true" if ack else "false").encode("utf-8")


# --- Outbound Messages -------------------------------------------------------------------

def parse_outbound_message(body: bytes, *, field_map: FieldMap | None = None) -> OutboundMessage:
    """Parse an Outbound Message SOAP envelope; raise `MalformedWebhook` for anything else."""
    field_map = field_map or FieldMap.default()
    root = _parse_xml(body)
    notifications = root if root.tag == _om("notifications") else root.find(f".//{_om('notifications')}")
    if notifications is None:
        raise MalformedWebhook("not an Outbound Message: no notifications element")

    organization_id = _required_text(notifications, "OrganizationId")
    if not is_sf_id(organization_id):
        raise MalformedWebhook(f"OrganizationId is not a Salesforce id: {organization_id!r}")
    action_id = _text(notifications, "ActionId") or ""
    items = notifications.findall(_om("Notification"))
    if len(items) > MAX_NOTIFICATIONS:
        raise MalformedWebhook(f"{len(items)} notifications; Salesforce sends at most {MAX_NOTIFICATIONS}")

    events: list[Event] = []
    ignored: list[str] = []
    for item in items:
        event = _notification_event(item, organization_id, action_id, field_map)
        if isinstance(event, Event):
            events.append(event)
        else:
            ignored.append(event)
    return OutboundMessage(
        organization_id=organization_id,
        action_id=action_id,
        session_id=_text(notifications, "SessionId"),
        enterprise_url=_text(notifications, "EnterpriseUrl"),
        partner_url=_text(notifications, "PartnerUrl"),
        notifications=tuple(events),
        ignored=tuple(ignored),
    )


def _notification_event(item: Element, organization_id: str, action_id: str, field_map: FieldMap) -> Event | str:
    notification_id = _required_text(item, "Id")
    sobject = item.find(_om("sObject"))
    if sobject is None:
        raise MalformedWebhook(f"notification {notification_id} has no sObject")
    sobject_type = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
    fields = {_local(child.tag): _value(child) for child in sobject}
    object_type = field_map.event_type(sobject_type)
    if object_type is None:
        return notification_id
    record_id = fields.get("Id")
    if not is_sf_id(record_id):
        raise MalformedWebhook(f"notification {notification_id}: sObject has no valid sf:Id")
    record_id = to_18(record_id)
    stamp = fields.get("LastModifiedDate") or fields.get("SystemModstamp")
    return Event(
        crm=CRM,
        object_type=object_type,
        object_id=record_id,
        kind="updated",
        occurred_at=_datetime(stamp, f"notification {notification_id}"),
        key=f"{org15(organization_id)}:{notification_id}:{record_id}:{stamp or ''}",
        source_id=fields.get("LastModifiedById"),
        raw={
            "organization_id": organization_id,
            "action_id": action_id,
            "notification_id": notification_id,
            "sobject": sobject_type,
            "fields": fields,
        },
    )


def _parse_xml(body: bytes) -> Element:
    if not body or not body.strip():
        raise MalformedWebhook("empty body")
    try:
        return SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise MalformedWebhook(f"refused XML: {type(exc).__name__}") from None
    except (ParseError, ValueError) as exc:
        raise MalformedWebhook(f"malformed XML: {exc}") from None


def _om(tag: str) -> str:
    return f"{{{OUTBOUND_NS}}}{tag}"


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _value(element: Element) -> str | None:
    if element.get(f"{{{XSI_NS}}}nil") in ("true", "1"):
        return None
    return element.text.strip() if element.text and element.text.strip() else None


def _text(parent: Element, tag: str) -> str | None:
    element = parent.find(_om(tag))
    return None if element is None else _value(element)


def _required_text(parent: Element, tag: str) -> str:
    value = _text(parent, tag)
    if not value:
        raise MalformedWebhook(f"{tag} is missing")
    return value


def _datetime(value: Any, where: str) -> datetime | None:
    try:
        return parse_datetime(value)
    except (TypeError, ValueError):
        raise MalformedWebhook(f"{where}: not a date-time: {value!r}") from None


# --- Flow / Apex JSON --------------------------------------------------------------------

def parse_flow_payload(body: bytes, *, field_map: FieldMap | None = None) -> FlowMessage:
    """Parse the JSON a Flow HTTP callout or Apex sends (shape in the module docstring)."""
    field_map = field_map or FieldMap.default()
    try:
        payload = json.loads(body)
    except (TypeError, ValueError, UnicodeDecodeError) as exc:
        raise MalformedWebhook(f"malformed JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise MalformedWebhook("expected a JSON object with orgId and events")
    organization_id = payload.get("orgId")
    if not is_sf_id(organization_id):
        raise MalformedWebhook("orgId is missing or not a Salesforce id")
    items = payload.get("events")
    if not isinstance(items, list):
        raise MalformedWebhook("events must be a list")
    if len(items) > MAX_FLOW_EVENTS:
        raise MalformedWebhook(f"{len(items)} events; at most {MAX_FLOW_EVENTS} per callout")

    events: list[Event] = []
    ignored: list[str] = []
    for index, item in enumerate(items):
        event = _flow_event(item, index, organization_id, field_map)
        if isinstance(event, Event):
            events.append(event)
        else:
            ignored.append(event)
    return FlowMessage(organization_id=organization_id, events=tuple(events), ignored=tuple(ignored))


def _flow_event(item: Any, index: int, organization_id: str, field_map: FieldMap) -> Event | str:
    where = f"events[{index}]"
    if not isinstance(item, Mapping):
        raise MalformedWebhook(f"{where} must be an object")
    sobject, record_id = item.get("object"), item.get("id")
    if not isinstance(sobject, str) or not sobject:
        raise MalformedWebhook(f"{where}.object is missing")
    if not is_sf_id(record_id):
        raise MalformedWebhook(f"{where}.id is missing or not a Salesforce id")
    object_type = field_map.event_type(sobject)
    if object_type is None:
        return f"{sobject}:{record_id}"
    by_prefix = field_map.object_type_of_id(record_id)
    if by_prefix is not None and by_prefix != object_type:
        raise MalformedWebhook(f"{where}: id {record_id} is not a {sobject}")
    change = item.get("change") or "updated"
    if not isinstance(change, str):
        raise MalformedWebhook(f"{where}.change must be a string")
    occurred_raw = item.get("occurredAt")
    occurred_at = _datetime(occurred_raw, where)
    record_id = to_18(record_id)
    event_id = item.get("eventId")
    if event_id:
        key = f"{org15(organization_id)}:flow:{event_id}:{record_id}"
    else:
        key = f"{org15(organization_id)}:flow:{record_id}:{change}:{occurred_raw or ''}"
    changed_by = item.get("changedBy")
    return Event(
        crm=CRM,
        object_type=object_type,
        object_id=record_id,
        kind=change,
        occurred_at=occurred_at,
        key=key,
        property_name="OwnerId" if change == "owner" else None,
        property_value=item.get("ownerId") if change == "owner" else None,
        source_id=changed_by if isinstance(changed_by, str) else None,
        raw=dict(item),
    )
