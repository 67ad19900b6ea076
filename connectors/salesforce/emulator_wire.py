"""What the emulated org's API speaks: errors as Salesforce words them, save results, ids,
and field values to and from JSON.

Shared by the REST handlers, the SOQL parser and evaluator, the Metadata API and `OrgState`:
none of them needs the record store for these.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, Iterable

from .emulator_schema import ID_TYPES, NUMBER_TYPES, FieldDef, ObjectDef, to_18

__all__ = ["SalesforceError", "DmlError", "SaveResult", "format_datetime", "to_json_value", "from_json_value",
           "parse_datetime", "normalize_id"]


class SalesforceError(Exception):
    """A request-level failure, answered as `[{"message", "errorCode"}]` with an HTTP status."""

    def __init__(self, status: int, error_code: str, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields)

    def body(self) -> list[dict]:
        entry: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields:
            entry["fields"] = self.fields
        return [entry]


class DmlError(Exception):
    """A record-level failure: one entry of a SaveResult's `errors`."""

    def __init__(self, status_code: str, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(f"{status_code}: {message}")
        self.status_code = status_code
        self.message = message
        self.fields = list(fields)

    def as_error(self) -> dict:
        return {"statusCode": self.status_code, "message": self.message, "fields": self.fields}


@dataclass
class SaveResult:
    id: str | None
    success: bool
    errors: list[dict] = field(default_factory=list)
    created: bool = False

    def as_json(self) -> dict:
        return {"id": self.id, "success": self.success, "errors": self.errors}


def format_datetime(value: datetime) -> str:
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"


def to_json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def parse_datetime(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    # Salesforce reads a timestamp without an offset as UTC.
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def normalize_id(value: str) -> str:
    return to_18(value) if len(value) == 15 else value


def from_json_value(obj: ObjectDef, definition: FieldDef, raw: Any) -> Any:
    """A field value as a request body carries it, typed; JSON_PARSER_ERROR when it cannot be."""
    if raw is None or (raw == "" and definition.type not in {"string", "textarea", "combobox"}):
        return None
    kind = definition.type
    try:
        if kind == "boolean":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in {"true", "false"}:
                return raw.lower() == "true"
            raise ValueError(raw)
        if kind == "date":
            return date.fromisoformat(raw[:10]) if isinstance(raw, str) else _fail(raw)
        if kind == "datetime":
            return parse_datetime(raw) if isinstance(raw, str) else _fail(raw)
        if kind in NUMBER_TYPES:
            if isinstance(raw, bool):
                raise ValueError(raw)
            number = float(raw)
            return int(number) if kind == "int" else number
        if kind == "base64":
            return base64.b64decode(raw, validate=True) if isinstance(raw, str) else _fail(raw)
        if kind in ID_TYPES:
            return normalize_id(raw) if isinstance(raw, str) else _fail(raw)
        if not isinstance(raw, (str, int, float)):
            raise ValueError(raw)
        return str(raw)
    except (ValueError, TypeError):
        raise SalesforceError(
            400, "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {kind} from value {raw!r} for field {obj.name}.{definition.name}",
        ) from None


def _fail(raw: Any) -> Any:
    raise ValueError(raw)
