import json
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter.errors import MalformedWebhook
from connectors.hubspot.events import is_own_write, normalize, scan, scan_batch
from tests.fakes import hubspot_event


def test_owner_change_on_a_deal():
    event = normalize(hubspot_event(101, value="2"))
    assert (event.crm, event.object_type, event.object_id, event.kind) == ("hubspot", "deal", "101", "owner_change")
    assert event.property_name == "hubspot_owner_id" and event.property_value == "2"
    assert event.occurred_at == datetime(2025, 11, 16, 15, 0, tzinfo=timezone.utc)
    assert event.key == "hubspot:62515:1900001:1:101:1763305200000"
    assert event.raw["subscriptionId"] == 1_900_001


@pytest.mark.parametrize("subscription,type_id,object_type,kind", [
    ("contact.creation", None, "contact", "created"),
    ("company.deletion", None, "company", "deleted"),
    ("ticket.propertyChange", None, "ticket", "property_change"),
    ("deal.restore", None, "deal", "restored"),
    ("object.propertyChange", "0-3", "deal", "property_change"),
    ("object.creation", "0-1", "contact", "created"),
    ("object.creation", "0-27", "task", "task"),
    ("object.propertyChange", "0-46", "note", "note"),
    ("object.creation", "0-49", "email", "email"),
    ("object.creation", "0-48", "call", "call"),
])
def test_subscription_types(subscription, type_id, object_type, kind):
    extra = {"objectTypeId": type_id} if type_id else {}
    event = normalize(hubspot_event(7, subscription_type=subscription, property_name="dealstage", **extra))
    assert (event.object_type, event.kind) == (object_type, kind)


@pytest.mark.parametrize("subscription,type_id", [
    ("product.creation", None), ("line_item.propertyChange", None), ("conversation.creation", None),
    ("object.creation", "0-7"), ("object.creation", None), ("deal.somethingNew", None),
])
def test_unknown_subscriptions_are_ignored(subscription, type_id):
    extra = {"objectTypeId": type_id} if type_id else {}
    assert normalize(hubspot_event(7, subscription_type=subscription, **extra)) is None


def test_association_change_and_merge_name_their_object():
    assoc = hubspot_event(0, subscription_type="deal.associationChange", property_name=None, fromObjectId=55,
                          toObjectId=66, associationType="DEAL_TO_CONTACT")
    del assoc["objectId"]
    assert normalize(assoc).object_id == "55"
    merge = hubspot_event(0, subscription_type="contact.merge", property_name=None, primaryObjectId=77)
    del merge["objectId"]
    assert normalize(merge).object_id == "77"


def test_dedup_key_separates_what_event_id_alone_does_not():
    a = normalize(hubspot_event(1, event_id=9))
    b = normalize(hubspot_event(2, event_id=9))
    c = normalize(hubspot_event(1, event_id=9, occurred_at=1_763_305_200_001))
    assert len({a.key, b.key, c.key}) == 3
    assert normalize(hubspot_event(1, event_id=9)).key == a.key


