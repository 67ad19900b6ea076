"""Neutral ↔ Salesforce: object names, field names, ids and value encoding.

Everything here is pure and derived from `manifest.json`, so the connector, the Metadata
API installer and the Outbound Message parser agree on one mapping.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from typing import Any, Iterable, Iterator, Mapping, Sequence

from simple_salesforce.format import quote_soql_value

from adapter.manifest import FieldSpec, field_specs, load_manifest

CRM = "salesforce"

#: Key prefixes of the objects Baton reads (the first three characters of every id).
KEY_PREFIXES = {"00Q": "Lead", "006": "Opportunity", "001": "Account", "500": "Case"}
USER_PREFIX = "005"
QUEUE_PREFIX = "00G"

#: Activity objects whose events stand for their record (`Connector.records_for` resolves them).
ACTIVITY_OBJECTS = {"Task": "task", "EmailMessage": "email", "ContentNote": "note"}

#: Baton's marker on the tasks it creates: `{source}|{record key}`.
SOURCE_FIELD = "Baton_Source__c"
TEXT_LIMIT = 255
LONG_TEXT_LIMIT = 32000

_ID_RE = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


# --- ids ---------------------------------------------------------------------------------

def is_sf_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID_RE.match(value))


def to_18(record_id: str) -> str:
    """The case-insensitive 18-character form of a 15- or 18-character Salesforce id.

    Salesforce answers with 18-character ids, but formulas, reports and some Flow values
    carry the 15-character form; Baton keys records by the 18-character one.
    """
    if not is_sf_id(record_id):
        raise ValueError(f"not a Salesforce id: {record_id!r}")
    if len(record_id) == 18:
        return record_id
    suffix = ""
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(record_id[chunk * 5:chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix += _CHECKSUM_ALPHABET[bits]
    return record_id + suffix


def is_queue_id(owner_id: str | None) -> bool:
    return bool(owner_id) and owner_id.startswith(QUEUE_PREFIX)


def is_user_id(owner_id: str | None) -> bool:
    return bool(owner_id) and owner_id.startswith(USER_PREFIX)


def org15(org_id: str) -> str:
    """Org ids are compared on their first 15 characters (the case-sensitive form)."""
    return (org_id or "").strip()[:15]


# --- values ------------------------------------------------------------------------------

def parse_datetime(value: Any) -> datetime | None:
    """Salesforce's `2024-03-05T14:07:00.000+0000` (or ISO with `Z`) → aware UTC datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def format_datetime(value: datetime) -> str:
    """An aware datetime as Salesforce writes it (UTC, milliseconds). Naive means UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def soql_datetime(value: datetime) -> str:
    """A datetime literal for a SOQL WHERE clause (unquoted, UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_date(value: date) -> str:
    return value.strftime("%Y-%m-%d")


def end_of_day(day: date, tz: tzinfo) -> datetime:
    """A Task's ActivityDate as a due time: the end of that day in the org's timezone."""
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=tz).astimezone(timezone.utc)


def soql_quote(value: str) -> str:
    """A SOQL string literal, escaped by simple-salesforce (quotes, backslashes, control characters)."""
    return quote_soql_value(str(value))


def soql_in(values: Iterable[str]) -> str:
    """`('a','b')` for an IN clause; callers never pass an empty collection."""
    quoted = [soql_quote(v) for v in values]
    if not quoted:
        raise ValueError("an IN clause needs at least one value")
    return "(" + ",".join(quoted) + ")"


#: Records per sObject Collections call, and ids per SOQL `IN` list.
BATCH = 200


def chunks(items: Sequence, size: int = BATCH) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def truncate(text: str | None, limit: int = TEXT_LIMIT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the manifest mapping ----------------------------------------------------------------

@dataclass(frozen=True)
class SalesforceField:
    """One of Baton's fields as Salesforce holds it."""

    spec: FieldSpec
    api_name: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def type(self) -> str:
        return self.spec.type


class FieldMap:
    """Neutral field and object names ↔ Salesforce API names, with value encoding.

    Built from the manifest; `FieldMap.default()` uses the project's `manifest.json`.
    """

    def __init__(self, manifest: Mapping[str, Any]):
        section = manifest["crms"][CRM]
        self.manifest = manifest
        self.object_names: dict[str, str] = dict(section["object_types"])
        self.object_types: dict[str, str] = {v: k for k, v in self.object_names.items()}
        self.fields: tuple[SalesforceField, ...] = tuple(
            SalesforceField(spec, spec.name_in(CRM)) for spec in field_specs(manifest) if CRM in spec.crm_names
        )
        self._by_name = {f.name: f for f in self.fields}
        self._by_api = {f.api_name: f for f in self.fields}

    @classmethod
    def default(cls) -> "FieldMap":
        return cls(load_manifest())

    # objects
    def sobject(self, object_type: str) -> str:
        try:
            return self.object_names[object_type]
        except KeyError:
            raise ValueError(f"Salesforce has no object type {object_type!r}; known: {sorted(self.object_names)}") from None

    def object_type(self, sobject: str) -> str | None:
        """Neutral type for a Salesforce object name (`Opportunity` → `opportunity`), else None."""
        return self.object_types.get(sobject)

    def event_type(self, sobject: str) -> str | None:
        """Neutral type of a webhook's object: a record type, or task/email/note."""
        return self.object_types.get(sobject) or ACTIVITY_OBJECTS.get(sobject)

    def object_type_of_id(self, record_id: str) -> str | None:
        sobject = KEY_PREFIXES.get((record_id or "")[:3])
        return self.object_types.get(sobject) if sobject else None

    # fields
    @property
    def api_names(self) -> list[str]:
        return [f.api_name for f in self.fields]

    def api_name(self, name: str) -> str:
        try:
            return self._by_name[name].api_name
        except KeyError:
            raise ValueError(f"manifest has no field {name!r}") from None

    def encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Neutral values → a Salesforce record body (JSON-ready)."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            field = self._by_name.get(name)
            if field is None:
                raise ValueError(f"manifest has no field {name!r}")
            out[field.api_name] = encode_value(field.type, value)
        return out

    def decode(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A Salesforce record → Baton's fields by neutral name (missing fields are None)."""
        return {f.name: decode_value(f.type, record.get(f.api_name)) for f in self.fields}


def encode_value(kind: str, value: Any) -> Any:
    if kind == "bool":
        return bool(value)  # a checkbox is never null
    if value is None or value == "":
        return None
    if kind == "datetime":
        if not isinstance(value, datetime):
            value = parse_datetime(value)
        return format_datetime(value)
    if kind == "number":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, (int, float)) else float(value)
    if kind in ("string", "enumeration"):
        return truncate(str(value))
    raise ValueError(f"unknown field type {kind!r}")


def decode_value(kind: str, value: Any) -> Any:
    if kind == "bool":
        return bool(value) if value is not None else False
    if value is None or value == "":
        return None
    if kind == "datetime":
        return parse_datetime(value)
    if kind == "number":
        number = float(value)
        return int(number) if number.is_integer() else number
    return str(value)
