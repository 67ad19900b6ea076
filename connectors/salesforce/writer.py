"""`apply`: the plans' writes as sObject Collections calls, 200 records per call.

Updates (a record's fields and owner; its tasks' owner, due date or status) go first in PATCH
calls, then creates (new tasks and transfer logs, both Task rows) in POST calls, every call with
`Sforce-Auto-Assign: FALSE` so an assignment rule cannot take a record Baton just gave to
someone. Rows Salesforce answers as busy (UNABLE_TO_LOCK_ROW, REQUEST_LIMIT_EXCEEDED, ...)
are sent again after each pause of the backoff, and then reported retriable. A call-level
retriable error (the API-usage reserve, limits, an org that is down) stops the apply: raised
while nothing is written yet, so the whole job retries; else what was not written is retriable.

A create carries Baton's marker (`Baton_Source__c` = "<source>|<record key>"); when its
outcome is unknown (5xx, timeout, reset) the markers are looked up first (one query per 200)
and only the missing tasks are sent again, so a lost answer never makes a second task.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.errors import FatalCrmError, RetriableCrmError
from adapter.model import RecordRef, stored_marker
from adapter.ports import ApplyResult, Failure
from connectors.salesforce.auth import RETRY_LATER_CODES, OutcomeUnknown, SalesforceApi
from connectors.salesforce.fields import (
    LONG_TEXT_LIMIT, SOURCE_FIELD, FieldMap, chunks, format_date, soql_datetime, soql_in, truncate,
)

log = logging.getLogger(__name__)

PRIORITIES = {"HIGH": "High", "MEDIUM": "Normal", "NORMAL": "Normal", "LOW": "Low"}


class Writer:
    """Writes for one org. The API client and timezone are the connector's own."""

    def __init__(self, api: SalesforceApi, fields: FieldMap, *, org_timezone: Callable[[], ZoneInfo],
                 now: Callable[[], datetime], sleep: Callable[[float], None] = time.sleep,
                 backoff: Sequence[float] = (1.0, 4.0)):
        self.api, self.fields = api, fields
        self._timezone, self._now = org_timezone, now
        self._sleep, self._backoff = sleep, tuple(backoff)

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        """Updates (records and tasks) in PATCH collections, then creates in POST collections."""
        self.api.check_reserve()
        updates, creates = self._operations(plans)
        outcome = _Outcome()
        try:
            for chunk in chunks(sorted(updates, key=lambda op: op.sobject)):
                self._send("PATCH", chunk, outcome)
            for chunk in chunks(sorted(creates, key=lambda op: op.sobject)):
                self._send("POST", chunk, outcome)
        except RetriableCrmError as exc:
            if not outcome.succeeded:
                raise  # nothing written yet: the whole job retries after exc.retry_after
            pending = [op for op in updates + creates if op not in outcome.settled]
            for op in pending:
                outcome.fail(op, f"not written: {exc}", retriable=True)
        return outcome.result(plans)

    def _operations(self, plans: Sequence[Plan]) -> tuple[list["_Op"], list["_Op"]]:
        tz = self._timezone() if any(p.of(CreateTask) or p.of(LogTransfer) or
                                     any(a.due for a in p.of(UpdateTask)) for p in plans) else timezone.utc
        updates: list[_Op] = []
        creates: list[_Op] = []
        for plan in plans:
            ref, sobject = plan.ref, self.fields.sobject(plan.ref.object_type)
            record: dict[str, Any] = {}
            task_updates: dict[str, dict[str, Any]] = defaultdict(dict)
            for action in plan.writes:
                if isinstance(action, AssignOwner):
                    record["OwnerId"] = action.owner_id
                elif isinstance(action, SetFields):
                    record.update(self.fields.encode(action.values))
                elif isinstance(action, CreateTask):
                    creates.append(_Op(ref, "Task", self._task_body(ref, sobject, {
                        "Subject": truncate(action.title), "ActivityDate": format_date(action.due.astimezone(tz)),
                        "Status": "Not Started", "Priority": PRIORITIES.get(action.priority.upper(), "Normal"),
                        "OwnerId": action.owner_id, "Description": truncate(action.body, LONG_TEXT_LIMIT),
                    }, action.source)))
                elif isinstance(action, LogTransfer):
                    at = action.at if action.at.tzinfo else action.at.replace(tzinfo=timezone.utc)
                    creates.append(_Op(ref, "Task", self._task_body(ref, sobject, {
                        "Subject": truncate(action.title), "ActivityDate": format_date(at.astimezone(tz)),
                        "Status": "Completed", "Priority": "Normal", "TaskSubtype": "Task",
                        "Description": truncate(action.body, LONG_TEXT_LIMIT),
                    }, action.source)))
                elif isinstance(action, UpdateTask):
                    changes = task_updates[action.task_id]
                    if action.owner_id:
                        changes["OwnerId"] = action.owner_id
                    if action.due:
                        changes["ActivityDate"] = format_date(action.due.astimezone(tz))
                    if action.completed is not None:
                        changes["Status"] = "Completed" if action.completed else "Not Started"
            if record:
                updates.append(_Op(ref, sobject, {"attributes": {"type": sobject}, "Id": ref.id, **record}))
            for task_id, changes in task_updates.items():
                if changes:
                    updates.append(_Op(ref, "Task", {"attributes": {"type": "Task"}, "Id": task_id, **changes}))
        return updates, creates

    def _task_body(self, ref: RecordRef, sobject: str, values: dict[str, Any], source: str) -> dict[str, Any]:
        link = "WhoId" if sobject == "Lead" else "WhatId"
        return {"attributes": {"type": "Task"}, link: ref.id, **values, SOURCE_FIELD: stored_marker(source, ref)}

    def _send(self, method: str, ops: list["_Op"], outcome: "_Outcome") -> None:
        """One collection call, then per-record retries of busy rows (UNABLE_TO_LOCK_ROW)."""
        for attempt in range(len(self._backoff) + 1):
            started = self._now()
            try:
                results = self.api.collection(method, [op.body for op in ops])
            except OutcomeUnknown:
                # An update is safe to send again; a create is looked up by its marker first.
                if method == "POST":
                    ops = self._unknown_creates(ops, started, outcome)
                    if not ops:
                        return
                results = self.api.collection(method, [op.body for op in ops])
            except FatalCrmError as exc:
                for op in ops:
                    outcome.fail(op, str(exc), retriable=False)
                return
            busy = []
            for op, res in zip(ops, results):
                if res.get("success"):
                    outcome.ok(op)
                    continue
                errors = res.get("errors") or [{"statusCode": "UNKNOWN_EXCEPTION", "message": "no result"}]
                codes = {e.get("statusCode") for e in errors}
                reason = f"{op.sobject} {op.body.get('Id') or '(new)'}: " + "; ".join(
                    f"{e.get('statusCode')}: {e.get('message')}"
                    + (f" ({', '.join(e['fields'])})" if e.get("fields") else "") for e in errors)
                if codes & RETRY_LATER_CODES:
                    busy.append((op, reason))
                else:
                    outcome.fail(op, reason, retriable=False)
            if not busy:
                return
            if attempt == len(self._backoff):
                for op, reason in busy:
                    outcome.fail(op, reason, retriable=True)
                return
            self._sleep(self._backoff[attempt])
            ops = [op for op, _ in busy]

    def _unknown_creates(self, ops: list["_Op"], started: datetime, outcome: "_Outcome") -> list["_Op"]:
        """A create may have gone through: keep the ones Salesforce already has, re-send the rest."""
        markers = {op.body[SOURCE_FIELD]: op for op in ops}
        window = soql_datetime(started - timedelta(minutes=10))
        for chunk in chunks(list(markers)):
            rows = self.api.query(f"SELECT Id, {SOURCE_FIELD} FROM Task WHERE {SOURCE_FIELD} IN {soql_in(chunk)} "
                                  f"AND CreatedDate >= {window}")
            for row in rows:
                op = markers.pop(row[SOURCE_FIELD], None)
                if op is not None:
                    outcome.ok(op)
        log.warning("create outcome unknown for %d tasks; %d already existed, re-sending %d",
                    len(ops), len(ops) - len(markers), len(markers))
        return list(markers.values())


@dataclass(eq=False, slots=True)  # compared and hashed by identity: two equal bodies are two writes
class _Op:
    ref: RecordRef
    sobject: str
    body: dict[str, Any]


class _Outcome:
    """Per-record bookkeeping across collection calls."""

    def __init__(self):
        self.succeeded = 0
        self.failures: dict[RecordRef, list[tuple[str, bool]]] = defaultdict(list)
        self.settled: set[_Op] = set()  # every op with a known outcome

    def ok(self, op: _Op) -> None:
        self.succeeded += 1
        self.settled.add(op)

    def fail(self, op: _Op, reason: str, *, retriable: bool) -> None:
        self.settled.add(op)
        self.failures[op.ref].append((reason, retriable))

    def result(self, plans: Iterable[Plan]) -> ApplyResult:
        out = ApplyResult()
        for plan in plans:
            problems = self.failures.get(plan.ref)
            if not problems:
                out.applied.append(plan.ref)
            else:
                out.failures.append(Failure(plan.ref, " | ".join(r for r, _ in problems),
                                            retriable=all(retry for _, retry in problems)))
        return out