@pytest.mark.parametrize("payload,message", [
    ([], "not an object"),
    ({"eventId": 1}, "no subscriptionType"),
    ({"subscriptionType": "deal.creation", "eventId": 3}, "names no object"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": "soon"}, "occurredAt"),
])
def test_malformed_events(payload, message):
    with pytest.raises(MalformedWebhook, match=message):
        normalize(payload)


def test_own_writes_are_recognised_by_app_id():
    ours = normalize(hubspot_event(1, changeSource="INTEGRATION", sourceId="4242"))
    api = normalize(hubspot_event(1, changeSource="API", sourceId="4242"))
    other_app = normalize(hubspot_event(1, changeSource="INTEGRATION", sourceId="999"))
    user = normalize(hubspot_event(1))
    assert is_own_write(ours, "4242") and is_own_write(api, "4242")
    assert not is_own_write(other_app, "4242") and not is_own_write(user, "4242")
    assert not is_own_write(ours, None)


def _variants():
    """Payloads around every branch `normalize` takes, for `scan` to agree with."""
    base = [
        hubspot_event(101, value="2"),
        hubspot_event(7, subscription_type="object.propertyChange", objectTypeId="0-3", property_name="dealstage"),
        hubspot_event(7, subscription_type="object.creation", objectTypeId="0-27"),
        hubspot_event(7, subscription_type="object.creation", objectTypeId=27),
        hubspot_event(7, subscription_type="object.creation", objectTypeId="0-7"),
        hubspot_event(7, subscription_type="object.creation"),
        hubspot_event(7, subscription_type="product.creation"),
        hubspot_event(7, subscription_type="deal.somethingNew"),
        hubspot_event(7, subscription_type="deal.propertyChange.extra"),
        hubspot_event(7, subscription_type="contact.merge", primaryObjectId=77, objectId=""),
        hubspot_event(1, changeSource="INTEGRATION", sourceId="4242"),
        hubspot_event(1, changeSource="API", sourceId=4242),
        hubspot_event(1, changeSource="INTEGRATION", sourceId=" 4242 "),
        hubspot_event(1, changeSource="INTEGRATION", sourceId="999"),
        hubspot_event(1, changeSource=["INTEGRATION"], sourceId="4242"),
        hubspot_event(1, occurred_at="1763305200000"),
        hubspot_event(1, occurred_at=None),
        hubspot_event(1, occurred_at=True),
        hubspot_event(1, occurred_at=-5),
        {"subscriptionType": "deal.creation", "objectId": 5},
        {"subscriptionType": "deal.creation", "objectId": 5, "portalId": None, "eventId": "a\tb"},
    ]
    assoc = hubspot_event(0, subscription_type="deal.associationChange", property_name=None, fromObjectId=55)
    del assoc["objectId"]
    return base + [assoc]


@pytest.mark.parametrize("payload", _variants())
@pytest.mark.parametrize("app_id", [None, "4242", " 4242"])
def test_scan_agrees_with_normalize(payload, app_id):
    event = normalize(payload)
    hints, ignored, own = scan([payload], app_id)
    if event is None:
        assert (hints, ignored, own) == ([], 1, 0)
    else:
        # when it occurred, in epoch ms, as the queue reads it off an `Event`
        occurred = None if event.occurred_at is None else round(event.occurred_at.timestamp() * 1000)
        assert hints == [(event.key, f"{event.crm}:{event.object_type}", event.object_id, occurred)]
        assert ignored == 0
        assert own == int(is_own_write(event, app_id))
        skipped, _, _ = scan([payload], app_id, skip_own_writes=True)
        assert skipped == ([] if own else hints)


@pytest.mark.parametrize("payload,message", [
    ([], "not an object"),
    ({"eventId": 1}, "no subscriptionType"),
    ({"subscriptionType": "deal.creation", "eventId": 3}, "names no object"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": "soon"}, "occurredAt"),
    ({"subscriptionType": "deal.creation", "objectId": 1, "occurredAt": 10 ** 20}, "occurredAt"),
])
def test_scan_refuses_what_normalize_refuses(payload, message):
    with pytest.raises(MalformedWebhook, match=message):
        normalize(payload)
    with pytest.raises(MalformedWebhook, match=message):
        scan([payload])


def _scanned_fast(body: bytes, app_id, skip_own_writes=False):
    """`scan_batch`'s answer with its hints as a list, packed or not."""
    fast = scan_batch(body, app_id, skip_own_writes=skip_own_writes, max_events=100)
    if fast is None:
        return None
    hints, ignored, own = fast
    return list(hints), ignored, own


def _scanned_in_general(body: bytes, app_id, skip_own_writes=False):
    """What the receiver's general path makes of a body: `scan` of the json module's parse."""
    try:
        return scan(json.loads(body), app_id, skip_own_writes=skip_own_writes)
    except MalformedWebhook as exc:
        return exc


@pytest.mark.parametrize("payload", _variants())
@pytest.mark.parametrize("app_id", [None, "4242", " 4242"])
@pytest.mark.parametrize("skip_own_writes", [False, True])
def test_scan_batch_agrees_with_scan_or_leaves_the_body_to_it(payload, app_id, skip_own_writes):
    body = json.dumps([payload]).encode()
    fast = _scanned_fast(body, app_id, skip_own_writes)
    if fast is not None:
        assert fast == _scanned_in_general(body, app_id, skip_own_writes)


def test_scan_batch_takes_the_batches_hubspot_sends():
    assoc = hubspot_event(0, event_id=5, subscription_type="deal.associationChange", property_name=None,
                          fromObjectId=55)
    del assoc["objectId"]
    batch = [
        hubspot_event(101, event_id=1),
        hubspot_event(7, event_id=2, subscription_type="object.creation", objectTypeId="0-27"),
        hubspot_event(8, event_id=3, subscription_type="product.creation"),
        hubspot_event(9, event_id=4, changeSource="INTEGRATION", sourceId="4242"),
        assoc,
        hubspot_event("12", event_id="e-6", portalId="62515"),  # ids as strings
    ]
    body = json.dumps(batch).encode()
    fast = _scanned_fast(body, "4242", skip_own_writes=True)
    assert fast is not None and fast == _scanned_in_general(body, "4242", True)
    hints, ignored, own = fast
    assert (len(hints), ignored, own) == (4, 1, 1)


@pytest.mark.parametrize("body", [
    b"[]", b"{}", b"not json", json.dumps([hubspot_event(i, event_id=i) for i in range(101)]).encode(),
    json.dumps([hubspot_event(1, objectTypeId=27)]).encode(),
    json.dumps([hubspot_event(1, occurred_at="1763305200000")]).encode(),
    json.dumps([hubspot_event(1, occurred_at=-5)]).encode(),
    json.dumps([hubspot_event(1, event_id=1.0)]).encode(),
    json.dumps([hubspot_event(1, sourceId=True)]).encode(),
    json.dumps([hubspot_event(1, portalId=None)]).encode(),
    json.dumps([hubspot_event(1, subscription_type="")]).encode(),
    json.dumps([hubspot_event(1, objectId="")]).encode(),
    json.dumps([{"subscriptionType": "deal.creation", "objectId": 5}]).encode(),
    json.dumps([hubspot_event(1, propertyValue=float("nan"))]).encode(),  # NaN: only the json module reads it
    json.dumps([hubspot_event(1, event_id="?")]).replace('"?"', '"\\ud800"').encode(),  # a lone surrogate
    json.dumps([hubspot_event(1)]).encode("utf-16"),
])
def test_scan_batch_leaves_every_other_body_to_the_general_path(body):
    assert scan_batch(body, max_events=100) is None


_json_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2, max_value=2 ** 70), st.floats(allow_nan=False),
    st.text(max_size=6), st.sampled_from(["", "0-3", "0-27", "0-7", "INTEGRATION", "API", " 4242", "4242"]),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def _events(draw):
    event = hubspot_event(draw(st.integers(min_value=0, max_value=99)), event_id=draw(st.integers(0, 9)))
    event["subscriptionType"] = draw(st.sampled_from(
        ["deal.propertyChange", "contact.creation", "object.creation", "object.merge", "product.creation", "deal.x"]))
    for name in draw(st.lists(st.sampled_from(
            ["subscriptionType", "portalId", "subscriptionId", "eventId", "occurredAt", "objectId", "fromObjectId",
             "primaryObjectId", "objectTypeId", "changeSource", "sourceId"]), max_size=3)):
        if draw(st.booleans()):
            event.pop(name, None)
        else:
            event[name] = draw(_json_values)
    return event


@settings(max_examples=300, deadline=None)
@given(st.lists(_events(), min_size=1, max_size=5), st.sampled_from([None, "4242"]), st.booleans())
def test_scan_batch_never_decides_otherwise_than_scan(events, app_id, skip_own_writes):
    body = json.dumps(events).encode()
    fast = _scanned_fast(body, app_id, skip_own_writes)
    if fast is not None:
        assert fast == _scanned_in_general(body, app_id, skip_own_writes)


_ints = st.integers(min_value=-(2 ** 63), max_value=2 ** 64)


@st.composite
def _plain_batches(draw):
    """Batches of the shape HubSpot sends most: legacy subscriptions of record types, integer
    ids of any size, sometimes a repeated event id, an own write, or a string id among them."""
    events = []
    for _ in range(draw(st.integers(1, 30))):
        event = hubspot_event(draw(_ints), event_id=draw(st.one_of(_ints, st.integers(0, 3))),
                              subscription_type=draw(st.sampled_from(
                                  ["deal.propertyChange", "contact.creation", "company.deletion", "ticket.merge"])),
                              portalId=draw(_ints), subscriptionId=draw(st.integers(0, 2)),
                              occurred_at=draw(st.integers(0, 253_402_300_799_999)))
        if draw(st.integers(0, 9)) == 0:
            event.update(changeSource="INTEGRATION", sourceId="4242")
        if draw(st.integers(0, 19)) == 0:
            event["objectId"] = str(event["objectId"])
        events.append(event)
    return events


@settings(max_examples=200, deadline=None)
@given(_plain_batches(), st.sampled_from([None, "4242"]), st.booleans())
def test_packed_batches_make_the_hints_scan_makes(events, app_id, skip_own_writes):
    body = json.dumps(events).encode()
    fast, general = _scanned_fast(body, app_id, skip_own_writes), _scanned_in_general(body, app_id, skip_own_writes)
    # Packed hints come grouped by type, as the queue takes them anyway; keys are distinct.
    assert (sorted(fast[0]), *fast[1:]) == (sorted(general[0]), *general[1:])


def test_the_usual_batch_is_packed_in_one_group_per_type():
    batch = [hubspot_event(i, event_id=i) for i in range(1, 4)]
    batch.append(hubspot_event(9, event_id=9, subscription_type="contact.propertyChange"))
    hints, _, _ = scan_batch(json.dumps(batch).encode(), max_events=100)
    assert [group[0] for group in hints.groups] == ["hubspot:deal", "hubspot:contact"]
    assert len(hints) == 4
