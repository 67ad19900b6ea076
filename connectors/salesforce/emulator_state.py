"""The records of an emulated Salesforce org and the rules every write goes through.

`OrgState` is what the REST handlers, the SOQL evaluator, the seeder and the user-action
helpers share. Every write runs the same pipeline as a DML statement in a real org:
field checks, type coercion, defaults, required fields, reference checks, derived fields
(IsClosed, Name, ...), assignment rules, field history, then change notifications (which
feed Outbound Messages). One lock guards it all: the HTTP server is threaded and tests
call the helpers from their own thread. The errors it raises and the JSON values it reads
and writes are `emulator_wire.py`'s.
"""

from __future__ import annotations

import html
import re
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from .emulator_schema import (
    CLOSED_CASE_STATUSES,
    CLOSED_TASK_STATUSES,
    DEFINITION_OBJECTS,
    ID_TYPES,
    OBJECTS,
    OPPORTUNITY_STAGES,
    FieldDef,
    HistoryConfig,
    IdFactory,
    ObjectDef,
    object_for_id,
)
from .emulator_wire import DmlError, SalesforceError, SaveResult, from_json_value, normalize_id, to_json_value

__all__ = ["Change", "OrgState"]

_ID_PATTERN = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_TAG = re.compile(r"<[^>]+>")


@dataclass(frozen=True)
class Change:
    """What a committed write did, for Outbound Messages and tests."""

    sobject: str
    record_id: str
    kind: str  # "created" | "updated" | "deleted"
    changed_fields: frozenset[str]
    record: dict  # a copy of the record after the write


def _note_preview(content: bytes) -> str:
    text = html.unescape(_TAG.sub(" ", content.decode("utf-8", "replace")))
    return " ".join(text.split())[:300]


