"""`apply`: the plans' writes, grouped across records into HubSpot batch calls.

Order matters. Notes (the transfer log) and tasks are created first, then Baton's tasks are
updated, and each record's own properties are written last, only if everything else for
that record went through: the `baton_*` fields are the commit point of a reconcile, so a
failed create is retried by the next reconcile instead of being forgotten (a transfer
whose note failed is still "owner differs from owner_of_record" next time). With them goes
`baton_own_activity_stamps`: when HubSpot stored the notes and tasks just created for the
record, so the next `load` knows which moves of its "Last activity date" were Baton's own.

Creates are idempotent through Baton's marker (`baton_source` = "<source>|<record key>"):
a create whose outcome is unknown (5xx, timeout, reset) is never re-sent blindly; the
markers of that batch are searched for and only the missing objects created. Nothing is
searched for before a first attempt. A transfer note carries the transfer's deterministic
`source`; when its record's field update fails after the note was written, logging the
note moved the record's "Last activity date", so the next `load` reads the record's notes,
returns that note with its marker, and the core does not log the transfer again.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from hubspot.crm.objects import (
    AssociationSpec, BatchInputSimplePublicObjectBatchInput, BatchInputSimplePublicObjectBatchInputForCreate,
    Filter, FilterGroup, PublicAssociationsForObject, PublicObjectId, PublicObjectSearchRequest,
    SimplePublicObjectBatchInput, SimplePublicObjectBatchInputForCreate,
)

from adapter.actions import AssignOwner, CreateTask, LogTransfer, Plan, SetFields, UpdateTask
from adapter.model import RecordRef
from adapter.ports import ApplyResult, Failure

from .batches import batch_errors, chunked, isolate
from .own_activity import OwnActivityLedger, encode_stamps
from .fields import (
    MARKER_PROPERTY, NOTE_ASSOCIATION_TYPES, NOTES, OWNER_PROPERTY, TASK_ASSOCIATION_TYPES, TASKS,
    OWN_ACTIVITY_PROPERTY, HubSpotFields, encode_marker, epoch_ms, format_datetime,
    parse_datetime, text_to_html,
)
from .transport import OutcomeUnknown

log = logging.getLogger(__name__)

#: The search API's IN filter and page size.
MARKERS_PER_SEARCH = 100
SEARCH_PAGE = 200


@dataclass
class NewObject:
    """A task or note to create for `ref`, found again by its `marker`."""

    ref: RecordRef
    marker: str
    properties: dict[str, str]
    associations: list[tuple[str, int]]  # (to id, HubSpot-defined association type id)


@dataclass
class Update:
    """Properties to write on one existing object, on behalf of the record `ref`."""

    ref: RecordRef
    object_id: str
    properties: dict[str, str]


@dataclass
class Writes:
    """Everything `apply` must send, grouped by call."""

    notes: list[NewObject] = field(default_factory=list)
    tasks: list[NewObject] = field(default_factory=list)
    task_updates: dict[str, Update] = field(default_factory=dict)  # task id -> update
    records: dict[RecordRef, dict[str, str]] = field(default_factory=dict)
    #: When HubSpot stored each object created for a record (epoch ms), from the create responses.
    created_at: dict[RecordRef, list[int]] = field(default_factory=dict)


class Writer:
    def __init__(self, client, fields: HubSpotFields, *, marker_search_delay: float = 2.0,
                 create_rounds: int = 3, sleep: Callable[[float], None] = time.sleep,
                 own_stamps: OwnActivityLedger | None = None):
        self._client, self._fields = client, fields
        self._own_stamps = own_stamps if own_stamps is not None else OwnActivityLedger()
        #: HubSpot's search index trails writes by a few seconds: wait this long before
        #: looking for the markers of a create whose outcome is unknown.
        self.marker_search_delay = marker_search_delay
        self.create_rounds = create_rounds
        self._sleep = sleep

    def apply(self, plans: Sequence[Plan]) -> ApplyResult:
        failures: dict[RecordRef, Failure] = {}
        writes = Writes()
        for plan in plans:
            try:
                self._collect(plan, writes)
            except ValueError as error:
                failures[plan.ref] = Failure(plan.ref, f"cannot encode the plan: {error}")
        self._create(NOTES, _without(writes.notes, failures), failures, writes.created_at)
        self._create(TASKS, _without(writes.tasks, failures), failures, writes.created_at)
        self._update(TASKS, _without(writes.task_updates.values(), failures), failures)
        for ref, stamps in writes.created_at.items():
            carried = self._own_stamps.carried(ref)
            writes.records.setdefault(ref, {})[OWN_ACTIVITY_PROPERTY] = encode_stamps([*carried, *stamps])
        by_type: dict[str, list[Update]] = {}
        for ref, properties in writes.records.items():
            if ref not in failures:
                by_type.setdefault(ref.object_type, []).append(Update(ref, ref.id, properties))
        for object_type, updates in by_type.items():
            self._update(self._fields.object_name(object_type), updates, failures)
        applied = [ref for ref in dict.fromkeys(p.ref for p in plans) if ref not in failures]
        return ApplyResult(applied=applied, failures=list(failures.values()))

    # -- plans -> writes -----------------------------------------------------------------------
    def _collect(self, plan: Plan, writes: Writes) -> None:
        """Encode every write of one plan; a ValueError leaves `writes` untouched."""
        ref, record = plan.ref, {}
        self._fields.object_name(ref.object_type)  # a ValueError for a type HubSpot does not have
        notes, tasks, task_updates = [], [], {}
        for action in plan.writes:
            if isinstance(action, AssignOwner):
                record[OWNER_PROPERTY] = action.owner_id
            elif isinstance(action, SetFields):
                record.update(self._fields.encode_fields(action.values))
            elif isinstance(action, CreateTask):
                tasks.append(self._task(ref, action))
            elif isinstance(action, LogTransfer):
                notes.append(self._note(ref, action))
            elif isinstance(action, UpdateTask):
                properties = task_update_properties(action)
                if properties:
                    task_updates[action.task_id] = Update(ref, action.task_id, properties)
        writes.notes.extend(notes)
        writes.tasks.extend(tasks)
        writes.task_updates.update(task_updates)
        if record:
            writes.records.setdefault(ref, {}).update(record)

    def _task(self, ref: RecordRef, action: CreateTask) -> NewObject:
        properties = {
            "hs_task_subject": action.title,
            "hs_timestamp": format_datetime(action.due),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": action.priority,
            "hs_task_type": "TODO",
            OWNER_PROPERTY: action.owner_id,
            MARKER_PROPERTY: encode_marker(action.source, ref),
        }
        if action.body:
            properties["hs_task_body"] = text_to_html(action.body)
        targets = [ref, *(r for r in action.also_associate if r != ref)]
        return NewObject(ref, properties[MARKER_PROPERTY], properties,
                         [(r.id, _association_type(TASK_ASSOCIATION_TYPES, r)) for r in targets])

    def _note(self, ref: RecordRef, action: LogTransfer) -> NewObject:
        marker = encode_marker(action.source, ref)
        properties = {"hs_note_body": text_to_html(action.body), "hs_timestamp": format_datetime(action.at),
                      MARKER_PROPERTY: marker}
        return NewObject(ref, marker, properties, [(ref.id, _association_type(NOTE_ASSOCIATION_TYPES, ref))])

    # -- creates ---------------------------------------------------------------------------------
    def _create(self, kind: str, items: list[NewObject], failures: dict[RecordRef, Failure],
                created_at: dict[RecordRef, list[int]]) -> None:
        """Create `items`; `created_at` gets when HubSpot stored each, by the record it is for
        (objects found again by marker after an unknown outcome have no stamp: the next load
        reads the record's activities, as it would without stamps)."""
        unique: dict[str, NewObject] = {}
        for item in items:  # one object per marker, even if two plans ask for it
            unique.setdefault(item.marker, item)
        for chunk in chunked(list(unique.values())):
            pending = list(chunk)
            for round_ in range(1, self.create_rounds + 1):
                if not pending:
                    break
                try:
                    responses, refused = isolate(pending, lambda batch: self._send_create(kind, batch))
                except OutcomeUnknown as unknown:
                    log.warning("HubSpot create of %d %s: outcome unknown (%s); looking up markers",
                                len(pending), kind, unknown)
                    self._sleep(self.marker_search_delay)
                    pending = self._not_yet_created(kind, pending)
                    continue
                results = [r for resp in responses for r in resp.results or ()]
                created = {(r.properties or {}).get(MARKER_PROPERTY) for r in results}
                by_marker = {item.marker: item for item in pending}
                for result in results:
                    item = by_marker.get((result.properties or {}).get(MARKER_PROPERTY))
                    if item is not None and result.created_at is not None:
                        created_at.setdefault(item.ref, []).append(int(epoch_ms(parse_datetime(result.created_at))))
                errors = "; ".join(f"{e.category}: {e.message}" for resp in responses for e in batch_errors(resp))
                for item, error in refused:
                    _fail(failures, item.ref, f"creating {kind}: {error}")
                refused_markers = {item.marker for item, _ in refused}
                for item in pending:
                    if item.marker not in created and item.marker not in refused_markers:
                        _fail(failures, item.ref, f"creating {kind}: {errors or 'not in the response'}")
                pending = []
            for item in pending:  # rounds spent, outcome still unknown
                _fail(failures, item.ref, f"creating {kind}: outcome unknown after {self.create_rounds} tries",
                      retriable=True)

    def _send_create(self, kind: str, batch: Sequence[NewObject]):
        inputs = [
            SimplePublicObjectBatchInputForCreate(
                properties=item.properties,
                associations=[PublicAssociationsForObject(
                    to=PublicObjectId(id=to_id),
                    types=[AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=type_id)],
                ) for to_id, type_id in item.associations])
            for item in batch
        ]
        body = BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs)
        return self._client.crm.objects.batch_api.create(kind, body)

    def _not_yet_created(self, kind: str, items: Sequence[NewObject]) -> list[NewObject]:
        found = self.find_markers(kind, [item.marker for item in items])
        if found:
            log.info("HubSpot: %d of %d %s already exist; not creating them again", len(found), len(items), kind)
        return [item for item in items if item.marker not in found]

    def find_markers(self, kind: str, markers: Sequence[str]) -> set[str]:
        """The markers among `markers` that some existing task or note carries."""
        found: set[str] = set()
        api = self._client.crm.objects.search_api
        for chunk in chunked(list(markers), MARKERS_PER_SEARCH):
            after = None
            while True:
                request = PublicObjectSearchRequest(
                    filter_groups=[FilterGroup(filters=[
                        Filter(property_name=MARKER_PROPERTY, operator="IN", values=list(chunk))])],
                    properties=[MARKER_PROPERTY], limit=SEARCH_PAGE, after=after)
                page = api.do_search(kind, request)
                found.update((r.properties or {}).get(MARKER_PROPERTY) for r in page.results or ())
                after = page.paging and page.paging.next and page.paging.next.after
                if not after:
                    break
        found.discard(None)
        return found & set(markers)

    # -- updates ---------------------------------------------------------------------------------
    def _update(self, hubspot_type: str, updates: Iterable[Update], failures: dict[RecordRef, Failure]) -> None:
        api = self._client.crm.objects.batch_api

        def send(batch: Sequence[Update]):
            body = BatchInputSimplePublicObjectBatchInput(inputs=[
                SimplePublicObjectBatchInput(id=u.object_id, properties=u.properties) for u in batch])
            return api.update(hubspot_type, body)

        for chunk in chunked(list(updates)):
            by_id = {u.object_id: u for u in chunk}
            responses, refused = isolate(chunk, send, key=lambda u: u.object_id)
            for update, error in refused:
                _fail(failures, update.ref, f"updating {hubspot_type} {update.object_id}: {error}")
            for response in responses:
                for error in batch_errors(response):
                    for object_id in error.ids:
                        if object_id in by_id:
                            _fail(failures, by_id[object_id].ref,
                                  f"updating {hubspot_type} {object_id}: {error.category}: {error.message}")


def task_update_properties(action: UpdateTask) -> dict[str, str]:
    properties = {}
    if action.owner_id:
        properties[OWNER_PROPERTY] = action.owner_id
    if action.due is not None:
        properties["hs_timestamp"] = format_datetime(action.due)
    if action.completed is not None:
        properties["hs_task_status"] = "COMPLETED" if action.completed else "NOT_STARTED"
    return properties


def _association_type(types: dict[str, int], ref: RecordRef) -> int:
    try:
        return types[ref.object_type]
    except KeyError:
        raise ValueError(f"cannot associate with a {ref.object_type}") from None


def _without(items: Iterable, failures: dict[RecordRef, Failure]) -> list:
    return [item for item in items if item.ref not in failures]


def _fail(failures: dict[RecordRef, Failure], ref: RecordRef, reason: str, retriable: bool = False) -> None:
    known = failures.get(ref)
    if known is None:
        failures[ref] = Failure(ref, reason, retriable)
    else:
        failures[ref] = Failure(ref, f"{known.reason}; {reason}", known.retriable and retriable)
