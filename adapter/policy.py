"""The policy file (`baton.yml`): what Baton enforces, on whose calendar, and who gets
ownerless records. Validated with marshmallow; every error names its key path and the
value that was refused."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates

from adapter.clock import WEEKDAYS, BusinessCalendar, Duration
from adapter.errors import PolicyError

OBJECT_TYPES = ("deal", "contact", "company", "ticket", "lead", "opportunity", "account", "case")
#: Notes and emails are usually linked to a deal *and* its contact and company; mining them
#: on one record type only keeps one promise from becoming three tasks.
COMMITMENT_OBJECTS = ("deal", "ticket", "lead", "opportunity", "case")


class DurationField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return Duration.parse(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class ClockTimeField(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return time.fromisoformat(str(value))
        except ValueError:
            raise ValidationError(f"{value!r} is not a time of day; write e.g. '09:00'") from None


def _nested(schema: type[Schema]) -> fields.Nested:
    """A nested section that may be left out: its own defaults apply."""
    return fields.Nested(schema, load_default=lambda: schema().load({}))


class BusinessHoursSchema(Schema):
    days = fields.List(fields.String(validate=validate.OneOf(WEEKDAYS)), load_default=list(WEEKDAYS[:5]),
                       validate=validate.Length(min=1))
    start = ClockTimeField(load_default=time(9, 0))
    end = ClockTimeField(load_default=time(17, 0))


class HolidaysSchema(Schema):
    country = fields.String(load_default=None, allow_none=True)
    subdivision = fields.String(load_default=None, allow_none=True)
    extra = fields.List(fields.Date(), load_default=list)


class ObjectSchema(Schema):
    enabled = fields.Boolean(load_default=True)
    closed_stages = fields.List(fields.String(), load_default=list)


class RoutingSchema(Schema):
    pool = fields.List(fields.Email(), load_default=list)
    fallback = fields.Email(load_default=None, allow_none=True)


class OwnersSchema(Schema):
    require_person = fields.Boolean(load_default=True)
    routing = _nested(RoutingSchema)


class NextActionSchema(Schema):
    prompt_title = fields.String(load_default="Set the next step for {record}")
    prompt_due = DurationField(load_default=lambda: Duration.parse("1 business day"))
    due_soon = DurationField(load_default=lambda: Duration.parse("1 business day"))


class CommitmentsSchema(Schema):
    enabled = fields.Boolean(load_default=True)
    objects = fields.List(fields.String(validate=validate.OneOf(OBJECT_TYPES)),
                          load_default=lambda: list(COMMITMENT_OBJECTS))
    confidence_threshold = fields.Float(load_default=0.7, validate=validate.Range(min=0, max=1))
    default_due = DurationField(load_default=lambda: Duration.parse("2 business days"))
    lookback = DurationField(load_default=lambda: Duration.parse("14 days"))


class WaitingSchema(Schema):
    enabled = fields.Boolean(load_default=True)
    refresh_every = DurationField(load_default=lambda: Duration.parse("4 hours"))


class PolicySchema(Schema):
    timezone = fields.String(load_default="UTC")
    business_hours = _nested(BusinessHoursSchema)
    holidays = _nested(HolidaysSchema)
    objects = fields.Dict(keys=fields.String(validate=validate.OneOf(OBJECT_TYPES)),
                          values=fields.Nested(ObjectSchema), load_default=dict)
    owners = _nested(OwnersSchema)
    next_action = _nested(NextActionSchema)
    commitments = _nested(CommitmentsSchema)
    waiting = _nested(WaitingSchema)

    @validates("timezone")
    def _known_timezone(self, value, **kwargs):
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"{value!r} is not an IANA timezone such as 'America/New_York'") from None

    @post_load
    def _build(self, data, **kwargs):
        return data


@dataclass(frozen=True)
class ObjectPolicy:
    enabled: bool = True
    closed_stages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    """A validated policy. Build one with `load_policy`, `Policy.from_mapping` or `Policy()`."""

    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    objects: Mapping[str, ObjectPolicy] = field(default_factory=dict)
    require_person: bool = True
    routing_pool: tuple[str, ...] = ()
    routing_fallback: str | None = None
    prompt_title: str = "Set the next step for {record}"
    prompt_due: Duration = Duration(1, "days", True)
    due_soon: Duration = Duration(1, "days", True)
    commitments_enabled: bool = True
    commitment_objects: frozenset[str] = frozenset(COMMITMENT_OBJECTS)
    confidence_threshold: float = 0.7
    commitment_default_due: Duration = Duration(2, "days", True)
    commitment_lookback: Duration = Duration(14, "days", False)
    waiting_enabled: bool = True
    waiting_refresh: Duration = Duration(4, "hours", False)

    def for_object(self, object_type: str) -> ObjectPolicy:
        return self.objects.get(object_type, ObjectPolicy())

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, *, source: str = "policy") -> "Policy":
        raw = raw or {}
        if not isinstance(raw, Mapping):
            raise PolicyError({"(top)": [f"expected a mapping of settings, got {type(raw).__name__}"]}, source)
        try:
            data = PolicySchema().load(raw)
        except ValidationError as exc:
            raise PolicyError(_flatten_errors(exc.messages, raw), source) from None
        hours, hol = data["business_hours"], data["holidays"]
        if hours["end"] <= hours["start"]:
            raise PolicyError({"business_hours.end": [f"{hours['end']:%H:%M} must be after start {hours['start']:%H:%M}"]}, source)
        try:
            calendar = BusinessCalendar(
                timezone=data["timezone"], opens=hours["start"], closes=hours["end"],
                workdays=frozenset(WEEKDAYS.index(d) for d in hours["days"]),
                holiday_country=hol["country"], holiday_subdivision=hol["subdivision"],
                extra_holidays=frozenset(hol["extra"]),
            )
            calendar.holiday_calendar  # resolves the country now, so a typo fails at load
        except (NotImplementedError, KeyError, ValueError) as exc:
            raise PolicyError({"holidays": [f"unknown holiday calendar {hol['country']!r}/{hol['subdivision']!r}: {exc}"]}, source) from None
        owners, action, commits = data["owners"], data["next_action"], data["commitments"]
        try:
            action["prompt_title"].format(record="x")
        except (KeyError, IndexError, ValueError):
            raise PolicyError({"next_action.prompt_title": [f"{action['prompt_title']!r} may only use the placeholder {{record}}"]}, source) from None
        return cls(
            calendar=calendar,
            objects={name: ObjectPolicy(o["enabled"], frozenset(s.lower() for s in o["closed_stages"]))
                     for name, o in data["objects"].items()},
            require_person=owners["require_person"],
            routing_pool=tuple(e.lower() for e in owners["routing"]["pool"]),
            routing_fallback=(owners["routing"]["fallback"] or None) and owners["routing"]["fallback"].lower(),
            prompt_title=action["prompt_title"],
            prompt_due=action["prompt_due"],
            due_soon=action["due_soon"],
            commitments_enabled=commits["enabled"],
            commitment_objects=frozenset(commits["objects"]),
            confidence_threshold=commits["confidence_threshold"],
            commitment_default_due=commits["default_due"],
            commitment_lookback=commits["lookback"],
            waiting_enabled=data["waiting"]["enabled"],
            waiting_refresh=data["waiting"]["refresh_every"],
        )


def _flatten_errors(messages: Any, raw: Any, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested error dict -> {"owners.routing.pool.1": ["Not a valid email address. (got 'bob')"]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            child = _child(raw, key)
            if key == "key" and prefix:  # a Dict field's key was refused: report the key itself
                path, child = prefix, prefix.rsplit(".", 1)[-1]
            flat.update(_flatten_errors(value, child, path))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        got = "" if raw is _MISSING else f" (got {raw!r})"
        flat[prefix or "(top)"] = [m.rstrip() + got for m in messages]
    else:
        flat[prefix or "(top)"] = [str(messages)]
    return flat


_MISSING = object()


def _child(raw: Any, key: Any) -> Any:
    if isinstance(raw, Mapping):
        return raw.get(key, raw.get(str(key), _MISSING))
    if isinstance(raw, list):
        try:
            return raw[int(key)]
        except (ValueError, IndexError):
            return _MISSING
    return _MISSING


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at `path`, or the defaults when `path` is None."""
    if path is None:
        return Policy.from_mapping({})
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError({"(file)": [f"{path} does not exist; run `baton init` to write an example"]}, str(path)) from None
    except yaml.YAMLError as exc:
        raise PolicyError({"(file)": [f"not valid YAML: {exc}"]}, str(path)) from None
    return Policy.from_mapping(raw, source=str(path))


