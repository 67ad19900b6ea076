"""`reconcile(snapshot, policy, now) -> Plan`: what must be true of one record, as actions.

Pure: no I/O, no clock reads. Reconciling the state a plan produces yields an empty plan,
which is what makes webhook retries, duplicates and Baton's own write-backs harmless.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, Schedule, SetFields, UpdateTask
from adapter.activities import ActivityOutcome, mark_read, read_activities, waiting_since
from adapter.model import PROMPT_SOURCE, OwnerDirectory, Snapshot, Task
from adapter.policy import Policy
from adapter.visibility import changed_fields, to_second

Router = Callable[[Snapshot], "tuple[str, str] | None"]
DueRounding = Callable[[datetime], datetime] | None

OWNERLESS, QUEUE_OWNED, NO_NEXT_ACTION = "ownerless", "queue_owned", "no_next_action"
OVERDUE, DUE_SOON, ON_TRACK, CLOSED, IGNORED = "overdue", "due_soon", "on_track", "closed", "ignored"
EXCEPTIONS = (OWNERLESS, QUEUE_OWNED, NO_NEXT_ACTION, OVERDUE)


@dataclass(frozen=True)
class Ownership:
    owner_id: str | None
    problem: str | None
    found_problem: str | None
    actions: tuple
    fields: dict


def reconcile(snapshot: Snapshot, policy: Policy, now: datetime, *, owners: OwnerDirectory,
              router: Router | None = None, stored_due: DueRounding = None) -> Plan:
    """The plan that makes `snapshot` right. `stored_due` says how the CRM will store a new
    task's due time (see `Connector.stored_due`); None keeps it as planned."""
    stored_due = stored_due or _as_planned
    ref = snapshot.ref
    object_policy = policy.for_object(ref.object_type)
    if not object_policy.enabled:
        return Plan(ref, IGNORED)
    closed = snapshot.is_closed or (snapshot.stage or "").lower() in object_policy.closed_stages

    ownership = _reconcile_owner(snapshot, policy, now, owners, None if closed else router)
    actions: list = list(ownership.actions)
    owner_id = ownership.owner_id

    activity = ActivityOutcome()
    if closed or ref.object_type not in policy.commitment_objects:
        activity = mark_read(snapshot, policy, now)
    elif owner_id and not ownership.problem:
        activity = read_activities(snapshot, policy, now, owners=owners, owner_id=owner_id, stored_due=stored_due)
        actions.extend(activity.tasks)
    # else: nobody to give the tasks to yet; the activities stay unread until someone owns the record.

    open_tasks = [t for t in snapshot.tasks if not t.completed and not t.foreign]
    prompts = [t for t in open_tasks if t.is_prompt]
    existing = [(t.due, t.title) for t in open_tasks if not t.is_prompt and t.due is not None]
    next_action = min(existing + [(t.due, t.title) for t in activity.tasks], default=None)

    if closed:
        status = CLOSED
        actions += [UpdateTask(p.id, completed=True) for p in prompts]
    elif ownership.problem:
        status = ownership.problem
    elif next_action is None:
        status = NO_NEXT_ACTION
        actions += _ensure_one_prompt(snapshot, policy, stored_due(policy.calendar.add(now, policy.prompt_due)),
                                      owner_id, prompts)
    else:
        actions += [UpdateTask(p.id, completed=True) for p in prompts]
        status = _timeliness(next_action[0], policy, now)

    desired = dict(ownership.fields)
    desired["follow_up_status"] = status
    desired["next_action"] = next_action[1] if next_action else None
    desired["next_action_due"] = next_action[0] if next_action else None
    if activity.read_up_to is not None:
        desired["activities_read_at"] = activity.read_up_to
    if policy.waiting_enabled:
        since = waiting_since(snapshot, snapshot.field("waiting_since"))
        desired["waiting_since"] = since
        desired["hours_waiting"] = int(policy.calendar.business_hours_between(since, now)) if since else None

    changes = changed_fields(snapshot.fields, desired)
    if changes:
        actions.append(SetFields(changes))
    actions += _deadlines(status, next_action, desired.get("waiting_since"), policy, now)

    found = _found_status(closed, ownership.found_problem, min(existing, default=None), policy, now)
    exceptions = (found,) if found in EXCEPTIONS else ()
    return Plan(ref, status, tuple(actions), exceptions, found=found)


def _found_status(closed: bool, owner_problem: str | None, next_action, policy: Policy, now: datetime) -> str:
    """The status as Baton found the record, before its own actions: what an audit reports."""
    if closed:
        return CLOSED
    if owner_problem:
        return owner_problem
    return _timeliness(next_action[0], policy, now) if next_action else NO_NEXT_ACTION


def _owner_problem(owner_id: str | None, owners: OwnerDirectory, policy: Policy) -> str | None:
    owner = owners.get(owner_id)
    if owner is None or not owner.active:
        return OWNERLESS
    if owner.is_queue and policy.require_person:
        return QUEUE_OWNED
    return None


