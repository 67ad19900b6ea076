"""End to end for Salesforce: the emulator changes records as a user would and sends the
Outbound Messages (SOAP) Salesforce would send to Baton's receiver on loopback; a real rq
worker on real Redis reconciles through the Salesforce connector over HTTPS; the tests
assert the emulator's state. Mirrors tests/test_realtime_e2e.py (HubSpot)."""
from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
import yaml

from adapter import worker as worker_module
from adapter.manifest import load_manifest
from adapter.model import PROMPT_SOURCE
from adapter.queue import RealtimeQueue
from adapter.settings import Settings
from connectors.salesforce.emulator import SalesforceEmulator
from connectors.salesforce.fields import SOURCE_FIELD
from tests.fakes import flow_headers, prefix, redis_server  # noqa: F401
from tests.realtime_harness import WorkerHarness, connector_factory, worker_redis_env

pytestmark = pytest.mark.slow

OUTBOUND_TOKEN = "om-e2e-token"
FLOW_SECRET = "flow-e2e-secret"
ORG_TZ = ZoneInfo("America/New_York")  # the emulated org's TimeZoneSidKey
#: What an admin adds next to the manifest's record messages so that completed tasks and logged
#: emails reach Baton too (docs/install-salesforce.md: "Task and EmailMessage messages are accepted").
ACTIVITY_MESSAGES = {
    "Task": (["Id", "WhatId", "WhoId", "Status", "LastModifiedDate", "LastModifiedById", "SystemModstamp"],
             ["Status", "ActivityDate", "OwnerId"]),
    "EmailMessage": (["Id", "RelatedToId", "LastModifiedDate", "LastModifiedById", "SystemModstamp"], []),
}
WRITES = re.compile(r"(POST|PATCH|PUT|DELETE) /services/data/vXX\.X/(composite|sobjects)")


class Stack(WorkerHarness):
    """Emulated org + Baton's webhook app on loopback + Baton's queue, sharing one settings mapping."""

    def __init__(self, redis, prefix, data_dir, *, outbound: bool = True, **overrides: str):
        self.emu = SalesforceEmulator().start()
        self.delivery = self.emu.outbound
        self.emu.seed(0, object_types=("opportunity",))  # people and queues, no records
        users = {u["Name"]: u for u in self.emu.records("User")}
        self.maya, self.jonas, self.priya = (users[n]["Id"] for n in ("Maya Patel", "Jonas Weber", "Priya Raman"))
        self.tom = users["Tom Becker"]["Id"]
        self.pool = [users[n]["Email"] for n in ("Maya Patel", "Jonas Weber", "Priya Raman")]
        self.inbound_queue = next(g["Id"] for g in self.emu.records("Group") if g["DeveloperName"] == "Inbound_Leads")

        policy = data_dir / "baton.yml"
        policy.write_text(yaml.safe_dump({"timezone": "America/New_York",
                                          "owners": {"routing": {"pool": self.pool}}}), encoding="utf-8")
        self.queue = RealtimeQueue(redis, prefix)
        self.values = {
            **worker_redis_env(redis),
            "BATON_CRMS": "salesforce", "BATON_REDIS_PREFIX": prefix, "BATON_POLICY": str(policy),
            "SALESFORCE_SESSION_ID": self.emu.session_id, "SALESFORCE_INSTANCE_URL": self.emu.url,
            "BATON_SALESFORCE_CA_BUNDLE": self.emu.ca_bundle_path, "SALESFORCE_ORG_ID": self.emu.org_id,
            "BATON_SALESFORCE_OUTBOUND_TOKEN": OUTBOUND_TOKEN, "BATON_SALESFORCE_FLOW_SECRET": FLOW_SECRET,
            "BATON_SWEEP_INTERVAL": "0", "BATON_DEADLINE_INTERVAL": "1", "BATON_LOG_LEVEL": "WARNING",
            **overrides,
        }
        self.settings = Settings(self.values)
        self.base_url = self.serve()
        self.http = requests.Session()
        self.http.trust_env = False  # loopback: no proxy from the environment
        worker_module.configure(self.settings, queue=self.queue, connector_factory=connector_factory)
        worker_module.current_runtime().connector("salesforce").install(load_manifest())
        if outbound:
            self.emu.outbound.add_manifest_rules()
            for sobject, (fields, triggers) in ACTIVITY_MESSAGES.items():
                self.emu.outbound.add_rule(sobject, fields, trigger_fields=triggers, name=f"Baton_{sobject}_Changed")

    def deliver(self, token: str = OUTBOUND_TOKEN, **options):
        """Send Outbound Messages to Baton's receiver (options: duplicate, shuffle, ...)."""
        self.emu.outbound.configure(f"{self.base_url}/webhooks/salesforce/outbound/{token}", **options)

    def post_flow(self, events: list[dict], *, secret: str = FLOW_SECRET) -> requests.Response:
        """What a record-triggered Flow's signed HTTP callout sends."""
        body = json.dumps({"orgId": self.emu.org_id, "events": events}).encode()
        return self.http.post(f"{self.base_url}/webhooks/salesforce/flow", data=body,
                              headers=flow_headers(body, secret=secret), timeout=5)

    # -- the worker ------------------------------------------------------------------------
    def settle(self, *, timeout: float = 60.0) -> None:
        """Until messages are delivered, nothing is pending or queued and no deadline is near;
        then no job failed and no message was given up."""
        super().settle(timeout=timeout)
        assert self.queue.status()["failed"] == 0, self.queue.status()["failed_jobs"]
        assert self.emu.outbound.failed == 0

    def close(self) -> None:
        self.http.close()
        super().close()

    # -- a user in the org -----------------------------------------------------------------
    def new_opportunity(self, owner: str) -> str:
        return self.emu.user_create("Opportunity", {
            "Name": "Acme - Renewal", "StageName": "Qualification", "CloseDate": "2027-03-31", "OwnerId": owner,
        }, by=owner, at=datetime.now(timezone.utc) - timedelta(days=3))

    def new_task(self, what_id: str, owner: str, *, due_in_days: int = 5) -> str:
        """The rep's own next step on the record."""
        due = (datetime.now(ORG_TZ) + timedelta(days=due_in_days)).date()
        return self.emu.user_create("Task", {"Subject": "Send revised proposal", "WhatId": what_id, "OwnerId": owner,
                                             "ActivityDate": due.isoformat()}, by=owner)

    def new_queue_lead(self) -> str:
        """A web lead: the org's assignment rule puts it in the Inbound Leads queue."""
        return self.emu.user_create("Lead", {"FirstName": "Lena", "LastName": "Rossi", "Company": "Globex GmbH",
                                             "Email": "lena.rossi@globex.example", "LeadSource": "Web",
                                             "OwnerId": self.inbound_queue})

    # -- reading the org -------------------------------------------------------------------
    def tasks(self, record_id: str) -> list[dict]:
        return [t for t in self.emu.records("Task") if record_id in (t.get("WhatId"), t.get("WhoId"))]

    def transfers(self, record_id: str) -> list[dict]:
        return sorted((t for t in self.tasks(record_id) if (t.get(SOURCE_FIELD) or "").startswith("baton:transfer:")),
                      key=lambda t: t[SOURCE_FIELD])

    def prompts(self, record_id: str, open_only: bool = True) -> list[dict]:
        return [t for t in self.tasks(record_id) if (t.get(SOURCE_FIELD) or "").startswith(PROMPT_SOURCE)
                and (not open_only or not t["IsClosed"])]

    def record(self, record_id: str) -> dict:
        return self.emu.record(record_id)


