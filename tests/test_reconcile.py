from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Schedule, SetFields, UpdateTask
from adapter.model import PROMPT_SOURCE, Activity, OwnerChange, commitment_source
from adapter.policy import Policy
from adapter.reconcile import reconcile
from tests.fake_crm import ANA, BEN, GONE, MARIA, OWNERS, QUEUE, T0, FakeConnector, snapshot, task

POLICY = Policy.from_mapping({
    "timezone": "America/New_York",
    "objects": {"contact": {"closed_stages": ["customer"]}, "company": {"enabled": False}},
})
SEEN = {"follow_up_status": "on_track", "owner_of_record": ANA.id, "owner_assigned_at": T0 - timedelta(days=20),
        "owner_transfers": 0}


def plan_for(snap, now=T0, router=None, policy=POLICY):
    return reconcile(snap, policy, now, owners=OWNERS, router=router)


def always(owner):
    return lambda snap: (owner.id, "round robin (test)")


def settle(snap, now=T0, router=None, policy=POLICY):
    """Apply the plan as the CRM would, a second later; return the plan and the new state."""
    crm = FakeConnector([snap], clock=now + timedelta(seconds=1))
    plan = plan_for(snap, now, router, policy)
    crm.apply([plan])
    return plan, crm.records[snap.ref]


# --- ownership -------------------------------------------------------------------------

def test_ownerless_record_is_assigned_logged_and_prompted():
    plan = plan_for(snapshot(owner=None), router=always(BEN))
    assert plan.of(AssignOwner) == [AssignOwner(BEN.id, "round robin (test)")]
    [transfer] = plan.of(LogTransfer)
    assert (transfer.from_owner, transfer.to_owner, transfer.at) == ("(no owner)", BEN.label, T0)
    assert transfer.changed_by == "Baton" and "no owner" in transfer.reason
    [prompt] = plan.of(CreateTask)
    assert prompt.owner_id == BEN.id and prompt.source == PROMPT_SOURCE
    assert prompt.title == "Set the next step for Acme renewal"
    [fields] = plan.of(SetFields)
    assert fields.values["owner_of_record"] == BEN.id
    assert fields.values["owner_transfers"] == 1
    assert fields.values["follow_up_status"] == "no_next_action"


def test_departed_owner_is_replaced_with_the_reason_named():
    plan = plan_for(snapshot(owner=GONE.id), router=always(ANA))
    [transfer] = plan.of(LogTransfer)
    assert transfer.from_owner == GONE.label and "departed owner" in transfer.reason


def test_queue_owned_record_needs_a_person():
    assert plan_for(snapshot(owner=QUEUE.id)).status == "queue_owned"
    plan = plan_for(snapshot(owner=QUEUE.id), router=always(MARIA))
    assert plan.of(AssignOwner)[0].owner_id == MARIA.id
    assert "owned by a queue" in plan.of(LogTransfer)[0].reason


def test_queue_is_acceptable_when_policy_allows_it():
    relaxed = Policy.from_mapping({"owners": {"require_person": False}})
    assert plan_for(snapshot(owner=QUEUE.id, tasks=[task()]), policy=relaxed).status == "on_track"


def test_ownerless_without_routing_is_reported_not_prompted():
    plan = plan_for(snapshot(owner=None))
    assert plan.status == "ownerless" and "ownerless" in plan.exceptions
    assert not plan.of(CreateTask) and not plan.of(AssignOwner)


def test_first_sight_takes_history_as_it_stands():
    history = [OwnerChange(BEN.id, T0 - timedelta(days=9)), OwnerChange(ANA.id, T0 - timedelta(days=3))]
    plan = plan_for(snapshot(history=history, tasks=[task()]))
    assert not plan.of(LogTransfer)
    values = plan.of(SetFields)[0].values
    assert values["owner_transfers"] == 1
    assert values["owner_assigned_at"] == T0 - timedelta(days=3)
    assert values["last_transfer_at"] == T0 - timedelta(days=3)  # the newest history entry


