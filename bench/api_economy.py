"""API economy: how many CRM calls Baton spends per record on the apply path.

Seeds N deals (or opportunities), brings them to Baton's steady state with one full pass,
then changes 30% of them the way people do (owner cleared or changed, next task completed)
and measures one more full `audit --apply` pass: scan, batched load, reconcile, batched
writes. Prints one JSON line. Run: `python bench/api_economy.py [--crm salesforce] [--records N]`.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter.manifest import load_manifest  # noqa: E402
from adapter.pipeline import audit  # noqa: E402
from adapter.policy import Policy  # noqa: E402
from connectors import get_connector  # noqa: E402

FIX_SHARE = 0.3


class HubSpotScenario:
    object_type, emulator_type = "deal", "deals"

    def __init__(self, stack: ExitStack, records: int, rate_limit: int):
        from connectors.hubspot.emulator import HubSpotEmulator

        self.emu = stack.enter_context(HubSpotEmulator(rate_limit=rate_limit, validate=False))
        self.emu.seed(records, object_types=("deals",), rng_seed=11)
        self.settings = {"HUBSPOT_ACCESS_TOKEN": self.emu.token, "BATON_HUBSPOT_HOST": self.emu.url,
                         "BATON_HUBSPOT_CALLS_PER_10S": str(rate_limit)}
        self.rate_limit_per_s = rate_limit / 10

    def open_ids(self) -> list[str]:
        return [r["hs_object_id"] for r in self.emu.records("deals")]

    def clear_owner(self, record_id: str) -> None:
        self.emu.user_set_owner("deals", record_id, None)

    def change_owner(self, record_id: str, owner_id: str) -> None:
        self.emu.user_set_owner("deals", record_id, owner_id)

    def complete_open_tasks(self, record_id: str) -> None:
        for task_id in self.emu.associated_ids("deals", record_id, "tasks"):
            if self.emu.record("tasks", task_id).get("hs_task_status") != "COMPLETED":
                self.emu.user_complete_task(task_id)

    def calls(self):
        return self.emu.calls_total, dict(self.emu.calls), self.emu.rate_limited

    def reset(self) -> None:
        self.emu.reset_calls()


class SalesforceScenario:
    object_type, emulator_type = "opportunity", "Opportunity"

    def __init__(self, stack: ExitStack, records: int, rate_limit: int):
        from connectors.salesforce.emulator import SalesforceEmulator

        self.emu = stack.enter_context(SalesforceEmulator())
        self.emu.seed(records, object_types=("opportunity",), rng_seed=11)
        self.settings = {"SALESFORCE_SESSION_ID": self.emu.session_id, "SALESFORCE_INSTANCE_URL": self.emu.url,
                         "BATON_SALESFORCE_CA_BUNDLE": self.emu.ca_bundle_path}
        self.rate_limit_per_s = None  # Salesforce meters a daily allocation, not a rate

    def open_ids(self) -> list[str]:
        return [r["Id"] for r in self.emu.records("Opportunity") if not r.get("IsClosed")]

    def clear_owner(self, record_id: str) -> None:
        # An Opportunity cannot be left ownerless or given to a departed user in Salesforce;
        # the third kind of change here is a customer's email asking for something.
        self.emu.user_add_email_message(record_id, subject="Pricing", incoming=True,
                                        text_body="Hi, can you send us pricing for 40 seats by Thursday? Thanks")

    def change_owner(self, record_id: str, owner_id: str) -> None:
        self.emu.user_set_owner("Opportunity", record_id, owner_id)

    def complete_open_tasks(self, record_id: str) -> None:
        for task in self.emu.records("Task"):
            if task.get("WhatId") == record_id and not task.get("IsClosed"):
                self.emu.user_complete_task(task["Id"])

    def calls(self):
        return self.emu.calls_total, dict(self.emu.calls), 0

    def reset(self) -> None:
        self.emu.reset_calls()


SCENARIOS = {"hubspot": HubSpotScenario, "salesforce": SalesforceScenario}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--crm", choices=sorted(SCENARIOS), default="hubspot")
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--rate-limit", type=int, default=100, help="HubSpot requests per 10 s")
    args = parser.parse_args()

    with ExitStack() as stack:
        scenario = SCENARIOS[args.crm](stack, args.records, args.rate_limit)
        connector = get_connector(args.crm, scenario.settings)
        connector.install(load_manifest())
        people = sorted((o for o in connector.owners().people() if o.email), key=lambda o: o.id)
        policy = Policy.from_mapping({"owners": {"routing": {"pool": [o.email for o in people[:3]]}}})

        warmup_started = time.monotonic()
        audit(connector, policy, [scenario.object_type], apply=True)
        warmup_calls = scenario.calls()[0]
        warmup_s = time.monotonic() - warmup_started

        rng = random.Random(5)
        ids = scenario.open_ids()
        to_fix = rng.sample(ids, int(len(ids) * FIX_SHARE))
        for index, record_id in enumerate(to_fix):
            [scenario.clear_owner, lambda r: scenario.change_owner(r, rng.choice(people).id),
             scenario.complete_open_tasks][index % 3](record_id)
        time.sleep(10)  # let the warm-up's rate-limit window drain, so the bound below is fair
        scenario.reset()
        connector.calls.clear()

        started = time.monotonic()
        result = audit(connector, policy, [scenario.object_type], now=datetime.now(timezone.utc), apply=True)
        wall = time.monotonic() - started
        calls, by_endpoint, limited = scenario.calls()

    records = len(result.records)
    line = {
        "bench": "api_economy", "crm": args.crm, "records": records, "needing_fix": len(to_fix),
        "records_written": len({p.ref for p in result.plans if not p.is_noop}),
        "calls": calls, "calls_per_record": round(calls / max(records, 1), 4),
        "calls_by_endpoint": dict(sorted(by_endpoint.items(), key=lambda kv: -kv[1])),
        "rate_limited": limited, "failures": len(result.failures), "wall_s": round(wall, 2),
        "warmup_calls": warmup_calls, "warmup_s": round(warmup_s, 2),
    }
    if scenario.rate_limit_per_s:
        line["rate_limit_bound_s"] = round(calls / scenario.rate_limit_per_s, 2)
        line["wall_vs_bound"] = round(wall / max(line["rate_limit_bound_s"], 0.001), 3)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
