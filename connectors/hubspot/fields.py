"""HubSpot names and value encodings for Baton's neutral vocabulary.

Everything here is pure: which HubSpot object and property a neutral name maps to (read
from `manifest.json`), how Python values become HubSpot property strings and back, the
property definitions `install` creates, and Baton's source marker on tasks and notes.
"""
from __future__ import annotations

import html
import numbers
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping

from adapter.manifest import FieldSpec, field_specs, load_manifest
from adapter.model import stored_marker

CRM = "hubspot"

#: Neutral object type -> HubSpot object type id (used in record URLs and webhooks).
OBJECT_TYPE_IDS = {"contact": "0-1", "company": "0-2", "deal": "0-3", "ticket": "0-5"}

#: Engagement objects Baton reads or writes, by HubSpot name.
TASKS, NOTES, EMAILS, CALLS = "tasks", "notes", "emails", "calls"
#: Activity refs (as webhooks name them: "task", "note", ...) -> HubSpot object name.
ACTIVITY_OBJECTS = {"task": TASKS, "note": NOTES, "email": EMAILS, "call": CALLS}
#: HubSpot object type id of an engagement -> its activity ref type (webhooks, project files).
ACTIVITY_TYPE_IDS = {"0-27": "task", "0-46": "note", "0-49": "email", "0-48": "call"}

#: HubSpot-defined association type ids for the engagements Baton creates.
TASK_ASSOCIATION_TYPES = {"deal": 216, "contact": 204, "company": 192, "ticket": 230}
NOTE_ASSOCIATION_TYPES = {"deal": 214, "contact": 202, "company": 190, "ticket": 228}

#: Per neutral type: the property holding the record's display name(s), stage and pipeline.
NAME_PROPERTIES = {
    "deal": ("dealname",),
    "contact": ("firstname", "lastname", "email"),
    "company": ("name",),
    "ticket": ("subject",),
}
STAGE_PROPERTY = {"deal": "dealstage", "contact": "lifecyclestage", "company": "lifecyclestage",
                  "ticket": "hs_pipeline_stage"}
PIPELINE_PROPERTY = {"deal": "pipeline", "ticket": "hs_pipeline"}
MODIFIED_PROPERTY = {"deal": "hs_lastmodifieddate", "contact": "lastmodifieddate",
                     "company": "hs_lastmodifieddate", "ticket": "hs_lastmodifieddate"}
OWNER_PROPERTY = "hubspot_owner_id"
CREATED_PROPERTY = "createdate"
#: HubSpot's "Last activity date", kept on contacts, companies, deals and tickets: when a note,
#: email, call, meeting or task was last logged on the record. Read-only, set by HubSpot.
ACTIVITY_DATE_PROPERTY = "notes_last_updated"

#: The record types whose associated records Baton also associates its tasks with.
RELATED_TYPES = {"deal": ("contact", "company"), "ticket": ("contact", "company"),
                 "contact": ("company",), "company": ()}

TASK_PROPERTIES = ("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_status",
                   "hs_task_completion_date", "hubspot_owner_id")
ACTIVITY_PROPERTIES = {
    NOTES: ("hs_note_body", "hs_timestamp", "hs_createdate", "hubspot_owner_id"),
    EMAILS: ("hs_email_html", "hs_email_text", "hs_email_direction", "hs_timestamp", "hs_createdate",
             "hubspot_owner_id"),
    CALLS: ("hs_call_body", "hs_call_direction", "hs_timestamp", "hs_createdate", "hubspot_owner_id"),
}
EMAIL_DIRECTIONS = {"EMAIL": "outbound", "INCOMING_EMAIL": "inbound", "FORWARDED_EMAIL": "inbound"}
CALL_DIRECTIONS = {"OUTBOUND": "outbound", "INBOUND": "inbound"}

#: Baton's marker on the tasks and notes it creates: "<source>|<record key>". Connector-internal:
#: install creates it on tasks and notes next to the manifest's record fields.
MARKER_PROPERTY = "baton_source"
MARKER_LABEL = "Baton source"
MARKER_DESCRIPTION = "Set by Baton on the tasks and notes it creates; do not edit."
MARKER_OBJECTS = (TASKS, NOTES)

