"""The HubSpot connector against the HubSpot emulator, over real HTTP with hubspot-api-client.

Time-dependent behaviour (pacing, Retry-After) runs on one fake clock shared by the
connector's transport and the emulator's rate limiter, so nothing here sleeps for real
except the one test that needs a request to time out.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import urllib3

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.errors import ConfigurationError, FatalCrmError, RetriableCrmError
from adapter.manifest import load_manifest
from adapter.model import PROMPT_SOURCE, RecordRef
from adapter.ports import Connector
from connectors import get_connector
from connectors.hubspot import emulator_search
from connectors.hubspot.connector import HubSpotConnector
from connectors.hubspot.emulator import HubSpotEmulator
from connectors.hubspot.emulator_traffic import RateLimiter as EmulatorRateLimiter
from connectors.hubspot.fields import epoch_ms, parse_datetime
from connectors.hubspot.transport import (
    DailyLimitReached, HubSpotApiError, RateLimiter, Transport, endpoint_key, is_create,
)

TOKEN = "pat-na1-connector-test"
NOW = datetime(2026, 11, 20, 15, 0, tzinfo=timezone.utc)
AVERY, BIANCA, CARLOS, GUSTAV = "81273645", "81273646", "81273647", "81273651"  # Gustav is archived


class FakeClock:
    """Monotonic time that moves only when someone sleeps."""

    def __init__(self):
        self.t = 1_000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def emu(clock):
    with HubSpotEmulator(token=TOKEN, strict=True) as emulator:
        # HubSpot's limits (100 per 10 s, search 5/s), on the connector's clock.
        emulator.rate_limiter = EmulatorRateLimiter(clock=clock.now)
        yield emulator
        emulator.assert_spec_clean()


def make_connector(emu: HubSpotEmulator, clock: FakeClock, **kwargs) -> HubSpotConnector:
    transport_options = {k: kwargs.pop(k) for k in ("calls_per_10s", "searches_per_second", "timeout", "max_attempts")
                         if k in kwargs}
    transport = Transport(sleep=clock.sleep, clock=clock.now, **transport_options)
    return HubSpotConnector(TOKEN, host=emu.url, portal_id=str(emu.portal_id), transport=transport,
                            marker_search_delay=kwargs.pop("marker_search_delay", 0), **kwargs)


@pytest.fixture
def hubspot(emu, clock) -> HubSpotConnector:
    return make_connector(emu, clock)


@pytest.fixture
def installed(emu, hubspot) -> HubSpotConnector:
    hubspot.install(load_manifest())
    hubspot.calls.clear()
    emu.reset_calls()
    return hubspot


def deal_refs(emu: HubSpotEmulator) -> list[RecordRef]:
    return [RecordRef("hubspot", "deal", r["hs_object_id"]) for r in emu.records("deals")]


def new_deal(emu: HubSpotEmulator, **properties) -> str:
    values = {"dealname": "Acme renewal", "pipeline": "default", "dealstage": "qualifiedtobuy",
              "hubspot_owner_id": AVERY, **properties}
    return emu.user_create_record("deals", values, at=NOW - timedelta(days=10))


def prompt_plan(ref: RecordRef, *, owner: str = AVERY, also=()) -> Plan:
    return Plan(ref, "no_next_action", (
        AssignOwner(owner, "round_robin"),
        SetFields({"follow_up_status": "no_next_action", "owner_of_record": owner, "owner_transfers": 1,
                   "next_action_due": NOW + timedelta(days=1), "sla_breached": False}),
        CreateTask("Set the next step", NOW + timedelta(days=1), owner, PROMPT_SOURCE,
                   body="Nobody owns the next step.", also_associate=tuple(also)),
    ))


# -- settings ------------------------------------------------------------------------------------
def test_from_settings_names_the_missing_token_and_never_shows_it():
    with pytest.raises(ConfigurationError, match="HUBSPOT_ACCESS_TOKEN"):
        get_connector("hubspot", {})
    with pytest.raises(ConfigurationError, match="BATON_HUBSPOT_CALLS_PER_10S"):
        HubSpotConnector.from_settings({"HUBSPOT_ACCESS_TOKEN": "x", "BATON_HUBSPOT_CALLS_PER_10S": "lots"})
    with pytest.raises(ConfigurationError, match="HUBSPOT_PORTAL_TIMEZONE"):
        HubSpotConnector.from_settings({"HUBSPOT_ACCESS_TOKEN": "x", "HUBSPOT_PORTAL_TIMEZONE": "Mars/Olympus"})
    connector = get_connector("hubspot", {"HUBSPOT_ACCESS_TOKEN": "pat-secret-123", "HUBSPOT_PORTAL_ID": "42",
                                          "BATON_HUBSPOT_HOST": "http://127.0.0.1:9", "HUBSPOT_APP_ID": "7",
                                          "BATON_HUBSPOT_CALLS_PER_10S": "190"})
    assert isinstance(connector, Connector)
    assert connector.transport.limiter.limit == 190
    assert "pat-secret-123" not in repr(connector) and "42" in repr(connector)
    assert connector.record_url(RecordRef("hubspot", "deal", "5")) == "https://app.hubspot.com/contacts/42/record/0-3/5"


# -- load ------------------------------------------------------------------------------------------
def test_load_reads_250_records_in_batches_of_100(emu, hubspot):
    emu.seed(250, now=NOW)
    refs = deal_refs(emu)
    emu.reset_calls()

    result = hubspot.load(refs)

    assert len(result.snapshots) == 250 and not result.missing and not result.failures
    assert hubspot.calls["POST /crm/v3/objects/deals/batch/read"] == 3
    assert hubspot.calls["POST /crm/v4/associations/deals/tasks/batch/read"] == 3
    for to_type in ("notes", "emails", "calls", "contacts", "companies"):  # only for some of the records
        assert 1 <= hubspot.calls[f"POST /crm/v4/associations/deals/{to_type}/batch/read"] <= 3
    assert hubspot.calls["GET /crm/v3/pipelines/deals"] == 1
    assert sum(hubspot.calls.values()) == emu.calls_total  # the connector counts what HubSpot saw


def test_load_builds_the_snapshot_from_record_tasks_activities_and_associations(emu, installed):
    contact = emu.user_create_record("contacts", {"firstname": "Maria", "lastname": "Lopez",
                                                  "email": "maria@acme.example"})
    company = emu.user_create_record("companies", {"name": "Acme"})
    deal = emu.user_create_record("deals", {
        "dealname": "Acme renewal", "pipeline": "default", "dealstage": "qualifiedtobuy",
        "hubspot_owner_id": AVERY, "baton_owner_transfers": "2", "baton_sla_breached": "true",
        "baton_next_action_due": "2026-11-21T09:30:00.000Z"},
        associations=[("contacts", contact), ("companies", company)], at=NOW - timedelta(days=40))
    task = emu.user_create_record("tasks", {
        "hs_task_subject": "Send revised proposal", "hs_timestamp": "2026-11-22T10:00:00.000Z",
        "hs_task_status": "NOT_STARTED", "hubspot_owner_id": AVERY,
        "baton_source": f"baton:commitment:9:0|hubspot:deal:{deal}"}, associations=[("deals", deal)])
    emu.user_add_note("deals", deal, "<p>I'll send the proposal by Friday.</p>", AVERY,
                      at=datetime.now(timezone.utc) - timedelta(days=1))
    emu.user_add_note("deals", deal, "<p>Ancient history</p>", AVERY,
                      at=datetime.now(timezone.utc) - timedelta(days=90))
    emu.user_add_email("deals", deal, "<p>Any news?</p>", at=datetime.now(timezone.utc) - timedelta(hours=5))
    emu.user_add_email("deals", deal, text="On it.", direction="EMAIL", owner_id=AVERY,
                       at=datetime.now(timezone.utc) - timedelta(hours=4))
    ref = RecordRef("hubspot", "deal", deal)

    [snapshot] = installed.load([ref]).snapshots

    assert snapshot.ref == ref and snapshot.name == "Acme renewal"
    assert snapshot.owner_id == AVERY and snapshot.stage == "qualifiedtobuy" and not snapshot.is_closed
    assert snapshot.created_at == NOW - timedelta(days=40)
    assert snapshot.fields["owner_transfers"] == 2 and snapshot.fields["sla_breached"] is True
    assert snapshot.fields["next_action_due"] == datetime(2026, 11, 21, 9, 30, tzinfo=timezone.utc)
    assert snapshot.fields["waiting_since"] is None
    [loaded_task] = snapshot.tasks
    assert (loaded_task.id, loaded_task.title, loaded_task.owner_id) == (task, "Send revised proposal", AVERY)
    assert loaded_task.due == datetime(2026, 11, 22, 10, tzinfo=timezone.utc)
    assert loaded_task.source == "baton:commitment:9:0" and not loaded_task.completed
    assert [(a.kind, a.direction) for a in snapshot.activities] == [
        ("note", "note"), ("email", "inbound"), ("email", "outbound")]  # the 90-day-old note is not read
    note, inbound, outbound = snapshot.activities
    assert note.is_html and note.author_owner_id == AVERY and "by Friday" in note.body
    assert inbound.body == "<p>Any news?</p>" and inbound.is_html
    assert outbound.body == "On it." and not outbound.is_html
    assert set(snapshot.related) == {RecordRef("hubspot", "contact", contact), RecordRef("hubspot", "company", company)}
    assert snapshot.url == f"https://app.hubspot.com/contacts/{emu.portal_id}/record/0-3/{deal}"


def activity_reads(connector: HubSpotConnector) -> dict[str, int]:
    """Calls spent on notes, emails and calls, and on the contacts and companies tasks are linked to."""
    return {key: n for key, n in connector.calls.items()
            if any(f"/{kind}/" in key for kind in ("notes", "emails", "calls", "contacts", "companies"))}


def test_activities_are_read_only_for_records_with_something_logged_since_baton_read_them(emu, installed):
    read_at = datetime.now(timezone.utc) - timedelta(hours=2)
    quiet, busy = new_deal(emu), new_deal(emu)
    for deal in (quiet, busy):
        emu.user_add_note("deals", deal, "<p>I'll send the proposal by Friday.</p>", AVERY, at=read_at)
        emu.user_update("deals", deal, {"baton_activities_read_at": read_at.isoformat()})
    emu.user_add_email("deals", busy, "<p>Any news?</p>", at=read_at + timedelta(hours=1))
    refs = [RecordRef("hubspot", "deal", d) for d in (quiet, busy)]

    quiet_snapshot, busy_snapshot = installed.load(refs).snapshots

    assert quiet_snapshot.activities == () and quiet_snapshot.related == ()
    assert [(a.kind, a.body) for a in busy_snapshot.activities] == [("email", "<p>Any news?</p>")]
    for kind in ("notes", "emails", "calls"):  # one call each, for the busy deal alone
        assert installed.calls[f"POST /crm/v4/associations/deals/{kind}/batch/read"] == 1
    installed.calls.clear()

    installed.load(refs[:1])  # nothing new on the quiet deal: its record and tasks, nothing more

    assert activity_reads(installed) == {}
    assert installed.calls["POST /crm/v4/associations/deals/tasks/batch/read"] == 1


def test_activities_are_read_within_the_lookback_until_baton_has_read_them(emu, installed):
    never_touched = new_deal(emu)
    old_news = new_deal(emu)
    emu.user_add_note("deals", old_news, "<p>Kick-off went well.</p>", AVERY,
                      at=datetime.now(timezone.utc) - timedelta(days=45))
    fresh = new_deal(emu)
    emu.user_add_note("deals", fresh, "<p>I'll call them Monday.</p>", AVERY,
                      at=datetime.now(timezone.utc) - timedelta(days=2))
    refs = [RecordRef("hubspot", "deal", d) for d in (never_touched, old_news, fresh)]

    snapshots = installed.load(refs).snapshots

    assert [len(s.activities) for s in snapshots] == [0, 0, 1]
    assert all(installed.calls[f"POST /crm/v4/associations/deals/{kind}/batch/read"] == 1
               for kind in ("notes", "contacts", "companies"))  # for `fresh` alone


def test_contacts_and_companies_are_read_only_for_records_with_an_activity_to_read(emu, installed):
    contact = emu.user_create_record("contacts", {"firstname": "Maria"})
    deal = emu.user_create_record("deals", {"dealname": "Acme", "pipeline": "default", "dealstage": "qualifiedtobuy",
                                            "hubspot_owner_id": AVERY}, associations=[("contacts", contact)])
    ref = RecordRef("hubspot", "deal", deal)
    installed.apply([Plan(ref, "on_track", (LogTransfer("(no owner)", "Avery", NOW - timedelta(days=60),
                                                        "Baton", "routing", to_id=AVERY),))])

    [snapshot] = installed.load([ref]).snapshots  # the note moved the activity date: notes are read

    transfer_at = NOW - timedelta(days=60)  # older than any lookback: Baton's own notes are returned anyway
    assert [a.source for a in snapshot.activities] == [f"baton:transfer:{transfer_at:%Y-%m-%dT%H:%M:%S}Z:->{AVERY}"]
    assert snapshot.related == ()  # Baton's own note makes no task: no need for its contacts
    assert installed.calls["POST /crm/v4/associations/deals/notes/batch/read"] == 1
    assert installed.calls["POST /crm/v4/associations/deals/contacts/batch/read"] == 0


def test_load_names_contacts_and_reports_missing_ids(emu, hubspot):
    maria = emu.user_create_record("contacts", {"firstname": "Maria", "lastname": "Lopez"})
    anonymous = emu.user_create_record("contacts", {"email": "who@acme.example"})
    refs = [RecordRef("hubspot", "contact", i) for i in (maria, anonymous, "424242")]

    result = hubspot.load(refs)

    assert [s.name for s in result.snapshots] == ["Maria Lopez", "who@acme.example"]
    assert result.missing == [refs[2]]
    assert all(not s.is_closed for s in result.snapshots)


def test_owner_history_lists_both_transfers_oldest_first_with_times_and_sources(emu, hubspot):
    deal = new_deal(emu)
    emu.user_set_owner("deals", deal, BIANCA, by_owner_id=CARLOS, at=NOW - timedelta(days=3))
    emu.user_set_owner("deals", deal, CARLOS, by_owner_id=BIANCA, at=NOW - timedelta(days=1))

    [snapshot] = hubspot.load([RecordRef("hubspot", "deal", deal)]).snapshots

    first, second, third = snapshot.owner_history
    assert (first.owner_id, first.at) == (AVERY, NOW - timedelta(days=10))
    assert (second.owner_id, second.at, second.changed_by, second.source) == (
        BIANCA, NOW - timedelta(days=3), "user 5120003", "CRM_UI")
    assert (third.owner_id, third.at, third.changed_by) == (CARLOS, NOW - timedelta(days=1), "user 5120002")
    assert snapshot.owner_id == CARLOS


def test_owner_history_records_integrations_and_cleared_owners(emu, installed):
    deal = new_deal(emu)
    ref = RecordRef("hubspot", "deal", deal)
    installed.apply([Plan(ref, "ownerless", (AssignOwner(BIANCA, "round_robin"),))])
    emu.user_set_owner("deals", deal, None, at=datetime.now(timezone.utc) + timedelta(seconds=1))

    [snapshot] = installed.load([ref]).snapshots

    assert [c.owner_id for c in snapshot.owner_history] == [AVERY, BIANCA, None]
    assert snapshot.owner_history[1].changed_by == f"integration {emu.app_id}"
    assert snapshot.owner_history[1].source == "INTEGRATION"
    assert snapshot.owner_id is None


def test_closed_comes_from_pipeline_metadata_and_pipelines_are_read_once(emu, hubspot):
    signed = new_deal(emu, pipeline="75838291", dealstage="158342003")  # "Signed": closed by metadata only
    negotiating = new_deal(emu, pipeline="75838291", dealstage="158342002")
    refs = [RecordRef("hubspot", "deal", i) for i in (signed, negotiating)]

    first = hubspot.load(refs)
    second = hubspot.load(refs)

    assert [s.is_closed for s in first.snapshots] == [True, False]
    assert [s.is_closed for s in second.snapshots] == [True, False]
    assert hubspot.calls["GET /crm/v3/pipelines/deals"] == 1


def test_a_stage_no_pipeline_lists_costs_one_reread_not_one_per_record():
    from types import SimpleNamespace

    from connectors.hubspot.reader import StageIndex

    reads = []

    def get_all(hubspot_type):
        reads.append(hubspot_type)
        stage = SimpleNamespace(id="closedwon", metadata={"isClosed": "true"})
        return SimpleNamespace(results=[SimpleNamespace(stages=[stage])])

    stages = StageIndex(SimpleNamespace(crm=SimpleNamespace(pipelines=SimpleNamespace(
        pipelines_api=SimpleNamespace(get_all=get_all)))))

    assert [stages.is_closed("deals", s) for s in ("closedwon", "deleted", "deleted", "deleted")] == \
        [True, False, False, False]
    assert len(reads) == 2  # the first read, and one more when "deleted" was not in it


def test_records_for_resolves_tasks_and_notes_to_their_records(emu, hubspot):
    deal = new_deal(emu)
    contact = emu.user_create_record("contacts", {"firstname": "Ann"})
    task = emu.user_create_record("tasks", {"hs_task_subject": "Call", "hs_timestamp": "2026-11-22T10:00:00Z"},
                                  associations=[("deals", deal), ("contacts", contact)])
    note = emu.user_add_note("deals", deal, "<p>hi</p>", AVERY)

    found = hubspot.records_for([RecordRef("hubspot", "task", task), RecordRef("hubspot", "note", note)])

    assert set(found) == {RecordRef("hubspot", "deal", deal), RecordRef("hubspot", "contact", contact)}


def test_owners_lists_active_and_archived_owners(emu, hubspot):
    owners = hubspot.owners()

    assert owners.get(AVERY).name == "Avery Nakamura" and owners.get(AVERY).active
    assert owners.get(AVERY).email == "avery.nakamura@northwind.example"
    assert owners.get(GUSTAV) is not None and not owners.get(GUSTAV).active
    assert len(owners) == 8
    hubspot.owners()
    assert sum(n for key, n in hubspot.calls.items() if "/owners" in key) == 2  # cached after one pass


# -- apply -----------------------------------------------------------------------------------------
def test_apply_writes_fields_tasks_and_transfer_notes_in_batches(emu, installed):
    contact = emu.user_create_record("contacts", {"firstname": "Maria"})
    deal = new_deal(emu, hubspot_owner_id="")
    ref = RecordRef("hubspot", "deal", deal)
    transfer_at = NOW - timedelta(hours=3)
    plan = Plan(ref, "ownerless", prompt_plan(ref, also=[RecordRef("hubspot", "contact", contact)]).actions + (
        LogTransfer("(no owner)", "Avery Nakamura", transfer_at, "Baton", "round robin", to_id=AVERY),
        SetFields({"next_action": None, "last_transfer_at": transfer_at}),
    ))

    result = installed.apply([plan])

    assert result.applied == [ref] and not result.failures
    record = emu.record("deals", deal)
    assert record["hubspot_owner_id"] == AVERY
    assert record["baton_follow_up_status"] == "no_next_action" and record["baton_owner_transfers"] == "1"
    assert record["baton_last_transfer_at"] == "2026-11-20T12:00:00.000Z"
    assert record["baton_sla_breached"] == "false" and not record.get("baton_next_action")
    [task_id] = emu.associated_ids("deals", deal, "tasks")
    task = emu.record("tasks", task_id)
    assert task["hs_task_subject"] == "Set the next step" and task["hs_task_status"] == "NOT_STARTED"
    assert task["hs_timestamp"] == "2026-11-21T15:00:00.000Z" and task["hubspot_owner_id"] == AVERY
    assert task["hs_task_type"] == "TODO" and task["hs_task_priority"] == "MEDIUM"
    assert task["baton_source"] == f"{PROMPT_SOURCE}|hubspot:deal:{deal}"
    assert emu.associated_ids("tasks", task_id, "contacts") == [contact]
    [note_id] = emu.associated_ids("deals", deal, "notes")
    note = emu.record("notes", note_id)
    assert note["hs_timestamp"] == "2026-11-20T12:00:00.000Z"  # the transfer's own time
    assert "Ownership transferred: (no owner) → Avery Nakamura" in note["hs_note_body"]
    marker = f"baton:transfer:2026-11-20T12:00:00Z:->{AVERY}"
    assert plan.of(LogTransfer)[0].source == marker
    assert note["baton_source"] == f"{marker}|hubspot:deal:{deal}"
    assert not note.get("hubspot_owner_id")

    [snapshot] = installed.load([ref]).snapshots
    assert snapshot.tasks[0].is_prompt
    assert [a.source for a in snapshot.activities] == [marker]


def test_apply_updates_and_completes_batons_tasks(emu, installed):
    deal = new_deal(emu)
    ref = RecordRef("hubspot", "deal", deal)
    installed.apply([prompt_plan(ref)])
    [task_id] = emu.associated_ids("deals", deal, "tasks")
    later = NOW + timedelta(days=3)

    installed.apply([Plan(ref, "on_track", (UpdateTask(task_id, owner_id=BIANCA, due=later, completed=True),))])

    task = emu.record("tasks", task_id)
    assert (task["hubspot_owner_id"], task["hs_timestamp"], task["hs_task_status"]) == (
        BIANCA, "2026-11-23T15:00:00.000Z", "COMPLETED")


def test_transfer_notes_are_written_once_even_when_applied_twice(emu, installed):
    deal = new_deal(emu)
    ref = RecordRef("hubspot", "deal", deal)
    plan = Plan(ref, "on_track", (
        LogTransfer("Avery", "Bianca", NOW, "user 1", "changed in the CRM", from_id=AVERY, to_id=BIANCA),
        LogTransfer("Bianca", "Carlos", NOW, "user 1", "changed in the CRM", from_id=BIANCA, to_id=CARLOS)))

    installed.apply([plan])

    assert len(emu.associated_ids("deals", deal, "notes")) == 2  # same second, two transfers
    assert installed.calls["POST /crm/v3/objects/notes/search"] == 0  # nothing looked up before creating


def test_a_transfer_whose_record_update_failed_is_not_logged_twice(emu, installed):
    from adapter.pipeline import reconcile_refs
    from adapter.policy import Policy
    deal = new_deal(emu)
    ref = RecordRef("hubspot", "deal", deal)
    policy = Policy.from_mapping({})
    reconcile_refs(installed, [ref], policy)  # first sight: Baton takes the owner as it stands
    emu.user_set_owner("deals", deal, BIANCA, by_owner_id=CARLOS)
    emu.faults.add("POST", "/crm/v3/objects/deals/batch/update", status=400, body={
        "status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR",
        "context": {"ids": [deal]}})

    failed = reconcile_refs(installed, [ref], policy)  # the note is written, the deal's fields are not

    assert [f.ref for f in failed.failures] == [ref] and failed.plans[0].of(LogTransfer)
    assert len(emu.associated_ids("deals", deal, "notes")) == 1
    assert emu.record("deals", deal)["baton_owner_of_record"] == AVERY

    retried = reconcile_refs(installed, [ref], policy)

    assert not retried.failures and not retried.plans[0].of(LogTransfer)
    assert len(emu.associated_ids("deals", deal, "notes")) == 1  # the transfer is logged once
    assert emu.record("deals", deal)["baton_owner_of_record"] == BIANCA
    assert emu.record("deals", deal)["baton_owner_transfers"] == "1"
    assert installed.calls["POST /crm/v3/objects/notes/search"] == 0


def test_owner_changes_in_the_same_millisecond_keep_their_order(emu, hubspot):
    deal = new_deal(emu)
    emu.user_set_owner("deals", deal, BIANCA, at=NOW)
    emu.user_set_owner("deals", deal, CARLOS, at=NOW)

    [snapshot] = hubspot.load([RecordRef("hubspot", "deal", deal)]).snapshots

    assert [c.owner_id for c in snapshot.owner_history] == [AVERY, BIANCA, CARLOS]


def test_a_207_for_one_deleted_record_does_not_lose_the_others(emu, installed):
    emu.seed(5, now=NOW)
    refs = deal_refs(emu)
    emu.user_delete_record("deals", refs[2].id)

    result = installed.apply([Plan(ref, "on_track", (SetFields({"next_action": "Call"}),)) for ref in refs])

    assert [f.ref for f in result.failures] == [refs[2]]
    assert "OBJECT_NOT_FOUND" in result.failures[0].reason and not result.failures[0].retriable
    assert result.applied == refs[:2] + refs[3:]
    assert all(emu.record("deals", r.id)["baton_next_action"] == "Call" for r in result.applied)
    assert installed.calls["POST /crm/v3/objects/deals/batch/update"] == 1


def test_a_refused_batch_is_split_until_only_the_bad_input_fails(emu, installed):
    deals = [new_deal(emu) for _ in range(6)]
    refs = [RecordRef("hubspot", "deal", d) for d in deals]
    plans = [prompt_plan(ref) for ref in refs]
    plans[4] = prompt_plan(refs[4], owner="99999")  # not an owner: HubSpot refuses the whole batch

    result = installed.apply(plans)

    assert [f.ref for f in result.failures] == [refs[4]]
    assert "INVALID_OWNER_ID" in result.failures[0].reason
    assert result.applied == refs[:4] + refs[5:]
    assert all(len(emu.associated_ids("deals", d, "tasks")) == 1 for i, d in enumerate(deals) if i != 4)
    assert emu.record("deals", deals[4]).get("baton_follow_up_status") is None  # its fields wait for the task


def test_a_bad_value_fails_only_its_record_before_any_call(emu, installed):
    good, bad = (RecordRef("hubspot", "deal", new_deal(emu)) for _ in range(2))

    result = installed.apply([Plan(good, "on_track", (SetFields({"owner_transfers": 2}),)),
                              Plan(bad, "on_track", (SetFields({"owner_transfers": "two"}),))])

    assert result.applied == [good] and [f.ref for f in result.failures] == [bad]
    assert "expected a number" in result.failures[0].reason


def test_a_500_on_task_create_looks_up_markers_before_creating_again(emu, installed):
    deals = [new_deal(emu) for _ in range(3)]
    emu.faults.add("POST", "/crm/v3/objects/tasks/batch/create", status=500)

    result = installed.apply([prompt_plan(RecordRef("hubspot", "deal", d)) for d in deals])

    assert not result.failures
    assert installed.calls["POST /crm/v3/objects/tasks/batch/create"] == 2
    assert installed.calls["POST /crm/v3/objects/tasks/search"] == 1
    assert all(len(emu.associated_ids("deals", d, "tasks")) == 1 for d in deals)


def test_a_create_that_timed_out_after_hubspot_did_it_is_not_sent_again(emu, clock):
    # The marker search waits (really) for the emulator to finish the create it is still doing.
    hubspot = make_connector(emu, clock, timeout=urllib3.Timeout(connect=2, read=0.3), marker_search_delay=0.6)
    hubspot.install(load_manifest())
    deals = [new_deal(emu) for _ in range(3)]
    # HubSpot answers too late: the client gives up, HubSpot still creates the tasks.
    emu.faults.add("POST", "/crm/v3/objects/tasks/batch/create", status=None, delay=0.6)

    result = hubspot.apply([prompt_plan(RecordRef("hubspot", "deal", d)) for d in deals])

    assert not result.failures
    assert hubspot.statuses["no-response"] == 1
    assert hubspot.calls["POST /crm/v3/objects/tasks/batch/create"] == 1  # found them all: nothing re-sent
    assert all(len(emu.associated_ids("deals", d, "tasks")) == 1 for d in deals)


# -- rate limits and retries ------------------------------------------------------------------------
def test_429_is_retried_after_retry_after(emu, clock):
    emu.rate_limiter = EmulatorRateLimiter(per_ten_seconds=4, search_per_second=5, clock=clock.now)
    hubspot = make_connector(emu, clock, calls_per_10s=100)  # not pacing: HubSpot will push back
    emu.seed(20, now=NOW)

    result = hubspot.load(deal_refs(emu))

    assert len(result.snapshots) == 20
    assert hubspot.statuses[429] >= 1 and emu.rate_limited == hubspot.statuses[429]
    assert clock.sleeps and all(s >= 1 for s in clock.sleeps)  # waited as long as Retry-After said


def test_client_side_pacing_keeps_under_the_budget(emu, clock):
    emu.rate_limiter = EmulatorRateLimiter(per_ten_seconds=4, search_per_second=5, clock=clock.now)
    hubspot = make_connector(emu, clock, calls_per_10s=4)
    emu.seed(20, now=NOW)

    result = hubspot.load(deal_refs(emu))

    assert len(result.snapshots) == 20
    assert hubspot.statuses[429] == 0
    assert clock.t - 1_000.0 >= 10 * (sum(hubspot.calls.values()) // 4 - 1)


def test_a_rate_limited_create_is_retried_without_a_marker_search(emu, installed, clock):
    deal = new_deal(emu)
    emu.faults.add("POST", "/crm/v3/objects/tasks/batch/create", status=429, times=2)

    result = installed.apply([prompt_plan(RecordRef("hubspot", "deal", deal))])

    assert not result.failures and len(emu.associated_ids("deals", deal, "tasks")) == 1
    assert installed.calls["POST /crm/v3/objects/tasks/batch/create"] == 3
    assert installed.calls["POST /crm/v3/objects/tasks/search"] == 0
    assert clock.sleeps == [1.0, 1.0]


def test_daily_limit_is_not_retried(emu, hubspot):
    emu.faults.add("POST", "/crm/v3/objects/deals/batch/read", status=429, body={
        "status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
        "correlationId": "x", "policyName": "DAILY", "groupName": "publicapi:private-app-api-calls-daily"})

    with pytest.raises(DailyLimitReached) as raised:
        hubspot.load([RecordRef("hubspot", "deal", new_deal(emu))])

    assert 0 < raised.value.retry_after <= 86_400
    assert hubspot.calls["POST /crm/v3/objects/deals/batch/read"] == 1


def test_5xx_on_reads_is_retried_then_raised_as_retriable(emu, hubspot, clock):
    ref = RecordRef("hubspot", "deal", new_deal(emu))
    emu.faults.add("POST", "/crm/v3/objects/deals/batch/read", status=503, times=1)
    assert len(hubspot.load([ref]).snapshots) == 1
    assert hubspot.statuses[503] == 1

    clock.sleeps.clear()
    emu.faults.add("POST", "/crm/v3/objects/deals/batch/read", status=502, times=None)
    with pytest.raises(RetriableCrmError, match="gave up after 5 attempts"):
        hubspot.load([ref])
    assert hubspot.statuses[502] == 5
    # Exponential backoff with "equal jitter": attempt n waits between 0.5 * 2**(n-1) / 2 and 0.5 * 2**(n-1).
    assert [base / 2 <= s <= base for s, base in zip(clock.sleeps, (0.5, 1, 2, 4))] == [True] * 4


def test_other_4xx_are_fatal_with_hubspots_message(emu, hubspot):
    emu.faults.add("POST", "/crm/v3/objects/deals/batch/read", status=403, body={
        "status": "error", "message": "This app hasn't been granted all required scopes", "category": "MISSING_SCOPES"})
    with pytest.raises(FatalCrmError, match="required scopes"):
        hubspot.load([RecordRef("hubspot", "deal", new_deal(emu))])


def test_a_wrong_token_is_fatal(emu, clock):
    wrong = HubSpotConnector("pat-wrong", host=emu.url, transport=Transport(sleep=clock.sleep, clock=clock.now))
    with pytest.raises(HubSpotApiError) as raised:
        wrong.load([RecordRef("hubspot", "deal", "1")])
    assert raised.value.status == 401 and "pat-wrong" not in str(raised.value)


# -- scan ------------------------------------------------------------------------------------------------
def test_scan_pages_past_the_search_cap_by_restarting_above_the_last_id(emu, clock, monkeypatch):
    monkeypatch.setattr(emulator_search, "MAX_RESULTS", 1_000)  # HubSpot's 10,000, scaled down
    hubspot = make_connector(emu, clock, search_result_cap=1_000, searches_per_second=5)
    emu.seed(2_600, now=NOW)
    closed = {"closedwon", "closedlost", "158342003", "158342004"}  # isClosed in the emulator's pipelines
    open_ids = [r["hs_object_id"] for r in emu.records("deals") if r["dealstage"] not in closed]
    emu.reset_calls()

    scanned = list(hubspot.scan("deal"))

    assert [s.ref.id for s in scanned] == sorted(open_ids, key=int)
    assert all(s.modified_at is not None for s in scanned)
    searches = hubspot.calls["POST /crm/v3/objects/deals/search"]
    assert searches == -(-len(open_ids) // 200)  # one call per page, none wasted on restarts
    assert max(clock.sleeps, default=0) <= 1.0 and hubspot.statuses[429] == 0  # paced at 5/s


@pytest.mark.slow
def test_scan_walks_more_than_10000_open_deals_with_the_real_cap(emu, clock):
    hubspot = make_connector(emu, clock)
    emu.seed(13_000, now=NOW)  # about 10,300 of them open
    open_count = sum(1 for r in emu.records("deals")
                     if r["dealstage"] not in {"closedwon", "closedlost", "158342003", "158342004"})
    assert open_count > 10_000

    scanned = [s.ref.id for s in hubspot.scan("deal")]

    assert len(scanned) == len(set(scanned)) == open_count
    assert hubspot.calls["POST /crm/v3/objects/deals/search"] == -(-open_count // 200)


def test_scan_since_returns_only_recently_modified_records(emu, hubspot):
    emu.seed(30, now=NOW)
    changed = new_deal(emu)
    emu.user_update("deals", changed, {"dealname": "Renamed"}, at=datetime.now(timezone.utc))

    scanned = list(hubspot.scan("deal", since=datetime.now(timezone.utc) - timedelta(minutes=5)))

    assert [s.ref.id for s in scanned] == [changed]


# -- install ---------------------------------------------------------------------------------------------
def test_install_creates_the_manifest_and_a_second_run_changes_nothing(emu, hubspot):
    manifest = load_manifest()
    first = hubspot.install(manifest)
    hubspot.calls.clear()
    second = hubspot.install(manifest)

    field_count = len(manifest["fields"])
    # per record type: group + fields + own-activity stamps; per engagement type: group + marker
    assert len(first.created) == 4 * (field_count + 2) + 2 * 2
    assert not second.changed and len(second.unchanged) == len(first.created)
    assert all(key.startswith("GET ") for key in hubspot.calls)  # the second run only read
    store = emu.store.properties
    for spec in manifest["fields"]:
        for object_type in ("deals", "contacts", "companies", "tickets"):
            definition = store[object_type][spec["hubspot"]]
            assert definition.label == spec["label"] and definition.group_name == "baton"
            assert [o["value"] for o in definition.options] == (
                [o["value"] for o in spec.get("options", [])] or (["true", "false"] if spec["type"] == "bool" else []))
    assert store["tasks"]["baton_source"].type == "string" and store["notes"]["baton_source"].group_name == "baton"


def test_install_corrects_drifted_labels_and_dry_run_writes_nothing(emu, hubspot):
    from hubspot.crm.properties import PropertyUpdate
    manifest = load_manifest()
    hubspot.install(manifest)
    hubspot._client.crm.properties.core_api.update("deals", "baton_next_action", PropertyUpdate(label="Renamed"))

    dry = hubspot.install(manifest, dry_run=True)
    assert dry.updated == ["deals.baton_next_action"] and emu.store.properties["deals"]["baton_next_action"].label == "Renamed"

    fixed = hubspot.install(manifest)
    assert fixed.updated == ["deals.baton_next_action"]
    assert emu.store.properties["deals"]["baton_next_action"].label == "Next action"


# -- the budget --------------------------------------------------------------------------------------------
def test_load_and_apply_of_100_records_cost_a_handful_of_calls(emu, installed):
    emu.seed(100, now=NOW)
    refs = deal_refs(emu)
    emu.reset_calls()

    loaded = installed.load(refs)
    load_calls = sum(installed.calls.values())
    plans = [Plan(s.ref, "no_next_action", prompt_plan(s.ref, also=s.related).actions + (
        LogTransfer("(no owner)", "Avery", NOW, "Baton", "routing"),)) for s in loaded.snapshots]
    installed.calls.clear()
    applied = installed.apply(plans)
    apply_calls = sum(installed.calls.values())

    assert len(loaded.snapshots) == 100 and len(applied.applied) == 100
    assert load_calls <= 14, dict(installed.calls)  # 1 read + 6 association reads + engagement reads + pipelines
    assert apply_calls == 3, dict(installed.calls)  # note create, task create, deal update
    assert load_calls + apply_calls == emu.calls_total


# -- the transport on its own ----------------------------------------------------------------------------
def test_endpoint_keys_and_which_requests_are_creates():
    assert endpoint_key("post", "https://api.hubapi.com/crm/v3/objects/deals/batch/read?archived=false") == (
        "POST /crm/v3/objects/deals/batch/read")
    assert endpoint_key("PATCH", "http://h/crm/v3/objects/tasks/123") == "PATCH /crm/v3/objects/tasks/{id}"
    assert is_create("POST", "http://h/crm/v3/objects/tasks/batch/create")
    assert is_create("POST", "http://h/crm/v3/objects/notes")
    assert not is_create("POST", "http://h/crm/v3/objects/tasks/batch/update")
    assert not is_create("POST", "http://h/crm/v3/objects/tasks/search")
    assert not is_create("POST", "http://h/crm/v3/properties/deals/batch/create")  # install reads first


def test_rate_limiter_spreads_calls_over_the_rolling_window(clock):
    limiter = RateLimiter(3, 10.0, clock=clock.now, sleep=clock.sleep)
    for _ in range(7):
        limiter.acquire()
    assert clock.sleeps == [10.0, 10.0]
    assert clock.t == 1_020.0


def test_daily_limits_reset_at_midnight_in_the_portals_time_zone():
    from zoneinfo import ZoneInfo
    transport = Transport(portal_timezone=ZoneInfo("America/New_York"))
    # 03:00 UTC on 20 Nov is 22:00 the day before in New York: two hours to go.
    assert transport.seconds_until_reset(datetime(2026, 11, 20, 3, 0, tzinfo=timezone.utc)) == 7_200


def test_a_connection_that_never_opened_is_retried_then_raised_as_retriable(clock):
    hubspot = HubSpotConnector(TOKEN, host="http://127.0.0.1:9", transport=Transport(
        sleep=clock.sleep, clock=clock.now, max_attempts=3))
    with pytest.raises(RetriableCrmError, match="gave up after 3 attempts"):
        hubspot.apply([prompt_plan(RecordRef("hubspot", "deal", "1"))])  # a create: safe, it never left
    assert hubspot.statuses["connect-error"] == 3 and len(clock.sleeps) == 2


# -- the rate limit shared by worker processes (pacing.py) --------------------------------------

from redis import Redis  # noqa: E402

from connectors.hubspot.pacing import SharedRateLimiter, limiter_key  # noqa: E402
from tests.fakes import delete_prefix, redis_server  # noqa: E402,F401


@pytest.fixture
def shared_key(redis_server):
    import uuid

    prefix = f"test-pacing-{uuid.uuid4().hex[:8]}"
    yield redis_server, limiter_key(prefix, portal_id="62515", app_id="4242", token=TOKEN, name="calls")
    delete_prefix(redis_server, prefix)


def test_two_processes_sharing_the_limit_never_exceed_it_in_any_window(shared_key, clock):
    redis, key = shared_key
    stamps = []
    # Two "worker processes": separate limiters on one key and one (injected) clock.
    workers = [SharedRateLimiter(redis, key, 10, 10.0, clock=clock.now, sleep=clock.sleep) for _ in range(2)]
    for i in range(60):
        workers[i % 3 % 2].acquire()  # uneven: one worker asks twice as often
        stamps.append(clock.t)
    for i, start in enumerate(stamps):
        assert sum(1 for t in stamps[i:] if t < start + 10.0) <= 10
    # ...and together they use the whole budget: 60 calls in 6 windows, not 12 (two halves).
    assert stamps[-1] - stamps[0] < 6 * 10.0


def test_a_process_takes_the_budget_the_other_left_idle(shared_key, clock):
    redis, key = shared_key
    busy = SharedRateLimiter(redis, key, 10, 10.0, clock=clock.now, sleep=clock.sleep)
    idle = SharedRateLimiter(redis, key, 10, 10.0, clock=clock.now, sleep=clock.sleep)
    for _ in range(10):
        assert busy.acquire() == 0.0  # no fixed half: all ten slots without waiting
    clock.t += 4.0
    assert idle.try_acquire() == pytest.approx(6.0)  # the window is full: wait for the oldest stamp
    assert clock.sleeps == []


def test_the_shared_limiter_paces_alone_while_redis_is_unreachable(clock):
    down = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    fallback = RateLimiter(2, 10.0, clock=clock.now, sleep=clock.sleep)
    limiter = SharedRateLimiter(down, "k", 2, 10.0, fallback=fallback, clock=clock.now, sleep=clock.sleep,
                                monotonic=clock.now)
    for _ in range(3):
        limiter.acquire()
    assert clock.sleeps == [10.0]  # the third call waited on the in-process window
    with pytest.raises(Exception):
        SharedRateLimiter(down, "k", 2, 10.0, clock=clock.now).acquire()  # no fallback: the error shows


def test_from_settings_shares_the_limit_through_the_redis_it_is_given(redis_server, monkeypatch):
    settings = {"HUBSPOT_ACCESS_TOKEN": TOKEN, "HUBSPOT_PORTAL_ID": "62515", "HUBSPOT_APP_ID": "4242",
                "BATON_REDIS_PREFIX": "tenant-a", "BATON_HUBSPOT_CALLS_PER_10S": "190"}
    connector = get_connector("hubspot", settings, redis=redis_server)
    limiter = connector.transport.limiter
    assert isinstance(limiter, SharedRateLimiter)
    assert (limiter.key, limiter.limit, limiter.window) == ("tenant-a:ratelimit:hubspot:62515:4242:calls", 190, 10.0)
    assert connector.transport.search_limiter.key.endswith(":search")
    # One-shot commands without Redis, or pacing set to process: the in-process pacer.
    assert isinstance(HubSpotConnector.from_settings(settings).transport.limiter, RateLimiter)
    process = HubSpotConnector.from_settings({**settings, "BATON_HUBSPOT_PACING": "process"}, redis=redis_server)
    assert isinstance(process.transport.limiter, RateLimiter)
    with pytest.raises(ConfigurationError):
        HubSpotConnector.from_settings({**settings, "BATON_HUBSPOT_PACING": "sometimes"})
    # Without portal or app ids the key names a hash of the token, never the token.
    assert TOKEN not in limiter_key("p", portal_id=None, app_id=None, token=TOKEN, name="calls")


def test_the_activity_baton_last_read_costs_no_contact_or_company_reads(emu, installed):
    """`baton_activities_read_at` is kept to the second: the email that set it, stored at
    .500 of that second, is not unread when Baton's own note brings the record back."""
    deal = new_deal(emu)
    stored = datetime.now(timezone.utc).replace(microsecond=500_000) - timedelta(hours=1)
    emu.user_add_email("deals", deal, "<p>I'll send it Friday.</p>", at=stored)
    emu.user_update("deals", deal, {"baton_activities_read_at": stored.replace(microsecond=0).isoformat()})
    ref = RecordRef("hubspot", "deal", deal)
    installed.apply([Plan(ref, "on_track", (LogTransfer("Avery", "Bianca", NOW, "Avery", "user", to_id=BIANCA),))])
    # Without Baton's stamps, its note's move of the activity date looks like anyone's.
    emu.user_update("deals", deal, {"baton_own_activity_stamps": ""})
    installed.calls.clear()

    installed.load([ref])  # the note moved the activity date: notes are read

    assert installed.calls["POST /crm/v4/associations/deals/notes/batch/read"] == 1
    assert installed.calls["POST /crm/v4/associations/deals/contacts/batch/read"] == 0
    assert installed.calls["POST /crm/v4/associations/deals/companies/batch/read"] == 0


