"""Realistic, deterministic portal data for tests, the demo and benchmarks.

A seeded portal looks like a sales team's months of work: deals (and tickets, contacts,
companies on request) spread over both pipelines' open and closed stages, owners including
deactivated ones, reassignments in the owner history, open tasks due in the future and in
the past, completed tasks, and notes and emails whose HTML carries the commitments people
write ("I'll send the proposal by Friday"). The same arguments always give the same portal.

Records are built directly in the store (no validation, no webhooks): seeding is the portal's
past, not news, and it must stay fast (10,000 deals well under 5 s).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .emulator_catalog import (
    ACTIVITY_DATE_PROPERTY, DEAL_PIPELINES, ENGAGEMENT_TYPES, OBJECT_TYPES, TICKET_PIPELINES, default_association_type,
)
from .emulator_state import CrmStore, Record, Version, to_iso

__all__ = ["SeedMix", "seed_portal"]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class SeedMix:
    """Shares of open records in each situation Baton cares about (0..1, independent draws)."""

    ownerless: float = 0.1  # no hubspot_owner_id
    departed_owner: float = 0.05  # owned by a deactivated (archived) owner
    no_next_task: float = 0.3  # no open task at all
    overdue_task: float = 0.15  # the open task is past due
    recent_notes: float = 0.2  # a note or email with a commitment in the last three days
    closed: float = 0.2  # share of deals/tickets in a closed stage
    owner_changes: float = 0.25  # 1-3 earlier owners in the history
    completed_task: float = 0.4  # a completed task in the past


_FIRST = ["Olivia", "Liam", "Maya", "Noah", "Priya", "Mateo", "Chloe", "Kenji", "Amara", "Lucas", "Sofia",
          "Ethan", "Zara", "Diego", "Ingrid", "Omar", "Leah", "Tomás", "Nadia", "Felix"]
_LAST = ["Bennett", "Chen", "Okoye", "Schmidt", "Rossi", "Patel", "Dubois", "Nguyen", "García", "Larsen",
         "Haddad", "Kim", "Moreau", "Silva", "Novak", "Brennan", "Ito", "Adeyemi", "Fischer", "Quinn"]
_COMPANY_WORDS = (["Blue", "Granite", "Harbor", "Summit", "Lumen", "Cedar", "Vector", "Orbit", "Maple", "Atlas"],
                  ["Logistics", "Health", "Robotics", "Foods", "Analytics", "Energy", "Capital", "Studios",
                   "Systems", "Labs"])
_PRODUCTS = ["Annual licence", "Pilot", "Expansion", "Renewal", "Onboarding package", "Enterprise tier",
             "Support plan", "Data migration"]
_TASK_SUBJECTS = ["Send revised proposal", "Follow up on pricing questions", "Book demo with IT",
                  "Call to confirm budget", "Share security questionnaire", "Check in after trial",
                  "Prepare contract draft", "Schedule kickoff"]
_COMMITMENTS = [
    "I'll send the proposal by Friday.",
    "I will get you the revised pricing by Thursday.",
    "Let me check with legal and come back to you on Monday.",
    "I'll book a call with your IT team next week.",
    "We'll have the contract draft ready by end of month.",
]
_ASKS = [
    "Could you send over the updated quote by Wednesday?",
    "Can we get the security documentation before our board meeting on the 14th?",
    "Please confirm the onboarding dates when you can.",
    "We need an answer on the discount before Friday.",
]


class _Builder:
    """Creates records with history in one pass; holds the store lock for the whole seed."""

    def __init__(self, store: CrmStore, rng: random.Random, now_ms: int):
        self.store, self.rng, self.now = store, rng, now_ms
        self.active = [o for o in store.owners if not o["archived"]]
        self.departed = [o for o in store.owners if o["archived"]]
        self.users = {o["id"]: o["userId"] for o in store.owners}
        self.counts: dict[str, int] = {}
        self.last_activity: dict[str, tuple[Record, int]] = {}  # record id -> (record, newest log time)

    def actor_for(self, owner_id: str | None) -> tuple[str, str | None, int | None]:
        owner_id = owner_id or self.active[0]["id"]
        user_id = self.users[owner_id]
        return "CRM_UI", f"userId:{user_id}", user_id

    def record(self, object_type: str, props: dict[str, str], created_ms: int, creator: str | None,
               owner_history: list[tuple[str, int, tuple]] | None = None) -> Record:
        spec = OBJECT_TYPES[object_type]
        record_id = self.store.new_id()
        stamp = to_iso(created_ms)
        props = {"hs_object_id": record_id, spec.created_property: stamp, "hs_createdate": stamp,
                 spec.modified_property: stamp, **props}
        source = self.actor_for(creator)
        history = {name: [Version(value, created_ms, *source)] for name, value in props.items()}
        updated = created_ms
        if owner_history:
            history["hubspot_owner_id"] = [Version(owner, at, *src) for owner, at, src in owner_history]
            props["hubspot_owner_id"] = owner_history[-1][0]
            updated = max(updated, owner_history[-1][1])
        if updated != created_ms:
            props[spec.modified_property] = to_iso(updated)
            history[spec.modified_property].append(Version(props[spec.modified_property], updated, *source))
        record = Record(object_type, record_id, props, history, created_ms, updated)
        self.store.insert_seeded(record)
        self.counts[object_type] = self.counts.get(object_type, 0) + 1
        return record

    def link(self, a: Record, b: Record) -> None:
        self.store.link_seeded(a.object_type, a.id, b.object_type, b.id,
                               default_association_type(a.object_type, b.object_type))
        if a.object_type in ENGAGEMENT_TYPES:
            known = self.last_activity.get(b.id)
            if known is None or known[1] < a.created_ms:
                self.last_activity[b.id] = (b, a.created_ms)

    def stamp_activity_dates(self) -> None:
        """The "Last activity date" HubSpot keeps on records: when an engagement was last logged."""
        for record, at_ms in self.last_activity.values():
            if ACTIVITY_DATE_PROPERTY in self.store.properties[record.object_type]:
                stamp = to_iso(at_ms)
                record.properties[ACTIVITY_DATE_PROPERTY] = stamp
                record.history[ACTIVITY_DATE_PROPERTY] = [Version(stamp, at_ms, "CALCULATED", None, None)]

    # -- people and companies ---------------------------------------------------------------
    def company(self) -> Record:
        rng = self.rng
        words = f"{rng.choice(_COMPANY_WORDS[0])} {rng.choice(_COMPANY_WORDS[1])}"
        name = f"{words} {rng.randint(1, 999)}"
        owner = rng.choice(self.active)["id"]
        return self.record("companies", {
            "name": name, "domain": name.lower().replace(" ", "") + ".example", "hubspot_owner_id": owner,
            "lifecyclestage": rng.choice(["lead", "opportunity", "customer"]),
        }, self.now - rng.randint(30, 400) * DAY_MS, owner)

    def contact(self, company: Record | None) -> Record:
        rng = self.rng
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        domain = company.properties["domain"] if company else "mail.example"
        owner = rng.choice(self.active)["id"]
        record = self.record("contacts", {
            "firstname": first, "lastname": last, "hubspot_owner_id": owner,
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 9999)}@{domain}",
            "lifecyclestage": rng.choice(["lead", "salesqualifiedlead", "opportunity", "customer"]),
        }, self.now - rng.randint(10, 300) * DAY_MS, owner)
        if company is not None:
            self.link(record, company)
        return record

    # -- ownership --------------------------------------------------------------------------------
    def owner_history(self, mix: SeedMix, created_ms: int) -> list[tuple[str, int, tuple]] | None:
        """Past owners then the current one, timestamps increasing; None for an ownerless record."""
        rng = self.rng
        roll = rng.random()
        if roll < mix.ownerless:
            return None
        current = (rng.choice(self.departed) if roll < mix.ownerless + mix.departed_owner
                   else rng.choice(self.active))["id"]
        owners = []
        if rng.random() < mix.owner_changes:
            owners = [rng.choice(self.active + self.departed)["id"] for _ in range(rng.randint(1, 3))]
        owners.append(current)
        span = max(self.now - DAY_MS - created_ms, len(owners))
        times = sorted(created_ms + rng.randrange(span) for _ in owners[1:])
        times = [created_ms] + times
        history = []
        for owner, at in zip(owners, times):
            source = (("AUTOMATION_PLATFORM", f"enrollmentId:{rng.randint(10**8, 10**9)}", None)
                      if rng.random() < 0.2 else self.actor_for(rng.choice(self.active)["id"]))
            history.append((owner, at, source))
        return history

    # -- activity ---------------------------------------------------------------------------------
    def activity(self, parent: Record, mix: SeedMix, is_open: bool, contact: Record | None) -> None:
        rng, now = self.rng, self.now
        owner = parent.properties.get("hubspot_owner_id") or rng.choice(self.active)["id"]
        if is_open and rng.random() >= mix.no_next_task:
            overdue = rng.random() < mix.overdue_task / max(1e-9, 1 - mix.no_next_task)
            due = now - rng.randint(1, 20) * DAY_MS if overdue else now + rng.randint(1, 21) * DAY_MS
            self.task(parent, owner, due, "NOT_STARTED")
        if rng.random() < mix.completed_task:
            self.task(parent, owner, now - rng.randint(2, 60) * DAY_MS, "COMPLETED")
        if rng.random() < mix.recent_notes:
            at = now - rng.randint(1, 72) * HOUR_MS
            if rng.random() < 0.5:
                self.note(parent, owner, at, rng.choice(_COMMITMENTS))
            else:
                self.email(parent, owner, at, contact)
        elif rng.random() < 0.3:
            self.note(parent, owner, now - rng.randint(5, 90) * DAY_MS, "Discussed timeline and next steps.")

    def task(self, parent: Record, owner: str, due_ms: int, status: str) -> None:
        rng = self.rng
        created = min(due_ms, self.now) - rng.randint(1, 10) * DAY_MS
        props = {"hs_task_subject": rng.choice(_TASK_SUBJECTS), "hs_task_status": status,
                 "hs_task_priority": rng.choice(["LOW", "MEDIUM", "HIGH"]), "hs_task_type": "TODO",
                 "hs_timestamp": to_iso(due_ms), "hubspot_owner_id": owner,
                 "hs_task_body": f"<p>{rng.choice(_COMMITMENTS)}</p>"}
        if status == "COMPLETED":
            props["hs_task_completion_date"] = to_iso(min(due_ms + HOUR_MS, self.now))
        self.link(self.record("tasks", props, created, owner), parent)

    def note(self, parent: Record, owner: str, at_ms: int, sentence: str) -> None:
        body = f"<div><p>Call with the buying team.</p><p>{sentence}</p></div>"
        note = self.record("notes", {"hs_note_body": body, "hs_timestamp": to_iso(at_ms),
                                     "hubspot_owner_id": owner}, at_ms, owner)
        self.link(note, parent)

    def email(self, parent: Record, owner: str, at_ms: int, contact: Record | None) -> None:
        rng = self.rng
        incoming = rng.random() < 0.5
        name = contact.properties["firstname"] if contact else "there"
        sentence = rng.choice(_ASKS if incoming else _COMMITMENTS)
        html = (f"<html><body><p>Hi {name},</p><p>Thanks for the time today.</p><p>{sentence}</p>"
                f"<p>Best regards</p></body></html>")
        email = self.record("emails", {
            "hs_email_direction": "INCOMING_EMAIL" if incoming else "EMAIL", "hs_email_status": "SENT",
            "hs_email_subject": "Re: proposal and next steps", "hs_email_html": html,
            "hs_email_text": f"Hi {name}, thanks for the time today. {sentence}",
            "hs_timestamp": to_iso(at_ms), "hubspot_owner_id": owner,
        }, at_ms, owner)
        self.link(email, parent)
        if contact is not None:
            self.link(email, contact)


def _stage(rng: random.Random, pipelines: list, closed_share: float) -> tuple[str, str, bool]:
    pipeline_id, _label, stages = pipelines[0] if rng.random() < 0.7 or len(pipelines) == 1 else pipelines[1]
    closed = rng.random() < closed_share
    # deals: (id, label, probability, isClosed); tickets: (id, label, ticketState)
    candidates = [s for s in stages if (s[-1] is True or s[-1] == "CLOSED") == closed]
    return pipeline_id, rng.choice(candidates)[0], closed


def seed_portal(store: CrmStore, n: int, object_types: tuple[str, ...], mix: SeedMix, rng_seed: int,
                now_ms: int) -> dict[str, int]:
    unsupported = set(object_types) - {"deals", "tickets", "contacts", "companies"}
    if unsupported:
        raise ValueError(f"seed() creates deals, tickets, contacts and companies (their activity follows); "
                         f"not {sorted(unsupported)}")
    rng = random.Random(rng_seed)
    with store.lock:
        build = _Builder(store, rng, now_ms)
        companies = [build.company() for _ in range(n if "companies" in object_types else max(1, n // 5))]
        contacts = [build.contact(rng.choice(companies))
                    for _ in range(n if "contacts" in object_types else max(1, n // 2))]
        for record in companies if "companies" in object_types else ():
            build.activity(record, mix, True, None)
        for record in contacts if "contacts" in object_types else ():
            build.activity(record, mix, True, record)
        for object_type in ("deals", "tickets"):
            if object_type not in object_types:
                continue
            for i in range(n):
                created = now_ms - rng.randint(3, 180) * DAY_MS
                history = build.owner_history(mix, created)
                company, contact = rng.choice(companies), rng.choice(contacts)
                if object_type == "deals":
                    pipeline, stage, closed = _stage(rng, DEAL_PIPELINES, mix.closed)
                    props = {"dealname": f"{company.properties['name']} — {rng.choice(_PRODUCTS)}",
                             "pipeline": pipeline, "dealstage": stage,
                             "amount": str(rng.randrange(2_000, 250_000, 500)),
                             "closedate": to_iso(now_ms + rng.randint(-30, 120) * DAY_MS),
                             "dealtype": rng.choice(["newbusiness", "existingbusiness"])}
                else:
                    pipeline, stage, closed = _stage(rng, TICKET_PIPELINES, mix.closed)
                    props = {"subject": f"{rng.choice(['Login', 'Billing', 'Export', 'API'])} issue #{i + 1}",
                             "content": "Customer reports a problem; see thread.", "hs_pipeline": pipeline,
                             "hs_pipeline_stage": stage, "hs_ticket_priority": rng.choice(["LOW", "MEDIUM", "HIGH"])}
                creator = history[0][0] if history else None
                record = build.record(object_type, props, created, creator, history)
                build.link(record, company)
                build.link(record, contact)
                build.activity(record, mix, not closed, contact)
        build.stamp_activity_dates()
        return dict(sorted(build.counts.items()))
