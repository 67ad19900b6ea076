"""The real-time half of `baton demo`: changes made "by a user" in the emulator arrive at
Baton's receiver (HubSpot's signed webhooks, Salesforce's Outbound Messages), wait in an
embedded Redis, and an rq worker reconciles them. Prints what each change led to, and shows
that Baton's own write-backs, which come back as events too, converge instead of looping."""
from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone

import requests
import yaml
from rich.console import Console
from rich.table import Table
from werkzeug.serving import WSGIRequestHandler, make_server

from adapter.model import RecordRef
from adapter.queue import RealtimeQueue, stop_embedded
from adapter.settings import Settings
from adapter.worker import run_worker
from connectors import get_connector
from webhooks.app import create_app
from webhooks.signatures import baton_signature

NOTE = "I'll send the revised proposal by Friday."


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # the demo prints its own summary
        pass


@contextmanager
def receiver(settings: Settings, queue: RealtimeQueue):
    """Baton's webhook app on a loopback port, in a thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, create_app(settings, queue=queue), threaded=True,
                         request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="baton-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def _work(settings: Settings) -> None:
    run_worker(settings, burst=True, connector_factory=lambda crm, s, redis=None: get_connector(crm, s.values, redis=redis))


def _open_tasks(connector, ref: RecordRef) -> dict[str, str]:
    [snapshot] = connector.load([ref]).snapshots
    return {t.id: t.title for t in snapshot.tasks if not t.completed and not t.foreign}


def _row(connector, ref: RecordRef) -> tuple[str, str, str, str]:
    [snapshot] = connector.load([ref]).snapshots
    owner = connector.owners().label(snapshot.owner_id).split(" <")[0]
    fields = snapshot.fields
    due = fields.get("next_action_due")
    next_action = f"{fields.get('next_action') or '-'}" + (f" (due {due:%a %d %b})" if due else "")
    return owner, fields.get("follow_up_status") or "-", next_action, str(fields.get("owner_transfers") or 0)


class HubSpotChanges:
    """Four things reps and admins do every day, through the emulator's UI helpers; delivered
    as v3-signed webhook batches."""

    record_type = "deal"
    prefixes = ("HUBSPOT_", "BATON_HUBSPOT")

    def __init__(self, emulator, connector):
        self.emulator, self.connector = emulator, connector
        self.secret = secrets.token_urlsafe(24)

    def settings(self) -> dict[str, str]:
        return {"HUBSPOT_CLIENT_SECRET": self.secret, "HUBSPOT_APP_ID": str(self.emulator.app_id)}

    def connect(self, base_url: str) -> None:
        self.emulator.webhooks.configure(f"{base_url}/webhooks/hubspot", self.secret, app_id=self.emulator.app_id,
                                         retry_delays=(0.1, 0.2, 0.5))

    def flush(self) -> int:
        self.emulator.webhooks.flush(10)
        return self.emulator.webhooks.delivered

    def pick(self) -> list[RecordRef]:
        open_deals = [r for r in self.emulator.records("deals")
                      if r.get("baton_follow_up_status") not in ("closed", None) and r.get("hubspot_owner_id")]
        return [RecordRef("hubspot", "deal", d["hs_object_id"]) for d in open_deals[:4]]

    def make(self, refs: list[RecordRef]) -> list[str]:
        transfer, complete, note, clear = refs
        current = self.emulator.record("deals", transfer.id)["hubspot_owner_id"]
        new_owner = next(p for p in sorted(self.connector.owners().people(), key=lambda o: o.id) if p.id != current)
        self.emulator.user_set_owner("deals", transfer.id, new_owner.id)
        for task_id in self.emulator.associated_ids("deals", complete.id, "tasks"):
            if self.emulator.record("tasks", task_id).get("hs_task_status") != "COMPLETED":
                self.emulator.user_complete_task(task_id)
        author = self.emulator.record("deals", note.id)["hubspot_owner_id"]
        self.emulator.user_add_note("deals", note.id, f"<p>Call went well. {NOTE}</p>", author)
        self.emulator.user_set_owner("deals", clear.id, None)
        return [f"owner changed to {new_owner.name}", "its open tasks completed", f"note: “{NOTE}”", "owner cleared"]

    def writes(self) -> int:
        return sum(n for key, n in self.emulator.calls.items()
                   if key.endswith(("/batch/update", "/batch/create")))


class SalesforceChanges:
    """The same day in Salesforce: Outbound Messages (SOAP) from the rules Baton's package
    deploys, plus rules on Task and EmailMessage so completed tasks and emails reach Baton."""

    record_type = "opportunity"
    prefixes = ("SALESFORCE_", "BATON_SALESFORCE")

    def __init__(self, emulator, connector):
        self.emulator, self.connector = emulator, connector
        self.token = secrets.token_urlsafe(16)
        self.flow_secret = secrets.token_urlsafe(24)
        self.base_url = ""

    def settings(self) -> dict[str, str]:
        return {"BATON_SALESFORCE_OUTBOUND_TOKEN": self.token, "SALESFORCE_ORG_ID": self.emulator.org_id,
                "BATON_SALESFORCE_FLOW_SECRET": self.flow_secret}

    def note_flow_callout(self, record_id: str) -> None:
        """Notes (ContentNote) cannot send Outbound Messages: in an org, a record-triggered flow on
        ContentDocumentLink calls Baton's Flow endpoint. The demo sends what that flow sends."""
        body = json.dumps({"orgId": self.emulator.org_id, "events": [{
            "object": "Opportunity", "id": record_id, "change": "note",
            "occurredAt": datetime.now(timezone.utc).isoformat()}]}).encode()
        timestamp = str(int(time.time()))
        requests.post(f"{self.base_url}/webhooks/salesforce/flow", data=body, timeout=5, headers={
            "Content-Type": "application/json", "X-Baton-Timestamp": timestamp,
            "X-Baton-Signature": baton_signature(body, timestamp=timestamp, secret=self.flow_secret),
        }).raise_for_status()

    def connect(self, base_url: str) -> None:
        self.base_url = base_url
        outbound = self.emulator.outbound
        outbound.add_manifest_rules()
        outbound.add_rule("Task", ("Id", "WhatId", "WhoId", "Status"), trigger_fields=("Status", "ActivityDate"),
                          name="Baton_Task_Changed")
        outbound.add_rule("EmailMessage", ("Id", "RelatedToId"), name="Baton_Email_Logged")
        outbound.configure(f"{base_url}/webhooks/salesforce/outbound/{self.token}", retry_delays=(0.1, 0.2, 0.5))

    def flush(self) -> int:
        self.emulator.outbound.flush(timeout=10)
        return self.emulator.outbound.delivered

    def pick(self) -> list[RecordRef]:
        open_opportunities = [r for r in self.emulator.records("Opportunity")
                              if not r.get("IsClosed") and r.get("Baton_Follow_Up_Status__c") not in (None, "closed")]
        return [RecordRef("salesforce", "opportunity", o["Id"]) for o in open_opportunities[:4]]

    def make(self, refs: list[RecordRef]) -> list[str]:
        transfer, complete, note, email = refs
        current = self.emulator.record(transfer.id)["OwnerId"]
        new_owner = next(p for p in sorted(self.connector.owners().people(), key=lambda o: o.id)
                         if p.id != current and "integration" not in (p.email or ""))
        self.emulator.user_set_owner("Opportunity", transfer.id, new_owner.id)
        for task in self.emulator.records("Task"):
            if task.get("WhatId") == complete.id and not task.get("IsClosed"):
                self.emulator.user_complete_task(task["Id"])
        self.emulator.user_add_note(note.id, title="Call notes", body=f"Call went well. {NOTE}")
        self.note_flow_callout(note.id)
        self.emulator.user_add_email_message(email.id, subject="Pricing", incoming=True,
                                             text_body="Hi, can you send us pricing for 40 seats by Thursday?")
        return [f"owner changed to {new_owner.name}", "its open tasks completed", f"note: “{NOTE}”",
                "customer email: “can you send us pricing for 40 seats by Thursday?”"]

    def writes(self) -> int:
        return sum(n for key, n in self.emulator.calls.items() if "composite/sobjects" in key and not key.startswith("GET"))


