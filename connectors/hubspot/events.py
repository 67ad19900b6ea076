"""HubSpot webhook events → `adapter.model.Event`.

HubSpot sends two families of subscription types:

* legacy ones named after the object: ``deal.propertyChange``, ``contact.creation``, ...
* generic ones, ``object.propertyChange`` and friends, with the object in ``objectTypeId``
  (``0-3`` for deals). Tasks, notes, emails and calls only arrive this way.

Records Baton keeps (contacts, companies, deals, tickets) become events on themselves.
Activities become events of kind/object type ``task``/``note``/``email``/``call``: the worker
resolves them to the records they are associated with through the connector. Anything else
normalises to None, and the receiver counts it as ignored.

`normalize` builds the public `Event`. The webhook receiver's hot path uses `scan` instead:
the same checks and the same normalisation (de-duplication key, object type, record id, own
write), straight from the dicts, without an `Event` (and its datetime) per event. Hotter
still, `scan_batch` decodes a raw body straight into the few typed fields Baton reads, for
batches of the shape HubSpot sends; anything else it leaves to `scan`, which decides it.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Mapping

import msgspec

from adapter.errors import MalformedWebhook
from adapter.model import Event
from adapter.queue_scripts import Hint, PackedHints, pack_numeric_hints

from .fields import ACTIVITY_TYPE_IDS, CRM, OBJECT_TYPE_IDS, OWNER_PROPERTY

#: Legacy subscription prefix → neutral object type.
LEGACY_OBJECTS = {"contact": "contact", "company": "company", "deal": "deal", "ticket": "ticket"}

#: objectTypeId → neutral object type, for records Baton reconciles.
RECORD_TYPE_IDS = {type_id: object_type for object_type, type_id in OBJECT_TYPE_IDS.items()}

#: Activity kinds (`ACTIVITY_TYPE_IDS`' values): an activity event's object type is its kind too.
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
    if not app_id or not isinstance(event.change_source, str) or event.change_source not in APP_CHANGE_SOURCES:
        return False
    return (event.source_id or "").strip() == str(app_id).strip()


# The lean path -------------------------------------------------------------------------------

#: subscriptionType → object type, for the legacy subscriptions `_classify` accepts.
_LEGACY_TYPES = {f"{prefix}.{action}": object_type
                 for prefix, object_type in LEGACY_OBJECTS.items() for action in ACTIONS}
#: The generic subscriptions `_classify` accepts; their object type comes from objectTypeId.
_GENERIC = frozenset(f"object.{action}" for action in ACTIONS)
_TYPE_IDS = {**RECORD_TYPE_IDS, **ACTIVITY_TYPE_IDS}
#: (crm:type) strings, built once.
_PAIRS = {object_type: f"{CRM}:{object_type}" for object_type in (*LEGACY_OBJECTS.values(), *_TYPE_IDS.values())}
#: occurredAt values (epoch ms) `occurred_at` surely accepts: 1970-01-01 .. 9999-12-31.
_MAX_MS = 253_402_300_799_999



def scan(payloads: list, app_id: str | None = None, *, skip_own_writes: bool = False) -> tuple[list[Hint], int, int]:
    """A batch of webhook event dicts → (hints, ignored, own writes), without building `Event`s.

    For every item, exactly what `normalize` would decide: the same `MalformedWebhook`s, None
    (ignored) for the same subscriptions, and for the others `(event.key, "crm:type",
    event.object_id)`; own writes are counted as `is_own_write` counts them, and left out of
    the hints with `skip_own_writes`.
    """
    hints: list[Hint] = []
    ignored = own = 0
    app = str(app_id).strip() if app_id else None  # as `is_own_write` compares it
    legacy, generic, type_ids, pairs = _LEGACY_TYPES, _GENERIC, _TYPE_IDS, _PAIRS
    for payload in payloads:
        if type(payload) is not dict:
            if not isinstance(payload, Mapping):
                raise MalformedWebhook(f"event is a {type(payload).__name__}, not an object")
        get = payload.get
        subscription_type = get("subscriptionType")
        if not isinstance(subscription_type, str) or not subscription_type:
            raise MalformedWebhook(f"event {get('eventId')!r} has no subscriptionType")
        object_type = legacy.get(subscription_type)
        if object_type is None:
            if subscription_type not in generic:
                ignored += 1
                continue
            type_id = get("objectTypeId")
            object_type = type_ids.get(type_id if type(type_id) is str else (None if type_id is None else str(type_id)))
            if object_type is None:
                ignored += 1
                continue
        object_id = get("objectId")
        object_id = _object_id(payload) if object_id is None or object_id == "" else str(object_id)
        at = get("occurredAt")
        if not (type(at) is int and 0 <= at <= _MAX_MS):
            # raises MalformedWebhook exactly where `normalize` would; its datetime, in ms
            at = None if occurred_at(at) is None else int(at)
        if app is not None:
            source = get("changeSource")
            if isinstance(source, str) and source in APP_CHANGE_SOURCES:
                source_id = get("sourceId")
                if (str(source_id) if source_id is not None else "").strip() == app:
                    own += 1
                    if skip_own_writes:
                        continue
        hints.append((
            f"{CRM}:{get('portalId', '')}:{get('subscriptionId', '')}:{get('eventId', '')}:{object_id}:{get('occurredAt', '')}",
            pairs[object_type], object_id, at,
        ))
    return hints, ignored, own


class WebhookEvent(msgspec.Struct, gc=False):
    """The fields of a webhook event `scan_batch` reads, typed as HubSpot sends them. Other
    fields are skipped by the decoder, never built."""

    subscriptionType: str
    portalId: int | str
    subscriptionId: int | str
    eventId: int | str
    occurredAt: Annotated[int, msgspec.Meta(ge=0, le=_MAX_MS)]
    objectId: int | str | None = None
    fromObjectId: int | str | None = None
    primaryObjectId: int | str | None = None
    objectTypeId: str | None = None
    changeSource: str | None = None
    sourceId: int | str | None = None


_BATCH = msgspec.json.Decoder(list[WebhookEvent])


def scan_batch(body: bytes, app_id: str | None = None, *, skip_own_writes: bool = False,
               max_events: int) -> tuple[list[Hint], int, int] | None:
    """`scan(json.loads(body), ...)` for the batches HubSpot actually sends, decoded straight
    into `WebhookEvent`s (only the fields Baton reads, no dicts); None for any other body.

    Narrow on purpose: a JSON array of 1..`max_events` objects, each with every annotated field
    present and of its annotated type, a non-empty subscriptionType, occurredAt in
    `occurred_at`'s range and a record id. For those, an int or str formats the same whichever
    decoder read it, so the hints are `scan`'s. Anything else (odd types, missing fields, bodies
    only the json module reads, what must be refused) gives None: the caller parses it in
    general and `scan`s it, which decides it as `normalize` does.
    """
    try:
        events = _BATCH.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if not 0 < len(events) <= max_events:
        return None
    packed = _pack_plain_batch(events, app_id)
    if packed is not None:
        return packed, 0, 0
    hints: list[Hint] = []
    append = hints.append
    ignored = own = 0
    app = str(app_id).strip() if app_id else None
    legacy, generic, type_ids, pairs = _LEGACY_TYPES, _GENERIC, _TYPE_IDS, _PAIRS
    # A batch comes from one portal and a few subscriptions: their part of the key is made
    # once per batch. Formatting integers is most of this loop's cost.
    key_prefixes: dict[tuple, str] = {}
    for event in events:
        subscription_type = event.subscriptionType
        object_type = legacy.get(subscription_type)
        if object_type is None:
            if not subscription_type:
                return None
            object_type = type_ids.get(event.objectTypeId) if subscription_type in generic else None
            if object_type is None:
                ignored += 1
                continue
        object_id = event.objectId
        if object_id is None or object_id == "":
            object_id = event.fromObjectId
            if object_id is None or object_id == "":
                object_id = event.primaryObjectId
                if object_id is None or object_id == "":
                    return None
        at = event.occurredAt
        if app is not None and event.changeSource in APP_CHANGE_SOURCES:
            source_id = event.sourceId
            if (str(source_id) if source_id is not None else "").strip() == app:
                own += 1
                if skip_own_writes:
                    continue
        source = (event.portalId, event.subscriptionId)
        prefix = key_prefixes.get(source)
        if prefix is None:
            prefix = key_prefixes[source] = f"{CRM}:{event.portalId}:{event.subscriptionId}:"
        object_id = str(object_id)
        append((f"{prefix}{event.eventId}:{object_id}:{at}", pairs[object_type], object_id, at))
    return hints, ignored, own


def _pack_plain_batch(events: list[WebhookEvent], app_id: str | None) -> PackedHints | None:
    """The hints of the batch HubSpot sends most, packed for the queue in C (see
    `pack_numeric_hints`), or None for `scan_batch`'s loop to decide it: every event a legacy
    subscription of a record type with integer ids, no event id twice, and, when there is an
    app whose own writes are told apart, none made through the API.

    Keys and ids are those the loop makes: an `int` formats the same whether orjson or an
    f-string writes it.
    """
    legacy = _LEGACY_TYPES
    object_types = [legacy.get(event.subscriptionType) for event in events]
    if None in object_types:
        return None
    if app_id and any(event.changeSource in APP_CHANGE_SOURCES for event in events):
        return None
    if len({event.eventId for event in events}) != len(events):
        return None
    rows = [(e.portalId, e.subscriptionId, e.eventId, e.objectId, e.occurredAt) for e in events]
    first = object_types[0]
    if object_types.count(first) == len(object_types):
        by_pair = {_PAIRS[first]: rows}
    else:
        by_pair = {}
        for object_type, row in zip(object_types, rows):
            by_pair.setdefault(_PAIRS[object_type], []).append(row)
    return pack_numeric_hints(f"{CRM}:", by_pair, id_column=3, occurred_column=4)