def test_each_transfer_since_the_last_logged_one_becomes_an_activity_in_order():
    history = [
        OwnerChange(ANA.id, T0 - timedelta(days=20), "user 7", "CRM_UI"),
        OwnerChange(BEN.id, T0 - timedelta(hours=5), "user 7", "CRM_UI"),
        OwnerChange(MARIA.id, T0 - timedelta(hours=2), "workflow 12", "AUTOMATION"),
    ]
    plan = plan_for(snapshot(owner=MARIA.id, history=history, fields=SEEN, tasks=[task(owner=MARIA.id)]))
    transfers = plan.of(LogTransfer)
    assert [(t.from_owner, t.to_owner, t.at) for t in transfers] == [
        (ANA.label, BEN.label, T0 - timedelta(hours=5)),
        (BEN.label, MARIA.label, T0 - timedelta(hours=2)),
    ]
    assert transfers[1].changed_by == "workflow 12" and "AUTOMATION" in transfers[1].reason
    values = plan.of(SetFields)[0].values
    assert values["owner_transfers"] == 2 and values["owner_of_record"] == MARIA.id
    assert values["last_transfer_at"] == T0 - timedelta(hours=2)


def test_transfers_are_logged_once_across_runs():
    history = [OwnerChange(ANA.id, T0 - timedelta(days=20)), OwnerChange(BEN.id, T0 - timedelta(hours=1), "user 7")]
    first, state = settle(snapshot(owner=BEN.id, history=history, fields=SEEN, tasks=[task(owner=BEN.id)]))
    assert len(first.of(LogTransfer)) == 1
    assert plan_for(state).is_noop


def test_a_change_and_back_between_runs_is_still_logged():
    history = [OwnerChange(ANA.id, T0 - timedelta(days=20)), OwnerChange(BEN.id, T0 - timedelta(hours=3)),
               OwnerChange(ANA.id, T0 - timedelta(hours=1))]
    plan = plan_for(snapshot(owner=ANA.id, history=history, fields=SEEN, tasks=[task()]))
    assert len(plan.of(LogTransfer)) == 2


def test_untracked_history_logs_the_observed_change_at_observation_time():
    plan = plan_for(snapshot(owner=BEN.id, fields=SEEN, tasks=[task(owner=BEN.id)], tracked=False))
    [transfer] = plan.of(LogTransfer)
    assert transfer.at == T0 and "not tracked" in transfer.reason


def test_batons_own_assignment_is_not_logged_again_after_a_later_user_change():
    _, state = settle(snapshot(owner=None), router=always(BEN))
    later = T0 + timedelta(hours=2)
    history = state.owner_history + (OwnerChange(MARIA.id, later - timedelta(minutes=5), "user 3", "CRM_UI"),)
    from dataclasses import replace
    plan = plan_for(replace(state, owner_id=MARIA.id, owner_history=history), now=later)
    [transfer] = plan.of(LogTransfer)
    assert (transfer.from_owner, transfer.to_owner) == (BEN.label, MARIA.label)


# --- next action -----------------------------------------------------------------------

def test_exactly_one_prompt_and_never_a_second():
    plan, state = settle(snapshot())
    assert len(plan.of(CreateTask)) == 1
    again = plan_for(state)
    assert again.is_noop and again.status == "no_next_action"


def test_extra_prompts_are_closed_and_the_kept_one_follows_the_owner():
    prompts = [task("p1", owner=BEN.id, source=PROMPT_SOURCE), task("p2", owner=BEN.id, source=PROMPT_SOURCE)]
    plan = plan_for(snapshot(tasks=prompts, fields=SEEN))
    assert set(plan.of(UpdateTask)) == {UpdateTask("p2", completed=True), UpdateTask("p1", owner_id=ANA.id)}
    assert not plan.of(CreateTask)