class OrgState:
    def __init__(self, *, org_id: str, clock: Callable[[], datetime], org_name: str = "Baton Emulator Org") -> None:
        self.org_id = org_id
        self.clock = clock
        self.lock = threading.RLock()
        self.ids = IdFactory()
        self.schema: dict[str, ObjectDef] = dict(OBJECTS)
        self.records: dict[str, dict[str, dict]] = {name: {} for name in self.schema}
        # (child object, field) -> parent id -> child ids; keeps sub-queries cheap on big orgs.
        self.children: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.assignment_rules: dict[str, str] = {}
        self.listeners: list[Callable[[Change], None]] = []
        self._case_numbers = iter(range(1001, 10**9))
        # EntityDefinition / FieldDefinition rows by durable id ("Opportunity", "Opportunity.OwnerId").
        self._durable: dict[str, tuple[str, dict]] = {}
        for name in self.schema:
            self._refresh_definitions(name)
        now = clock()
        self.records["Organization"][org_id] = self._system_values("Organization", org_id, None, now) | {
            "Name": org_name, "IsSandbox": False, "OrganizationType": "Enterprise Edition",
            "InstanceName": "EMU5", "TimeZoneSidKey": "America/New_York",
        }
        self.integration_user_id = self.insert_trusted("User", {
            "Username": "integration@baton-emulator.example", "FirstName": "Integration", "LastName": "User",
            "Email": "integration@baton-emulator.example", "Alias": "integ", "IsActive": True,
            "UserType": "Standard", "Title": "API Integration",
        })
        self.admin_user_id = self.insert_trusted("User", {
            "Username": "admin@baton-emulator.example", "FirstName": "Ada", "LastName": "Admin",
            "Email": "admin@baton-emulator.example", "Alias": "aadmin", "IsActive": True,
            "UserType": "Standard", "Title": "Salesforce Administrator",
        })

    # ----------------------------------------------------------------- lookups
    def object_def(self, name: str) -> ObjectDef:
        obj = self.schema.get(name) or next((o for n, o in self.schema.items() if n.lower() == name.lower()), None)
        if obj is None:
            raise SalesforceError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{name}'")
        return obj

    def get(self, record_id: str | None, *, include_deleted: bool = False) -> tuple[str, dict] | None:
        if not record_id:
            return None
        if record_id in self._durable:
            return self._durable[record_id]
        if not _ID_PATTERN.match(record_id):
            return None
        record_id = normalize_id(record_id)
        sobject = object_for_id(record_id)
        record = self.records.get(sobject, {}).get(record_id) if sobject else None
        if record is None or (record["IsDeleted"] and not include_deleted):
            return None
        return sobject, record

    def live_records(self, sobject: str, *, include_deleted: bool = False) -> Iterator[dict]:
        for record in self.records[sobject].values():
            if include_deleted or not record["IsDeleted"]:
                yield record

    def child_records(self, child: str, field_name: str, parent_id: str) -> list[dict]:
        table = self.records[child]
        ids = self.children.get((child, field_name), {}).get(parent_id, ())
        return [table[i] for i in ids if not table[i]["IsDeleted"]]

    def display_name(self, record_id: str | None) -> str | None:
        found = self.get(record_id, include_deleted=True)
        return found[1].get("Name") if found else None

    # ----------------------------------------------------------------- schema changes
    def add_field(self, sobject: str, new_field: FieldDef) -> None:
        with self.lock:
            obj = self.object_def(sobject)
            self.schema[obj.name] = obj.with_field(new_field)
            default = new_field.default if new_field.type == "boolean" else None
            for record in self.records[obj.name].values():
                record.setdefault(new_field.name, default)
            self._refresh_definitions(obj.name)

    def remove_field(self, sobject: str, name: str) -> None:
        with self.lock:
            obj = self.object_def(sobject)
            self.schema[obj.name] = obj.without_field(name)
            for record in self.records[obj.name].values():
                record.pop(name, None)
            self._refresh_definitions(obj.name)

    def set_history_tracking(self, sobject: str, field_name: str, tracked: bool) -> None:
        """Turn field history tracking on or off for one field (Setup → Fields → Set History Tracking)."""
        with self.lock:
            obj = self.object_def(sobject)
            definition = obj.get_field(field_name)
            if obj.history is None or definition is None:
                raise SalesforceError(400, "INVALID_FIELD", f"{obj.name}.{field_name} cannot be history tracked")
            names = obj.history.tracked | {definition.name} if tracked else obj.history.tracked - {definition.name}
            history = HistoryConfig(obj.history.history_object, obj.history.parent_field, frozenset(names))
            self.schema[obj.name] = replace(obj, history=history, _by_lower={})
            self._refresh_definitions(obj.name)

    def _refresh_definitions(self, sobject: str) -> None:
        """Rebuild the EntityDefinition and FieldDefinition rows of one object from its schema."""
        if sobject in DEFINITION_OBJECTS:
            return
        obj = self.schema[sobject]
        entities, fields = self.records["EntityDefinition"], self.records["FieldDefinition"]
        by_entity = self.children[("FieldDefinition", "EntityDefinitionId")]
        for old_id in by_entity.pop(obj.name, ()):
            fields.pop(old_id, None)
            self._durable.pop(old_id, None)
        entity = {"Id": obj.name, "IsDeleted": False, "DurableId": obj.name, "QualifiedApiName": obj.name,
                  "DeveloperName": obj.name, "Label": obj.label or obj.name, "KeyPrefix": obj.key_prefix or None}
        entities[obj.name] = entity
        self._durable[obj.name] = ("EntityDefinition", entity)
        tracked = obj.history.tracked if obj.history else frozenset()
        for definition in obj.fields:
            durable_id = f"{obj.name}.{definition.name}"
            row = {"Id": durable_id, "IsDeleted": False, "DurableId": durable_id,
                   "QualifiedApiName": definition.name, "DeveloperName": definition.name.removesuffix("__c"),
                   "Label": definition.describe()["label"], "DataType": _data_type(definition),
                   "EntityDefinitionId": obj.name, "IsFieldHistoryTracked": definition.name in tracked,
                   "IsNillable": definition.nillable}
            fields[durable_id] = row
            self._durable[durable_id] = ("FieldDefinition", row)
            by_entity[obj.name].append(durable_id)

    # ----------------------------------------------------------------- DML
    def insert(self, sobject: str, values: dict, *, actor: str, auto_assign: bool = True,
               at: datetime | None = None) -> str:
        """Create one record or raise `DmlError`/`SalesforceError` (for helpers and single REST calls)."""
        return self._save_one("insert", sobject, None, values, actor, auto_assign, at).id  # type: ignore[return-value]

    def update(self, sobject: str, record_id: str, values: dict, *, actor: str, auto_assign: bool = True,
               at: datetime | None = None) -> None:
        self._save_one("update", sobject, record_id, values, actor, auto_assign, at)

    def _save_one(self, operation: str, sobject: str, record_id: str | None, values: dict, actor: str,
                  auto_assign: bool, at: datetime | None) -> SaveResult:
        result = self.save([(operation, sobject, record_id, values)], actor=actor, all_or_none=True,
                           auto_assign=auto_assign, at=at)[0]
        if not result.success:
            error = result.errors[0]
            raise DmlError(error["statusCode"], error["message"], error["fields"])
        return result

    def save(self, operations: list[tuple[str, str, str | None, dict]], *, actor: str, all_or_none: bool,
             auto_assign: bool, at: datetime | None = None) -> list[SaveResult]:
        """Apply ("insert"|"update"|"delete", sobject, id, values) operations like one DML call.

        Unknown fields and undecodable values fail the whole call (`SalesforceError`), as they
        do in a real org where the JSON cannot even be read into sObjects; everything else is
        a per-record error. With `all_or_none`, one failure rolls back every record.
        """
        changes: list[Change] = []
        with self.lock:
            now = at or self.clock()
            prepared: list[tuple[str, str, dict, dict | None] | DmlError] = []
            for kind, sobject, record_id, values in operations:
                obj = self.object_def(sobject)
                try:
                    if kind == "insert":
                        prepared.append(self._prepare_insert(obj, values, actor, auto_assign, now))
                    elif kind == "update":
                        prepared.append(self._prepare_update(obj, record_id, values, actor, auto_assign, now))
                    else:
                        prepared.append(self._prepare_delete(obj, record_id))
                except DmlError as error:
                    prepared.append(error)
            failed = any(isinstance(p, DmlError) for p in prepared)
            results = []
            for item in prepared:
                if isinstance(item, DmlError):
                    results.append(SaveResult(None, False, [item.as_error()]))
                elif failed and all_or_none:
                    results.append(SaveResult(None, False, [DmlError(
                        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                        "Record rolled back because not all records were valid and the request was using AllOrNone header",
                    ).as_error()]))
                else:
                    kind, sobject, new, old = item
                    changes.append(self._commit(kind, sobject, new, old, actor, now))
                    results.append(SaveResult(new["Id"], True, created=kind == "insert"))
        for change in changes:
            for listener in list(self.listeners):
                listener(change)
        return results

    def _check_fields(self, obj: ObjectDef, values: dict, *, creating: bool) -> dict[str, Any]:
        coerced: dict[str, Any] = {}
        readonly: list[str] = []
        for name, raw in values.items():
            if name == "attributes":
                continue
            definition = obj.get_field(name)
            if definition is None:
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {obj.name}")
            if not (definition.createable if creating else definition.updateable):
                if not (not creating and definition.name == "Id"):
                    readonly.append(definition.name)
                continue
            coerced[definition.name] = value = from_json_value(obj, definition, raw)
            if definition.restricted_picklist and value is not None and value not in definition.picklist_values:
                raise DmlError("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                               f"{definition.label or definition.name}: bad value for restricted picklist field: {value}",
                               [definition.name])
        if readonly:
            raise DmlError(
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of "
                "this field and verify that it is read/write for your profile or permission set.",
                readonly,
            )
        return coerced

    def _prepare_insert(self, obj: ObjectDef, values: dict, actor: str, auto_assign: bool,
                        now: datetime) -> tuple[str, str, dict, None]:
        if not obj.createable:
            raise DmlError("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"entity type {obj.name} does not support insert")
        record = {f.name: f.default for f in obj.fields}
        record.update(self._check_fields(obj, values, creating=True))
        if obj.get_field("OwnerId") and not record.get("OwnerId"):
            record["OwnerId"] = actor
        if auto_assign and obj.name in self.assignment_rules:
            record["OwnerId"] = self.assignment_rules[obj.name]
        missing = [name for name in obj.required_on_create if record.get(name) in (None, "")]
        if missing:
            raise DmlError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]", missing)
        self._check_references(obj, record, record.keys())
        record["Id"] = self.ids.new(obj.key_prefix)
        self._derive(obj, record, set(record), None, now)
        return "insert", obj.name, record, None

    def _prepare_update(self, obj: ObjectDef, record_id: str | None, values: dict, actor: str,
                        auto_assign: bool, now: datetime) -> tuple[str, str, dict, dict]:
        current = self._existing(obj, record_id)
        if not obj.updateable:
            raise DmlError("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", f"entity type {obj.name} does not support update")
        changes = self._check_fields(obj, values, creating=False)
        if auto_assign and obj.name in self.assignment_rules:
            changes["OwnerId"] = self.assignment_rules[obj.name]
        for name, value in changes.items():
            if value is None and not obj.get_field(name).nillable:  # type: ignore[union-attr]
                raise DmlError("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{name}]", [name])
        self._check_references(obj, changes, changes.keys())
        record = dict(current) | changes
        self._derive(obj, record, set(changes), current, now)
        return "update", obj.name, record, current

    def _prepare_delete(self, obj: ObjectDef, record_id: str | None) -> tuple[str, str, dict, dict]:
        current = self._existing(obj, record_id)
        return "delete", obj.name, dict(current) | {"IsDeleted": True}, current

    def _existing(self, obj: ObjectDef, record_id: str | None) -> dict:
        if not record_id or not _ID_PATTERN.match(record_id):
            raise DmlError("MALFORMED_ID", f"{obj.name} ID: id value of incorrect type: {record_id}", ["Id"])
        record = self.records[obj.name].get(normalize_id(record_id))
        if record is None:
            raise DmlError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
        if record["IsDeleted"]:
            raise DmlError("ENTITY_IS_DELETED", "entity is deleted", [])
        return record

    def _check_references(self, obj: ObjectDef, record: dict, names: Iterable[str]) -> None:
        for name in names:
            definition = obj.get_field(name)
            value = record.get(name)
            if definition is None or definition.type != "reference" or value is None or name == "Id":
                continue
            if not _ID_PATTERN.match(value):
                raise DmlError("MALFORMED_ID", f"{definition.name}: id value of incorrect type: {value}", [name])
            found = self.get(value)
            if found is None or found[0] not in definition.reference_to:
                raise DmlError("INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id", [name])
            if name == "OwnerId" and found[0] == "User" and not found[1]["IsActive"]:
                raise DmlError(
                    "INACTIVE_OWNER_OR_USER",
                    f"operation performed with inactive user [{value}] as owner of {obj.name.lower()}",
                    [name],
                )

    def _derive(self, obj: ObjectDef, record: dict, changed: set[str], before: dict | None, now: datetime) -> None:
        """Fields a real org computes itself on every save."""
        if obj.get_field("FirstName") and obj.get_field("Name") and not obj.get_field("Name").createable:
            record["Name"] = " ".join(p for p in (record.get("FirstName"), record.get("LastName")) if p)
        if obj.name == "Opportunity" and "StageName" in changed:
            probability, closed, won = OPPORTUNITY_STAGES.get(record["StageName"], (record.get("Probability"), False, False))
            record["IsClosed"], record["IsWon"] = closed, won
            if "Probability" not in changed:
                record["Probability"] = probability
        elif obj.name == "Case":
            record["IsClosed"] = record.get("Status") in CLOSED_CASE_STATUSES
            if record["IsClosed"] and not (before or {}).get("IsClosed"):
                record["ClosedDate"] = now
            elif not record["IsClosed"]:
                record["ClosedDate"] = None
            if before is None:
                record["CaseNumber"] = f"{next(self._case_numbers):08d}"
        elif obj.name == "Task":
            record["IsClosed"] = record.get("Status") in CLOSED_TASK_STATUSES
            record["IsHighPriority"] = record.get("Priority") == "High"
            if record["IsClosed"] and not (before or {}).get("IsClosed"):
                record["CompletedDateTime"] = now
            elif not record["IsClosed"]:
                record["CompletedDateTime"] = None
        elif obj.name == "ContentNote":
            content = record.get("Content") or b""
            record.update(TextPreview=_note_preview(content), FileType="SNOTE", FileExtension="snote",
                          ContentSize=len(content))
        elif obj.name == "EmailMessage":
            record["HasAttachment"] = False
        elif obj.name == "EmailMessageRelation":
            related = self.get(record.get("RelationId"))
            record["RelationObjectType"] = related[0] if related else None
            if related and not record.get("RelationAddress"):
                record["RelationAddress"] = related[1].get("Email")

    def _commit(self, kind: str, sobject: str, record: dict, before: dict | None, actor: str,
                now: datetime) -> Change:
        table = self.records[sobject]
        if kind == "insert":
            record.update(self._system_values(sobject, record["Id"], actor, now))
            table[record["Id"]] = record
            self._index(sobject, record, None)
            self._write_history(sobject, record, None, actor, now)
            changed = frozenset(k for k, v in record.items() if v is not None)
        else:
            if "LastModifiedDate" in record:
                record.update(LastModifiedDate=now, LastModifiedById=actor)
            record["SystemModstamp"] = now
            table[record["Id"]] = record
            self._index(sobject, record, before)
            if kind == "update":
                self._write_history(sobject, record, before, actor, now)
            changed = frozenset(k for k, v in record.items() if before is None or before.get(k) != v)
        return Change(sobject, record["Id"], {"insert": "created", "update": "updated"}.get(kind, "deleted"),
                      changed, dict(record))

    def _system_values(self, sobject: str, record_id: str, actor: str | None, now: datetime) -> dict:
        """Id, IsDeleted and the audit fields, limited to those the object has."""
        actor = actor or record_id  # the very first user is created by itself
        values = {"Id": record_id, "IsDeleted": False, "CreatedDate": now, "CreatedById": actor,
                  "LastModifiedDate": now, "LastModifiedById": actor, "SystemModstamp": now}
        obj = self.schema[sobject]
        return {name: value for name, value in values.items() if obj.get_field(name) is not None}

    def _index(self, sobject: str, record: dict, before: dict | None) -> None:
        for definition in self.schema[sobject].fields:
            if definition.type != "reference" or definition.name in {"CreatedById", "LastModifiedById"}:
                continue
            old = before.get(definition.name) if before else None
            new = record.get(definition.name)
            if old == new:
                continue
            bucket = self.children[(sobject, definition.name)]
            if old:
                bucket[old].remove(record["Id"])
            if new:
                bucket[new].append(record["Id"])

    def _write_history(self, sobject: str, record: dict, before: dict | None, actor: str, now: datetime) -> None:
        config = self.schema[sobject].history
        if config is None:
            return
        rows: list[tuple[str, str, Any, Any]] = []
        if before is None:
            rows.append(("created", "Text", None, None))
        else:
            for name in sorted(config.tracked):
                old, new = before.get(name), record.get(name)
                if old == new:
                    continue
                if name == "OwnerId":
                    # A real org logs an owner change twice: once with ids, once with names.
                    rows.append(("Owner", "EntityId", old, new))
                    rows.append(("Owner", "Text", self.display_name(old), self.display_name(new)))
                else:
                    data_type = self.schema[sobject].get_field(name).type.capitalize()  # type: ignore[union-attr]
                    rows.append((name, data_type, to_json_value(old), to_json_value(new)))
        for field_name, data_type, old, new in rows:
            self.insert_history(config.history_object, config.parent_field, record["Id"], field_name,
                                old, new, actor=actor, at=now, data_type=data_type)

    def insert_history(self, history_object: str, parent_field: str, parent_id: str, field_name: str,
                       old: Any, new: Any, *, actor: str, at: datetime, data_type: str = "Text") -> str:
        history_id = self.ids.new("017")
        row = {"Id": history_id, "IsDeleted": False, "CreatedDate": at, "CreatedById": actor,
               parent_field: parent_id, "Field": field_name, "DataType": data_type,
               "OldValue": old, "NewValue": new}
        self.records[history_object][history_id] = row
        self.children[(history_object, parent_field)][parent_id].append(history_id)
        return history_id

    def insert_trusted(self, sobject: str, values: dict, *, actor: str | None = None,
                       at: datetime | None = None, history: bool = True) -> str:
        """Fast path for seeding: no validation, but the same defaults, derived fields and indexes.

        `values` may carry audit fields (CreatedDate, LastModifiedDate, ...) to back-date a record.
        """
        with self.lock:
            obj = self.schema[sobject]
            now = at or self.clock()
            record_id = self.ids.new(obj.key_prefix)
            actor = actor or getattr(self, "admin_user_id", None)
            record = {f.name: f.default for f in obj.fields}
            record.update(self._system_values(sobject, record_id, actor, now))
            record.update(values)
            self._derive(obj, record, set(record), None, record.get("CreatedDate", now))
            self.records[sobject][record_id] = record
            self._index(sobject, record, None)
            if history:
                self._write_history(sobject, record, None, record.get("CreatedById", actor), record.get("CreatedDate", now))
            return record_id


def _data_type(definition: FieldDef) -> str:
    """FieldDefinition.DataType: the type as Setup shows it ("Lookup(User,Group)", "Text(255)")."""
    kind = definition.type
    if kind in ID_TYPES:
        return f"Lookup({','.join(definition.reference_to)})" if definition.reference_to else "Lookup()"
    if kind in {"string", "email", "phone", "url", "textarea"}:
        label = {"string": "Text", "email": "Email", "phone": "Phone", "url": "URL",
                 "textarea": "Long Text Area" if definition.length > 255 else "Text Area"}[kind]
        return f"{label}({definition.length})" if kind in {"string", "textarea"} else label
    return {"boolean": "Checkbox", "date": "Date", "datetime": "Date/Time", "double": "Number",
            "int": "Number", "currency": "Currency", "percent": "Percent", "picklist": "Picklist",
            "combobox": "Picklist", "base64": "Content", "anyType": "Any"}.get(kind, kind.capitalize())
