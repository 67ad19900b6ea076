"""The real-time half of `baton demo`: changes made "by a user" in the emulator arrive as
signed webhooks at Baton's receiver, wait in an embedded Redis, and an rq worker reconciles
them. Prints what each change led to, and shows that Baton's own write-backs (which come
back as webhooks too) converge instead of looping."""
from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager

import yaml

from rich.console import Console
from rich.table import Table
from werkzeug.serving import WSGIRequestHandler, make_server

from adapter.model import RecordRef
from adapter.queue import RealtimeQueue
from adapter.settings import Settings
from adapter.worker import run_worker
from connectors import get_connector
from webhooks.app import create_app


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


def _demo_settings(base: Settings, connector_values: dict, data_dir: str) -> Settings:
    # The demo always runs on its own embedded Redis, whatever REDIS_URL says.
    values = {k: v for k, v in base.values.items() if k != "REDIS_URL"}
    values.update(connector_values)
    values.update({"BATON_DATA_DIR": data_dir, "BATON_REDIS_PREFIX": "baton-demo", "BATON_LOG_LEVEL": "WARNING"})
    return Settings(values)


def _work(settings: Settings) -> None:
    run_worker(settings, burst=True, connector_factory=lambda crm, s: get_connector(crm, s.values))


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
    """Four things reps and admins do every day, made through the emulator's UI helpers."""

    def __init__(self, emulator, connector):
        self.emulator, self.connector = emulator, connector

    def pick(self) -> list[RecordRef]:
        open_deals = [r for r in self.emulator.records("deals") if r.get("baton_follow_up_status") not in ("closed", None)
                      and r.get("hubspot_owner_id")]
        return [RecordRef("hubspot", "deal", d["hs_object_id"]) for d in open_deals[:4]]

    def make(self, refs: list[RecordRef]) -> list[str]:
        people = sorted(self.connector.owners().people(), key=lambda o: o.id)
        transfer, complete, note, clear = refs
        current = self.emulator.record("deals", transfer.id)["hubspot_owner_id"]
        new_owner = next(p for p in people if p.id != current)
        self.emulator.user_set_owner("deals", transfer.id, new_owner.id)
        for task_id in self.emulator.associated_ids("deals", complete.id, "tasks"):
            if self.emulator.record("tasks", task_id).get("hs_task_status") != "COMPLETED":
                self.emulator.user_complete_task(task_id)
        author = self.emulator.record("deals", note.id)["hubspot_owner_id"]
        self.emulator.user_add_note("deals", note.id, "<p>Call went well. I'll send the revised proposal by Friday.</p>",
                                    author)
        self.emulator.user_set_owner("deals", clear.id, None)
        return [f"owner changed to {new_owner.name}", "its open tasks completed", "note: “I'll send the revised "
                "proposal by Friday.”", "owner cleared"]


def run_hubspot(emulator, connector, policy_mapping: dict, settings: Settings, console: Console) -> dict:
    secret = secrets.token_urlsafe(24)
    # The embedded Redis lives under Baton's data directory and outlives this function (it
    # stops when the process exits), so the directory is not a temporary one.
    data_dir = settings.data_dir / "demo" / secrets.token_hex(4)
    data_dir.mkdir(parents=True, exist_ok=True)
    policy_path = data_dir / "baton.yml"
    policy_path.write_text(yaml.safe_dump(policy_mapping), encoding="utf-8")
    connector_values = {k: v for k, v in settings.values.items() if k.startswith(("HUBSPOT_", "BATON_HUBSPOT"))}
    demo = _demo_settings(settings, {
        **connector_values, "HUBSPOT_CLIENT_SECRET": secret, "HUBSPOT_APP_ID": str(emulator.app_id),
        "BATON_CRMS": "hubspot", "BATON_POLICY": str(policy_path),
    }, str(data_dir))
    with receiver(demo, RealtimeQueue.from_settings(demo)) as base_url:
        return _hubspot_changes(emulator, connector, demo, base_url, secret, console)


def _hubspot_changes(emulator, connector, settings, base_url, secret, console) -> dict:
    emulator.webhooks.configure(f"{base_url}/webhooks/hubspot", secret, app_id=emulator.app_id,
                                retry_delays=(0.1, 0.2, 0.5))
    changes = HubSpotChanges(emulator, connector)
    refs = changes.pick()
    before = {ref: _row(connector, ref) for ref in refs}
    tasks_before = {ref: _open_tasks(connector, ref) for ref in refs}
    started = time.monotonic()
    what = changes.make(refs)
    emulator.webhooks.flush(10)
    delivered = emulator.webhooks.delivered
    emulator.reset_calls()
    _work(settings)
    elapsed = time.monotonic() - started
    calls = emulator.calls_total
    # Baton's own writes come back as webhooks; reconciling them must write nothing.
    emulator.webhooks.flush(10)
    echoes = emulator.webhooks.delivered - delivered
    emulator.reset_calls()
    _work(settings)
    echo_writes = emulator.calls.get("POST /crm/v3/objects/deals/batch/update", 0) + \
        emulator.calls.get("POST /crm/v3/objects/tasks/batch/create", 0) + \
        emulator.calls.get("POST /crm/v3/objects/notes/batch/create", 0)

    table = Table(title="hubspot: real time — a user changes four deals; webhooks → Redis → worker")
    for column in ("deal", "the change", "owner", "status", "next action", "new tasks", "transfers"):
        table.add_column(column)
    for ref, change in zip(refs, what):
        after = _row(connector, ref)
        new_tasks = [title for task_id, title in _open_tasks(connector, ref).items() if task_id not in tasks_before[ref]]
        table.add_row(ref.id, change, f"{before[ref][0]} → {after[0]}", f"{before[ref][1]} → {after[1]}", after[2],
                      "\n".join(new_tasks) or "-", f"{before[ref][3]} → {after[3]}")
    console.print(table)
    console.print(f"{delivered} signed webhook batches delivered; reconciled and written back in {elapsed:.1f} s with "
                  f"{calls} API calls. Baton's own writes came back as {echoes} more batches and caused "
                  f"{echo_writes} writes (loop safety).")
    return {"webhook_batches": delivered, "seconds": round(elapsed, 2), "calls": calls, "echo_writes": echo_writes}


REALTIME = {"hubspot": run_hubspot}


def run_realtime(crm: str, emulator, connector, policy_mapping: dict, settings: Settings, console: Console) -> dict:
    if crm not in REALTIME:
        console.print(f"[yellow]{crm}: the real-time part of the demo is not wired yet[/yellow]")
        return {}
    return REALTIME[crm](emulator, connector, policy_mapping, settings, console)
