"""Baton's visibility fields: what they should hold for a record, and which ones changed.

Values are compared the way the CRMs store them (datetimes to the second, numbers as
numbers), so a record that already holds the right values produces no write.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

#: The fields the first wave maintains (the SLA and escalation fields come with routing).
MAINTAINED = (
    "follow_up_status", "next_action", "next_action_due", "owner_of_record", "owner_assigned_at",
    "owner_transfers", "last_transfer_at", "waiting_since", "hours_waiting", "activities_read_at",
)
TEXT_LIMIT = 255


def to_second(moment: datetime | None) -> datetime | None:
    """CRMs keep datetimes to the second (Salesforce) or millisecond (HubSpot): compare on seconds."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).replace(microsecond=0)


def normalise(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_second(value)
    if isinstance(value, str):
        value = value.strip()[:TEXT_LIMIT]
        return value or None
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def changed_fields(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired values that differ from what the record holds."""
    changes = {}
    for name, value in desired.items():
        want = normalise(value)
        if normalise(current.get(name)) != want:
            changes[name] = want
    return changes
