"""Outbound Messages from the Salesforce emulator: SOAP `notifications` to a listener.

A rule names an object, the fields to send and (optionally) the fields whose change fires
it, like a workflow rule with an Outbound Message action. Every committed write that
matches (REST, sObject Collections or a user-action helper) queues one Notification
(`add_manifest_rules()` sets up the ones Baton's manifest.json declares); a
background thread posts them in batches of up to 100 per action, in the documented shape:

    <soapenv:Envelope><soapenv:Body>
      <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
        <OrganizationId/> <ActionId/> <SessionId xsi:nil="true"/> <EnterpriseUrl/> <PartnerUrl/>
        <Notification><Id>04l…</Id>
          <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
            <sf:Id>006…</sf:Id> <sf:StageName>…</sf:StageName> <sf:Amount xsi:nil="true"/> …

Salesforce keeps retrying a message until the listener answers 200 with
`notificationsResponse/Ack` = true; here the retry delays are configurable so tests can
exercise that path in milliseconds. `duplicate=True` sends every batch twice and
`shuffle=True` sends notifications out of order, both of which Salesforce may do too.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping
from xml.sax.saxutils import escape

import requests
from defusedxml import ElementTree

from connectors.emulator_delivery import BackgroundDelivery
from adapter.manifest import load_manifest

from .emulator_state import Change

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator

__all__ = ["OutboundMessages", "OutboundRule", "OUTBOUND_NS", "SOBJECT_NS"]

OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
MAX_NOTIFICATIONS = 100


@dataclass(frozen=True)
class OutboundRule:
    action_id: str
    sobject: str
    fields: tuple[str, ...]
    trigger_fields: frozenset[str] | None  # None: any change fires
    on_create: bool
    name: str | None = None


@dataclass
class _Notification:
    notification_id: str
    action_id: str
    sobject: str
    values: list[tuple[str, Any]]


@dataclass
class _Batch:
    action_id: str
    notifications: list[_Notification]
    attempt: int = 0
    not_before: float = 0.0


@dataclass
class _Settings:
    target_url: str
    session: requests.Session
    max_attempts: int = 5
    retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
    timeout: float = 5.0
    include_session_id: bool = False
    duplicate: bool = False
    shuffle: bool = False
    batch_size: int = MAX_NOTIFICATIONS


@dataclass
class DeliveryRecord:
    """One POST the emulator made: for assertions in tests."""

    action_id: str
    notification_ids: list[str]
    status: int | None  # None: the connection failed
    acknowledged: bool
    body: bytes = field(repr=False, default=b"")


class OutboundMessages(BackgroundDelivery):
    thread_name = "salesforce-outbound"

    def __init__(self, emulator: "SalesforceEmulator") -> None:
        super().__init__()
        self._emulator = emulator
        self._rules: list[OutboundRule] = []
        self._settings: _Settings | None = None
        self._pending: list[_Batch] = []
        self._fresh: list[_Notification] = []
        self._random = random.Random(0)
        self.delivered = 0  # notifications acknowledged
        self.failed = 0  # notifications given up after max_attempts
        self.attempts = 0  # POSTs made
        self.log: list[DeliveryRecord] = []
        emulator.state.listeners.append(self._on_change)

    # ------------------------------------------------------------------ configuration
    def configure(self, target_url: str, *, session: requests.Session | None = None, verify: Any = True,
                  max_attempts: int = 5, retry_delays: Iterable[float] = (0.05, 0.1, 0.2, 0.4),
                  timeout: float = 5.0, include_session_id: bool = False, duplicate: bool = False,
                  shuffle: bool = False, batch_size: int = MAX_NOTIFICATIONS) -> None:
        """Where notifications go and how delivery behaves. `verify` is passed to requests."""
        if session is None:
            session = requests.Session()
            session.verify = verify
            session.trust_env = False  # so REQUESTS_CA_BUNDLE cannot override `verify`
        with self._condition:
            self._settings = _Settings(target_url, session, max_attempts, tuple(retry_delays) or (0.0,), timeout,
                                       include_session_id, duplicate, shuffle,
                                       max(1, min(batch_size, MAX_NOTIFICATIONS)))
            self._start()

    def add_rule(self, sobject: str, fields: Iterable[str] = ("Id",), *, trigger_fields: Iterable[str] | None = None,
                 on_create: bool = True, name: str | None = None) -> str:
        """Send `fields` of `sobject` whenever a record is created or one of `trigger_fields` changes.

        A `name` identifies the Outbound Message on its object: adding a rule under a name that
        exists replaces it and keeps its action id, as redeploying the same metadata does.
        Returns the action id (the `ActionId` of every message the rule sends).
        """
        obj = self._emulator.state.object_def(sobject)
        names = ["Id"] + [self._field(obj, f) for f in fields if f.lower() != "id"]
        triggers = None if trigger_fields is None else frozenset(self._field(obj, f) for f in trigger_fields)
        with self._condition:
            existing = next((r for r in self._rules if name and (r.sobject, r.name) == (obj.name, name)), None)
            action_id = existing.action_id if existing else self._emulator.state.ids.new("04k")
            rule = OutboundRule(action_id, obj.name, tuple(dict.fromkeys(names)), triggers, on_create, name)
            self._rules = [r for r in self._rules if r is not existing] + [rule]
        return rule.action_id

    def add_manifest_rules(self, manifest: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Baton's Outbound Messages as `manifest.json` declares them (`crms.salesforce.outbound_messages`).

        Each fires on create and when one of its `trigger_fields` changes, like the
        record-triggered flow Baton's package deploys with it. Safe to call again. Returns
        {message name: action id}.
        """
        manifest = manifest if manifest is not None else load_manifest()
        return {spec["name"]: self.add_rule(spec["object"], spec.get("fields", ("Id",)),
                                            trigger_fields=spec.get("trigger_fields"), name=spec["name"])
                for spec in manifest["crms"]["salesforce"].get("outbound_messages") or ()}

    @property
    def rules(self) -> tuple[OutboundRule, ...]:
        with self._condition:
            return tuple(self._rules)

    @staticmethod
    def _field(obj: Any, name: str) -> str:
        definition = obj.get_field(name)
        if definition is None:
            raise ValueError(f"{obj.name} has no field {name!r}")
        return definition.name

    def _queued(self) -> bool:
        return bool(self._fresh or self._pending)

    # ------------------------------------------------------------------ queueing
    def _on_change(self, change: Change) -> None:
        if change.kind == "deleted":
            return
        for rule in self._rules:  # replaced, never mutated: safe to iterate without the lock
            if rule.sobject != change.sobject:
                continue
            if change.kind == "created" and not rule.on_create:
                continue
            if change.kind == "updated" and rule.trigger_fields is not None \
                    and not rule.trigger_fields & change.changed_fields:
                continue
            notification = _Notification(self._emulator.state.ids.new("04l"), rule.action_id, rule.sobject,
                                         [(name, change.record.get(name)) for name in rule.fields])
            with self._condition:
                self._fresh.append(notification)
                self._condition.notify_all()

    def _next_batch(self) -> _Batch | None:
        """Called with the condition held: a due retry first, else fresh notifications."""
        now = time.monotonic()
        for batch in self._pending:
            if batch.not_before <= now:
                self._pending.remove(batch)
                return batch
        if self._fresh and self._settings is not None:
            action_id = self._fresh[0].action_id
            chosen = [n for n in self._fresh if n.action_id == action_id][: self._settings.batch_size]
            chosen_ids = {id(n) for n in chosen}
            self._fresh = [n for n in self._fresh if id(n) not in chosen_ids]
            if self._settings.shuffle:
                self._random.shuffle(chosen)
            return _Batch(action_id, chosen)
        return None

    def _wait_for_work(self) -> tuple[_Batch, _Settings] | None:
        while not self._stopping:
            batch = self._next_batch() if self._settings else None
            if batch is not None:
                return batch, self._settings  # type: ignore[return-value]
            self._condition.wait(0.02)
        return None

    def _deliver(self, work: tuple[_Batch, _Settings]) -> bool:
        batch, settings = work
        acknowledged = self._post(batch, settings)
        if acknowledged and settings.duplicate:
            self._post(batch, settings)
        return acknowledged

    def _settle(self, work: tuple[_Batch, _Settings], delivered: bool) -> None:
        batch, settings = work
        if delivered:
            self.delivered += len(batch.notifications)
            return
        batch.attempt += 1
        if batch.attempt >= settings.max_attempts:
            self.failed += len(batch.notifications)
            return
        delay = settings.retry_delays[min(batch.attempt - 1, len(settings.retry_delays) - 1)]
        batch.not_before = time.monotonic() + delay
        self._pending.append(batch)

    def _post(self, batch: _Batch, settings: _Settings) -> bool:
        body = self.render(batch.action_id, batch.notifications, settings.include_session_id)
        status, acknowledged = None, False
        try:
            response = settings.session.post(settings.target_url, data=body, timeout=settings.timeout,
                                             headers={"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'})
            status = response.status_code
            acknowledged = status == 200 and _acknowledged(response.content)
        except requests.RequestException:
            pass
        with self._condition:
            self.attempts += 1
            self.log.append(DeliveryRecord(batch.action_id, [n.notification_id for n in batch.notifications],
                                           status, acknowledged, body))
        return acknowledged

    # ------------------------------------------------------------------ the message
    def render(self, action_id: str, notifications: list[_Notification], include_session_id: bool) -> bytes:
        emulator = self._emulator
        org_id = emulator.org_id
        base = f"https://{emulator.instance_host}/services/Soap"
        session = (f"<SessionId>{escape(emulator.sessions.issue(emulator.state.integration_user_id))}</SessionId>"
                   if include_session_id else '<SessionId xsi:nil="true"/>')
        parts = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<soapenv:Envelope xmlns:soapenv="{_SOAP}" xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
            f'xmlns:xsi="{_XSI}"><soapenv:Body>',
            f'<notifications xmlns="{OUTBOUND_NS}">',
            f"<OrganizationId>{org_id}</OrganizationId><ActionId>{action_id}</ActionId>{session}",
            f"<EnterpriseUrl>{base}/c/{emulator.api_version}/{org_id[:15]}</EnterpriseUrl>",
            f"<PartnerUrl>{base}/u/{emulator.api_version}/{org_id[:15]}</PartnerUrl>",
        ]
        for notification in notifications:
            parts.append(f"<Notification><Id>{notification.notification_id}</Id>"
                         f'<sObject xsi:type="sf:{notification.sobject}" xmlns:sf="{SOBJECT_NS}">')
            for name, value in notification.values:
                if value is None:
                    parts.append(f'<sf:{name} xsi:nil="true"/>')
                else:
                    parts.append(f"<sf:{name}>{escape(_soap_value(value))}</sf:{name}>")
            parts.append("</sObject></Notification>")
        parts.append("</notifications></soapenv:Body></soapenv:Envelope>")
        return "".join(parts).encode()


def _soap_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        value = value.astimezone(timezone.utc)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _acknowledged(content: bytes) -> bool:
    try:
        root = ElementTree.fromstring(content)
    except ElementTree.ParseError:
        return False
    ack = root.find(f".//{{{OUTBOUND_NS}}}notificationsResponse/{{{OUTBOUND_NS}}}Ack")
    return ack is not None and (ack.text or "").strip().lower() == "true"
