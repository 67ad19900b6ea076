from datetime import date, datetime, time, timezone

import pytest

from adapter.clock import BusinessCalendar, Duration

NY = BusinessCalendar(timezone="America/New_York", holiday_country="US")
UTC = timezone.utc


def ny(y, m, d, hh, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=NY.zone)


@pytest.mark.parametrize("text, expected", [
    ("1 business day", Duration(1, "days", True)),
    ("4 business hours", Duration(4, "hours", True)),
    ("30 minutes", Duration(30, "minutes", False)),
    ("2 weeks", Duration(2, "weeks", False)),
    ("1.5 working days", Duration(1.5, "days", True)),
])
def test_parse_durations(text, expected):
    assert Duration.parse(text) == expected


@pytest.mark.parametrize("bad", ["soon", "1 fortnight", "", "business day"])
def test_bad_durations_say_what_to_write(bad):
    with pytest.raises(ValueError, match="business hours"):
        Duration.parse(bad)


def test_business_day_from_friday_afternoon_is_monday_same_time():
    assert NY.add(ny(2026, 11, 20, 15), Duration.parse("1 business day")) == ny(2026, 11, 23, 15).astimezone(UTC)


def test_business_day_skips_thanksgiving():
    # Thanksgiving 2026 is Thursday 26 November.
    assert NY.add(ny(2026, 11, 25, 10), Duration.parse("1 business day")) == ny(2026, 11, 27, 10).astimezone(UTC)


def test_business_hours_roll_over_the_night():
    assert NY.add(ny(2026, 11, 16, 15), Duration.parse("4 business hours")) == ny(2026, 11, 17, 11).astimezone(UTC)


def test_outside_hours_start_at_next_opening():
    assert NY.add(ny(2026, 11, 21, 12), Duration.parse("2 business hours")) == ny(2026, 11, 23, 11).astimezone(UTC)


def test_calendar_durations_ignore_business_hours():
    start = ny(2026, 11, 21, 12)
    assert NY.add(start, Duration.parse("2 days")) == ny(2026, 11, 23, 12)


def test_business_hours_between_counts_only_open_time():
    assert NY.business_hours_between(ny(2026, 11, 20, 16), ny(2026, 11, 23, 10)) == 2
    assert NY.business_hours_between(ny(2026, 11, 23, 10), ny(2026, 11, 20, 16)) == 0


def test_dst_change_keeps_local_opening_hours():
    # US clocks go back on 1 November 2026: 09:00 local is 14:00 UTC afterwards, 13:00 before.
    assert NY.add(ny(2026, 10, 30, 16), Duration.parse("2 business hours")) == datetime(2026, 11, 2, 15, tzinfo=UTC)


def test_extra_holidays_and_custom_week():
    calendar = BusinessCalendar(timezone="Asia/Dubai", workdays=frozenset({0, 1, 2, 3, 6}),
                                extra_holidays=frozenset({date(2026, 11, 23)}), opens=time(8), closes=time(16))
    assert calendar.is_business_day(date(2026, 11, 22))  # Sunday is a workday there
    assert not calendar.is_business_day(date(2026, 11, 23))
    assert not calendar.is_business_day(date(2026, 11, 20))


def test_naive_datetimes_are_utc():
    assert NY.local(datetime(2026, 11, 16, 15)).hour == 10
