"""The emulated portal's state: records with property history, associations, owners,
pipelines and property definitions, guarded by one lock.

The store knows HubSpot's rules (which properties exist, what a value must look like,
which association types are allowed) but nothing about HTTP: it raises `CrmError`, which
the API layer turns into HubSpot's error body. Every change is reported to listeners as a
`Change`, which is how webhooks learn about user and API writes alike.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timezone
from typing import Callable, Iterable, NamedTuple

from .emulator_catalog import (
    ACTIVITY_DATE_PROPERTY, ASSOCIATION_TYPES, DEAL_PIPELINES, ENGAGEMENT_TYPES, OBJECT_TYPES, PORTAL_USERS,
    REVERSE_TYPE_ID, TEAM_IDS, TICKET_PIPELINES, PropertyDefinition, builtin_properties,
)

__all__ = ["Actor", "CALCULATED", "Change", "CrmError", "CrmStore", "Record", "Version", "to_iso", "parse_time_ms"]


class CrmError(Exception):
    """A request HubSpot would refuse; carries what its error body needs."""

    def __init__(self, status: int, category: str, message: str, context: dict | None = None):
        super().__init__(message)
        self.status, self.category, self.message, self.context = status, category, message, context


def to_iso(ms: int) -> str:
    """HubSpot's timestamp format: ISO 8601, UTC, millisecond precision, 'Z'."""
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_time_ms(value) -> int | None:
    """Epoch milliseconds from what HubSpot accepts for date/datetime values (ms or ISO 8601)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or str(value).lstrip("-").isdigit():
        return int(value)
    text = str(value).strip()
    try:
        if len(text) == 10:
            parsed = datetime.combine(date.fromisoformat(text), datetime.min.time(), timezone.utc)
        else:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    return int(parsed.timestamp() * 1000)


@dataclass(frozen=True)
class Actor:
    """Who made a change, as HubSpot records it in property history and webhooks."""

    source_type: str  # CRM_UI, INTEGRATION, AUTOMATION_PLATFORM, IMPORT, ...
    source_id: str | None = None
    user_id: int | None = None

    @classmethod
    def user(cls, user_id: int) -> "Actor":
        return cls("CRM_UI", f"userId:{user_id}", user_id)

    @classmethod
    def integration(cls, app_id: int | str) -> "Actor":
        return cls("INTEGRATION", str(app_id))


#: HubSpot itself, maintaining a calculated property.
CALCULATED = Actor("CALCULATED")


class Version(NamedTuple):
    """One entry of a property's history (a tuple: seeding creates hundreds of thousands)."""

    value: str
    timestamp_ms: int
    source_type: str
    source_id: str | None
    user_id: int | None


@dataclass(slots=True)
class Record:
    object_type: str
    id: str
    properties: dict[str, str]
    history: dict[str, list[Version]]  # oldest first; API answers reverse it
    created_ms: int
    updated_ms: int
    archived: bool = False
    archived_ms: int | None = None


@dataclass(frozen=True)
class Change:
    """Something a webhook subscription may care about."""

    kind: str  # creation, deletion, propertyChange, associationChange
    object_type: str
    object_id: str
    occurred_ms: int
    actor: Actor
    property_name: str | None = None
    property_value: str | None = None
    # associationChange only
    to_object_type: str | None = None
    to_object_id: str | None = None
    association_type_id: int | None = None
    association_removed: bool = False


def _invalid_property(name: str, error: str, message: str) -> dict:
    return {"isValid": False, "message": message, "error": error, "name": name,
            "localizedErrorMessage": message}