EXAMPLE_POLICY = """\
# Baton policy. Every key is optional; the values shown are the defaults unless noted.
# Validate it with `baton audit` (it refuses to run on an invalid policy and names the key).

# The team's calendar: due dates and "business hours waiting" are computed on it.
timezone: America/New_York          # IANA name (default UTC)
business_hours:
  days: [mon, tue, wed, thu, fri]
  start: "09:00"
  end: "17:00"
holidays:
  country: US                       # any country code the `holidays` package knows (default: none)
  subdivision: null                 # e.g. CA for California
  extra: []                         # company days off, e.g. [2026-12-24]

# Which records Baton enforces, and which stages count as closed beyond the CRM's own
# closed stages (deal/ticket pipelines and Salesforce's IsClosed/IsConverted are always used).
objects:
  deal: {enabled: true}
  ticket: {enabled: true}
  contact: {enabled: true, closed_stages: [customer, evangelist, other]}
  company: {enabled: true, closed_stages: [customer, evangelist, other]}
  lead: {enabled: true}
  opportunity: {enabled: true}
  account: {enabled: true}
  case: {enabled: true}

owners:
  require_person: true              # a queue is not an owner: route queue-owned records to a person
  routing:                          # who gets ownerless records, in turn (round robin)
    pool: []                        # e.g. [ana@example.com, ben@example.com]
    fallback: null                  # when nobody in the pool is active, e.g. sales-ops@example.com

next_action:
  prompt_title: "Set the next step for {record}"
  prompt_due: 1 business day        # due date of the prompt task
  due_soon: 1 business day          # a next action due within this is "due_soon"

commitments:                        # notes and emails become linked tasks
  enabled: true
  objects: [deal, ticket, lead, opportunity, case]   # whose notes and emails are read (one promise, one task)
  confidence_threshold: 0.7         # below it the owner gets a "Confirm next step" task instead
  default_due: 2 business days      # when the text names no date
  lookback: 14 days                 # on first install, older notes are not turned into tasks

waiting:
  enabled: true                     # inbound email sets "waiting since"; a reply clears it
  refresh_every: 4 hours            # how often "business hours waiting" is refreshed
"""
