"""Business time: opening hours per timezone, public holidays, and durations such as
"1 business day" or "4 business hours".

Deadlines that people feel ("respond within 4 business hours") only make sense on the
calendar of the team that owns them, so every computation happens in that team's timezone
and the results are returned as aware datetimes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from functools import cached_property
from zoneinfo import ZoneInfo

import holidays as holiday_calendars

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DURATION = re.compile(
    r"^\s*(?P<amount>\d+(?:\.\d+)?)\s*(?P<business>business\s+|working\s+)?"
    r"(?P<unit>minutes?|mins?|hours?|hrs?|days?|weeks?)\s*$",
    re.IGNORECASE,
)
_UNIT = {"min": "minutes", "hou": "hours", "hrs": "hours", "hr": "hours", "day": "days", "wee": "weeks"}


@dataclass(frozen=True)
class Duration:
    """A span of calendar or business time, as written in a policy."""

    amount: float
    unit: str  # minutes | hours | days | weeks
    business: bool = False

    @classmethod
    def parse(cls, text: str) -> "Duration":
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(
                f"{text!r} is not a duration; write e.g. '30 minutes', '4 business hours', '1 business day', '2 weeks'"
            )
        unit_word = match["unit"].lower()
        unit = _UNIT.get(unit_word[:3]) or _UNIT[unit_word[:2]]
        return cls(float(match["amount"]), unit, bool(match["business"]))

    def __str__(self) -> str:
        amount = int(self.amount) if self.amount == int(self.amount) else self.amount
        unit = self.unit[:-1] if amount == 1 else self.unit
        return f"{amount} {'business ' if self.business else ''}{unit}"


def _as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class BusinessCalendar:
    """Opening hours, working days and holidays of one team."""

    timezone: str = "UTC"
    opens: time = time(9, 0)
    closes: time = time(17, 0)
    workdays: frozenset[int] = frozenset(range(5))
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self):
        if self.closes <= self.opens:
            raise ValueError("business hours must close after they open")
        if not self.workdays:
            raise ValueError("at least one workday is needed")

    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def holiday_calendar(self):
        if not self.holiday_country:
            return {}
        return holiday_calendars.country_holidays(self.holiday_country, subdiv=self.holiday_subdivision)

    @property
    def hours_per_day(self) -> float:
        return (datetime.combine(date.min, self.closes) - datetime.combine(date.min, self.opens)).seconds / 3600

    def local(self, moment: datetime) -> datetime:
        return _as_aware(moment).astimezone(self.zone)

    def is_business_day(self, day: date) -> bool:
        return day.weekday() in self.workdays and day not in self.holiday_calendar and day not in self.extra_holidays

    def next_business_day(self, day: date, *, include_today: bool = False) -> date:
        current = day if include_today else day + timedelta(days=1)
        for _ in range(370):
            if self.is_business_day(current):
                return current
            current += timedelta(days=1)
        raise ValueError("no business day within a year: check workdays and holidays")

    def opening(self, day: date) -> datetime:
        return datetime.combine(day, self.opens, tzinfo=self.zone)

    def closing(self, day: date) -> datetime:
        return datetime.combine(day, self.closes, tzinfo=self.zone)

    def _clamp_forward(self, moment: datetime) -> datetime:
        """The first business instant at or after `moment` (in local time)."""
        local = self.local(moment)
        day = local.date()
        if self.is_business_day(day):
            if local < self.opening(day):
                return self.opening(day)
            if local < self.closing(day):
                return local
        return self.opening(self.next_business_day(day))

    def add(self, start: datetime, duration: Duration) -> datetime:
        """`start` plus `duration`; business durations skip nights, weekends and holidays."""
        start = _as_aware(start)
        if not duration.business:
            return start + timedelta(**{duration.unit: duration.amount})
        if duration.unit in ("days", "weeks"):
            days = duration.amount * (5 if duration.unit == "weeks" else 1)
            whole = int(days)
            result = self._add_business_days(start, whole)
            if days > whole:
                result = self._add_business_seconds(result, (days - whole) * self.hours_per_day * 3600)
            return result.astimezone(timezone.utc)
        seconds = duration.amount * (3600 if duration.unit == "hours" else 60)
        return self._add_business_seconds(start, seconds).astimezone(timezone.utc)

    def _add_business_days(self, start: datetime, days: int) -> datetime:
        # "1 business day" from Friday 15:00 is Monday 15:00; from Saturday it is Tuesday's
        # opening plus nothing, i.e. one full business day after the next opening.
        moment = self._clamp_forward(start)
        day = moment.date()
        for _ in range(days):
            day = self.next_business_day(day)
        return datetime.combine(day, moment.timetz()).astimezone(self.zone)

    def _add_business_seconds(self, start: datetime, seconds: float) -> datetime:
        moment = self._clamp_forward(start)
        remaining = timedelta(seconds=seconds)
        while True:
            available = self.closing(moment.date()) - moment
            if remaining <= available:
                return moment + remaining
            remaining -= available
            moment = self.opening(self.next_business_day(moment.date()))

    def business_seconds_between(self, start: datetime, end: datetime) -> float:
        """Open time between two instants; 0 when `end` is not after `start`."""
        start, end = self.local(start), self.local(end)
        if end <= start:
            return 0.0
        total = 0.0
        day = start.date()
        while day <= end.date():
            if self.is_business_day(day):
                lo = max(start, self.opening(day))
                hi = min(end, self.closing(day))
                if hi > lo:
                    total += (hi - lo).total_seconds()
            day += timedelta(days=1)
        return total

    def business_hours_between(self, start: datetime, end: datetime) -> float:
        return self.business_seconds_between(start, end) / 3600
