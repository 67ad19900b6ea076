"""HubSpot webhook events → `adapter.model.Event`.

HubSpot sends two families of subscription types:

* legacy ones named after the object: ``deal.propertyChange``, ``contact.creation``, ...
* generic ones, ``object.propertyChange`` and friends, with the object in ``objectTypeId``
  (``0-3`` for deals). Tasks, notes, emails and calls only arrive this way.

Records Baton keeps (contacts, companies, deals, tickets) become events on themselves.
Activities become events of kind/object type ``task``/``note``/``email``/``call``: the worker
resolves them to the records they are associated with through the connector. Anything else
normalises to None, and the receiver counts it as ignored.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from adapter.errors import MalformedWebhook
from adapter.model import Event

CRM = "hubspot"

#: Legacy subscription prefix → neutral object type.
LEGACY_OBJECTS = {"contact": "contact", "company": "company", "deal": "deal", "ticket": "ticket"}

#: objectTypeId → neutral object type, for records Baton reconciles.
RECORD_TYPE_IDS = {"0-1": "contact", "0-2": "company", "0-3": "deal", "0-5": "ticket"}

#: objectTypeId → activity kind; the event's object type is the activity kind too.
ACTIVITY_TYPE_IDS = {"0-27": "task", "0-46": "note", "0-49": "email", "0-48": "call"}
ACTIVITY_KINDS = frozenset(ACTIVITY_TYPE_IDS.values())

#: HubSpot's action (the part after the dot) → Event.kind for records.
ACTIONS = {
    "creation": "created",
    "deletion": "deleted",
    "privacyDeletion": "deleted",
    "propertyChange": "property_change",
    "associationChange": "association_change",
    "merge": "merged",
    "restore": "restored",
}

OWNER_PROPERTY = "hubspot_owner_id"
#: changeSource values HubSpot stamps on writes made through the API by an app.
APP_CHANGE_SOURCES = frozenset({"INTEGRATION", "API"})


def occurred_at(value: Any) -> datetime | None:
    """HubSpot's `occurredAt` (epoch milliseconds) as an aware UTC datetime."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        raise MalformedWebhook(f"occurredAt is not epoch milliseconds: {value!r}") from None


def dedup_key(payload: Mapping[str, Any], object_id: str) -> str:
    """(portalId, subscriptionId, eventId, objectId, occurredAt): `eventId` alone is not unique."""
    get = payload.get
    return f"{get('portalId', '')}:{get('subscriptionId', '')}:{get('eventId', '')}:{object_id}:{get('occurredAt', '')}"


def _object_id(payload: Mapping[str, Any]) -> str:
    for name in ("objectId", "fromObjectId", "primaryObjectId"):
        value = payload.get(name)
        if value not in (None, ""):
            return str(value)
    raise MalformedWebhook(f"event {payload.get('eventId')!r} names no object (objectId)")


def _classify(subscription_type: str, object_type_id: str | None) -> tuple[str, str] | None:
    """(object_type, kind) for a subscription type, or None when Baton does not care."""
    prefix, _, action = subscription_type.partition(".")
    kind = ACTIONS.get(action)
    if kind is None:
        return None
    if prefix == "object":
        if object_type_id in RECORD_TYPE_IDS:
            return RECORD_TYPE_IDS[object_type_id], kind
        if object_type_id in ACTIVITY_TYPE_IDS:
            activity = ACTIVITY_TYPE_IDS[object_type_id]
            return activity, activity
        return None
    if prefix in LEGACY_OBJECTS:
        return LEGACY_OBJECTS[prefix], kind
    return None


def normalize(payload: Any) -> Event | None:
    """One webhook event dict → an `Event`, or None for a subscription Baton ignores.

    Raises `MalformedWebhook` when the dict is not a HubSpot event at all.
    """
    if not isinstance(payload, Mapping):
        raise MalformedWebhook(f"event is a {type(payload).__name__}, not an object")
    subscription_type = payload.get("subscriptionType")
    if not isinstance(subscription_type, str) or not subscription_type:
        raise MalformedWebhook(f"event {payload.get('eventId')!r} has no subscriptionType")
    object_type_id = payload.get("objectTypeId")
    classified = _classify(subscription_type, str(object_type_id) if object_type_id is not None else None)
    if classified is None:
        return None
    object_type, kind = classified
    object_id = _object_id(payload)
    property_name = payload.get("propertyName")
    if kind == "property_change" and property_name == OWNER_PROPERTY:
        kind = "owner_change"
    value = payload.get("propertyValue")
    return Event(
        crm=CRM,
        object_type=object_type,
        object_id=object_id,
        kind=kind,
        occurred_at=occurred_at(payload.get("occurredAt")),
        key=f"{CRM}:{dedup_key(payload, object_id)}",
        property_name=property_name,
        property_value=None if value is None else str(value),
        change_source=payload.get("changeSource"),
        source_id=None if payload.get("sourceId") is None else str(payload.get("sourceId")),
        raw=payload,
    )


def is_own_write(event: Event, app_id: str | None) -> bool:
    """True when HubSpot says the change was made by Baton's own app (a write-back echo)."""
    if not app_id or event.change_source not in APP_CHANGE_SOURCES:
        return False
    return (event.source_id or "").strip() == str(app_id).strip()
