"""`load` and `records_for`: Salesforce records -> Snapshots, a handful of SOQL queries per 200 records.

Per object type and batch of ≤ 200 records: one query for the records with, in sub-queries,
their tasks (open ones, and Baton's own and calls from the last 30 days) and their note links
(each further page of a sub-query is one `query_more` call); one for their owner history,
skipped where the org does not track it (FieldDefinition says so: one query, cached an hour);
one for their emails (for leads, one for their EmailMessageRelation rows, then one per 500
emails); one per 500 linked ContentNotes. Due dates need the org's timezone: one Organization
query per connector, unless BATON_SALESFORCE_TIMEZONE names it. `records_for` is one query
per kind of activity and 200 ids.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, Sequence
from zoneinfo import ZoneInfo

from adapter.errors import FatalCrmError
from adapter.model import Activity, OwnerChange, RecordRef, Snapshot, Task, read_marker
from adapter.ports import Failure, LoadResult
from connectors.salesforce.auth import SalesforceApi, SalesforceSettings
from connectors.salesforce.fields import (
    CRM, SOURCE_FIELD, FieldMap, chunks, end_of_day, is_sf_id, parse_datetime, soql_datetime, soql_in, to_18,
)

log = logging.getLogger(__name__)

ACTIVITY_LOOKBACK = timedelta(days=30)
ORG_TTL = 3600.0
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


class Reader:
    """Reads for one org. The API client, settings and timezone are the connector's own."""

    def __init__(self, api: SalesforceApi, fields: FieldMap, settings: SalesforceSettings, *,
                 object_types: Sequence[str], org_timezone: Callable[[], ZoneInfo], now: Callable[[], datetime]):
        self.api, self.fields, self.settings = api, fields, settings
        self.object_types = tuple(object_types)
        self._timezone, self._now = org_timezone, now
        self._tracked: tuple[float, dict[str, bool]] | None = None
        self._email_relation_readable = True

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        result = LoadResult()
        by_type: dict[str, list[RecordRef]] = defaultdict(list)
        for ref in dict.fromkeys(refs):
            if ref.object_type not in self.object_types or not is_sf_id(ref.id):
                result.failures.append(Failure(ref, f"not a Salesforce {ref.object_type} id: {ref.id!r}"))
            else:
                by_type[ref.object_type].append(ref)
        for object_type, typed in by_type.items():
            for chunk in chunks(typed):
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
                related=(RecordRef(CRM, "account", to_18(record["AccountId"])),) if record.get("AccountId") else (),
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

    def _tasks(self, record: Mapping[str, Any], ref: RecordRef) -> tuple[list[Task], list[Activity]]:
        tasks, calls = [], []
        tz = self._timezone()
        for row in self.api.records(record.get("Tasks")):
            source, foreign = read_marker(row.get(SOURCE_FIELD), ref)
            due = None
            if row.get("ActivityDate"):
                due = end_of_day(date.fromisoformat(row["ActivityDate"]), tz)
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
            for chunk in chunks(list(owner_of), 500):
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
            for link in self.api.records(record.get("ContentDocumentLinks")):
                linked[to_18(link["ContentDocumentId"])].append(rid)
        out: dict[str, list[Activity]] = defaultdict(list)
        for chunk in chunks(list(linked), 500):
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
            for chunk in chunks(ids):
                for row in self.api.query(template.format(ids=soql_in(chunk))):
                    if kind == "email" and not (row.get("RelatedToId") or row.get("ParentId")):
                        unrelated_emails.append(to_18(row["Id"]))
                    for column in columns:
                        target = row.get(column)
                        object_type = self.fields.object_type_of_id(target or "")
                        if object_type:
                            found.append(RecordRef(CRM, object_type, to_18(target)))
        for chunk in chunks(unrelated_emails):
            for row in self._email_relations(f"SELECT RelationId FROM EmailMessageRelation "
                                             f"WHERE EmailMessageId IN {soql_in(chunk)}"):
                object_type = self.fields.object_type_of_id(row.get("RelationId") or "")
                if object_type:
                    found.append(RecordRef(CRM, object_type, to_18(row["RelationId"])))
        return list(dict.fromkeys(found))