def test_prompt_does_not_count_as_next_action_and_is_closed_by_a_real_one():
    prompt = task("p1", source=PROMPT_SOURCE, due=T0 + timedelta(days=1))
    assert plan_for(snapshot(tasks=[prompt])).status == "no_next_action"
    plan = plan_for(snapshot(tasks=[prompt, task("t2", due=T0 + timedelta(days=6))]))
    assert plan.status == "on_track"
    assert UpdateTask("p1", completed=True) in plan.of(UpdateTask)


def test_task_without_due_date_is_not_a_next_action():
    assert plan_for(snapshot(tasks=[task(due=None)])).status == "no_next_action"


@pytest.mark.parametrize("due, status", [
    (T0 - timedelta(minutes=1), "overdue"),
    (T0 + timedelta(hours=20), "due_soon"),
    (T0 + timedelta(days=3), "on_track"),
])
def test_timeliness(due, status):
    plan = plan_for(snapshot(tasks=[task(due=due)]))
    assert plan.status == status
    values = plan.of(SetFields)[0].values
    assert values["next_action"] == "Send proposal" and values["next_action_due"] == due


def test_due_soon_counts_business_days_over_a_weekend():
    friday_noon = datetime(2026, 11, 20, 17, 0, tzinfo=timezone.utc)
    monday_morning = datetime(2026, 11, 23, 15, 0, tzinfo=timezone.utc)
    assert plan_for(snapshot(tasks=[task(due=monday_morning)]), now=friday_noon).status == "due_soon"


def test_schedules_the_moment_the_status_turns():
    due = T0 + timedelta(days=3)
    on_track = plan_for(snapshot(tasks=[task(due=due)]))
    [deadline] = on_track.of(Schedule)
    assert deadline.at <= due - timedelta(hours=23) and deadline.at >= due - timedelta(days=1, minutes=2)
    soon = plan_for(snapshot(tasks=[task(due=T0 + timedelta(hours=3))]))
    assert soon.next_check == T0 + timedelta(hours=3)


def test_closed_record_closes_batons_prompt():
    plan = plan_for(snapshot(closed=True, tasks=[task("p1", source=PROMPT_SOURCE)]))
    assert plan.status == "closed" and plan.of(UpdateTask) == [UpdateTask("p1", completed=True)]


def test_policy_closed_stages_and_disabled_objects():
    assert plan_for(snapshot(object_type="contact", stage="customer")).status == "closed"
    assert plan_for(snapshot(object_type="company")).status == "ignored"


def test_only_changed_fields_are_written():
    plan, state = settle(snapshot(tasks=[task()]))
    assert plan.of(SetFields)
    assert plan_for(state).of(SetFields) == []


# --- waiting ----------------------------------------------------------------------------

def email(eid, at, direction, body="Can we talk?"):
    return Activity(eid, "email", at, body, direction=direction)


def test_inbound_email_sets_waiting_and_counts_business_hours():
    inbound = email("e1", T0 - timedelta(hours=3), "inbound")
    values = plan_for(snapshot(tasks=[task()], activities=[inbound])).of(SetFields)[0].values
    assert values["waiting_since"] == T0 - timedelta(hours=3)
    assert values["hours_waiting"] == 1  # 07:00-10:00 New York: only 09:00-10:00 is open


def test_reply_clears_waiting():
    stored = dict(SEEN, waiting_since=T0 - timedelta(hours=5), hours_waiting=3)
    reply = email("e2", T0 - timedelta(hours=1), "outbound", "Here you go")
    values = plan_for(snapshot(tasks=[task()], fields=stored, activities=[reply])).of(SetFields)[0].values
    assert values["waiting_since"] is None and values["hours_waiting"] is None


# --- commitments ------------------------------------------------------------------------