@pytest.fixture
def stack(redis_server, prefix, tmp_path):
    built = Stack(redis_server, prefix, tmp_path)
    yield built
    built.close()


@pytest.fixture
def flow_stack(redis_server, prefix, tmp_path):
    """An org that tells Baton about changes with a Flow callout only (no Outbound Messages)."""
    built = Stack(redis_server, prefix, tmp_path, outbound=False)
    yield built
    built.close()


def _utc_second(at: datetime) -> str:
    return f"{at.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S}Z"


def _is_transfer(task: dict, from_name: str, to_name: str) -> bool:
    """Titled "Ownership transferred: Maya Patel <maya@…> → Jonas Weber <jonas@…>"."""
    label = r"( <[^>]+>)?"
    return re.fullmatch(rf"Ownership transferred: {re.escape(from_name)}{label} → {re.escape(to_name)}{label}",
                        task["Subject"]) is not None


def _assert_transfer(task: dict, at: datetime) -> None:
    """A transfer is a completed Task dated when the change happened (not when Baton saw it)."""
    assert task["Status"] == "Completed" and task["IsClosed"] is True
    assert task[SOURCE_FIELD].startswith(f"baton:transfer:{_utc_second(at)}:")
    assert task["ActivityDate"] == at.astimezone(ORG_TZ).date()


