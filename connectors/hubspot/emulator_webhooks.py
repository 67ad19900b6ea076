"""Webhook delivery as HubSpot does it: batched, v3-signed, retried, in no promised order.

Changes reach the sender from the store (user actions and API writes alike). Matching
subscriptions turn them into events, which a background thread posts in batches of up to
100. A failed batch (non-2xx, timeout) is posted again with `attemptNumber` + 1 after the
configured delay, up to `max_attempts` posts in all.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import json
import random
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from connectors.emulator_delivery import BackgroundDelivery

from .emulator_catalog import ASSOCIATION_TYPES, OBJECT_TYPES, resolve_object_type
from .emulator_state import Change

__all__ = ["WebhookSender", "WebhookSubscription", "sign_v3", "DEFAULT_PROPERTY_SUBSCRIPTIONS"]

# propertyChange subscriptions a Baton install creates (HubSpot sends nothing for other properties).
DEFAULT_PROPERTY_SUBSCRIPTIONS = {
    "deals": ("hubspot_owner_id", "dealstage", "pipeline", "amount", "closedate", "dealname"),
    "contacts": ("hubspot_owner_id", "lifecyclestage", "email"),
    "companies": ("hubspot_owner_id", "lifecyclestage", "name"),
    "tickets": ("hubspot_owner_id", "hs_pipeline", "hs_pipeline_stage", "subject"),
    "tasks": ("hubspot_owner_id", "hs_task_status", "hs_timestamp", "hs_task_subject"),
    "notes": ("hubspot_owner_id", "hs_timestamp"),
    "emails": ("hubspot_owner_id", "hs_email_direction", "hs_timestamp"),
    "calls": ("hubspot_owner_id", "hs_call_direction", "hs_timestamp"),
}
_CLASSIC_EVENTS = ("creation", "deletion", "associationChange")
_GENERIC_EVENTS = ("creation", "deletion")


def sign_v3(client_secret: str, method: str, url: str, body: bytes, timestamp_ms: int) -> str:
    """X-HubSpot-Signature-v3: base64(HMAC-SHA256(secret, method + url + body + timestamp))."""
    message = method.encode() + url.encode() + body + str(timestamp_ms).encode()
    return base64.b64encode(hmac.new(client_secret.encode(), message, hashlib.sha256).digest()).decode()


@dataclass(frozen=True)
class WebhookSubscription:
    id: int
    object_type: str  # "deals"
    event: str  # creation, deletion, propertyChange, associationChange
    property_name: str | None = None

    @property
    def subscription_type(self) -> str:
        return f"{OBJECT_TYPES[self.object_type].webhook_prefix}.{self.event}"

    @classmethod
    def parse(cls, subscription_id: int, text: str) -> "WebhookSubscription":
        """"deal.propertyChange:dealstage", "task.creation", "0-27.creation" -> a subscription."""
        head, _, property_name = text.partition(":")
        subject, _, event = head.partition(".")
        object_type = resolve_object_type(subject)
        if object_type is None or event not in ("creation", "deletion", "propertyChange", "associationChange"):
            raise ValueError(f"Unsupported webhook subscription {text!r}")
        if (event == "propertyChange") != bool(property_name):
            raise ValueError(f"propertyChange subscriptions name one property: {text!r}")
        return cls(subscription_id, object_type.name, event, property_name or None)


def default_subscriptions(first_id: int = 1_900_001) -> list[WebhookSubscription]:
    ids = itertools.count(first_id)
    subscriptions = []
    for name, object_type in OBJECT_TYPES.items():
        events = _GENERIC_EVENTS if object_type.generic_webhooks else _CLASSIC_EVENTS
        subscriptions += [WebhookSubscription(next(ids), name, event) for event in events]
        subscriptions += [WebhookSubscription(next(ids), name, "propertyChange", p)
                          for p in DEFAULT_PROPERTY_SUBSCRIPTIONS[name]]
    return subscriptions


class WebhookSender(BackgroundDelivery):
    """`emu.webhooks`. Inactive until `configure()`; then every matching change is delivered."""

    thread_name = "hubspot-emulator-webhooks"

    def __init__(self, portal_id: int, app_id: int):
        super().__init__()
        self.portal_id, self.app_id = portal_id, app_id
        self.target_url: str | None = None
        self.subscriptions: list[WebhookSubscription] = []
        self.delivered = 0  # events acknowledged with a 2xx
        self.failed = 0  # events given up after max_attempts
        self.attempts = 0  # HTTP posts made
        self.sent_batches: deque[list[dict]] = deque(maxlen=1000)  # bodies posted, newest last
        self._pending: deque[dict] = deque()
        self._retries: list[tuple[float, int, int, list[dict]]] = []  # (due, seq, attempt, events)
        self._sequence = itertools.count()
        self._event_ids = itertools.count(1)
        self._held = 0
        self._session = requests.Session()

    def configure(self, target_url: str, client_secret: str, app_id: int | None = None,
                  subscriptions: list[str] | None = None, max_attempts: int = 10,
                  retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4), timeout: float = 5.0,
                  duplicate: bool = False, shuffle: bool = False, batch_size: int = 100,
                  rng_seed: int = 0) -> None:
        """Start delivering. `subscriptions` like ["deal.propertyChange:dealstage", "task.creation"]
        (default: creation/deletion/associationChange plus Baton's property subscriptions for
        every type). `retry_delays[i]` is the wait before attempt i + 1; the last one repeats."""
        with self._condition:
            self.target_url, self.client_secret = target_url, client_secret
            if app_id is not None:
                self.app_id = app_id
            self.subscriptions = (
                default_subscriptions() if subscriptions is None
                else [WebhookSubscription.parse(1_900_001 + i, s) for i, s in enumerate(subscriptions)])
            self.max_attempts, self.retry_delays, self.timeout = max_attempts, tuple(retry_delays) or (0.0,), timeout
            self.duplicate, self.shuffle, self.batch_size = duplicate, shuffle, batch_size
            self._rng = random.Random(rng_seed)
            self._start()

    # -- events ---------------------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        """Store listener: runs under the store lock, so it only builds and queues events."""
        if self.target_url is None:
            return
        events = [self._event(s, change) for s in self.subscriptions if self._matches(s, change)]
        if events:
            with self._condition:
                self._pending.extend(events)
                self._condition.notify()

    @staticmethod
    def _matches(subscription: WebhookSubscription, change: Change) -> bool:
        return (subscription.object_type == change.object_type and subscription.event == change.kind
                and (change.kind != "propertyChange" or subscription.property_name == change.property_name))

    def _event(self, subscription: WebhookSubscription, change: Change) -> dict:
        object_type = OBJECT_TYPES[change.object_type]
        event = {
            "eventId": next(self._event_ids), "subscriptionId": subscription.id, "portalId": self.portal_id,
            "appId": self.app_id, "occurredAt": change.occurred_ms,
            "subscriptionType": subscription.subscription_type, "attemptNumber": 0,
            "objectId": int(change.object_id), "changeSource": change.actor.source_type,
        }
        if change.actor.source_id is not None:
            event["sourceId"] = change.actor.source_id
        if object_type.generic_webhooks:
            event["objectTypeId"] = object_type.type_id
        if change.kind == "creation":
            event["changeFlag"] = "CREATED"
        elif change.kind == "deletion":
            event["changeFlag"] = "DELETED"
        elif change.kind == "propertyChange":
            event["propertyName"], event["propertyValue"] = change.property_name, change.property_value
        elif change.kind == "associationChange":
            to_type = OBJECT_TYPES[change.to_object_type]
            del event["objectId"]  # association events name both ends instead
            event.update({
                "associationType": f"{object_type.singular}_TO_{to_type.singular}".upper(),
                "fromObjectId": int(change.object_id), "toObjectId": int(change.to_object_id),
                "associationRemoved": change.association_removed,
                "isPrimaryAssociation": ASSOCIATION_TYPES[change.association_type_id][2] == "Primary",
            })
        return event

    # -- delivery ---------------------------------------------------------------------------
    def _wait_for_work(self) -> tuple[int, list[dict]] | None:
        while not self._stopping:
            now = time.monotonic()
            if self._retries and self._retries[0][0] <= now:
                _due, _seq, attempt, events = heapq.heappop(self._retries)
                return attempt, events
            if self._pending and not self._held:
                events = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
                return 0, events
            timeout = self._retries[0][0] - now if self._retries else None
            self._condition.wait(timeout)
        return None

    def _deliver(self, work: tuple[int, list[dict]]) -> bool:
        attempt, events = work
        ok = self._post(attempt, events)
        if ok and self.duplicate:
            self._post(attempt, events)  # at-least-once: the receiver sees it twice
        return ok

    def _settle(self, work: tuple[int, list[dict]], delivered: bool) -> None:
        attempt, events = work
        if delivered:
            self.delivered += len(events)
        elif attempt + 1 < self.max_attempts:
            delay = self.retry_delays[min(attempt, len(self.retry_delays) - 1)]
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._sequence), attempt + 1, events))
        else:
            self.failed += len(events)

    def _post(self, attempt: int, events: list[dict]) -> bool:
        batch = [{**event, "attemptNumber": attempt} for event in events]
        if self.shuffle:
            self._rng.shuffle(batch)
        body = json.dumps(batch, separators=(",", ":")).encode()
        timestamp = int(time.time() * 1000)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "HubSpot Connect 2.0 (http://dev.hubspot.com/) - WebhooksExecutorDaemon-executor",
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Signature-v3": sign_v3(self.client_secret, "POST", self.target_url, body, timestamp),
            # HubSpot also still sends the v1 signature: sha256 hex of secret + body.
            "X-HubSpot-Signature": hashlib.sha256(self.client_secret.encode() + body).hexdigest(),
            "X-HubSpot-Signature-Version": "v1",
            "X-HubSpot-Timeout-Millis": str(int(self.timeout * 1000)),
        }
        with self._condition:
            self.attempts += 1
            self.sent_batches.append(batch)
        try:
            response = self._session.post(self.target_url, data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException:
            return False
        return 200 <= response.status_code < 300

    @contextmanager
    def held(self):
        """Queue events but post nothing new until the block ends; then they go out together
        (in batches of up to `batch_size`), as HubSpot groups changes made close together."""
        with self._condition:
            self._held += 1
        try:
            yield self
        finally:
            with self._condition:
                self._held -= 1
                self._condition.notify_all()

    def _queued(self) -> bool:
        return bool(self._pending or self._retries)