def test_note_commitment_becomes_a_linked_task_once():
    note = Activity("n1", "note", T0 - timedelta(hours=1), "<p>Great call. I'll send the revised proposal by Friday.</p>",
                    author_owner_id=BEN.id, is_html=True)
    plan, state = settle(snapshot(fields=SEEN, activities=[note]))
    created = [c for c in plan.of(CreateTask) if c.source == commitment_source("n1", 0)]
    assert len(created) == 1
    assert created[0].owner_id == BEN.id and "proposal" in created[0].title.lower()
    assert created[0].due.date().isoformat() == "2026-11-20"
    assert "n1" in created[0].body
    assert plan.status in ("on_track", "due_soon") and not [c for c in plan.of(CreateTask) if c.source == PROMPT_SOURCE]
    assert plan_for(state).is_noop


def test_old_notes_are_not_mined_on_first_install():
    note = Activity("n0", "note", T0 - timedelta(days=40), "I'll call them tomorrow.", author_owner_id=ANA.id)
    plan = plan_for(snapshot(activities=[note]))
    assert all(c.source == PROMPT_SOURCE for c in plan.of(CreateTask))


# --- the property that makes webhooks harmless -----------------------------------------

owner_ids = st.sampled_from([None, ANA.id, BEN.id, GONE.id, QUEUE.id])
offsets = st.integers(min_value=-72, max_value=240).map(lambda h: T0 + timedelta(hours=h))
tasks_strategy = st.lists(st.builds(
    task, task_id=st.sampled_from(["a", "b", "c", "d"]), due=st.one_of(st.none(), offsets),
    owner=st.sampled_from([ANA.id, BEN.id]), completed=st.booleans(),
    source=st.sampled_from([None, None, PROMPT_SOURCE]),
), max_size=4, unique_by=lambda t: t.id)
history_strategy = st.lists(st.builds(OwnerChange, owner_ids, st.integers(-900, -1).map(lambda h: T0 + timedelta(hours=h))),
                            max_size=4)
activity_strategy = st.lists(st.builds(
    Activity, id=st.sampled_from(["x", "y", "z"]), kind=st.sampled_from(["note", "email"]),
    at=st.integers(-400, -1).map(lambda h: T0 + timedelta(hours=h)),
    body=st.sampled_from(["I'll send the deck tomorrow.", "Thanks, talk soon.", "Can you send pricing by Friday?",
                          "We might look at this next quarter."]),
    direction=st.sampled_from(["note", "inbound", "outbound"]), author_owner_id=st.sampled_from([None, BEN.id]),
), max_size=3, unique_by=lambda a: a.id)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(owner=owner_ids, tasks=tasks_strategy, history=history_strategy, activities=activity_strategy,
       closed=st.booleans(), seen=st.booleans(), route=st.booleans())
def test_reconciling_the_result_of_a_plan_yields_an_empty_plan(owner, tasks, history, activities, closed, seen, route):
    snap = snapshot(owner=owner, tasks=tasks, history=history, activities=activities, closed=closed,
                    fields=SEEN if seen else {})
    router = always(MARIA) if route else None
    _, state = settle(snap, router=router)
    assert plan_for(state, router=router).writes == ()


def test_a_task_baton_made_for_another_record_is_not_this_records_next_action():
    from dataclasses import replace
    foreign = replace(task("f1", source="baton:commitment:n9:0"), foreign=True)
    plan = plan_for(snapshot(object_type="contact", tasks=[foreign]))
    assert plan.status == "no_next_action"
    assert all(c.source == PROMPT_SOURCE for c in plan.of(CreateTask))


def test_notes_are_mined_only_on_the_policys_commitment_objects():
    note = Activity("n5", "note", T0 - timedelta(hours=1), "I'll send the deck tomorrow.", author_owner_id=ANA.id)
    on_contact = plan_for(snapshot(object_type="contact", activities=[note], fields=SEEN))
    assert not [c for c in on_contact.of(CreateTask) if c.source.startswith("baton:commitment")]


