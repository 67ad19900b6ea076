"""A realistic, deterministic data set for the Salesforce emulator.

What a mid-sized sales + support org looks like to Baton: reps (two of them deactivated),
queues owning some leads and cases, open and closed opportunities, converted leads, open
tasks due in the past and the future, completed ones, customer emails (some holding a
commitment such as "I'll send the proposal by Friday"), call notes, and owner changes in
field history written the way Salesforce writes them (two rows per change). Records go in
through `OrgState.insert_trusted`, which skips per-field validation: 10,000 opportunities
with their tasks and history take about a second.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from .emulator_schema import OPPORTUNITY_STAGES

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator
    from .emulator_state import OrgState

__all__ = ["seed_org", "install_baton_fields"]

_MANIFEST = Path(__file__).resolve().parents[2] / "manifest.json"
_MANIFEST_TYPES = {"enumeration": "Picklist", "string": "Text", "datetime": "DateTime", "number": "Number",
                   "bool": "Checkbox", "date": "Date"}
_PEOPLE = [("Maya", "Patel", "Account Executive", True), ("Jonas", "Weber", "Account Executive", True),
           ("Priya", "Raman", "Sales Development Rep", True), ("Luis", "Ortega", "Account Executive", True),
           ("Grace", "Kim", "Support Engineer", True), ("Tom", "Becker", "Sales Manager", True),
           ("Olivia", "Grant", "Account Executive", False), ("Ken", "Sato", "Support Engineer", False)]
_COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli", "Vandelay", "Soylent", "Tyrell",
              "Cyberdyne", "Wonka", "Aperture", "Monarch", "Gringotts", "Nakatomi", "Oscorp", "Pied Piper"]
_SUFFIXES = ["Inc.", "GmbH", "Ltd", "Corp", "Group", "Labs", "Systems", "Partners"]
_FIRST = ["Anna", "Ben", "Chloe", "David", "Elena", "Farid", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco",
          "Nina", "Omar", "Paula", "Rui", "Sara", "Theo", "Uma", "Yusuf"]
_LAST = ["Fischer", "Nguyen", "Silva", "Kowalski", "Haddad", "Jensen", "Moreau", "Rossi", "Tanaka", "Okafor"]
_TASK_SUBJECTS = ["Send revised proposal", "Call to confirm budget", "Schedule demo with IT", "Follow up on pricing",
                  "Share security questionnaire", "Book onboarding call", "Check in after trial",
                  "Send contract for signature", "Reply about SSO question", "Confirm renewal date"]
_INCOMING = [
    ("Re: Proposal", "Thanks for the call. Could you send pricing for 50 seats? We need it before our budget "
                     "meeting next Thursday."),
    ("Question about SSO", "Hi, does your plan include SAML SSO? Our IT team is asking before we can proceed."),
    ("Renewal", "We are reviewing vendors this quarter. Please send the renewal quote when you can."),
    ("Still waiting", "Following up on my last email - any update on the contract redlines?"),
    ("Login problem", "Several of our users cannot log in since this morning. This is urgent for us."),
]
_OUTGOING = [
    ("Re: Proposal", "Great talking today. I'll send the proposal by Friday, including the 50-seat pricing."),
    ("Next steps", "Thanks for your time. I will follow up on Tuesday with the security documentation."),
    ("Re: Renewal", "Happy to help. I'll get back to you tomorrow with the renewal quote."),
    ("Checking in", "Just checking in to see whether you had a chance to review the trial results."),
    ("Re: Login problem", "We are looking into it and will update you within 4 hours."),
]
_NOTES = [("Discovery call", "Budget approved for Q3. Decision maker is the VP Ops. Next step: demo on Tuesday."),
          ("Call notes", "Customer wants a revised quote. I promised to send it by end of week."),
          ("Handover", "Taking over from the previous owner; customer expects a call back this week.")]


def seed_org(emulator: "SalesforceEmulator", n: int, *, object_types: tuple[str, ...], mix: dict[str, float] | None,
             rng_seed: int, custom_fields: bool) -> dict[str, list[str]]:
    state = emulator.state
    rng = random.Random(rng_seed)
    now = state.clock()
    if custom_fields:
        install_baton_fields(emulator)
    counts = _split(n, [t.lower() for t in object_types], mix)
    created: dict[str, list[str]] = {name: [] for name in
                                     ("User", "Group", "Account", "Contact", "Lead", "Opportunity", "Case", "Task",
                                      "EmailMessage", "ContentNote")}
    with state.lock:
        seeder = _Seeder(state, rng, now, created)
        seeder.people()
        accounts = seeder.accounts(counts.get("account", 0) or max(3, (counts.get("opportunity", 0)
                                                                       + counts.get("case", 0)) // 10))
        for _ in range(counts.get("opportunity", 0)):
            seeder.opportunity(rng.choice(accounts))
        for _ in range(counts.get("lead", 0)):
            seeder.lead()
        for _ in range(counts.get("case", 0)):
            seeder.case(rng.choice(accounts))
    return created


def install_baton_fields(emulator: "SalesforceEmulator") -> None:
    """Create Baton's custom fields from manifest.json, as `baton install` would (idempotent)."""
    manifest = json.loads(_MANIFEST.read_text())
    objects = manifest["crms"]["salesforce"]["object_types"].values()
    for spec in manifest["fields"]:
        body: list = [("label", spec["label"]), ("type", _MANIFEST_TYPES[spec["type"]])]
        if spec["type"] == "string":
            body.append(("length", "255"))
        if spec["type"] == "number":
            body += [("precision", "18"), ("scale", "2")]
        if spec["type"] == "bool":
            body.append(("defaultValue", "false"))
        if spec.get("options"):
            body.append(("valueSet", [("restricted", "true"), ("valueSetDefinition", [("sorted", "false")] + [
                ("value", [("fullName", o["value"]), ("default", "false"), ("label", o["label"])])
                for o in spec["options"]])]))
        for sobject in objects:
            emulator.metadata.save("CustomField", [("fullName", f"{sobject}.{spec['salesforce']}")] + body,
                                   mode="upsert")
    emulator.metadata.save("CustomField", [("fullName", "Activity.Baton_Source__c"), ("label", "Baton source"),
                                           ("type", "Text"), ("length", "80")], mode="upsert")