#: When HubSpot stored the tasks and notes Baton itself created on a record (see
#: `own_activity`). Connector-internal and hidden: install creates it on every record type.
OWN_ACTIVITY_PROPERTY = "baton_own_activity_stamps"
OWN_ACTIVITY_LABEL = "Baton own activity stamps"
OWN_ACTIVITY_DESCRIPTION = "Set by Baton: when it logged its own notes and tasks here; do not edit."

# Manifest field type -> (HubSpot type, fieldType).
PROPERTY_TYPES = {
    "enumeration": ("enumeration", "select"),
    "string": ("string", "text"),
    "datetime": ("datetime", "date"),
    "number": ("number", "number"),
    "bool": ("bool", "booleancheckbox"),
}
BOOL_OPTIONS = (("true", "Yes"), ("false", "No"))


@dataclass(frozen=True)
class HubSpotFields:
    """The manifest as HubSpot sees it: object names, property names, property definitions."""

    object_names: Mapping[str, str]  # neutral -> HubSpot ("deal" -> "deals")
    specs: Mapping[str, FieldSpec]  # neutral field name -> spec
    group_name: str
    group_label: str

    @classmethod
    def from_manifest(cls, manifest: Mapping[str, Any] | None = None) -> "HubSpotFields":
        manifest = manifest if manifest is not None else load_manifest()
        crm = manifest["crms"][CRM]
        specs = {spec.name: spec for spec in field_specs(manifest) if CRM in spec.crm_names}
        group = crm.get("property_group", {"name": "baton", "label": "Baton"})
        return cls(dict(crm["object_types"]), specs, group["name"], group["label"])

    # -- names ---------------------------------------------------------------------------
    def object_name(self, object_type: str) -> str:
        try:
            return self.object_names[object_type]
        except KeyError:
            raise ValueError(f"HubSpot has no object type {object_type!r}") from None

    def property_name(self, field_name: str) -> str:
        try:
            return self.specs[field_name].name_in(CRM)
        except KeyError:
            raise ValueError(f"unknown Baton field {field_name!r}") from None

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(spec.name_in(CRM) for spec in self.specs.values())

    def record_properties(self, object_type: str) -> list[str]:
        """Every property `load` reads for a record of this neutral type."""
        names = [*NAME_PROPERTIES[object_type], STAGE_PROPERTY[object_type], OWNER_PROPERTY,
                 CREATED_PROPERTY, MODIFIED_PROPERTY[object_type], ACTIVITY_DATE_PROPERTY, OWN_ACTIVITY_PROPERTY]
        if object_type in PIPELINE_PROPERTY:
            names.append(PIPELINE_PROPERTY[object_type])
        return sorted(set(names) | set(self.property_names))

    # -- values --------------------------------------------------------------------------
    def encode_fields(self, values: Mapping[str, Any]) -> dict[str, str]:
        """Neutral field values -> HubSpot property strings (raises ValueError on a bad value)."""
        out = {}
        for name, value in values.items():
            spec = self.specs.get(name)
            if spec is None:
                raise ValueError(f"unknown Baton field {name!r}")
            out[spec.name_in(CRM)] = encode_value(spec.type, value)
        return out

    def decode_fields(self, properties: Mapping[str, str | None]) -> dict[str, Any]:
        """HubSpot properties -> Baton's fields by neutral name (None where empty)."""
        return {name: decode_value(spec.type, properties.get(spec.name_in(CRM)))
                for name, spec in self.specs.items()}

    # -- install -------------------------------------------------------------------------
    def property_definitions(self) -> list[dict[str, Any]]:
        """The record properties `install` creates, as HubSpot property-create bodies."""
        return [property_definition(spec, self.group_name) for spec in self.specs.values()]

    def marker_definition(self) -> dict[str, Any]:
        return {"name": MARKER_PROPERTY, "label": MARKER_LABEL, "type": "string", "fieldType": "text",
                "groupName": self.group_name, "description": MARKER_DESCRIPTION}

    def own_activity_definition(self) -> dict[str, Any]:
        return {"name": OWN_ACTIVITY_PROPERTY, "label": OWN_ACTIVITY_LABEL, "type": "string", "fieldType": "text",
                "groupName": self.group_name, "description": OWN_ACTIVITY_DESCRIPTION, "hidden": True}


