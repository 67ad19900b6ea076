"""`baton demo`: Baton end to end against the bundled emulators, with no account and no
Redis server. It seeds a realistic portal/org, installs Baton's fields, audits (dry run),
applies, audits again, and prints the before/after count per status and the API calls used.
"""
from __future__ import annotations

import time
from collections import Counter
from contextlib import ExitStack
from datetime import datetime, timezone

from rich.console import Console

from adapter import report
from adapter.actions import AssignOwner, CreateTask, LogTransfer, SetFields, UpdateTask
from adapter.manifest import load_manifest
from adapter.pipeline import audit
from adapter.policy import Policy
from adapter.settings import Settings
from connectors import get_connector

# Wide enough for the exception table even when the output is captured, not a terminal.
console = Console(width=max(Console().width, 120))


def _hubspot(stack: ExitStack, records: int):
    from connectors.hubspot.emulator import HubSpotEmulator

    # A private app on a Professional portal gets 190 requests per 10 s.
    emulator = stack.enter_context(HubSpotEmulator(rate_limit=190, validate=False))
    per_type = max(1, records // 4)
    emulator.seed(per_type, object_types=("deals", "contacts", "companies", "tickets"), rng_seed=7)
    settings = {"HUBSPOT_ACCESS_TOKEN": emulator.token, "BATON_HUBSPOT_HOST": emulator.url,
                "HUBSPOT_PORTAL_ID": str(emulator.portal_id), "BATON_HUBSPOT_CALLS_PER_10S": "190"}
    return emulator, settings


def _salesforce(stack: ExitStack, records: int):
    from connectors.salesforce.emulator import SalesforceEmulator

    emulator = stack.enter_context(SalesforceEmulator())
    emulator.seed(records, rng_seed=7)  # spread over leads, opportunities, accounts and cases
    settings = {"SALESFORCE_SESSION_ID": emulator.session_id, "SALESFORCE_INSTANCE_URL": emulator.url,
                "BATON_SALESFORCE_CA_BUNDLE": emulator.ca_bundle_path, "SALESFORCE_ORG_ID": emulator.org_id}
    return emulator, settings


EMULATORS = {"hubspot": _hubspot, "salesforce": _salesforce}


def demo_policy_mapping(connector) -> dict:
    """Round-robin ownerless records to the first three active people of the seeded account
    (not the integration user Baton itself logs in as)."""
    people = sorted((o for o in connector.owners().people() if o.email and "integration" not in o.email),
                    key=lambda o: o.id)[:3]
    return {
        "timezone": "America/New_York",
        "holidays": {"country": "US"},
        "owners": {"routing": {"pool": [o.email for o in people]}},
    }


def demo_policy(connector) -> Policy:
    return Policy.from_mapping(demo_policy_mapping(connector))


def describe_writes(plans) -> str:
    """What the apply pass did, in the words an admin uses."""
    counts: Counter = Counter()
    for plan in plans:
        for action in plan.writes:
            if isinstance(action, CreateTask):
                kind = action.source.split(":")[1]
                counts[{"prompt": "next-step prompts created", "commitment": "tasks from notes and emails",
                        "confirm": "'confirm next step' tasks"}.get(kind, "tasks created")] += 1
            else:
                counts[{AssignOwner: "owners assigned", LogTransfer: "transfers logged",
                        UpdateTask: "Baton tasks updated", SetFields: "records with fields written"}[type(action)]] += 1
    return "; ".join(f"{label}: {n}" for label, n in counts.most_common())


def run_crm(crm: str, settings: Settings, records: int, realtime: bool) -> dict:
    started = time.monotonic()
    with ExitStack() as stack:
        emulator, connector_settings = EMULATORS[crm](stack, records)
        connector = get_connector(crm, {**settings.values, **connector_settings})
        console.rule(f"[bold]{crm}[/bold]: emulator at {emulator.url}")

        installed = connector.install(load_manifest())
        console.print(f"install: {len(installed.created)} fields created, {len(installed.updated)} updated")
        again = connector.install(load_manifest())
        console.print(f"install again: {'nothing to change' if not again.changed else 'CHANGED (bug)'}")

        policy = demo_policy(connector)
        types = list(connector.object_types)
        now = datetime.now(timezone.utc)
        before = audit(connector, policy, types, now=now)
        console.print(report.exceptions_table(before.records, now, limit=12))
        emulator.reset_calls()
        applied = audit(connector, policy, types, now=now, apply=True)
        calls = emulator.calls_total
        after = audit(connector, policy, types, now=datetime.now(timezone.utc))

        console.print(report.counts_table(report.status_counts(before.records), report.status_counts(after.records),
                                          title=f"{crm}: records by status, before and after"))
        console.print(describe_writes(applied.plans))
        console.print(f"{len(applied.records)} records reconciled with {applied.writes} writes in "
                      f"{calls} API calls ({calls / max(1, len(applied.records)):.3f} per record); "
                      f"{len(applied.failures)} failures; a second pass plans "
                      f"{after.writes} writes.")
        summary = {"crm": crm, "records": len(applied.records), "writes": applied.writes, "apply_calls": calls,
                   "failures": len(applied.failures), "writes_after": after.writes}
        if realtime:
            from connectors.demo_realtime import run_realtime

            summary["realtime"] = run_realtime(crm, emulator, connector, demo_policy_mapping(connector),
                                               Settings({**settings.values, **connector_settings}), console)
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


def run_demo(settings: Settings, *, crms=("hubspot", "salesforce"), records: int = 500, realtime: bool = True) -> int:
    failures = 0
    for crm in crms:
        summary = run_crm(crm, settings, records, realtime)
        failures += summary["failures"] + (1 if summary["writes_after"] else 0)
        console.print(f"[green]{crm} done in {summary['seconds']} s[/green]")
    return 1 if failures else 0