def _split(n: int, types: list[str], mix: dict[str, float] | None) -> dict[str, int]:
    weights = {t: (mix or {}).get(t, 1.0) for t in types}
    total = sum(weights.values()) or 1.0
    counts = {t: int(n * w / total) for t, w in weights.items()}
    if types:
        counts[types[0]] += n - sum(counts.values())
    return counts


class _Seeder:
    def __init__(self, state: "OrgState", rng: random.Random, now: datetime, created: dict[str, list[str]]) -> None:
        self.state, self.rng, self.now, self.created = state, rng, now, created
        self.reps: list[str] = []
        self.inactive: list[str] = []
        self.queues: dict[str, str] = {}

    def add(self, sobject: str, values: dict, *, at: datetime | None = None, history: bool = True) -> str:
        at = at or self.now
        obj = self.state.schema[sobject]
        for audit_field in ("CreatedDate", "LastModifiedDate", "SystemModstamp"):
            if obj.get_field(audit_field) is not None:
                values.setdefault(audit_field, at)
        record_id = self.state.insert_trusted(sobject, values, at=at, history=history)
        if sobject in self.created:
            self.created[sobject].append(record_id)
        return record_id

    def ago(self, low_days: float, high_days: float) -> datetime:
        return self.now - timedelta(days=self.rng.uniform(low_days, high_days))

    def people(self) -> None:
        if self.reps:
            return
        for first, last, title, active in _PEOPLE:
            alias = (first[0] + last).lower()[:8]
            user_id = self.add("User", {
                "FirstName": first, "LastName": last, "Username": f"{alias}@baton-emulator.example",
                "Email": f"{first.lower()}.{last.lower()}@baton-emulator.example", "Alias": alias, "Title": title,
                "IsActive": active, "UserType": "Standard"}, at=self.ago(400, 700))
            (self.reps if active else self.inactive).append(user_id)
        for name, developer_name, members in (("Inbound Leads", "Inbound_Leads", self.reps[:3]),
                                              ("Tier 1 Support", "Tier_1_Support", self.reps[4:6])):
            queue_id = self.add("Group", {"Name": name, "DeveloperName": developer_name, "Type": "Queue"})
            self.queues[developer_name] = queue_id
            for member in members:
                self.add("GroupMember", {"GroupId": queue_id, "UserOrGroupId": member})

    def owner(self, *, queue: str | None = None, queue_share: float = 0.0) -> str:
        roll = self.rng.random()
        if queue and roll < queue_share:
            return self.queues[queue]
        if roll > 0.95:
            return self.rng.choice(self.inactive)  # deactivated owners are what Baton must catch
        return self.rng.choice(self.reps)

    def accounts(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            name = f"{self.rng.choice(_COMPANIES)} {self.rng.choice(_SUFFIXES)}"
            account_id = self.add("Account", {"Name": name, "OwnerId": self.rng.choice(self.reps),
                                              "Industry": self.rng.choice(["Software", "Retail", "Manufacturing"])},
                                  at=self.ago(200, 600))
            first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
            self.add("Contact", {"FirstName": first, "LastName": last, "AccountId": account_id,
                                 "Email": f"{first.lower()}.{last.lower()}@example.com",
                                 "OwnerId": self.rng.choice(self.reps)}, at=self.ago(100, 200))
            ids.append(account_id)
        return ids

    def opportunity(self, account_id: str) -> str:
        stage = self.rng.choices(list(OPPORTUNITY_STAGES), weights=[8, 8, 7, 7, 6, 5, 6, 5, 6, 5])[0]
        created = self.ago(10, 180)
        closed = OPPORTUNITY_STAGES[stage][1]
        close_date = (self.ago(1, 90) if closed else self.now + timedelta(days=self.rng.uniform(-20, 120))).date()
        account = self.state.records["Account"][account_id]
        opportunity_id = self.add("Opportunity", {
            "Name": f"{account['Name']} - {self.rng.choice(['Expansion', 'New Business', 'Renewal'])}",
            "AccountId": account_id, "StageName": stage, "CloseDate": close_date,
            "Amount": float(self.rng.randrange(5, 200) * 1000), "OwnerId": self.owner(),
            "Type": "New Customer"}, at=created)
        self.history_and_activity("Opportunity", opportunity_id, created, open_record=not closed)
        return opportunity_id

    def lead(self) -> str:
        created = self.ago(1, 120)
        first, last = self.rng.choice(_FIRST), self.rng.choice(_LAST)
        converted = self.rng.random() < 0.15
        values = {"FirstName": first, "LastName": last, "Company": f"{self.rng.choice(_COMPANIES)} {self.rng.choice(_SUFFIXES)}",
                  "Email": f"{first.lower()}.{last.lower()}@example.org", "LeadSource": "Web",
                  "Status": "Closed - Converted" if converted else self.rng.choice(
                      ["Open - Not Contacted", "Working - Contacted", "Closed - Not Converted"]),
                  "OwnerId": self.owner(queue="Inbound_Leads", queue_share=0.2), "IsConverted": converted}
        if converted:
            values["ConvertedDate"] = (created + timedelta(days=5)).date()
        lead_id = self.add("Lead", values, at=created)
        self.history_and_activity("Lead", lead_id, created, open_record=not values["Status"].startswith("Closed"))
        return lead_id

    def case(self, account_id: str) -> str:
        created = self.ago(0.2, 60)
        status = self.rng.choice(["New", "Working", "Escalated", "Closed", "Closed"])
        case_id = self.add("Case", {"Subject": self.rng.choice(["Cannot log in", "Invoice question", "Export fails",
                                                                "Feature request: SSO", "Data import stuck"]),
                                    "Status": status, "Origin": self.rng.choice(["Email", "Web", "Phone"]),
                                    "AccountId": account_id, "Priority": self.rng.choice(["High", "Medium", "Low"]),
                                    "OwnerId": self.owner(queue="Tier_1_Support", queue_share=0.25)}, at=created)
        if status == "Closed":
            self.state.records["Case"][case_id]["ClosedDate"] = created + timedelta(days=self.rng.uniform(0.1, 5))
        self.history_and_activity("Case", case_id, created, open_record=status != "Closed")
        return case_id

    def history_and_activity(self, sobject: str, record_id: str, created: datetime, *, open_record: bool) -> None:
        record = self.state.records[sobject][record_id]
        if self.rng.random() < 0.25:
            self.owner_changes(sobject, record, created)
        if open_record:
            for _ in range(self.rng.choice([0, 1, 1, 2])):
                self.task(record, sobject, created)
        if sobject in {"Opportunity", "Case"} and self.rng.random() < 0.3:
            self.emails(record, created)
        if self.rng.random() < 0.1:
            self.note(record_id, created)

    def owner_changes(self, sobject: str, record: dict, created: datetime) -> None:
        """Back-fill one or two earlier owners, ending at the current one, with Salesforce's two rows each."""
        config = self.state.schema[sobject].history
        chain = [self.rng.choice(self.reps) for _ in range(self.rng.choice([1, 2]))] + [record["OwnerId"]]
        span = (self.now - created).total_seconds()
        times = sorted(created + timedelta(seconds=self.rng.uniform(0, span)) for _ in chain[1:])
        for (old, new), at in zip(zip(chain, chain[1:]), times):
            if old == new:
                continue
            actor = self.rng.choice(self.reps + [self.state.admin_user_id])
            for data_type, old_value, new_value in (("EntityId", old, new), ("Text", self.state.display_name(old),
                                                                             self.state.display_name(new))):
                self.state.insert_history(config.history_object, config.parent_field, record["Id"], "Owner",  # type: ignore[union-attr]
                                          old_value, new_value, actor=actor, at=at, data_type=data_type)
            record["LastModifiedDate"] = record["SystemModstamp"] = max(record["LastModifiedDate"], at)

    def task(self, record: dict, sobject: str, created: datetime) -> None:
        completed = self.rng.random() < 0.3
        due = (self.now + timedelta(days=self.rng.randint(-14, 21))).date() if self.rng.random() < 0.85 else None
        owner = record["OwnerId"] if record["OwnerId"].startswith("005") else self.rng.choice(self.reps)
        if owner in self.inactive:
            owner = self.rng.choice(self.reps)
        relation = {"WhoId": record["Id"]} if sobject == "Lead" else {"WhatId": record["Id"]}
        self.add("Task", {"Subject": self.rng.choice(_TASK_SUBJECTS), "ActivityDate": due,
                          "Status": "Completed" if completed else self.rng.choice(["Not Started", "In Progress"]),
                          "Priority": self.rng.choice(["High", "Normal", "Normal", "Low"]), "OwnerId": owner,
                          "TaskSubtype": self.rng.choice(["Task", "Task", "Call", "Email"]), **relation},
                 at=created + timedelta(hours=self.rng.uniform(1, 48)), history=False)

    def emails(self, record: dict, created: datetime) -> None:
        at = created
        for index in range(self.rng.randint(1, 3)):
            incoming = index % 2 == 0
            subject, body = self.rng.choice(_INCOMING if incoming else _OUTGOING)
            at = min(at + timedelta(hours=self.rng.uniform(2, 72)), self.now)
            relation = {"RelatedToId": record["Id"]}
            if record["Id"].startswith("500"):
                relation["ParentId"] = record["Id"]
            self.add("EmailMessage", {
                "Subject": subject, "TextBody": body, "HtmlBody": f"<p>{escape(body)}</p>", "Incoming": incoming,
                "MessageDate": at, "Status": "0" if incoming else "3",
                "FromAddress": "customer@example.com" if incoming else "rep@baton-emulator.example",
                "ToAddress": "rep@baton-emulator.example" if incoming else "customer@example.com", **relation},
                at=at, history=False)

    def note(self, record_id: str, created: datetime) -> None:
        title, body = self.rng.choice(_NOTES)
        at = created + timedelta(hours=self.rng.uniform(1, 24))
        content = f"<p>{escape(body)}</p>".encode()
        note_id = self.add("ContentNote", {"Title": title, "Content": content, "OwnerId": self.rng.choice(self.reps)},
                           at=min(at, self.now), history=False)
        self.add("ContentDocumentLink", {"ContentDocumentId": note_id, "LinkedEntityId": record_id,
                                         "ShareType": "V", "Visibility": "AllUsers"}, history=False)