def property_definition(spec: FieldSpec, group_name: str) -> dict[str, Any]:
    kind, field_type = PROPERTY_TYPES[spec.type]
    definition: dict[str, Any] = {
        "name": spec.name_in(CRM), "label": spec.label, "type": kind, "fieldType": field_type,
        "groupName": group_name, "description": spec.description,
    }
    options = spec.options if spec.type == "enumeration" else BOOL_OPTIONS if spec.type == "bool" else ()
    if options:
        definition["options"] = [{"value": value, "label": label, "displayOrder": i, "hidden": False}
                                 for i, (value, label) in enumerate(options)]
    return definition


# -- value encoding ----------------------------------------------------------------------
def encode_value(kind: str, value: Any) -> str:
    """A Python value -> the string HubSpot stores; "" clears the property."""
    if value is None:
        return ""
    if kind == "datetime":
        if not isinstance(value, datetime):
            raise ValueError(f"expected a datetime, got {value!r}")
        return format_datetime(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected a bool, got {value!r}")
        return "true" if value else "false"
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"expected a number, got {value!r}")
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def decode_value(kind: str, raw: str | None) -> Any:
    """A HubSpot property string -> a Python value; None for empty or unparseable values."""
    if raw is None or raw == "":
        return None
    if kind == "datetime":
        return parse_datetime(raw)
    if kind == "bool":
        return {"true": True, "false": False}.get(raw.strip().lower())
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            return None
        return int(number) if number.is_integer() else number
    return raw


def format_datetime(value: datetime) -> str:
    """An aware datetime -> ISO 8601 UTC with milliseconds, as HubSpot returns them.

    HubSpot datetime properties accept this form and epoch milliseconds alike; the ISO form
    keeps values readable in request logs and equal to what a later read returns.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: Baton writes only timezone-aware times")
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def epoch_ms(value: datetime) -> str:
    """An aware datetime -> epoch milliseconds (search filters compare timestamps this way;
    HubSpot keeps datetimes to the millisecond). Exact: no float rounding."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}")
    return str((value - _EPOCH) // timedelta(milliseconds=1))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


_DIGITS = re.compile(r"-?\d+")


def parse_datetime(raw: str | datetime | None) -> datetime | None:
    """HubSpot's datetime forms -> an aware UTC datetime.

    HubSpot returns ISO 8601 ("2026-11-22T15:00:00.000Z"), date-only values ("2026-11-22",
    midnight UTC) and, in older payloads, epoch milliseconds.
    """
    if raw is None or raw == "":
        return None
    if isinstance(raw, datetime):
        aware = raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
        return aware.astimezone(timezone.utc)
    text = raw.strip()
    if _DIGITS.fullmatch(text):
        return datetime.fromtimestamp(int(text) / 1000, tz=timezone.utc)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


# -- Baton's marker ----------------------------------------------------------------------
#: The stored marker: the action's source plus the record it belongs to (the core's format,
#: which `adapter.model.read_marker` reads back).
encode_marker = stored_marker


def decode_marker(raw: str | None) -> str | None:
    """The action's source back from a stored marker (None when the object has none)."""
    if not raw:
        return None
    return raw.split("|", 1)[0] or None


# -- text ----------------------------------------------------------------------------------
def text_to_html(text: str) -> str:
    """Plain text -> the simple HTML HubSpot's rich-text bodies expect (escaped, line breaks kept)."""
    paragraphs = [p for p in text.strip().split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.strip().split("\n")) + "</p>"
        for p in paragraphs
    )