CHANGES = {"hubspot": HubSpotChanges, "salesforce": SalesforceChanges}


def run_realtime(crm: str, emulator, connector, policy_mapping: dict, settings: Settings, console: Console) -> dict:
    changes = CHANGES[crm](emulator, connector)
    # The demo's own embedded Redis lives under Baton's data directory, stopped once shown.
    data_dir = settings.data_dir / "demo" / secrets.token_hex(4)
    data_dir.mkdir(parents=True, exist_ok=True)
    policy_path = data_dir / "baton.yml"
    policy_path.write_text(yaml.safe_dump(policy_mapping), encoding="utf-8")
    values = {k: v for k, v in settings.values.items() if k.startswith(changes.prefixes) or k == "BATON_POLICY"}
    values = {k: v for k, v in values.items() if k != "REDIS_URL"}  # always the demo's own embedded Redis
    values.update(changes.settings())
    values.update({"BATON_CRMS": crm, "BATON_POLICY": str(policy_path), "BATON_DATA_DIR": str(data_dir),
                   "BATON_REDIS_PREFIX": "baton-demo", "BATON_LOG_LEVEL": "WARNING"})
    demo = Settings(values)
    try:
        with receiver(demo, RealtimeQueue.from_settings(demo)) as base_url:
            changes.connect(base_url)
            return _show(crm, changes, connector, demo, console)
    finally:
        stop_embedded(demo)


def _show(crm: str, changes, connector, settings: Settings, console: Console) -> dict:
    refs = changes.pick()
    before = {ref: _row(connector, ref) for ref in refs}
    tasks_before = {ref: _open_tasks(connector, ref) for ref in refs}
    started = time.monotonic()
    what = changes.make(refs)
    delivered = changes.flush()
    changes.emulator.reset_calls()
    _work(settings)
    elapsed = time.monotonic() - started
    calls = changes.emulator.calls_total
    # Baton's own writes come back as events; reconciling them must write nothing.
    echoes = changes.flush() - delivered
    changes.emulator.reset_calls()
    _work(settings)
    echo_writes = changes.writes()

    table = Table(title=f"{crm}: real time — a user changes four {changes.record_type} records; "
                        "events → receiver → Redis → worker")
    for column in ("record", "the change", "owner", "status", "next action", "new tasks", "transfers"):
        table.add_column(column)
    for ref, change in zip(refs, what):
        after = _row(connector, ref)
        new_tasks = [title for task_id, title in _open_tasks(connector, ref).items() if task_id not in tasks_before[ref]]
        table.add_row(ref.id, change, f"{before[ref][0]} → {after[0]}", f"{before[ref][1]} → {after[1]}", after[2],
                      "\n".join(new_tasks) or "-", f"{before[ref][3]} → {after[3]}")
    console.print(table)
    console.print(f"{delivered} event deliveries; reconciled and written back in {elapsed:.1f} s with {calls} API "
                  f"calls. Baton's own writes came back as {echoes} more deliveries and caused {echo_writes} "
                  "writes (loop safety).")
    return {"deliveries": delivered, "seconds": round(elapsed, 2), "calls": calls, "echo_writes": echo_writes}