def test_owner_change_logs_one_transfer_and_keeps_one_prompt(stack):
    stack.deliver()
    opportunity = stack.new_opportunity(stack.maya)
    stack.settle()
    [prompt] = stack.prompts(opportunity)
    assert prompt["OwnerId"] == stack.maya
    before = len(stack.transfers(opportunity))

    changed_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=20)
    stack.emu.user_set_owner("Opportunity", opportunity, stack.jonas, by=stack.tom, at=changed_at)
    stack.settle()

    transfers = stack.transfers(opportunity)
    assert len(transfers) == before + 1
    [new] = [t for t in transfers if _is_transfer(t, "Maya Patel", "Jonas Weber")]
    _assert_transfer(new, changed_at)
    assert "Tom Becker" in new["Description"]
    record = stack.record(opportunity)
    assert record["Baton_Owner_Of_Record__c"] == stack.jonas
    assert record["Baton_Last_Transfer_At__c"] == changed_at
    assert record["Baton_Follow_Up_Status__c"] == "no_next_action"
    [prompt] = stack.prompts(opportunity)
    assert prompt["OwnerId"] == stack.jonas
    assert record["Baton_Next_Action__c"] is None  # Baton's own prompt is not a next action


def test_a_lead_in_a_queue_is_routed_to_a_person(stack):
    stack.emu.set_assignment_rule("Lead", stack.inbound_queue)  # Baton's writes must opt out of it
    stack.deliver()
    lead = stack.new_queue_lead()
    stack.settle()

    record = stack.record(lead)
    owner = record["OwnerId"]
    assert owner.startswith("005") and owner in (stack.maya, stack.jonas, stack.priya)
    assert record["Baton_Owner_Of_Record__c"] == owner
    assert record["Baton_Follow_Up_Status__c"] == "no_next_action"
    [prompt] = stack.prompts(lead)
    assert (prompt["OwnerId"], prompt["WhoId"]) == (owner, lead)
    [transfer] = stack.transfers(lead)
    assert transfer["Subject"].startswith("Ownership transferred: Inbound Leads")
    assert transfer["Status"] == "Completed"


def test_completing_the_last_task_brings_a_prompt(stack):
    stack.deliver()
    opportunity = stack.new_opportunity(stack.maya)
    task = stack.new_task(opportunity, stack.maya)
    stack.settle()
    record = stack.record(opportunity)
    assert stack.prompts(opportunity) == []
    assert (record["Baton_Follow_Up_Status__c"], record["Baton_Next_Action__c"]) == ("on_track",
                                                                                     "Send revised proposal")

    stack.emu.user_complete_task(task, by=stack.maya)
    stack.settle()
    [prompt] = stack.prompts(opportunity)
    record = stack.record(opportunity)
    assert prompt["OwnerId"] == stack.maya
    assert prompt["Subject"] == "Set the next step for Acme - Renewal"
    assert (record["Baton_Follow_Up_Status__c"], record["Baton_Next_Action__c"]) == ("no_next_action", None)


def test_an_inbound_email_with_a_request_becomes_a_task_once(stack):
    """On an Opportunity the email's RelatedToId names it; a lead's email is found through
    EmailMessageRelation (Leads are not "What"s)."""
    stack.deliver()
    opportunity = stack.new_opportunity(stack.maya)
    lead = stack.new_queue_lead()
    stack.settle()
    lead_owner = stack.record(lead)["OwnerId"]
    sent_at = {}
    for record_id in (opportunity, lead):
        email = stack.emu.user_add_email_message(
            record_id, subject="Pricing", incoming=True, from_address="lena.rossi@globex.example",
            text_body="Hi, can you send us pricing for 40 seats by Thursday? Thanks, Lena")
        sent_at[record_id] = stack.record(email)["MessageDate"]
    stack.settle()

    for record_id, owner in ((opportunity, stack.maya), (lead, lead_owner)):
        record = stack.record(record_id)
        assert record["Baton_Waiting_Since__c"].replace(microsecond=0) == sent_at[record_id].replace(microsecond=0)
        made = [t for t in stack.tasks(record_id)
                if re.match(r"baton:(commitment|confirm):", t.get(SOURCE_FIELD) or "")]
        assert len(made) == 1, [(t["Subject"], t[SOURCE_FIELD]) for t in made]
        assert made[0]["OwnerId"] == owner and not made[0]["IsClosed"]
        assert "pricing" in made[0]["Subject"].lower()
        assert record["Baton_Next_Action__c"] == made[0]["Subject"]
        assert record["Baton_Follow_Up_Status__c"] in ("on_track", "due_soon")  # due "by Thursday"


