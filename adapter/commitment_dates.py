"""Find the deadline stated in a commitment clause and resolve it to a moment.

Why not ``dateparser.search.search_dates``: it reads "we" as Wednesday, "may" as
May and phone numbers as dates, and it is slow. Instead tight regexes find the
few phrases that can name a deadline; calendar dates ("Dec 3", "12/3", ISO) and
offsets ("in two weeks") go to ``dateparser``; weekday, end-of-week/month and
business-day arithmetic is done here because Baton's rules for them (documented
in docs/commitments.md) differ from dateparser's defaults.

All arithmetic happens in the writer's timezone; the result is timezone-aware.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import dateparser
from dateparser.date import DateDataParser

_WEEKDAYS = {
    "mon": 0, "monday": 0, "tue": 1, "tues": 1, "tuesday": 1, "wed": 2, "weds": 2, "wednesday": 2,
    "thu": 3, "thur": 3, "thurs": 3, "thursday": 3, "fri": 4, "friday": 4,
    "sat": 5, "saturday": 5, "sun": 6, "sunday": 6,
}
_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_MONTH_NUMBERS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
_NUMBER_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "couple": 2, "a couple": 2,
    "couple of": 2, "a couple of": 2, "few": 3, "a few": 3, "several": 3,
}
#: Start of each named part of a day, used when a day is named without a clock time.
DAY_PARTS = {
    "first thing": time(9), "morning": time(9), "lunch": time(12), "lunchtime": time(12),
    "noon": time(12), "midday": time(12), "afternoon": time(14), "evening": time(18),
    "tonight": time(21), "night": time(21),
}
#: Zone abbreviations people put after a clock time ("3pm ET"). US zones follow DST.
_ZONE_ABBREVIATIONS = {
    "et": "America/New_York", "est": "America/New_York", "edt": "America/New_York",
    "ct": "America/Chicago", "cst": "America/Chicago", "cdt": "America/Chicago",
    "mt": "America/Denver", "mst": "America/Denver", "mdt": "America/Denver",
    "pt": "America/Los_Angeles", "pst": "America/Los_Angeles", "pdt": "America/Los_Angeles",
    "gmt": "UTC", "utc": "UTC", "bst": "Europe/London", "cet": "Europe/Berlin",
    "cest": "Europe/Berlin", "jst": "Asia/Tokyo", "aest": "Australia/Sydney",
}
#: A past month-day within this many days before the message is "already past";
#: further back it means next year ("Jan 5" written on Dec 20).
_PAST_DATE_HORIZON = timedelta(days=183)

_PREP = r"(?P<prep>\b(?:by|on|before|until|till|til|due|for|no later than|not later than|at|around|sometime|over)\s+)?"
_DAY_PHRASES = "|".join([
    r"(?P<past>\byesterday\b|\blast\s+(?:week|month|(?:mon|tues|wednes|thurs|fri|satur|sun)day)\b"
    r"|\b\w+\s+(?:days?|weeks?|months?)\s+ago\b|\bearlier\s+today\b)",
    r"(?P<relday>\b(?:the\s+)?day\s+after\s+tomorrow\b|\b(?:later\s+)?today\b|\btonight\b|\btomorrow\b"
    r"|\btmrw\b|\btmr\b)",
    r"(?P<period>\b(?:eod|cob|eob|eow|eom|eoq)\b|\bclose\s+of\s+(?:business|play|day)\b"
    r"|\b(?:the\s+)?end\s+of\s+(?:the\s+)?(?:business\s+)?"
    r"(?:day|week|month|quarter|next\s+week|next\s+month|this\s+week|this\s+month)\b"
    r"|\bend\s+of\s+business\b"
    r"|\b(?:the\s+)?(?:start|beginning)\s+of\s+next\s+(?:week|month)\b"
    r"|\b(?:(?:later|early|earlier|late)\s+)?(?:this|next)\s+(?:week|month)\b)",
    rf"(?P<monthend>\b(?:the\s+)?end\s+of\s+{_MONTH}\b)",
    rf"(?P<calendar>\b{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?\b(?:,?\s+\d{{4}}\b)?"
    rf"|\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?:,?\s+\d{{4}}\b)?"
    r"|\b\d{4}-\d{1,2}-\d{1,2}\b)",
    r"(?P<numeric>\b\d{1,2}/\d{1,2}(?:/\d{2}(?:\d{2})?)?\b|\b\d{1,2}\.\d{1,2}\.\d{4}\b)",
    r"(?P<ordinal>\bthe\s+(?P<day_of_month>\d{1,2})(?:st|nd|rd|th)\b)",
    r"(?P<offset>\b(?:in|within)\s+(?P<count>\d+|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven"
    r"|twelve|(?:a\s+)?couple(?:\s+of)?|(?:a\s+)?few|several)"
    r"\s+(?P<business>(?:business|working)\s+)?(?P<unit>minutes?|mins?|hours?|hrs?|days?|weeks?|wks?|months?)\b)",
    r"(?P<weekday>\b(?P<weekday_mod>this|next|coming|this\s+coming|the\s+following)?\s*"
    r"(?P<weekday_name>(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?|weds|thur)\b(?!'s)\.?)",
])
_DAY = re.compile(_PREP + r"(?:" + _DAY_PHRASES + r")", re.I)
_CLOCK = re.compile(
    r"(?:(?:\b(?:at|by|around|before|until)\s+|@\s*)?"
    r"\b(?P<hour>\d{1,2})(?::(?P<minute>[0-5]\d))?\s*(?P<ampm>[ap]\.?m\.?)(?![a-z])"
    r"|\b(?:at|by|before|until)\s+(?P<hour24>[01]?\d|2[0-3]):(?P<minute24>[0-5]\d)\b"
    r"|(?:\b(?:at|by|around|before)\s+)?\b(?P<named>noon|midday)\b)"
    r"(?:\s+(?P<zone>et|est|edt|ct|cst|cdt|mt|mst|mdt|pt|pst|pdt|gmt|utc|bst|cet|cest|jst|aest)\b)?",
    re.I,
)
_DAY_PART = re.compile(
    r"\b(?:(?:in\s+the|this|tomorrow)\s+)?(?P<part>first\s+thing|morning|afternoon|evening|lunch(?:time)?)\b", re.I
)
#: Words that promise "some time" without a date; callers treat them as vague.
VAGUE_TIME = re.compile(
    r"\b(?:soon|shortly|sometime|some\s+time|at\s+some\s+point|in\s+the\s+(?:near\s+)?future|down\s+the\s+road"
    r"|one\s+of\s+these\s+days|in\s+the\s+coming\s+(?:weeks|months)"
    r"|when(?:ever)?\s+(?:I|we)\s+(?:can|get\s+a\s+chance))\b",
    re.I,
)
_END_OF_DAY = re.compile(
    r"eod|cob|eob|close of (?:business|play|day)|(?:the )?end of (?:the )?(?:business )?(?:day|business)")
_DEADLINE_PREPS = {"by", "before", "until", "till", "til", "due", "no later than", "not later than"}
_WEEKDAY_ABBREVIATIONS = {"mon", "tue", "tues", "wed", "weds", "thu", "thur", "thurs", "fri", "sat", "sun"}

# A fixed leap-year base keeps parsing deterministic and cacheable; the year is chosen by _infer_year.
_US_DATES = DateDataParser(languages=["en"], settings={"DATE_ORDER": "MDY", "RELATIVE_BASE": datetime(2000, 1, 1)})
_DAY_FIRST_DATES = DateDataParser(languages=["en"],
                                  settings={"DATE_ORDER": "DMY", "RELATIVE_BASE": datetime(2000, 1, 1)})


@dataclass(frozen=True)
class Deadline:
    #: None when the phrase names a moment before the message was written.
    due: datetime | None
    #: Character spans of the phrase (and its clock time) in the clause, for titles.
    spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _Rules:
    now: datetime  # sent_at in the writer's zone
    end_of_day: time
    workdays: frozenset[int]


def find_deadline(clause: str, now: datetime, end_of_day: time, workdays: frozenset[int]) -> Deadline | None:
    """The deadline a commitment clause states, if any.

    ``now`` is the send time, aware, in the writer's timezone.
    """
    rules = _Rules(now, end_of_day, workdays)
    day_match, end_of_day_match = _pick_day_phrases(clause)
    clock_match = _CLOCK.search(clause)
    part_match = _DAY_PART.search(clause)
    if day_match is None and clock_match is None and part_match is None:
        return None
    spans = tuple(m.span() for m in (day_match, end_of_day_match, clock_match, part_match) if m is not None)
    if day_match is not None and day_match.group("past"):
        return Deadline(None, spans)

    day, default_time = _resolve_day(day_match, rules) if day_match else (None, None)
    if isinstance(day, datetime):  # "in 2 hours": an exact moment
        return Deadline(day if day >= now else None, spans)
    if day_match is not None and day is None:
        return Deadline(None, spans)
    moment, zone = _resolve_time(clock_match, part_match, default_time, rules)
    if day is None:  # a time alone ("at 3pm", "in the morning"): the next such moment
        day = now.date()
        if _at(day, moment, zone) <= now:
            day += timedelta(days=1)
    due = _at(day, moment, zone).astimezone(now.tzinfo)
    names_today = day_match is not None and (day_match.group("relday") or day_match.group("period"))
    if due < now and day == now.date() and names_today:
        # "today" / "EOD" / "end of week" written after hours still means before midnight.
        due = _at(day, time(23, 59), now.tzinfo)
    return Deadline(due if due >= now else None, spans)


def _pick_day_phrases(clause: str) -> tuple[re.Match | None, re.Match | None]:
    """(the day phrase, an "EOD"-like phrase qualifying it) of a clause.

    Prefer a phrase introduced by "by"/"before"/"until"; else the first usable one.
    "EOD tomorrow" names tomorrow: EOD/COB only pick the day when nothing else does.
    """
    candidates = [m for m in _DAY.finditer(clause) if _is_usable(m)]
    end_of_day = next((m for m in candidates if _END_OF_DAY.fullmatch(_phrase(m))), None)
    days = [m for m in candidates if m is not end_of_day] or candidates
    for match in days:
        if (match.group("prep") or "").strip().lower() in _DEADLINE_PREPS:
            return match, end_of_day
    return (days[0] if days else None), end_of_day


def _phrase(match: re.Match) -> str:
    """The matched phrase without its preposition, lower-cased, spaces collapsed."""
    return " ".join(match.group()[len(match.group("prep") or ""):].lower().split())


def _is_usable(match: re.Match) -> bool:
    if match.group("weekday"):
        name = match.group("weekday_name").lower().rstrip(".")
        if name not in _WEEKDAYS:
            return False
        # "sat", "sun", "wed" are ordinary words: abbreviations need "by"/"on"/"next"...
        return name not in _WEEKDAY_ABBREVIATIONS or bool(match.group("prep") or match.group("weekday_mod"))
    if match.group("numeric"):
        # "3/4 of the team", "24/7": only read as dates after a preposition.
        return bool(match.group("prep"))
    if match.group("ordinal"):
        return 1 <= int(match.group("day_of_month")) <= 31
    return True


def _resolve_day(match: re.Match, rules: _Rules) -> tuple[date | None, time | datetime | None]:
    """(day, default time of day) for a day phrase; day None when it is not a future day."""
    today = rules.now.date()
    text = _phrase(match)
    if match.group("relday"):
        if "after" in text:
            return today + timedelta(days=2), None
        if "tomorrow" in text or text.endswith(("tmrw", "tmr")):
            return today + timedelta(days=1), None
        return today, DAY_PARTS["tonight"] if "tonight" in text else None
    if match.group("weekday"):
        return _weekday(match, rules), None
    if match.group("period"):
        if text == "next week" and (match.group("prep") or "").strip().lower() in _DEADLINE_PREPS:
            text = "start of next week"  # "by next week": before next week gets going
        return _period(text, rules), None
    if match.group("monthend"):
        month = _MONTH_NUMBERS[text.rsplit(" ", 1)[1][:3]]
        last = _last_workday_of_month(today.year, month, rules.workdays)
        if last < today and today - last > _PAST_DATE_HORIZON:
            last = _last_workday_of_month(today.year + 1, month, rules.workdays)
        return (last if last >= today else None), None
    if match.group("calendar") or match.group("numeric"):
        phrase = match.group("calendar") or match.group("numeric")
        parsed = _calendar_date(phrase, "DMY" if "." in phrase else "MDY")
        if parsed is None:
            return None, None
        year, month, day = parsed
        if year is not None:
            return date(year, month, day), None
        return _infer_year(month, day, today), None
    if match.group("ordinal"):
        return _day_of_month(int(match.group("day_of_month")), today), None
    if match.group("offset"):
        return _offset(match, rules), None
    return None, None


def _weekday(match: re.Match, rules: _Rules) -> date:
    today = rules.now.date()
    target = _WEEKDAYS[match.group("weekday_name").lower().rstrip(".")]
    modifier = " ".join((match.group("weekday_mod") or "").lower().split())
    if modifier in ("next", "the following"):
        # "next Tuesday" = the Tuesday of next (Monday-based) week.
        return today - timedelta(days=today.weekday()) + timedelta(days=7 + target)
    ahead = (target - today.weekday()) % 7
    if ahead == 0 and _at(today, rules.end_of_day, rules.now.tzinfo) <= rules.now:
        ahead = 7  # "by Friday" written Friday evening: the coming Friday
    return today + timedelta(days=ahead)


def _period(text: str, rules: _Rules) -> date | None:
    today = rules.now.date()
    if _END_OF_DAY.fullmatch(text):
        return today
    next_one = "next" in text
    if "week" in text or text == "eow":
        # Weeks are runs of workdays, so a Sunday-Thursday team's week ends on Thursday;
        # on a weekend "this week" is the coming one.
        this_week_ends = _end_of_work_week(today, rules.workdays)
        if not next_one:
            return this_week_ends
        if any(word in text for word in ("start", "beginning", "early")):
            return _next_workday(this_week_ends + timedelta(days=1), rules.workdays)
        return _end_of_work_week(this_week_ends + timedelta(days=1), rules.workdays)
    if "quarter" in text or text == "eoq":
        last_month = (today.month - 1) // 3 * 3 + 3
        return _last_workday_of_month(today.year, last_month, rules.workdays)
    year, month = today.year, today.month
    if next_one:
        year, month = _next_month(year, month)
        if any(word in text for word in ("start", "beginning", "early")):
            return _next_workday(date(year, month, 1), rules.workdays)
    last = _last_workday_of_month(year, month, rules.workdays)
    if last < today:  # "end of month" on the 31st, a Saturday
        year, month = _next_month(year, month)
        last = _last_workday_of_month(year, month, rules.workdays)
    return last


def _offset(match: re.Match, rules: _Rules) -> date | datetime | None:
    """A day for "in 3 days" / "in two weeks", an exact moment for "in 2 hours"."""
    count_word = " ".join(match.group("count").lower().split())
    count = int(count_word) if count_word.isdigit() else _NUMBER_WORDS[count_word]
    unit = match.group("unit").lower().rstrip("s")
    if match.group("business") and unit == "day":
        day = rules.now.date()
        while count:
            day += timedelta(days=1)
            count -= day.weekday() in rules.workdays
        return day
    unit = {"min": "minute", "hr": "hour", "wk": "week"}.get(unit, unit)
    shifted = dateparser.parse(
        f"in {count} {unit}s", languages=["en"],
        settings={"RELATIVE_BASE": rules.now.replace(tzinfo=None), "PREFER_DATES_FROM": "future"},
    )
    if shifted is None:
        return None
    if unit in ("minute", "hour"):
        return shifted.replace(tzinfo=rules.now.tzinfo)
    return shifted.date()


def _resolve_time(clock: re.Match | None, part: re.Match | None, default: time | None, rules: _Rules):
    """(time of day, zone it is expressed in) for a deadline."""
    zone = rules.now.tzinfo
    if clock is not None:
        if clock.group("named"):
            return DAY_PARTS["noon"], zone
        hour = int(clock.group("hour") or clock.group("hour24"))
        minute = int(clock.group("minute") or clock.group("minute24") or 0)
        ampm = (clock.group("ampm") or "").lower()
        if ampm.startswith("p") and hour < 12:
            hour += 12
        elif ampm.startswith("a") and hour == 12:
            hour = 0
        if clock.group("zone"):  # "3pm ET" written from Berlin is 21:00 in Berlin
            zone = ZoneInfo(_ZONE_ABBREVIATIONS[clock.group("zone").lower()])
        if hour <= 23:
            return time(hour, minute), zone
    if default is not None:
        return default, zone
    if part is not None:
        return DAY_PARTS[" ".join(part.group("part").lower().split())], zone
    return rules.end_of_day, zone


@lru_cache(maxsize=4096)
def _calendar_date(phrase: str, order: str) -> tuple[int | None, int, int] | None:
    """(year or None, month, day) of a calendar date phrase, via dateparser."""
    parser = _DAY_FIRST_DATES if order == "DMY" else _US_DATES
    data = parser.get_date_data(phrase.rstrip("."))
    if data.date_obj is None or "time" in (data.parts or ()):
        return None
    year = data.date_obj.year if "year" in data.parts else None
    return year, data.date_obj.month, data.date_obj.day


def _infer_year(month: int, day: int, today: date) -> date | None:
    """This year's date, unless it fell well in the past: then next year's."""
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:  # Feb 29 outside a leap year
            continue
        if candidate >= today or today - candidate <= _PAST_DATE_HORIZON:
            return candidate if candidate >= today else None
    return None


def _day_of_month(day: int, today: date) -> date | None:
    year, month = today.year, today.month
    for _ in range(2):
        if day <= calendar.monthrange(year, month)[1] and date(year, month, day) >= today:
            return date(year, month, day)
        year, month = _next_month(year, month)
    return None


def _next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


def _end_of_work_week(day: date, workdays: frozenset[int]) -> date:
    """The last workday of the run of workdays on or after ``day``."""
    for _ in range(14):
        if day.weekday() in workdays and (day + timedelta(days=1)).weekday() not in workdays:
            return day
        day += timedelta(days=1)
    return day  # every day (or no day) is a workday: two weeks out is as good as any


def _next_workday(day: date, workdays: frozenset[int]) -> date:
    for _ in range(7):
        if day.weekday() in workdays:
            return day
        day += timedelta(days=1)
    return day


def _last_workday_of_month(year: int, month: int, workdays: frozenset[int]) -> date:
    day = date(year, month, calendar.monthrange(year, month)[1])
    for _ in range(7):
        if day.weekday() in workdays:
            return day
        day -= timedelta(days=1)
    return date(year, month, calendar.monthrange(year, month)[1])


def _at(day: date, moment: time, zone) -> datetime:
    """``day`` at ``moment`` in ``zone``; fold=0 picks the first of a repeated hour."""
    return datetime.combine(day, moment.replace(tzinfo=None), tzinfo=zone)
