"""A hand-written, in-memory fake of the `Connector` port for testing the core.

It applies plans the way a CRM would (owner history grows, tasks get ids, fields get
stored as the CRM stores them), so tests can reconcile what a plan produced.
"""
from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.model import Activity, Owner, OwnerChange, OwnerDirectory, RecordRef, Snapshot, Task
from adapter.ports import ApplyResult, Failure, LoadResult, ScannedRecord
from adapter.visibility import normalise

T0 = datetime(2026, 11, 16, 15, 0, tzinfo=timezone.utc)  # a Monday, 10:00 in New York

ANA = Owner("1", "Ana Lopez", "ana@example.com")
BEN = Owner("2", "Ben Okafor", "ben@example.com")
MARIA = Owner("3", "Maria Rossi", "maria@example.com")
GONE = Owner("9", "Dora Left", "dora@example.com", active=False)
QUEUE = Owner("00G1", "Inbound queue", None, is_queue=True)
OWNERS = OwnerDirectory([ANA, BEN, MARIA, GONE, QUEUE])


def snapshot(record_id: str = "101", *, owner: str | None = ANA.id, tasks: Iterable[Task] = (),
             fields: dict | None = None, history: Iterable[OwnerChange] = (), activities: Iterable[Activity] = (),
             object_type: str = "deal", closed: bool = False, stage: str | None = None, name: str = "Acme renewal",
             tracked: bool = True) -> Snapshot:
    return Snapshot(
        ref=RecordRef("fake", object_type, record_id), name=name, owner_id=owner, is_closed=closed,
        stage=stage, created_at=T0 - timedelta(days=30), fields=dict(fields or {}), tasks=tuple(tasks),
        owner_history=tuple(history), owner_history_tracked=tracked, activities=tuple(activities),
    )


def task(task_id: str = "t1", *, due: datetime | None = T0 + timedelta(days=5), owner: str = ANA.id,
         completed: bool = False, source: str | None = None, title: str = "Send proposal") -> Task:
    return Task(task_id, title, due, owner, completed=completed, source=source)


class FakeConnector:
    """Holds snapshots in memory; `apply` mutates them as the CRM would."""

    name = "fake"
    object_types = ("deal", "contact", "company", "ticket")
    batch_size = 100

    def __init__(self, snapshots: Iterable[Snapshot] = (), owners: OwnerDirectory = OWNERS,
                 clock: datetime = T0, fail_refs: Iterable[RecordRef] = ()):
        self.records = {s.ref: s for s in snapshots}
        self.directory = owners
        self.clock = clock
        self.fail_refs = set(fail_refs)
        self.calls: Counter = Counter()
        self._ids = itertools.count(1000)

    def owners(self) -> OwnerDirectory:
        self.calls["owners"] += 1
        return self.directory

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        self.calls["load"] += 1
        result = LoadResult()
        for ref in refs:
            if ref in self.records:
                result.snapshots.append(self.records[ref])
            else:
                result.missing.append(ref)
        return result

    def stored_due(self, due):
        return due

    def records_for(self, activity_refs):
        self.calls["records_for"] += 1
        return [ref for ref, snap in self.records.items()
                if any(t.id == a.id for a in activity_refs for t in snap.tasks)]

    def scan(self, object_type: str, since: datetime | None = None):
        self.calls["scan"] += 1
        for ref in sorted(self.records):
            if ref.object_type == object_type:
                yield ScannedRecord(ref, self.clock)

    def install(self, manifest, *, dry_run=False):
        raise NotImplementedError

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        self.calls["apply"] += 1
        result = ApplyResult()
        for plan in plans:
            if plan.ref in self.fail_refs:
                result.failures.append(Failure(plan.ref, "refused by the fake", retriable=False))
                continue
            self.records[plan.ref] = self.apply_plan(self.records[plan.ref], plan)
            result.applied.append(plan.ref)
        return result

    def apply_plan(self, snap: Snapshot, plan: Plan) -> Snapshot:
        at = self.clock
        tasks = {t.id: t for t in snap.tasks}
        fields = dict(snap.fields)
        owner, history, activities = snap.owner_id, list(snap.owner_history), list(snap.activities)
        for action in plan.writes:
            if isinstance(action, AssignOwner):
                owner = action.owner_id
                history.append(OwnerChange(owner, at, "integration baton", "INTEGRATION"))
            elif isinstance(action, CreateTask):
                new_id = f"T{next(self._ids)}"
                tasks[new_id] = Task(new_id, action.title, action.due, action.owner_id, source=action.source,
                                     body=action.body)
            elif isinstance(action, UpdateTask):
                current = tasks[action.task_id]
                tasks[action.task_id] = replace(
                    current,
                    owner_id=action.owner_id or current.owner_id,
                    due=action.due or current.due,
                    completed=current.completed if action.completed is None else action.completed,
                    completed_at=at if action.completed else current.completed_at,
                )
            elif isinstance(action, SetFields):
                fields.update({k: normalise(v) for k, v in action.values.items()})
            elif isinstance(action, LogTransfer):
                activities.append(Activity(f"N{next(self._ids)}", "note", action.at, action.body,
                                           source=action.source))
        return replace(snap, owner_id=owner, tasks=tuple(tasks.values()), fields=fields,
                       owner_history=tuple(history), activities=tuple(activities))