# -- Baton's own notes and tasks do not make the next load read activities -------------------

def _transfer(ref: RecordRef) -> Plan:
    return Plan(ref, "on_track", (LogTransfer("Avery", "Bianca", NOW, "Avery", "user", from_id=AVERY, to_id=BIANCA),))


def _deal_read_an_hour_ago(emu: HubSpotEmulator) -> RecordRef:
    deal = new_deal(emu)
    read_at = datetime.now(timezone.utc) - timedelta(hours=1)
    emu.user_update("deals", deal, {"baton_activities_read_at": read_at.isoformat()})
    return RecordRef("hubspot", "deal", deal)


def test_batons_own_note_costs_the_next_load_no_activity_reads(emu, installed):
    ref = _deal_read_an_hour_ago(emu)
    deal = ref.id

    installed.apply([_transfer(ref)])
    installed.load([ref])  # a reconcile loads before it applies: the note's stamp is carried
    installed.apply([Plan(ref, "no_next_action", (CreateTask("Set the next step", NOW, AVERY, PROMPT_SOURCE),))])
    [note] = [n for n in emu.records("notes")]
    [task] = [t for t in emu.records("tasks")]
    stamps = emu.record("deals", deal)["baton_own_activity_stamps"]
    installed.calls.clear()

    [snapshot] = installed.load([ref]).snapshots

    assert activity_reads(installed) == {}
    assert snapshot.activities == ()
    created = {int(epoch_ms(parse_datetime(o["hs_createdate"]))) for o in (note, task)}
    assert {int(s) for s in stamps.split(",")} == created


def test_someone_elses_note_in_the_same_second_as_batons_is_read(emu, installed):
    ref = _deal_read_an_hour_ago(emu)
    deal = ref.id
    installed.apply([_transfer(ref)])
    [baton_note] = emu.records("notes")
    right_after = parse_datetime(baton_note["hs_createdate"]) + timedelta(milliseconds=1)
    emu.user_add_note("deals", deal, "<p>I'll send the proposal by Friday.</p>", AVERY, at=right_after)
    installed.calls.clear()

    [snapshot] = installed.load([ref]).snapshots

    assert installed.calls["POST /crm/v4/associations/deals/notes/batch/read"] == 1
    assert [a.body for a in snapshot.activities if a.source is None] == ["<p>I'll send the proposal by Friday.</p>"]


def test_a_record_whose_stamps_were_lost_is_read_as_before(emu, installed):
    ref = _deal_read_an_hour_ago(emu)
    deal = ref.id
    installed.apply([_transfer(ref)])
    emu.user_update("deals", deal, {"baton_own_activity_stamps": "not a stamp"})
    installed.calls.clear()

    installed.load([ref])

    assert installed.calls["POST /crm/v4/associations/deals/notes/batch/read"] == 1