def test_duplicated_and_shuffled_outbound_messages_change_nothing(stack):
    stack.deliver(duplicate=True, shuffle=True)
    opportunity, other = stack.new_opportunity(stack.maya), stack.new_opportunity(stack.jonas)
    task = stack.new_task(other, stack.jonas)
    lead = stack.new_queue_lead()
    stack.settle()
    first, second = (datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=m) for m in (30, 10))
    stack.emu.user_set_owner("Opportunity", opportunity, stack.jonas, by=stack.tom, at=first)
    stack.emu.user_set_owner("Opportunity", opportunity, stack.priya, by=stack.tom, at=second)
    stack.emu.user_complete_task(task, by=stack.jonas)
    stack.emu.user_add_email_message(opportunity, subject="Pricing", incoming=True,
                                     text_body="Hi, can you send us pricing for 40 seats by Thursday? Thanks")
    stack.settle()

    transfers = stack.transfers(opportunity)
    [to_jonas] = [t for t in transfers if _is_transfer(t, "Maya Patel", "Jonas Weber")]
    [to_priya] = [t for t in transfers if _is_transfer(t, "Jonas Weber", "Priya Raman")]
    _assert_transfer(to_jonas, first)
    _assert_transfer(to_priya, second)
    assert len(transfers) == 2
    assert stack.record(opportunity)["Baton_Owner_Of_Record__c"] == stack.priya
    assert stack.record(opportunity)["Baton_Owner_Transfers__c"] == 2
    [commitment] = [t for t in stack.tasks(opportunity) if t[SOURCE_FIELD].startswith("baton:commitment:")]
    assert commitment["OwnerId"] == stack.priya
    [prompt] = stack.prompts(other)
    assert prompt["OwnerId"] == stack.jonas
    assert len(stack.prompts(lead)) == 1 and len(stack.transfers(lead)) == 1
    assert stack.record(lead)["OwnerId"].startswith("005")
    for record_id in (opportunity, other, lead):  # never two open prompts on one record
        assert len(stack.prompts(record_id)) <= 1
    # Every message really went twice.
    posted = [n for entry in stack.emu.outbound.log for n in entry.notification_ids]
    assert posted and all(posted.count(n) == 2 for n in posted)


def test_writes_stop_after_one_external_change(stack):
    stack.deliver()
    opportunity = stack.new_opportunity(stack.maya)
    stack.settle()
    stack.emu.reset_calls()
    stack.emu.user_set_owner("Opportunity", opportunity, stack.jonas, by=stack.tom)
    stack.settle()
    # Once for the change; once more for Baton's own task writes coming back as Task messages.
    assert 1 <= stack.emu.calls["SOQL Opportunity"] <= 2
    assert any(WRITES.match(k) for k in stack.emu.calls)

    stack.emu.reset_calls()
    stack.settle()
    assert [k for k in stack.emu.calls if WRITES.match(k)] == []
    assert stack.emu.calls["SOQL Opportunity"] == 0


def test_outbound_messages_from_another_org_or_with_a_wrong_token_get_no_ack(redis_server, prefix, tmp_path):
    built = Stack(redis_server, prefix, tmp_path, SALESFORCE_ORG_ID="00D5g000009ZzZzEAK")
    try:
        for token in (OUTBOUND_TOKEN, "not-the-token"):
            built.deliver(token, max_attempts=2, retry_delays=(0.01,))
            opportunity = built.new_opportunity(built.maya)
            assert built.emu.outbound.flush(timeout=10)
        assert {(entry.status, entry.acknowledged) for entry in built.emu.outbound.log} == {(403, False)}
        assert (built.emu.outbound.delivered, built.emu.outbound.failed) == (0, 2)  # Salesforce gives up in 24 h
        assert built.idle() and built.prompts(opportunity) == []
    finally:
        built.close()


def test_a_signed_flow_callout_is_reconciled(flow_stack):
    built = flow_stack
    opportunity = built.new_opportunity(built.maya)
    created = built.record(opportunity)["CreatedDate"]
    response = built.post_flow([{"object": "Opportunity", "id": opportunity, "change": "created",
                                 "occurredAt": _utc_second(created), "eventId": "flow-1"}])
    assert response.status_code == 204, response.text
    built.settle()
    assert len(built.prompts(opportunity)) == 1
    before = len(built.transfers(opportunity))

    changed_at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=3)
    built.emu.user_set_owner("Opportunity", opportunity, built.jonas, by=built.tom, at=changed_at)
    event = {"object": "Opportunity", "id": opportunity[:15], "change": "owner", "eventId": "flow-2",
             "occurredAt": _utc_second(changed_at), "changedBy": built.tom, "ownerId": built.jonas}
    assert built.post_flow([event], secret="not-the-secret").status_code == 401
    for _ in range(2):  # a retried callout is de-duplicated on its eventId
        assert built.post_flow([event]).status_code == 204
    metrics = built.http.get(f"{built.base_url}/metrics", timeout=5).text
    assert 'baton_webhook_events_total{outcome="duplicate",receiver="salesforce_flow"} 1.0' in metrics
    built.settle()

    transfers = built.transfers(opportunity)
    assert len(transfers) == before + 1
    [new] = [t for t in transfers if _is_transfer(t, "Maya Patel", "Jonas Weber")]
    _assert_transfer(new, changed_at)
    [prompt] = built.prompts(opportunity)
    assert prompt["OwnerId"] == built.jonas
    assert built.record(opportunity)["Baton_Owner_Of_Record__c"] == built.jonas
