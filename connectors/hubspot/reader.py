"""`load`: HubSpot records -> Snapshots, 100 ids per call whatever the number of records.

Per 100 records of one type: one batch read (with the histories of the owner and of the
"Last activity date") and one v4 association read of their tasks. Only the records on which
someone else may have logged something since Baton last read them (see
`Reader._may_have_new_activity`) have their notes, emails and calls associations read, 100
of those records per call; and only
the ones with an activity still to read have their contacts and companies read (the core
associates the tasks it makes from an activity with them). Associated engagements are
read by id, 100 per call.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Mapping, Sequence

from hubspot.crm.associations.v4 import (
    BatchInputPublicFetchAssociationsBatchRequest, PublicFetchAssociationsBatchRequest,
)
from hubspot.crm.objects import BatchReadInputSimplePublicObjectId, SimplePublicObjectId

from adapter.model import Activity, OwnerChange, RecordRef, Snapshot, Task, read_marker
from adapter.ports import Failure, LoadResult
from adapter.activities import stored_after
from adapter.visibility import to_second

from .batches import batch_errors, chunked, isolate
from .fields import (
    ACTIVITY_DATE_PROPERTY, MODIFIED_PROPERTY, ACTIVITY_OBJECTS, ACTIVITY_PROPERTIES, CALL_DIRECTIONS, CALLS, CREATED_PROPERTY, CRM,
    EMAIL_DIRECTIONS, EMAILS, MARKER_PROPERTY, NAME_PROPERTIES, NOTES, OBJECT_TYPE_IDS, OWNER_PROPERTY,
    OWN_ACTIVITY_PROPERTY, PIPELINE_PROPERTY, RELATED_TYPES, STAGE_PROPERTY, TASK_PROPERTIES, TASKS, HubSpotFields,
    decode_marker, epoch_ms, parse_datetime,
)
from .own_activity import OwnActivityLedger, decode_stamps

#: Without `activities_read_at`, only this much of a record's history of notes and mail is read.
ACTIVITY_LOOKBACK = timedelta(days=30)
#: The engagements that are a record's activities (tasks are read for every record).
ACTIVITY_KINDS = (NOTES, EMAILS, CALLS)


class StageIndex:
    """Which pipeline stages are closed, from the pipelines API's `metadata` (cached).

    Never guessed from a stage's name: custom pipelines close in stages called anything.
    """

    def __init__(self, client):
        self._client = client
        self._closed: dict[str, dict[str, bool]] = {}
        #: Stages a refresh did not list either (deleted since a record was put in them): one
        #: pipelines read per stage, not one per record in it.
        self._unlisted: dict[str, set[str]] = {}

    def is_closed(self, hubspot_type: str, stage: str | None) -> bool:
        if not stage:
            return False
        stages = self._stages(hubspot_type)
        if stage not in stages and stage not in self._unlisted.get(hubspot_type, ()):
            stages = self._stages(hubspot_type, refresh=True)  # a stage added since we cached: look once more
            if stage not in stages:
                self._unlisted.setdefault(hubspot_type, set()).add(stage)
        return stages.get(stage, False)

    def closed_stages(self, hubspot_type: str) -> list[str]:
        return sorted(stage for stage, closed in self._stages(hubspot_type).items() if closed)

    def _stages(self, hubspot_type: str, refresh: bool = False) -> dict[str, bool]:
        if refresh or hubspot_type not in self._closed:
            response = self._client.crm.pipelines.pipelines_api.get_all(hubspot_type)
            self._closed[hubspot_type] = {
                stage.id: _stage_closed(stage.metadata or {})
                for pipeline in response.results or () for stage in pipeline.stages or ()
            }
        return self._closed[hubspot_type]


def _stage_closed(metadata: Mapping[str, str]) -> bool:
    if "isClosed" in metadata:
        return str(metadata["isClosed"]).lower() == "true"
    return str(metadata.get("ticketState", "")).upper() == "CLOSED"


class Reader:
    def __init__(self, client, fields: HubSpotFields, stages: StageIndex, *, portal_id: str | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 own_stamps: OwnActivityLedger | None = None):
        self._client, self._fields, self._stages = client, fields, stages
        self._portal_id, self._now = portal_id, now
        #: What this load saw of Baton's own activity stamps, for the writer to carry forward.
        self.own_stamps = own_stamps if own_stamps is not None else OwnActivityLedger()

    def load(self, refs: Sequence[RecordRef]) -> LoadResult:
        result = LoadResult()
        by_type: dict[str, list[RecordRef]] = defaultdict(list)
        for ref in dict.fromkeys(refs):  # de-duplicated, order kept
            if ref.crm != CRM or ref.object_type not in self._fields.object_names:
                result.failures.append(Failure(ref, f"not a HubSpot record type: {ref.object_type}"))
            else:
                by_type[ref.object_type].append(ref)
        for object_type, typed in by_type.items():
            self._load_type(object_type, typed, result)
        return result

    # -- all the records of one type, 100 ids per call ------------------------------------------
    def _load_type(self, object_type: str, refs: Sequence[RecordRef], result: LoadResult) -> None:
        hubspot_type = self._fields.object_name(object_type)
        records, missing, refused = self._read_records(object_type, refs)
        result.missing.extend(missing)
        result.failures.extend(refused)
        if not records:
            return
        fields = {i: self._fields.decode_fields(r.properties or {}) for i, r in records.items()}
        cutoffs = {i: fields[i].get("activities_read_at") or self._now() - ACTIVITY_LOOKBACK for i in records}
        unreadable: dict[str, str] = {}
        links = {TASKS: self._associations(hubspot_type, TASKS, list(records), unreadable)}
        to_read = [i for i, r in records.items() if self._may_have_new_activity(
            r, cutoffs[i], first_sight=fields[i].get("activities_read_at") is None)]
        for i, r in records.items():  # for the apply that follows this load
            self.own_stamps.remember(RecordRef(CRM, object_type, i), _stamps_after(r, cutoffs[i]))
        for kind in ACTIVITY_KINDS:
            links[kind] = self._associations(hubspot_type, kind, to_read, unreadable)
        engagements = {
            kind: self._read_objects(kind, _union(ids for i, ids in links[kind].items() if i not in unreadable),
                                     self._engagement_properties(kind))
            for kind in (TASKS, *ACTIVITY_KINDS)
        }
        url = {i: self.record_url(object_type, i) for i in records}
        activities = {i: self._activities(links, engagements, i, cutoffs[i], url[i]) for i in to_read}
        # Contacts and companies only matter to the tasks made from a note or email not read yet,
        # by the core's rule (`adapter.activities.stored_after`: after `activities_read_at`, to
        # the second): the activity that set the stamp comes back above it by its milliseconds,
        # and must not cost two association reads per batch.
        mining = [i for i in to_read if any(self._unread(a, fields[i].get("activities_read_at")) for a in activities[i])]
        related = {
            related_type: self._associations(hubspot_type, self._fields.object_name(related_type), mining, unreadable)
            for related_type in RELATED_TYPES[object_type]
        }
        # A snapshot missing its tasks would make the core create a second prompt: skip the record.
        result.failures.extend(Failure(RecordRef(CRM, object_type, i), reason, retriable=True)
                               for i, reason in unreadable.items())
        for record_id, record in records.items():
            if record_id in unreadable:
                continue
            ref = RecordRef(CRM, object_type, record_id)
            tasks = [task_from(o, ref) for i in links[TASKS].get(record_id, ()) if (o := engagements[TASKS].get(i))]
            result.snapshots.append(self._snapshot(
                ref, record, fields[record_id], tasks, activities.get(record_id, ()),
                tuple(RecordRef(CRM, related_type, to_id) for related_type, found in related.items()
                      for to_id in dict.fromkeys(found.get(record_id, ()))),
                url[record_id]))

    def _may_have_new_activity(self, record, cutoff: datetime, first_sight: bool) -> bool:
        """Whether a note, email or call may have been logged after `cutoff`, from the record's
        "Last activity date" alone: records nobody touched since Baton last read them cost no reads.

        HubSpot moves the date forward whenever an engagement is logged on the record, so an
        activity logged after Baton last read the record leaves it later than `cutoff` (the
        newest activity Baton has read, or the start of the lookback). Compared to the second,
        as the core compares activity times. Baton's own notes and tasks move it too: when every
        move since `cutoff` (the property's history) is one of the stamps the writer left in
        `baton_own_activity_stamps` (see `own_activity`), nothing new is there either. Read
        anyway when the property is not there at all (an object that keeps none), or when
        `cutoff` is in the future (Baton read an activity dated ahead: one logged since may be
        dated before it and still be new).
        """
        props = record.properties or {}
        if ACTIVITY_DATE_PROPERTY not in props:
            return True
        logged = parse_datetime(props[ACTIVITY_DATE_PROPERTY])
        if logged is None:
            return False  # nothing was ever logged on this record
        if cutoff > self._now():
            return True
        since = to_second(cutoff)
        if to_second(logged) <= since:
            return False
        if first_sight:
            return True
        own = decode_stamps(props.get(OWN_ACTIVITY_PROPERTY))
        history = (record.properties_with_history or {}).get(ACTIVITY_DATE_PROPERTY) or ()
        moves = {int(epoch_ms(moved)) for version in history
                 if (moved := parse_datetime(version.value)) is not None and to_second(moved) > since}
        return not moves or not moves <= own

    @staticmethod
    def _unread(activity: Activity, read_at: datetime | None) -> bool:
        """Whether the core may mine `activity` (on first sight, every recent one)."""
        return activity.source is None and (read_at is None or stored_after(activity, read_at))

    def _activities(self, links, engagements, record_id: str, cutoff: datetime, url: str | None) -> list[Activity]:
        """The record's notes, emails and calls after `cutoff`, plus Baton's own notes whatever their
        date: their markers tell the core which transfers are already logged."""
        return [
            activity for kind in ACTIVITY_KINDS for i in links[kind].get(record_id, ())
            if (o := engagements[kind].get(i)) and (activity := activity_from(kind, o, url))
            and (activity.source is not None or activity.stored_at > cutoff)
        ]

    def _read_records(self, object_type: str, refs: Sequence[RecordRef]):
        hubspot_type = self._fields.object_name(object_type)
        properties = self._fields.record_properties(object_type)

        def send(batch: Sequence[RecordRef]):
            body = BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=ref.id) for ref in batch], properties=properties,
                properties_with_history=[OWNER_PROPERTY, ACTIVITY_DATE_PROPERTY])
            return self._client.crm.objects.batch_api.read(hubspot_type, body)

        responses, refused = [], []
        for chunk in chunked(refs):
            answered, refused_here = isolate(chunk, send, key=lambda ref: ref.id)
            responses += answered
            refused += refused_here
        records = {r.id: r for response in responses for r in response.results or ()}
        by_id = {ref.id: ref for ref in refs}
        failures = {ref.id: Failure(ref, str(error)) for ref, error in refused}
        for response in responses:
            for error in batch_errors(response):
                if error.category == "OBJECT_NOT_FOUND":
                    continue  # reported as missing below
                failures.update((i, Failure(by_id[i], f"{error.category}: {error.message}"))
                                for i in error.ids if i in by_id and i not in records)
        # Named OBJECT_NOT_FOUND, or silently absent: either way HubSpot has no such record.
        missing = [ref for ref in refs if ref.id not in records and ref.id not in failures]
        return {i: r for i, r in records.items() if i not in failures}, missing, list(failures.values())

    def _associations(self, from_type: str, to_type: str, ids: Sequence[str], errors: dict[str, str],
                      ) -> dict[str, list[str]]:
        """From id -> associated ids, following each record's paging; ids HubSpot could not
        answer for go to `errors` (from id -> reason)."""
        found: dict[str, list[str]] = defaultdict(list)
        api = self._client.crm.associations.v4.batch_api
        for chunk in chunked(ids):
            pending = [PublicFetchAssociationsBatchRequest(id=i) for i in chunk]
            while pending:
                body = BatchInputPublicFetchAssociationsBatchRequest(inputs=pending)
                response = api.get_page(from_type, to_type, body)
                pending = []
                for item in response.results or ():
                    from_id = str(item._from.id)
                    found[from_id].extend(str(to.to_object_id) for to in item.to or ())
                    after = item.paging and item.paging.next and item.paging.next.after
                    if after:
                        pending.append(PublicFetchAssociationsBatchRequest(id=from_id, after=after))
                for error in batch_errors(response):
                    if error.category != "NO_ASSOCIATIONS_FOUND":  # "none" is an answer, not an error
                        errors.update((i, f"reading {to_type} associations: {error.category}: {error.message}")
                                      for i in error.ids)
        return found

    def records_for(self, activity_refs: Sequence[RecordRef]) -> list[RecordRef]:
        """The records tasks, notes, emails and calls are associated with (v4 batch reads)."""
        by_kind: dict[str, list[str]] = defaultdict(list)
        for ref in dict.fromkeys(activity_refs):
            if ref.crm == CRM and ref.object_type in ACTIVITY_OBJECTS:
                by_kind[ACTIVITY_OBJECTS[ref.object_type]].append(ref.id)
        found = []
        for kind, ids in by_kind.items():
            for object_type, hubspot_type in self._fields.object_names.items():
                links = self._associations(kind, hubspot_type, ids, {})
                found += [RecordRef(CRM, object_type, i) for linked in links.values() for i in linked]
        return list(dict.fromkeys(found))

    def _read_objects(self, hubspot_type: str, ids: Sequence[str], properties: list[str]) -> dict:
        """Batch read of associated objects; ones deleted meanwhile are just absent."""
        objects = {}
        for chunk in chunked(list(ids)):
            body = BatchReadInputSimplePublicObjectId(
                inputs=[SimplePublicObjectId(id=i) for i in chunk], properties=properties)
            response = self._client.crm.objects.batch_api.read(hubspot_type, body)
            objects.update((o.id, o) for o in response.results or ())
        return objects

    def _engagement_properties(self, kind: str) -> list[str]:
        if kind == TASKS:
            return [*TASK_PROPERTIES, MARKER_PROPERTY]
        if kind == NOTES:
            return [*ACTIVITY_PROPERTIES[NOTES], MARKER_PROPERTY]
        return list(ACTIVITY_PROPERTIES[kind])

    # -- building the snapshot -----------------------------------------------------------------
    def _snapshot(self, ref: RecordRef, record, fields: Mapping[str, object], tasks: Sequence[Task],
                  activities: Sequence[Activity], related: tuple[RecordRef, ...], url: str | None) -> Snapshot:
        props = record.properties or {}
        object_type = ref.object_type
        stage = props.get(STAGE_PROPERTY[object_type]) or None
        history = (record.properties_with_history or {}).get(OWNER_PROPERTY) or ()
        closed = (self._stages.is_closed(self._fields.object_name(object_type), stage)
                  if object_type in PIPELINE_PROPERTY else False)
        return Snapshot(
            ref=ref,
            name=record_name(object_type, ref.id, props),
            owner_id=props.get(OWNER_PROPERTY) or None,
            is_closed=closed,
            stage=stage,
            created_at=parse_datetime(props.get(CREATED_PROPERTY)) or parse_datetime(record.created_at),
            fields=fields,
            tasks=tuple(sorted(tasks, key=lambda t: (t.due is None, t.due or datetime.min, t.id))),
            owner_history=owner_history(history),
            activities=tuple(sorted(activities, key=lambda a: (a.at, a.id))),
            related=related,
            url=url,
            activities_known_at=_activities_known_at(props, object_type),
        )

    def record_url(self, object_type: str, record_id: str) -> str | None:
        if not self._portal_id:
            return None
        return f"https://app.hubspot.com/contacts/{self._portal_id}/record/{OBJECT_TYPE_IDS[object_type]}/{record_id}"


def _stamps_after(record, cutoff: datetime) -> set[int]:
    """Baton's own-activity stamps on `record` later than `cutoff`: the ones that still explain
    moves of its "Last activity date" Baton has not read past."""
    since = int(epoch_ms(to_second(cutoff)))
    return {stamp for stamp in decode_stamps((record.properties or {}).get(OWN_ACTIVITY_PROPERTY)) if stamp > since}


def _union(groups: Iterable[Iterable[str]]) -> list[str]:
    return list(dict.fromkeys(i for group in groups for i in group))


def record_name(object_type: str, record_id: str, props: Mapping[str, str | None]) -> str:
    if object_type == "contact":
        full = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p).strip()
        return full or props.get("email") or f"Contact {record_id}"
    (name_property,) = NAME_PROPERTIES[object_type]
    return props.get(name_property) or f"{object_type.title()} {record_id}"


def owner_history(entries) -> tuple[OwnerChange, ...]:
    """`propertiesWithHistory.hubspot_owner_id` (newest first) -> OwnerChanges, oldest first."""
    changes = [
        OwnerChange(owner_id=entry.value or None, at=parse_datetime(entry.timestamp),
                    changed_by=changed_by(entry), source=entry.source_type)
        for entry in reversed(entries) if entry.timestamp is not None
    ]
    # Stable: changes within the same millisecond keep HubSpot's order.
    return tuple(sorted(changes, key=lambda c: c.at))


def changed_by(entry) -> str | None:
    """Who made a property change: "user 123", "integration 456", "workflow", or HubSpot's label."""
    if entry.updated_by_user_id:
        return f"user {entry.updated_by_user_id}"
    source_type = (entry.source_type or "").upper()
    if source_type == "INTEGRATION":
        return f"integration {entry.source_id}" if entry.source_id else "integration"
    if source_type == "AUTOMATION_PLATFORM":
        return "workflow"
    return entry.source_label or (source_type.lower() or None)


def task_from(obj, ref: RecordRef) -> Task:
    """A task as seen from `ref`: Baton's tasks made for another record are marked foreign."""
    props = obj.properties or {}
    source, foreign = read_marker(props.get(MARKER_PROPERTY), ref)
    return Task(
        id=str(obj.id),
        title=props.get("hs_task_subject") or "",
        due=parse_datetime(props.get("hs_timestamp")),
        owner_id=props.get(OWNER_PROPERTY) or None,
        completed=props.get("hs_task_status") == "COMPLETED",
        source=source,
        body=props.get("hs_task_body") or "",
        completed_at=parse_datetime(props.get("hs_task_completion_date")),
        foreign=foreign,
    )


def activity_from(kind: str, obj, url: str | None) -> Activity | None:
    """A note, email or call as an Activity; None when it has no timestamp."""
    props = obj.properties or {}
    at = parse_datetime(props.get("hs_timestamp"))
    if at is None:
        return None
    author = props.get(OWNER_PROPERTY) or None
    logged = parse_datetime(props.get("hs_createdate") or getattr(obj, "created_at", None))
    if kind == NOTES:
        # Baton's own transfer notes come back with their marker, so the core never mines them.
        return Activity(str(obj.id), "note", at, props.get("hs_note_body") or "", "note", author, True, url,
                        source=decode_marker(props.get(MARKER_PROPERTY)), logged_at=logged)
    if kind == EMAILS:
        html_body = props.get("hs_email_html")
        direction = EMAIL_DIRECTIONS.get(props.get("hs_email_direction") or "", "outbound")
        return Activity(str(obj.id), "email", at, html_body or props.get("hs_email_text") or "",
                        direction, author, bool(html_body), url, logged_at=logged)
    direction = CALL_DIRECTIONS.get((props.get("hs_call_direction") or "").upper(), "outbound")
    return Activity(str(obj.id), "call", at, props.get("hs_call_body") or "", direction, author, True, url,
                    logged_at=logged)


def _activities_known_at(props: Mapping[str, str | None], object_type: str) -> datetime | None:
    """The record's last-activity and last-modified times, both on HubSpot's clock and both no
    later than this load: every activity logged before them was loaded or gated as old."""
    stamps = [parse_datetime(props.get(name)) for name in (ACTIVITY_DATE_PROPERTY, MODIFIED_PROPERTY[object_type])]
    return max((s for s in stamps if s is not None), default=None)
