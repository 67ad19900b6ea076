"""Notes, emails and calls on a record: the commitments they hold become tasks, and the
customer's unanswered messages set "waiting since". Pure."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from adapter.actions import CreateTask
from adapter.commitments import Commitment, extract
from adapter.model import Activity, OwnerDirectory, Snapshot, commitment_source, confirm_source
from adapter.policy import Policy
from adapter.visibility import to_second

MINED_KINDS = ("note", "email", "call")
QUOTE_LIMIT = 200


@dataclass
class ActivityOutcome:
    tasks: list[CreateTask] = field(default_factory=list)
    read_up_to: datetime | None = None


def stored_after(activity: Activity, read_at: datetime) -> bool:
    """Whether `activity` was stored after the "read up to" watermark `read_at`: compared to
    the second, as Salesforce keeps datetimes. The rule a connector follows too when it
    decides whose activities are worth more reads."""
    return to_second(activity.stored_at) > to_second(read_at)


def _unread(snapshot: Snapshot, policy: Policy, now: datetime) -> list[Activity]:
    read_at = snapshot.field("activities_read_at")
    if read_at is None:
        # First sight of this record: only recent history becomes tasks, not years of notes.
        cutoff = now - timedelta(**{policy.commitment_lookback.unit: policy.commitment_lookback.amount})
        fresh = [a for a in snapshot.activities if a.at >= cutoff]
    else:
        fresh = [a for a in snapshot.activities if stored_after(a, read_at)]
    return sorted((a for a in fresh if a.kind in MINED_KINDS and not a.source), key=lambda a: (a.at, a.id))


def _who_acts(commitment: Commitment, activity: Activity, owners: OwnerDirectory, record_owner: str) -> str:
    if commitment.actor == "named" and commitment.actor_name:
        named = owners.by_name(commitment.actor_name)
        if named:
            return named.id
    if commitment.actor == "writer" and activity.direction != "inbound":
        author = owners.get(activity.author_owner_id)
        if author and author.is_active_person:
            return author.id
    return record_owner


def _source_line(activity: Activity) -> str:
    where = activity.url or f"{activity.kind} {activity.id}"
    return f"From the {activity.kind} of {activity.at:%Y-%m-%d %H:%M} UTC ({where})."


def _read_up_to(snapshot: Snapshot, unread: list[Activity]) -> datetime | None:
    """The "read up to" watermark once `unread` is read, or None when there is none to set.

    On first sight it starts where the load saw everything, on the CRM's clock (never
    Baton's, which may run ahead), so a connector can skip reading activities next time."""
    baseline = snapshot.activities_known_at if snapshot.field("activities_read_at") is None else None
    stamps = [a.stored_at for a in unread] + ([baseline] if baseline else [])
    return to_second(max(stamps)) if stamps else None


def mark_read(snapshot: Snapshot, policy: Policy, now: datetime) -> ActivityOutcome:
    """The activities of a record whose commitments Baton does not mine (a closed record, or
    a type outside `commitments.objects`): read, without tasks, so the watermark still moves
    and a connector need not load them again."""
    return ActivityOutcome(read_up_to=_read_up_to(snapshot, _unread(snapshot, policy, now)))


def read_activities(snapshot: Snapshot, policy: Policy, now: datetime, *, owners: OwnerDirectory,
                    owner_id: str, stored_due: Callable[[datetime], datetime] = lambda due: due) -> ActivityOutcome:
    """Tasks for the commitments in notes and emails Baton has not read yet.

    Each task carries a marker naming its source activity and position, so a replayed or
    retried run finds it and creates nothing twice.
    """
    unread = _unread(snapshot, policy, now)
    outcome = ActivityOutcome(read_up_to=_read_up_to(snapshot, unread))
    if not unread or not policy.commitments_enabled:
        return outcome
    existing = {t.source for t in snapshot.tasks if t.source}
    people = [o.name for o in owners.people()]
    calendar = policy.calendar
    for activity in unread:
        found = extract(
            activity.body, activity.at, calendar.timezone, direction=activity.direction,
            known_people=people, end_of_day=calendar.closes, workdays=calendar.workdays,
        )
        unsure = []
        for index, commitment in enumerate(found):
            source = commitment_source(activity.id, index)
            if commitment.confidence < policy.confidence_threshold:
                unsure.append(commitment)
                continue
            if source in existing:
                continue
            outcome.tasks.append(CreateTask(
                title=commitment.action,
                due=stored_due(commitment.due or calendar.add(activity.at, policy.commitment_default_due)),
                owner_id=_who_acts(commitment, activity, owners, owner_id),
                source=source,
                body=f"“{commitment.quote[:QUOTE_LIMIT]}”\n{_source_line(activity)}\nCreated by Baton.",
                also_associate=snapshot.related,
            ))
        if unsure and confirm_source(activity.id) not in existing:
            quotes = "\n".join(f"“{c.quote[:QUOTE_LIMIT]}”" for c in unsure)
            outcome.tasks.append(CreateTask(
                title=f"Confirm next step: {unsure[0].action}"[:80],
                due=stored_due(calendar.add(now, policy.prompt_due)),
                owner_id=owner_id,
                source=confirm_source(activity.id),
                body=(f"Baton read a possible commitment but is not sure:\n{quotes}\n{_source_line(activity)}\n"
                      "If it is a real next step, add it as a task with a due date; otherwise close this task."),
                also_associate=snapshot.related,
            ))
    return outcome


def waiting_since(snapshot: Snapshot, stored: datetime | None) -> datetime | None:
    """The customer's oldest message nobody has answered yet.

    Only recent activities are loaded, so the stored value carries what came before them:
    a reply (outbound email, call, completed task) after it clears it.
    """
    replies = [a.at for a in snapshot.activities if a.direction == "outbound" or a.kind == "call"]
    replies += [t.completed_at for t in snapshot.tasks if t.completed and t.completed_at and not t.is_batons]
    last_reply = max(replies, default=None)
    stored = to_second(stored)
    if stored is not None and last_reply is not None and to_second(last_reply) >= stored:
        stored = None
    unanswered = [a.at for a in snapshot.activities
                  if a.direction == "inbound" and a.kind != "call" and (last_reply is None or a.at > last_reply)]
    first = to_second(min(unanswered, default=None)) if unanswered else None
    if stored is not None and first is not None:
        return min(stored, first)
    return stored or first
