"""Notes become linked tasks, end to end on both emulators with the real clients: a note
with two commitments gives two tasks, once, and a replay (even with the read watermark lost)
creates nothing more."""
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone

import pytest

from adapter.manifest import load_manifest
from adapter.model import RecordRef
from adapter.pipeline import reconcile_refs
from adapter.policy import Policy
from connectors import get_connector
from connectors.demo import EMULATORS

NOTE = ("<p>Good call with Dana today.</p><p>I'll send the revised proposal by Friday. "
        "{colleague} will set up the security review on Tuesday.</p>")


def _commitment_tasks(snapshot):
    return sorted((t for t in snapshot.tasks if t.source and t.source.startswith("baton:commitment")),
                  key=lambda t: t.source)


class HubSpotRecord:
    def __init__(self, emulator):
        self.emulator = emulator

    def create(self, owner_id: str) -> RecordRef:
        deal_id = self.emulator.user_create_record(
            "deals", {"dealname": "Initech renewal", "hubspot_owner_id": owner_id, "pipeline": "default",
                      "dealstage": "appointmentscheduled"})
        return RecordRef("hubspot", "deal", deal_id)

    def add_note(self, ref: RecordRef, html: str, author_id: str) -> None:
        self.emulator.user_add_note("deals", ref.id, html, author_id)

    def forget_watermark(self, ref: RecordRef) -> None:
        self.emulator.user_update("deals", ref.id, {"baton_activities_read_at": ""})


class SalesforceRecord:
    def __init__(self, emulator):
        self.emulator = emulator

    def create(self, owner_id: str) -> RecordRef:
        account = self.emulator.user_create("Account", {"Name": "Initech"})
        opportunity = self.emulator.user_create("Opportunity", {
            "Name": "Initech renewal", "AccountId": account, "StageName": "Prospecting", "OwnerId": owner_id,
            "CloseDate": (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()})
        return RecordRef("salesforce", "opportunity", opportunity)

    def add_note(self, ref: RecordRef, html: str, author_id: str) -> None:
        text = html.replace("<p>", "").replace("</p>", " ").strip()
        self.emulator.user_add_note(ref.id, title="Call notes", body=text, by=author_id)

    def forget_watermark(self, ref: RecordRef) -> None:
        self.emulator.user_update("Opportunity", ref.id, {"Baton_Activities_Read_At__c": None})


RECORDS = {"hubspot": HubSpotRecord, "salesforce": SalesforceRecord}


@pytest.fixture(params=sorted(EMULATORS))
def crm(request):
    with ExitStack() as stack:
        emulator, settings = EMULATORS[request.param](stack, 8)
        connector = get_connector(request.param, settings)
        connector.install(load_manifest())
        yield connector, RECORDS[request.param](emulator)


@pytest.mark.slow
def test_a_note_with_two_commitments_becomes_two_linked_tasks_once(crm):
    connector, records = crm
    rep, colleague = sorted(connector.owners().people(), key=lambda o: o.id)[:2]
    policy = Policy.from_mapping({"timezone": "America/New_York"})
    ref = records.create(rep.id)
    records.add_note(ref, NOTE.format(colleague=colleague.name.split()[0]), rep.id)

    first = reconcile_refs(connector, [ref], policy)
    assert not first.failures
    [snapshot] = connector.load([ref]).snapshots
    tasks = _commitment_tasks(snapshot)
    assert len(tasks) == 2, [t.title for t in snapshot.tasks]
    proposal, review = sorted(tasks, key=lambda t: "review" in t.title.lower())
    assert "proposal" in proposal.title.lower() and proposal.owner_id == rep.id
    assert "security review" in review.title.lower() and review.owner_id == colleague.id
    assert proposal.due.astimezone(timezone.utc) > datetime.now(timezone.utc) - timedelta(days=1)
    assert snapshot.fields["next_action"] in {proposal.title, review.title}

    replay = reconcile_refs(connector, [ref], policy)
    assert replay.writes == 0

    records.forget_watermark(ref)
    reconcile_refs(connector, [ref], policy)
    [snapshot] = connector.load([ref]).snapshots
    assert len(_commitment_tasks(snapshot)) == 2