def test_new_task_dues_are_planned_as_the_crm_stores_them():
    end_of_day = lambda due: due.replace(hour=23, minute=59, second=59, microsecond=0)  # noqa: E731
    plan = reconcile(snapshot(), POLICY, T0, owners=OWNERS, stored_due=end_of_day)
    [prompt] = plan.of(CreateTask)
    assert (prompt.due.hour, prompt.due.minute) == (23, 59)


def test_plan_keeps_the_status_as_found_for_audits():
    plan = plan_for(snapshot(owner=None), router=always(BEN))
    assert (plan.found, plan.status, plan.exceptions) == ("ownerless", "no_next_action", ("ownerless",))


def test_a_transfer_already_on_the_record_is_not_logged_again():
    history = [OwnerChange(ANA.id, T0 - timedelta(days=20)), OwnerChange(BEN.id, T0 - timedelta(hours=1), "user 7")]
    snap = snapshot(owner=BEN.id, history=history, fields=SEEN, tasks=[task(owner=BEN.id)])
    [transfer] = plan_for(snap).of(LogTransfer)
    assert transfer.source == f"baton:transfer:{(T0 - timedelta(hours=1)):%Y-%m-%dT%H:%M:%S}Z:{ANA.id}>{BEN.id}"
    # The note was written but the record update was lost: the next run logs nothing twice.
    from dataclasses import replace
    noted = replace(snap, activities=(Activity("N1", "note", transfer.at, transfer.body, source=transfer.source),))
    plan = plan_for(noted)
    assert not plan.of(LogTransfer)
    assert plan.of(SetFields)[0].values["owner_transfers"] == 1


def test_an_email_that_synced_late_is_still_read():
    read_at = T0 - timedelta(hours=1)
    late = Activity("e9", "email", T0 - timedelta(hours=5), "Can you send the contract by Friday?",
                    direction="inbound", logged_at=T0 - timedelta(minutes=10))
    plan = plan_for(snapshot(fields=dict(SEEN, activities_read_at=read_at), activities=[late], tasks=[task()]))
    assert [c.source for c in plan.of(CreateTask)] == [commitment_source("e9", 0)]
    assert plan.of(SetFields)[0].values["activities_read_at"] == T0 - timedelta(minutes=10)


def test_first_look_starts_reading_where_the_crm_says_the_load_saw_everything():
    from dataclasses import replace
    known = T0 - timedelta(minutes=3)
    plan = plan_for(replace(snapshot(tasks=[task()]), activities_known_at=known))
    assert plan.of(SetFields)[0].values["activities_read_at"] == known


@pytest.mark.parametrize("kind", ["closed deal", "contact"])
def test_activities_of_records_baton_does_not_mine_are_still_marked_read(kind):
    """A closed record's notes (or a contact's: not a commitment object) become no tasks, but
    the watermark moves, so the connector does not load them again on every change."""
    read_at = T0 - timedelta(hours=1)
    promise = Activity("n7", "note", T0 - timedelta(minutes=20), "I'll send the contract by Friday.",
                       author_owner_id=ANA.id)
    snap = snapshot(fields=dict(SEEN, activities_read_at=read_at), activities=[promise], tasks=[task()],
                    closed=kind == "closed deal", object_type="contact" if kind == "contact" else "deal")
    plan = plan_for(snap)
    assert not plan.of(CreateTask)
    assert plan.of(SetFields)[0].values["activities_read_at"] == promise.at


def test_an_ownerless_records_activities_wait_for_an_owner():
    read_at = T0 - timedelta(hours=1)
    promise = Activity("n7", "note", T0 - timedelta(minutes=20), "I'll send the contract by Friday.")
    plan = plan_for(snapshot(owner=None, fields=dict(SEEN, activities_read_at=read_at), activities=[promise]))
    assert "activities_read_at" not in plan.of(SetFields)[0].values
