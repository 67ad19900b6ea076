"""`SalesforceConnector`: Baton's `Connector` for one Salesforce org (simple-salesforce).

Reads are a handful of SOQL queries per object type and batch of ≤ 200 records (records with
their tasks and note links in sub-queries, owner history, emails, notes); writes go through
sObject Collections, 200 records per call, with `Sforce-Auto-Assign: FALSE`. Every call goes
through `SalesforceApi.call` (auth.py): session refresh, API-usage reserve, error mapping.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.errors import ConfigurationError, FatalCrmError, RetriableCrmError
from adapter.manifest import load_manifest
from adapter.model import Activity, Owner, OwnerChange, OwnerDirectory, RecordRef, Snapshot, Task, read_marker
from adapter.ports import ApplyResult, Failure, InstallReport, LoadResult, ScannedRecord
from connectors.salesforce import metadata
from connectors.salesforce.auth import RETRY_LATER_CODES, OutcomeUnknown, SalesforceApi, SalesforceSettings
from connectors.salesforce.fields import (
    CRM, LONG_TEXT_LIMIT, SOURCE_FIELD, FieldMap, format_date, is_sf_id, parse_datetime,
    soql_datetime, soql_in, to_18, truncate,
)

log = logging.getLogger(__name__)

BATCH = 200
ACTIVITY_LOOKBACK = timedelta(days=30)
OWNERS_TTL = 600.0
ORG_TTL = 3600.0
PRIORITIES = {"HIGH": "High", "MEDIUM": "Normal", "NORMAL": "Normal", "LOW": "Low"}
#: Record-level columns per object, besides Id, OwnerId, CreatedDate and Baton's fields.
COLUMNS = {
    "Lead": ("Name", "Company", "Status", "IsConverted"),
    "Opportunity": ("Name", "StageName", "IsClosed", "AccountId"),
    "Account": ("Name",),
    "Case": ("CaseNumber", "Subject", "Status", "IsClosed", "AccountId"),
}
HISTORY = {  # object -> (history object, parent id field)
    "Lead": ("LeadHistory", "LeadId"),
    "Opportunity": ("OpportunityFieldHistory", "OpportunityId"),
    "Account": ("AccountHistory", "AccountId"),
    "Case": ("CaseHistory", "CaseId"),
}
EMAIL_LINK = {"Opportunity": "RelatedToId", "Account": "RelatedToId", "Case": "ParentId"}
USERS_WHO_CANNOT_OWN = {"AutomatedProcess", "CsnOnly", "Guest"}


def _chunks(items: Sequence, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


class SalesforceConnector:
    name = CRM
    object_types = ("lead", "opportunity", "account", "case")
    batch_size = 200

    def __init__(self, settings: SalesforceSettings, *, api: SalesforceApi | None = None,
                 manifest: Mapping[str, Any] | None = None, clock: Callable[[], datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff: Sequence[float] = (1.0, 4.0)):
        self.settings = settings
        self.api = api or SalesforceApi(settings, sleep=sleep, backoff=backoff)
        self.manifest = manifest if manifest is not None else load_manifest()
        self.fields = FieldMap(self.manifest)
        self._now = clock or (lambda: datetime.now(timezone.utc))
        self._sleep, self._backoff = sleep, tuple(backoff)
        self._owners: tuple[float, OwnerDirectory] | None = None
        self._tracked: tuple[float, dict[str, bool]] | None = None
        self._tz: ZoneInfo | None = None
        self._email_relation_readable = True

    @classmethod
    def from_settings(cls, settings: Any, *, redis=None) -> "SalesforceConnector":
        # `redis` (shared pacing) is not used yet: Salesforce limits are per 24 h, not per burst.
        return cls(SalesforceSettings.from_mapping(settings))

    def __repr__(self) -> str:
        return f"SalesforceConnector({self.api!r})"

    @property
    def calls(self):
        return self.api.calls

    # --- owners ----------------------------------------------------------------------------

    def owners(self, *, refresh: bool = False) -> OwnerDirectory:
        """Users (active and deactivated) and queues, cached for ten minutes."""
        if self._owners and not refresh and time.monotonic() - self._owners[0] < OWNERS_TTL:
            return self._owners[1]
        people = [
            Owner(u["Id"], u.get("Name") or u["Id"], u.get("Email"),
                  active=bool(u.get("IsActive")) and u.get("UserType") not in USERS_WHO_CANNOT_OWN)
            for u in self.api.query("SELECT Id, Name, Email, IsActive, UserType FROM User")
        ]
        queues = [
            Owner(g["Id"], g.get("Name") or g["Id"], g.get("Email"), active=True, is_queue=True)
            for g in self.api.query("SELECT Id, Name, Email FROM Group WHERE Type = 'Queue'")
        ]
        directory = OwnerDirectory(people + queues)
        self._owners = (time.monotonic(), directory)
        return directory

    # --- load ------------------------------------------------------------------------------

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        result = LoadResult()
        by_type: dict[str, list[RecordRef]] = defaultdict(list)
        for ref in dict.fromkeys(refs):
            if ref.object_type not in self.object_types or not is_sf_id(ref.id):
                result.failures.append(Failure(ref, f"not a Salesforce {ref.object_type} id: {ref.id!r}"))
            else:
                by_type[ref.object_type].append(ref)
        for object_type, typed in by_type.items():
            for chunk in _chunks(typed):
                self._load_chunk(object_type, chunk, result)
        return result

    def _load_chunk(self, object_type: str, refs: list[RecordRef], result: LoadResult) -> None:
        sobject = self.fields.sobject(object_type)
        floor = self._now() - ACTIVITY_LOOKBACK
        wanted = {to_18(ref.id): ref for ref in refs}
        records = {to_18(r["Id"]): r for r in self.api.query(self._record_soql(sobject, list(wanted), floor))}
        result.missing.extend(ref for rid, ref in wanted.items() if rid not in records)
        if not records:
            return
        ids = list(records)
        decoded = {rid: self.fields.decode(rec) for rid, rec in records.items()}
        read_from = {rid: max(decoded[rid].get("activities_read_at") or floor, floor) for rid in ids}
        since = min(read_from.values())
        history, tracked = self._owner_history(sobject, ids)
        activities = self._emails(sobject, ids, since)
        for rid, items in self._notes(records, since).items():
            activities[rid].extend(items)
        for rid, record in records.items():
            ref = RecordRef(CRM, object_type, rid)
            tasks, calls = self._tasks(record, ref)
            recent = [a for a in activities[rid] + calls if a.at > read_from[rid]]
            result.snapshots.append(Snapshot(
                ref=ref,
                name=self._record_name(sobject, record),
                owner_id=record.get("OwnerId"),
                is_closed=self._is_closed(sobject, record),
                stage=record.get("StageName") or record.get("Status"),
                created_at=parse_datetime(record.get("CreatedDate")),
                fields=decoded[rid],
                tasks=tuple(tasks),
                owner_history=tuple(history.get(rid, ())),
                owner_history_tracked=tracked,
                activities=tuple(sorted(recent, key=lambda a: (a.at, a.id))),
                related=tuple(RecordRef(CRM, "account", to_18(record["AccountId"]))
                              for _ in (1,) if record.get("AccountId")),
                url=self._url(sobject, rid),
            ))

    def _record_soql(self, sobject: str, ids: list[str], floor: datetime) -> str:
        columns = ["Id", "OwnerId", "CreatedDate", *COLUMNS[sobject], *self.fields.api_names]
        tasks = (
            f"SELECT Id, Subject, ActivityDate, OwnerId, Status, IsClosed, Description, TaskSubtype, "
            f"CallType, CreatedDate, CompletedDateTime, {SOURCE_FIELD} FROM Tasks WHERE IsClosed = false "
            f"OR ({SOURCE_FIELD} != null AND LastModifiedDate > {soql_datetime(floor)}) "
            f"OR (TaskSubtype = 'Call' AND CreatedDate > {soql_datetime(floor)})"
        )
        return (f"SELECT {', '.join(columns)}, ({tasks}), (SELECT ContentDocumentId FROM ContentDocumentLinks) "
                f"FROM {sobject} WHERE Id IN {soql_in(ids)}")

    def _children(self, record: Mapping[str, Any], relationship: str) -> list[dict]:
        page = record.get(relationship)
        rows: list[dict] = []
        while page:
            rows.extend(page.get("records") or ())
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                break
            page = self.api.more(page["nextRecordsUrl"])
        return rows

    def _tasks(self, record: Mapping[str, Any], ref: RecordRef) -> tuple[list[Task], list[Activity]]:
        tasks, calls = [], []
        tz = self.timezone()
        for row in self._children(record, "Tasks"):
            source, foreign = read_marker(row.get(SOURCE_FIELD), ref)
            due = None
            if row.get("ActivityDate"):
                due = _end_of_day(datetime.fromisoformat(row["ActivityDate"]).date(), tz)
            completed = bool(row.get("IsClosed"))
            if not completed or source:
                tasks.append(Task(row["Id"], row.get("Subject") or "", due, row.get("OwnerId"), completed,
                                  source, row.get("Description") or "",
                                  completed_at=parse_datetime(row.get("CompletedDateTime")), foreign=foreign))
            if row.get("TaskSubtype") == "Call" and row.get("Description") and not source:
                calls.append(Activity(
                    row["Id"], "call", parse_datetime(row["CreatedDate"]), row["Description"],
                    direction="inbound" if row.get("CallType") == "Inbound" else "outbound",
                    author_owner_id=row.get("OwnerId"), url=self._url("Task", row["Id"]),
                ))
        return tasks, calls

    def _owner_history(self, sobject: str, ids: list[str]) -> tuple[dict[str, list[OwnerChange]], bool]:
        """Owner changes per record from field history; (…, False) when the org does not track them.

        A change writes two rows (ids and names); only the id rows are kept.
        """
        if not self._history_tracked(sobject):
            return {}, False
        history_object, parent = HISTORY[sobject]
        soql = (f"SELECT {parent}, Field, DataType, OldValue, NewValue, CreatedDate, CreatedById, CreatedBy.Name "
                f"FROM {history_object} WHERE {parent} IN {soql_in(ids)} AND Field = 'Owner' "
                f"ORDER BY CreatedDate ASC")
        try:
            rows = self.api.query(soql)
        except FatalCrmError as exc:
            if "INVALID_TYPE" in str(exc) or "INVALID_FIELD" in str(exc):
                log.warning("owner history of %s is not readable (%s); transfers are logged as observed", sobject, exc)
                return {}, False
            raise
        changes: dict[str, list[OwnerChange]] = defaultdict(list)
        for row in rows:
            new = row.get("NewValue")
            if row.get("DataType") not in (None, "EntityId") or not is_sf_id(new):
                continue  # the names row of the pair
            by = (row.get("CreatedBy") or {}).get("Name") or row.get("CreatedById")
            changes[to_18(row[parent])].append(
                OwnerChange(to_18(new), parse_datetime(row["CreatedDate"]), by, source="Salesforce field history"))
        return changes, True

    def _history_tracked(self, sobject: str) -> bool:
        """Whether OwnerId history is tracked, from FieldDefinition (one query, cached an hour)."""
        if self._tracked is None or time.monotonic() - self._tracked[0] > ORG_TTL:
            names = soql_in(HISTORY)
            soql = ("SELECT EntityDefinition.QualifiedApiName, IsFieldHistoryTracked FROM FieldDefinition "
                    f"WHERE EntityDefinition.QualifiedApiName IN {names} AND QualifiedApiName = 'OwnerId'")
            try:
                rows = self.api.query(soql)
                tracked = {r["EntityDefinition"]["QualifiedApiName"]: bool(r.get("IsFieldHistoryTracked"))
                           for r in rows}
            except FatalCrmError as exc:
                log.info("FieldDefinition not readable (%s); assuming owner history is tracked", exc)
                tracked = {}
            self._tracked = (time.monotonic(), tracked)
        return self._tracked[1].get(sobject, True)

    def _emails(self, sobject: str, ids: list[str], since: datetime) -> dict[str, list[Activity]]:
        out: dict[str, list[Activity]] = defaultdict(list)
        columns = "Id, Incoming, TextBody, HtmlBody, MessageDate, CreatedDate, CreatedById, FromAddress, Subject"
        if sobject in EMAIL_LINK:
            link = EMAIL_LINK[sobject]
            soql = (f"SELECT {columns}, {link} FROM EmailMessage WHERE {link} IN {soql_in(ids)} "
                    f"AND CreatedDate > {soql_datetime(since)}")
            rows = [(to_18(r[link]), r) for r in self.api.query(soql)]
        else:  # Leads are not "What"s: their emails hang off EmailMessageRelation.
            links = self._email_relations(
                f"SELECT RelationId, EmailMessageId FROM EmailMessageRelation WHERE RelationId IN {soql_in(ids)} "
                f"AND EmailMessage.CreatedDate > {soql_datetime(since)}")
            owner_of = {to_18(link["EmailMessageId"]): to_18(link["RelationId"]) for link in links}
            rows = []
            for chunk in _chunks(list(owner_of), 500):
                for r in self.api.query(f"SELECT {columns} FROM EmailMessage WHERE Id IN {soql_in(chunk)}"):
                    rows.append((owner_of[to_18(r["Id"])], r))
        for record_id, r in rows:
            html_only = not r.get("TextBody") and bool(r.get("HtmlBody"))
            incoming = bool(r.get("Incoming"))
            out[record_id].append(Activity(
                r["Id"], "email", parse_datetime(r.get("MessageDate") or r["CreatedDate"]),
                (r.get("HtmlBody") if html_only else r.get("TextBody")) or r.get("Subject") or "",
                direction="inbound" if incoming else "outbound",
                author_owner_id=None if incoming else r.get("CreatedById"),
                is_html=html_only, url=self._url("EmailMessage", r["Id"]),
                logged_at=parse_datetime(r["CreatedDate"]),  # an email can sync later than it was sent
            ))
        return out

    def _email_relations(self, soql: str) -> list[dict]:
        """EmailMessageRelation rows; none (asked once) in an org without Enhanced Email."""
        if not self._email_relation_readable:
            return []
        try:
            return self.api.query(soql)
        except FatalCrmError as exc:
            if "INVALID_TYPE" not in str(exc):
                raise
            # Said once per connector: asking again on every load only spends calls.
            log.warning("EmailMessageRelation is not readable (%s); lead emails are not read", exc)
            self._email_relation_readable = False
            return []

    def _notes(self, records: Mapping[str, Mapping[str, Any]], since: datetime) -> dict[str, list[Activity]]:
        """ContentNotes linked to the records (links come from the record query's sub-query)."""
        linked: dict[str, list[str]] = defaultdict(list)
        for rid, record in records.items():
            for link in self._children(record, "ContentDocumentLinks"):
                linked[to_18(link["ContentDocumentId"])].append(rid)
        out: dict[str, list[Activity]] = defaultdict(list)
        for chunk in _chunks(list(linked), 500):
            soql = ("SELECT Id, Title, TextPreview, CreatedDate, LastModifiedDate, OwnerId FROM ContentNote "
                    f"WHERE Id IN {soql_in(chunk)} AND LastModifiedDate > {soql_datetime(since)}")
            for note in self.api.query(soql):
                body = "\n".join(part for part in (note.get("Title"), note.get("TextPreview")) if part)
                for rid in linked[to_18(note["Id"])]:
                    out[rid].append(Activity(
                        note["Id"], "note", parse_datetime(note.get("LastModifiedDate") or note["CreatedDate"]),
                        body, direction="note", author_owner_id=note.get("OwnerId"),
                        url=self._url("ContentNote", note["Id"]),
                    ))
        return out

    def _record_name(self, sobject: str, record: Mapping[str, Any]) -> str:
        if sobject == "Case":
            return " ".join(p for p in (record.get("CaseNumber"), record.get("Subject")) if p) or record["Id"]
        if sobject == "Lead" and record.get("Company"):
            return f"{record.get('Name') or record['Id']} ({record['Company']})"
        return record.get("Name") or record["Id"]

    def _is_closed(self, sobject: str, record: Mapping[str, Any]) -> bool:
        if sobject == "Lead":
            closed = {s.lower() for s in self.settings.lead_closed_statuses}
            return bool(record.get("IsConverted")) or (record.get("Status") or "").lower() in closed
        return bool(record.get("IsClosed"))

    def _url(self, sobject: str, record_id: str) -> str:
        return f"{self.api.instance_url}/lightning/r/{sobject}/{record_id}/view"

    def timezone(self) -> ZoneInfo:
        """The timezone of task due dates: BATON_SALESFORCE_TIMEZONE, else the org's (one query)."""
        if self._tz is None:
            name = self.settings.timezone
            if not name:
                rows = self.api.query("SELECT TimeZoneSidKey FROM Organization LIMIT 1")
                name = (rows[0].get("TimeZoneSidKey") if rows else None) or "UTC"
            try:
                self._tz = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(f"BATON_SALESFORCE_TIMEZONE: unknown timezone {name!r}") from None
        return self._tz

    # --- records_for -----------------------------------------------------------------------

    def records_for(self, activity_refs: Sequence[RecordRef]) -> list[RecordRef]:
        """The records that tasks/calls, emails and notes belong to (one query per kind and 200)."""
        by_kind: dict[str, list[str]] = defaultdict(list)
        for ref in activity_refs:
            if is_sf_id(ref.id):
                by_kind[{"call": "task"}.get(ref.object_type, ref.object_type)].append(to_18(ref.id))
        queries = {
            "task": ("SELECT WhatId, WhoId FROM Task WHERE Id IN {ids}", ("WhatId", "WhoId")),
            "email": ("SELECT Id, RelatedToId, ParentId FROM EmailMessage WHERE Id IN {ids}",
                      ("RelatedToId", "ParentId")),
            "note": ("SELECT LinkedEntityId FROM ContentDocumentLink WHERE ContentDocumentId IN {ids}",
                     ("LinkedEntityId",)),
        }
        found: list[RecordRef] = []
        unrelated_emails: list[str] = []  # to or from a lead: no What, only EmailMessageRelation rows
        for kind, ids in by_kind.items():
            if kind not in queries:
                continue
            template, columns = queries[kind]
            for chunk in _chunks(ids):
                for row in self.api.query(template.format(ids=soql_in(chunk))):
                    if kind == "email" and not (row.get("RelatedToId") or row.get("ParentId")):
                        unrelated_emails.append(to_18(row["Id"]))
                    for column in columns:
                        target = row.get(column)
                        object_type = self.fields.object_type_of_id(target or "")
                        if object_type:
                            found.append(RecordRef(CRM, object_type, to_18(target)))
        for chunk in _chunks(unrelated_emails):
            for row in self._email_relations(f"SELECT RelationId FROM EmailMessageRelation "
                                             f"WHERE EmailMessageId IN {soql_in(chunk)}"):
                object_type = self.fields.object_type_of_id(row.get("RelationId") or "")
                if object_type:
                    found.append(RecordRef(CRM, object_type, to_18(row["RelationId"])))
        return list(dict.fromkeys(found))

    # --- scan ------------------------------------------------------------------------------

    def scan(self, object_type: str, since: datetime | None = None) -> Iterator[ScannedRecord]:
        sobject = self.fields.sobject(object_type)
        conditions = {
            "Lead": f"IsConverted = false AND Status NOT IN {soql_in(self.settings.lead_closed_statuses)}"
            if self.settings.lead_closed_statuses else "IsConverted = false",
            "Opportunity": "IsClosed = false",
            "Case": "IsClosed = false",
        }
        where = [c for c in (conditions.get(sobject),) if c]
        if since is not None:
            where.append(f"SystemModstamp >= {soql_datetime(since)}")
        soql = f"SELECT Id, SystemModstamp FROM {sobject}"
        soql += (" WHERE " + " AND ".join(where)) if where else ""
        soql += " ORDER BY SystemModstamp ASC"
        for row in self.api.query_iter(soql):
            yield ScannedRecord(RecordRef(CRM, object_type, to_18(row["Id"])), parse_datetime(row.get("SystemModstamp")))

    # --- install ---------------------------------------------------------------------------

    def install(self, manifest: Mapping[str, Any] | None = None, *, dry_run: bool = False,
                enforce: bool = False) -> InstallReport:
        return metadata.install(self.api, manifest if manifest is not None else self.manifest,
                                dry_run=dry_run, enforce=enforce)

    # --- apply -----------------------------------------------------------------------------

    def stored_due(self, due: datetime) -> datetime:
        """A Task keeps only its ActivityDate: it reads back as the end of that day."""
        tz = self.timezone()
        return _end_of_day(due.astimezone(tz).date(), tz)

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        """Updates (records and tasks) in PATCH collections, then creates in POST collections."""
        self.api.check_reserve()
        updates, creates = self._operations(plans)
        outcome = _Outcome()
        try:
            for chunk in _chunks(sorted(updates, key=lambda op: op.sobject)):
                self._send("PATCH", chunk, outcome)
            for chunk in _chunks(sorted(creates, key=lambda op: op.sobject)):
                self._send("POST", chunk, outcome)
        except RetriableCrmError as exc:
            if not outcome.succeeded:
                raise  # nothing written yet: the whole job retries after exc.retry_after
            pending = [op for op in updates + creates if id(op) not in outcome.settled]
            for op in pending:
                outcome.fail(op, f"not written: {exc}", retriable=True)
        return outcome.result(plans)

    def _operations(self, plans: Sequence[Plan]) -> tuple[list["_Op"], list["_Op"]]:
        tz = self.timezone() if any(p.of(CreateTask) or p.of(LogTransfer) or
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
        return {"attributes": {"type": "Task"}, link: ref.id, **values, SOURCE_FIELD: f"{source}|{ref.key}"}

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
        for chunk in _chunks(list(markers)):
            rows = self.api.query(f"SELECT Id, {SOURCE_FIELD} FROM Task WHERE {SOURCE_FIELD} IN {soql_in(chunk)} "
                                  f"AND CreatedDate >= {window}")
            for row in rows:
                op = markers.pop(row[SOURCE_FIELD], None)
                if op is not None:
                    outcome.ok(op)
        log.warning("create outcome unknown for %d tasks; %d already existed, re-sending %d",
                    len(ops), len(ops) - len(markers), len(markers))
        return list(markers.values())


class _Op:
    __slots__ = ("ref", "sobject", "body")

    def __init__(self, ref: RecordRef, sobject: str, body: dict[str, Any]):
        self.ref, self.sobject, self.body = ref, sobject, body


class _Outcome:
    """Per-record bookkeeping across collection calls."""

    def __init__(self):
        self.succeeded = 0
        self.failures: dict[RecordRef, list[tuple[str, bool]]] = defaultdict(list)
        self.settled: set[int] = set()  # id() of every op with a known outcome

    def ok(self, op: _Op) -> None:
        self.succeeded += 1
        self.settled.add(id(op))

    def fail(self, op: _Op, reason: str, *, retriable: bool) -> None:
        self.settled.add(id(op))
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


def _end_of_day(day, tz) -> datetime:
    """A Task's ActivityDate as a due time: the end of that day in the org's timezone."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=tz).astimezone(timezone.utc)