def _reconcile_owner(snapshot: Snapshot, policy: Policy, now: datetime, owners: OwnerDirectory,
                     router: Router | None) -> Ownership:
    """Log the transfers people made since Baton last looked, then give an ownerless record a person."""
    fields = snapshot.fields
    owner_id = snapshot.owner_id or None
    seen_before = fields.get("follow_up_status") is not None
    actions: list = []
    transfers = int(fields.get("owner_transfers") or 0)
    assigned_at = fields.get("owner_assigned_at")
    last_transfer = fields.get("last_transfer_at")

    history = sorted(snapshot.owner_history, key=lambda change: change.at)
    if not seen_before:
        # First sight: take the history as it stands instead of logging years of old transfers.
        # last_transfer_at becomes the newest history entry (a first assignment counts), so
        # the next run only looks at what happens from now on.
        changes = [c for prev, c in zip(history, history[1:]) if c.owner_id != prev.owner_id]
        transfers = len(changes)
        last_transfer = to_second(history[-1].at) if history else None
        current = [c for c in history if c.owner_id == owner_id]
        assigned_at = to_second(current[-1].at) if current else (to_second(snapshot.created_at) if owner_id else None)
    else:
        held_by = fields.get("owner_of_record") or None
        since = to_second(last_transfer or assigned_at)
        for change in history:
            if since is not None and to_second(change.at) <= since:
                continue
            if (change.owner_id or None) != held_by:
                actions.append(LogTransfer(
                    from_owner=owners.label(held_by), to_owner=owners.label(change.owner_id),
                    at=change.at, changed_by=change.changed_by or change.source or "unknown",
                    reason=f"changed in the CRM ({change.source or 'source not recorded'})",
                    from_id=held_by, to_id=change.owner_id or None,
                ))
                held_by = change.owner_id or None
                transfers += 1
                last_transfer = assigned_at = to_second(change.at)
        if held_by != owner_id:
            # The CRM kept no history of this change (tracking off, or history not readable).
            why = "owner history is not tracked" if not snapshot.owner_history_tracked else "no history entry found"
            actions.append(LogTransfer(
                from_owner=owners.label(held_by), to_owner=owners.label(owner_id), at=now,
                changed_by="unknown", reason=f"observed by Baton; {why}, so the time is when Baton saw it",
                from_id=held_by, to_id=owner_id,
            ))
            transfers += 1
            last_transfer = assigned_at = to_second(now)

    problem = found_problem = _owner_problem(owner_id, owners, policy)
    if problem and router is not None:
        choice = router(snapshot)
        if choice is not None:
            new_owner, rule = choice
            departed = owners.get(owner_id)
            why = {OWNERLESS: "departed owner" if departed else "no owner", QUEUE_OWNED: "owned by a queue"}[problem]
            actions.append(AssignOwner(new_owner, rule))
            actions.append(LogTransfer(
                from_owner=owners.label(owner_id), to_owner=owners.label(new_owner), at=now,
                changed_by="Baton", reason=f"{why}; chosen by {rule}", from_id=owner_id, to_id=new_owner,
            ))
            owner_id, problem = new_owner, None
            transfers += 1
            last_transfer = assigned_at = to_second(now)

    logged = {a.source for a in snapshot.activities if a.source} | {t.source for t in snapshot.tasks if t.source}
    actions = [a for a in actions if not (isinstance(a, LogTransfer) and a.source in logged)]
    return Ownership(owner_id, problem, found_problem, tuple(actions), {
        "owner_of_record": owner_id,
        "owner_assigned_at": assigned_at if owner_id else None,
        "owner_transfers": transfers,
        "last_transfer_at": last_transfer,
    })


def _as_planned(due: datetime) -> datetime:
    return due


def _ensure_one_prompt(snapshot: Snapshot, policy: Policy, due: datetime, owner_id: str,
                       prompts: list[Task]) -> list:
    """Exactly one open "Set the next step" task, in the current owner's queue."""
    if not prompts:
        return [CreateTask(
            title=policy.prompt_title.format(record=snapshot.name or snapshot.ref.id)[:255],
            due=due,
            owner_id=owner_id,
            source=PROMPT_SOURCE,
            body=(f"{snapshot.name or 'This record'} has no next step with a due date. "
                  "Add a task with a due date (or log the commitment in a note) and Baton closes this one."
                  + (f"\n{snapshot.url}" if snapshot.url else "")),
        )]
    keep, *extra = sorted(prompts, key=lambda t: t.id)
    actions = [UpdateTask(t.id, completed=True) for t in extra]
    if keep.owner_id != owner_id:
        actions.append(UpdateTask(keep.id, owner_id=owner_id))
    return actions


def _due_soon_from(due: datetime, policy: Policy, now: datetime) -> datetime:
    """The first moment at which `due` falls inside the due-soon window (binary search,
    because adding business time has no simple inverse across nights and holidays)."""
    lo, hi = now, due
    if policy.calendar.add(lo, policy.due_soon) >= due:
        return lo
    while hi - lo > timedelta(minutes=1):
        mid = lo + (hi - lo) / 2
        if policy.calendar.add(mid, policy.due_soon) >= due:
            hi = mid
        else:
            lo = mid
    return hi


def _timeliness(due: datetime, policy: Policy, now: datetime) -> str:
    if due < now:
        return OVERDUE
    if policy.calendar.add(now, policy.due_soon) >= due:
        return DUE_SOON
    return ON_TRACK


def _deadlines(status: str, next_action, waiting: datetime | None, policy: Policy, now: datetime) -> list:
    """When this record's status would change with no event at all."""
    deadlines = []
    if status == ON_TRACK:
        deadlines.append(Schedule(_due_soon_from(next_action[0], policy, now), "next action falls due soon"))
    elif status == DUE_SOON:
        deadlines.append(Schedule(next_action[0], "next action falls due"))
    if waiting is not None and status != CLOSED:
        deadlines.append(Schedule(policy.calendar.add(now, policy.waiting_refresh), "refresh hours waiting"))
    return deadlines