@dataclass
class CrmStore:
    clock: Callable[[], int] = field(default=lambda: int(time.time() * 1000))
    first_id: int = 10_000_000_001

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.records: dict[str, dict[str, Record]] = {name: {} for name in OBJECT_TYPES}
        # (type, id) -> {to_type: {to_id: {typeId, ...}}}; both directions are stored
        self.associations: dict[tuple[str, str], dict[str, dict[str, set[int]]]] = {}
        self.properties: dict[str, dict[str, PropertyDefinition]] = {
            name: {p.name: p for p in builtin_properties(name)} for name in OBJECT_TYPES
        }
        self.property_groups: dict[str, dict[str, dict]] = {
            name: {f"{t.singular}information": {"name": f"{t.singular}information",
                                                "label": f"{t.singular.title()} information",
                                                "displayOrder": -1, "archived": False}}
            for name, t in OBJECT_TYPES.items()
        }
        self.owners: list[dict] = []
        self.pipelines: dict[str, list[dict]] = {}
        self.listeners: list[Callable[[Change], None]] = []
        self._next_id = self.first_id
        self._created_ms = self.clock()
        self._install_portal_defaults()

    # -- portal defaults -------------------------------------------------------------
    def _install_portal_defaults(self) -> None:
        stamp = to_iso(self._created_ms - 400 * 86_400_000)  # the portal predates any record
        for owner_id, user_id, first, last, email, team, archived in PORTAL_USERS:
            self.owners.append({
                "id": owner_id, "userId": user_id, "userIdIncludingInactive": user_id,
                "firstName": first, "lastName": last, "email": email, "type": "PERSON",
                "createdAt": stamp, "updatedAt": stamp, "archived": archived,
                "teams": [{"id": TEAM_IDS[team], "name": team, "primary": True}],
            })
        self.pipelines["deals"] = [
            {"id": pid, "label": label, "displayOrder": i, "archived": False, "createdAt": stamp,
             "updatedAt": stamp, "stages": [
                 {"id": sid, "label": slabel, "displayOrder": j, "archived": False, "createdAt": stamp,
                  "updatedAt": stamp, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                  "metadata": {"isClosed": "true" if closed else "false", "probability": prob}}
                 for j, (sid, slabel, prob, closed) in enumerate(stages)]}
            for i, (pid, label, stages) in enumerate(DEAL_PIPELINES)
        ]
        self.pipelines["tickets"] = [
            {"id": pid, "label": label, "displayOrder": i, "archived": False, "createdAt": stamp,
             "updatedAt": stamp, "stages": [
                 {"id": sid, "label": slabel, "displayOrder": j, "archived": False, "createdAt": stamp,
                  "updatedAt": stamp, "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
                  "metadata": {"ticketState": state, "isClosed": "true" if state == "CLOSED" else "false"}}
                 for j, (sid, slabel, state) in enumerate(stages)]}
            for i, (pid, label, stages) in enumerate(TICKET_PIPELINES)
        ]
        # Enumerations whose options are the pipelines and owners, as HubSpot validates them.
        stage_options = {"deals": ("dealstage", "pipeline"), "tickets": ("hs_pipeline_stage", "hs_pipeline")}
        for object_type, (stage_prop, pipeline_prop) in stage_options.items():
            props = self.properties[object_type]
            stages = [s for p in self.pipelines[object_type] for s in p["stages"]]
            props[stage_prop] = _with_options(props[stage_prop], [(s["id"], s["label"]) for s in stages])
            props[pipeline_prop] = _with_options(
                props[pipeline_prop], [(p["id"], p["label"]) for p in self.pipelines[object_type]])

    # -- identifiers and time ----------------------------------------------------------
    def new_id(self) -> str:
        with self.lock:
            self._next_id += 1
            return str(self._next_id - 1)

    def owner(self, owner_id: str) -> dict | None:
        return next((o for o in self.owners if o["id"] == str(owner_id)), None)

    def stage_is_closed(self, object_type: str, stage_id: str) -> bool:
        for pipeline in self.pipelines.get(object_type, []):
            for stage in pipeline["stages"]:
                if stage["id"] == stage_id:
                    return stage["metadata"]["isClosed"] == "true"
        return False

    # -- property values -----------------------------------------------------------------
    def normalize_properties(self, object_type: str, values: dict) -> dict[str, str]:
        """Check values the way HubSpot does and return them in stored (wire) form.

        Raises 400 VALIDATION_ERROR listing every invalid property, with HubSpot's message shape.
        """
        definitions = self.properties[object_type]
        problems, normalized = [], {}
        for name, raw in values.items():
            definition = definitions.get(name)
            if definition is None:
                problems.append(_invalid_property(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist'))
                continue
            if definition.read_only:
                problems.append(_invalid_property(name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.'))
                continue
            value = "" if raw is None else str(raw)
            if value == "":
                normalized[name] = ""
                continue
            if definition.type in ("datetime", "date"):
                ms = parse_time_ms(value)
                if ms is None:
                    problems.append(_invalid_property(name, "INVALID_DATE", f"{value} was not a valid long or ISO 8601 date"))
                    continue
                value = to_iso(ms) if definition.type == "datetime" else to_iso(ms)[:10]
            elif definition.type == "number":
                try:
                    float(value)
                except ValueError:
                    problems.append(_invalid_property(name, "INVALID_LONG", f"{value} was not a valid number."))
                    continue
            elif definition.type == "bool" and value.lower() not in ("true", "false"):
                problems.append(_invalid_property(name, "INVALID_BOOLEAN", f"{value} was not a valid boolean."))
                continue
            elif definition.type == "enumeration" and name == "hubspot_owner_id":
                if self.owner(value) is None:
                    problems.append(_invalid_property(name, "INVALID_OWNER_ID", f"{value} is not a valid owner id"))
                    continue
            elif definition.type == "enumeration" and definition.options:
                allowed = {o["value"] for o in definition.options}
                chosen = value.split(";") if definition.field_type == "checkbox" else [value]
                if not set(chosen) <= allowed:
                    problems.append(_invalid_property(
                        name, "INVALID_OPTION",
                        f"{value} was not one of the allowed options: {sorted(allowed)}"))
                    continue
            normalized[name] = value
        if problems:
            raise CrmError(400, "VALIDATION_ERROR", f"Property values were not valid: {json.dumps(problems)}")
        return normalized

    # -- records ---------------------------------------------------------------------------
    def get(self, object_type: str, object_id: str, *, archived: bool = False) -> Record | None:
        record = self.records[object_type].get(str(object_id))
        if record is None or record.archived != archived:
            return None
        return record

    def require(self, object_type: str, object_id: str) -> Record:
        record = self.get(object_type, object_id)
        if record is None:
            raise CrmError(404, "OBJECT_NOT_FOUND", "Object not found.  objectId are usually numeric.",
                           {"id": [str(object_id)]})
        return record

    def create(self, object_type: str, values: dict, actor: Actor, *,
               associations: Iterable[tuple[str, str, int]] = (), at_ms: int | None = None) -> Record:
        """Create a record (values already normalized) with inline associations."""
        with self.lock:
            associations = list(associations)
            for to_type, to_id, type_id in associations:
                self._check_association(object_type, to_type, to_id, type_id)
            now = self.clock() if at_ms is None else at_ms
            record_id = self.new_id()
            spec = OBJECT_TYPES[object_type]
            stamp = to_iso(now)
            props = {"hs_object_id": record_id, spec.created_property: stamp, spec.modified_property: stamp}
            if spec.created_property != "hs_createdate":
                props["hs_createdate"] = stamp
            props.update({k: v for k, v in values.items() if v != ""})
            record = Record(object_type, record_id, props,
                            {k: [Version(v, now, actor.source_type, actor.source_id, actor.user_id)]
                             for k, v in props.items()}, now, now)
            self.records[object_type][record_id] = record
            self._emit(Change("creation", object_type, record_id, now, actor))
            for name, value in values.items():
                if value != "":
                    self._emit(Change("propertyChange", object_type, record_id, now, actor, name, value))
            for to_type, to_id, type_id in associations:
                self._associate(object_type, record_id, to_type, str(to_id), type_id, actor, now)
            return record

    def update(self, object_type: str, object_id: str, values: dict, actor: Actor, *,
               at_ms: int | None = None) -> Record:
        """Apply normalized values; unchanged values leave no history and raise no event."""
        with self.lock:
            record = self.require(object_type, object_id)
            now = self.clock() if at_ms is None else at_ms
            changed = {k: v for k, v in values.items() if record.properties.get(k, "") != v}
            if not changed:
                return record
            version = lambda v: Version(v, now, actor.source_type, actor.source_id, actor.user_id)  # noqa: E731
            modified = OBJECT_TYPES[object_type].modified_property
            changed[modified] = to_iso(max(now, record.updated_ms))
            for name, value in changed.items():
                record.properties[name] = value
                record.history.setdefault(name, []).append(version(value))
            record.updated_ms = max(now, record.updated_ms)
            for name, value in changed.items():
                if name != modified:
                    self._emit(Change("propertyChange", object_type, record.id, now, actor, name, value))
            return record

    def archive(self, object_type: str, object_id: str, actor: Actor) -> None:
        with self.lock:
            record = self.get(object_type, object_id)
            if record is None:
                return  # HubSpot answers 204 for an already deleted record
            now = self.clock()
            record.archived, record.archived_ms = True, now
            self._emit(Change("deletion", object_type, record.id, now, actor))

    def find_by_property(self, object_type: str, name: str, value: str) -> Record | None:
        for record in self.records[object_type].values():
            if not record.archived and record.properties.get(name) == value:
                return record
        return None

    def live_records(self, object_type: str, *, archived: bool = False) -> list[Record]:
        """Records in id order (ids are allocated increasingly, so insertion order is id order)."""
        return [r for r in self.records[object_type].values() if r.archived == archived]

    # -- associations ------------------------------------------------------------------------
    def _check_association(self, from_type: str, to_type: str, to_id: str, type_id: int) -> None:
        known = ASSOCIATION_TYPES.get(int(type_id))
        if known is None or known[:2] != (from_type, to_type):
            raise CrmError(400, "VALIDATION_ERROR",
                           f"{type_id} is not a valid association type between {from_type} and {to_type}")
        if self.get(to_type, to_id) is None:
            raise CrmError(400, "VALIDATION_ERROR",
                           f"One or more associations are invalid: {to_type} {to_id} does not exist")

    def associate(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int,
                  actor: Actor) -> None:
        with self.lock:
            self.require(from_type, from_id)
            self._check_association(from_type, to_type, str(to_id), type_id)
            self._associate(from_type, str(from_id), to_type, str(to_id), int(type_id), actor, self.clock())

    def _associate(self, from_type, from_id, to_type, to_id, type_id, actor, now) -> None:
        reverse = REVERSE_TYPE_ID[type_id]
        forward = self.associations.setdefault((from_type, from_id), {}).setdefault(to_type, {})
        if type_id in forward.get(to_id, ()):
            return
        forward.setdefault(to_id, set()).add(type_id)
        self.associations.setdefault((to_type, to_id), {}).setdefault(from_type, {}).setdefault(
            from_id, set()).add(reverse)
        for a_type, a_id, b_type, b_id, tid in ((from_type, from_id, to_type, to_id, type_id),
                                                (to_type, to_id, from_type, from_id, reverse)):
            self._emit(Change("associationChange", a_type, a_id, now, actor, to_object_type=b_type,
                              to_object_id=b_id, association_type_id=tid))
        if from_type in ENGAGEMENT_TYPES:
            self.activity_logged(to_type, to_id, now)
        elif to_type in ENGAGEMENT_TYPES:
            self.activity_logged(from_type, from_id, now)

    def activity_logged(self, object_type: str, object_id: str, at_ms: int) -> None:
        """An engagement was logged on a record: HubSpot moves its "Last activity date"
        (`notes_last_updated`) to when it was logged, never back."""
        record = self.get(object_type, object_id)
        if record is None or ACTIVITY_DATE_PROPERTY not in self.properties[object_type]:
            return  # engagements themselves keep no activity date
        current = parse_time_ms(record.properties.get(ACTIVITY_DATE_PROPERTY))
        if current is None or current < at_ms:
            self.update(object_type, object_id, {ACTIVITY_DATE_PROPERTY: to_iso(at_ms)}, CALCULATED, at_ms=at_ms)

    def disassociate(self, from_type: str, from_id: str, to_type: str, to_id: str, actor: Actor) -> None:
        with self.lock:
            now = self.clock()
            forward = self.associations.get((from_type, str(from_id)), {}).get(to_type, {})
            type_ids = forward.pop(str(to_id), set())
            self.associations.get((to_type, str(to_id)), {}).get(from_type, {}).pop(str(from_id), None)
            for type_id in sorted(type_ids):
                self._emit(Change("associationChange", from_type, str(from_id), now, actor,
                                  to_object_type=to_type, to_object_id=str(to_id),
                                  association_type_id=type_id, association_removed=True))

    def associated(self, from_type: str, from_id: str, to_type: str) -> dict[str, set[int]]:
        """Live associated records of one type: {to_id: {typeId, ...}} in id order."""
        found = self.associations.get((from_type, str(from_id)), {}).get(to_type, {})
        return {to_id: set(types) for to_id, types in sorted(found.items(), key=lambda kv: int(kv[0]))
                if self.get(to_type, to_id) is not None}

    # -- seeding fast path -------------------------------------------------------------------------
    def insert_seeded(self, record: Record) -> None:
        """Add a fully built record without validation or events (portal history, not news)."""
        self.records[record.object_type][record.id] = record

    def link_seeded(self, from_type: str, from_id: str, to_type: str, to_id: str, type_id: int) -> None:
        self.associations.setdefault((from_type, from_id), {}).setdefault(to_type, {}).setdefault(
            to_id, set()).add(type_id)
        self.associations.setdefault((to_type, to_id), {}).setdefault(from_type, {}).setdefault(
            from_id, set()).add(REVERSE_TYPE_ID[type_id])

    # -- events ------------------------------------------------------------------------------
    def _emit(self, change: Change) -> None:
        for listener in self.listeners:
            listener(change)


def _with_options(definition: PropertyDefinition, options: list[tuple[str, str]]) -> PropertyDefinition:
    return replace(definition, options=tuple(
        {"label": label, "value": value, "displayOrder": i, "hidden": False}
        for i, (value, label) in enumerate(options)))
