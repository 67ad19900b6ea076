"""load -> reconcile -> apply -> schedule, in batches.

The only place the core meets a connector: it reads a batch of records, decides each one
with the pure `reconcile`, writes every plan's changes in a few batched calls, and returns
when each record must be looked at again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator, Sequence

from adapter.actions import Plan
from adapter.model import OwnerDirectory, RecordRef, Snapshot
from adapter.policy import Policy
from adapter.ports import Connector, Failure
from adapter.reconcile import OVERDUE, Router, reconcile
from adapter.routing import RoundRobinRouter, RotationCursor

BATCH_SIZE = 100
#: Event object types that point at records instead of being records themselves.
ACTIVITY_TYPES = ("task", "note", "email", "call")


@dataclass(frozen=True)
class RecordSummary:
    """What an audit shows of one record: who holds it, its status and since when."""

    ref: RecordRef
    name: str
    owner: str
    status: str
    since: datetime | None
    actions: tuple[str, ...]
    status_after: str = ""


@dataclass
class RunResult:
    records: list[RecordSummary] = field(default_factory=list)
    plans: list[Plan] = field(default_factory=list)
    applied: list[RecordRef] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    missing: list[RecordRef] = field(default_factory=list)
    deadlines: dict[RecordRef, datetime] = field(default_factory=dict)

    def merge(self, other: "RunResult") -> "RunResult":
        self.records += other.records
        self.plans += other.plans
        self.applied += other.applied
        self.failures += other.failures
        self.missing += other.missing
        self.deadlines.update(other.deadlines)
        return self

    @property
    def statuses(self) -> Counter:
        return Counter(plan.status for plan in self.plans)

    @property
    def writes(self) -> int:
        return sum(len(plan.writes) for plan in self.plans)


def batched(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _batch_size(connector: Connector) -> int:
    return getattr(connector, "batch_size", BATCH_SIZE)


def make_router(policy: Policy, owners: OwnerDirectory, cursor: RotationCursor | None = None) -> RoundRobinRouter:
    return RoundRobinRouter(policy.routing_pool, policy.routing_fallback, owners, cursor)


def resolve_activity_refs(connector: Connector, refs: Sequence[RecordRef]) -> list[RecordRef]:
    """Records touched by the given refs: tasks, notes and emails stand for their records."""
    records = [r for r in refs if r.object_type not in ACTIVITY_TYPES]
    activities = [r for r in refs if r.object_type in ACTIVITY_TYPES]
    if activities:
        records += connector.records_for(activities)
    return list(dict.fromkeys(records))


def reconcile_refs(connector: Connector, refs: Sequence[RecordRef], policy: Policy, *,
                   now: datetime | None = None, router: Router | None = None,
                   owners: OwnerDirectory | None = None, dry_run: bool = False,
                   batch_size: int | None = None) -> RunResult:
    """Reconcile these records; with `dry_run`, plan without writing anything."""
    now = now or datetime.now(timezone.utc)
    owners = owners or connector.owners()
    router = router or make_router(policy, owners)
    result = RunResult()
    for chunk in batched(dict.fromkeys(refs), batch_size or _batch_size(connector)):
        result.merge(_reconcile_batch(connector, chunk, policy, now, owners, router, dry_run))
    return result


def _reconcile_batch(connector, refs, policy, now, owners, router, dry_run) -> RunResult:
    loaded = connector.load(refs)
    stored_due = getattr(connector, "stored_due", None)
    plans = [reconcile(snapshot, policy, now, owners=owners, router=router, stored_due=stored_due)
             for snapshot in loaded.snapshots]
    result = RunResult(plans=plans, missing=list(loaded.missing), failures=list(loaded.failures),
                       records=[_summary(s, p, owners) for s, p in zip(loaded.snapshots, plans)])
    if not dry_run:
        to_write = [plan for plan in plans if not plan.is_noop]
        if to_write:
            applied = connector.apply(to_write)
            result.applied = applied.applied
            result.failures += applied.failures
    failed = {failure.ref for failure in result.failures}
    for plan in plans:
        if plan.next_check is not None and plan.ref not in failed:
            result.deadlines[plan.ref] = plan.next_check
    return result


def _summary(snapshot: Snapshot, plan: Plan, owners: OwnerDirectory) -> RecordSummary:
    # Age of the exception: how long overdue, otherwise how long the current holder has had it.
    if plan.found == OVERDUE:
        since = min((t.due for t in snapshot.tasks if t.due and not t.completed and not t.is_prompt), default=None)
    else:
        since = snapshot.fields.get("owner_assigned_at") or snapshot.created_at
    return RecordSummary(snapshot.ref, snapshot.name, owners.label(snapshot.owner_id), plan.found, since,
                         tuple(plan.describe()), plan.status)


def audit(connector: Connector, policy: Policy, object_types: Sequence[str], *, now: datetime | None = None,
          apply: bool = False, router: Router | None = None,
          progress: Callable[[int], None] | None = None, batch_size: int | None = None) -> RunResult:
    """Every open record of the given types: dry run by default, writes with `apply`."""
    now = now or datetime.now(timezone.utc)
    owners = connector.owners()
    router = router or make_router(policy, owners)
    result = RunResult()
    for object_type in object_types:
        if not policy.for_object(object_type).enabled:
            continue
        refs = (scanned.ref for scanned in connector.scan(object_type))
        for chunk in batched(refs, batch_size or _batch_size(connector)):
            result.merge(_reconcile_batch(connector, chunk, policy, now, owners, router, not apply))
            if progress:
                progress(len(chunk))
    return result
