"""TimeCondition: text form, weekday/time windows, midnight crossing, time zones."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pypbx.pbx.dialplan_patterns import DialPlanError
from pypbx.pbx.dialplan_time import TimeCondition


def utc(text: str) -> datetime:
    """2024-01-01 is a Monday; 2024-07-01 too."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("Mon-Fri 08:00-17:00 Europe/Budapest", "Mon-Fri 08:00-17:00 Europe/Budapest"),
        ("mon-fri 8:00-17:00", "Mon-Fri 08:00-17:00 UTC"),
        ("Europe/Budapest 08:00-17:00 Mon-Fri", "Mon-Fri 08:00-17:00 Europe/Budapest"),
        ("Mon - Fri  08:00 - 17:00", "Mon-Fri 08:00-17:00 UTC"),
        ("Sat, Sun", "Sat-Sun UTC"),
        ("Fri-Mon", "Mon,Fri-Sun UTC"),
        ("Mon-Wed,Fri", "Mon-Wed,Fri UTC"),
        ("Monday,Wednesday,friday", "Mon,Wed,Fri UTC"),
        ("Sun-Sat", "UTC"),
        ("Mon-Sun 00:00-24:00", "UTC"),
        ("22:00-06:00", "22:00-06:00 UTC"),
        ("18:00-24:00 Europe/London", "18:00-24:00 Europe/London"),
        ("18:00-00:00", "18:00-24:00 UTC"),
        ("08:00-08:00", "08:00-08:00 UTC"),
        ("UTC", "UTC"),
        ("America/Port-au-Prince", "America/Port-au-Prince"),
        ("Etc/GMT-1 Tue", "Tue Etc/GMT-1"),
    ],
)
def test_parse_and_canonical_text(text: str, canonical: str) -> None:
    condition = TimeCondition.parse(text)
    assert str(condition) == canonical
    assert TimeCondition.parse(canonical) == condition


def test_parsed_fields() -> None:
    condition = TimeCondition.parse("Mon-Fri 08:30-17:15 Europe/Budapest")
    assert condition == TimeCondition(
        days=frozenset({0, 1, 2, 3, 4}), start=time(8, 30), end=time(17, 15), tz="Europe/Budapest"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "time condition is empty"),
        ("   ", "time condition is empty"),
        ("Mars/Base", "unknown time zone 'Mars/Base'"),
        ("../etc/passwd", "unknown time zone '../etc/passwd'"),
        ("Mon 25:00-26:00", "invalid time '25:00'"),
        ("Mon 08:00-24:30", "invalid time '24:30'"),
        ("24:00-08:00", "invalid time '24:00'"),
        ("08:60-09:00", "invalid time '08:60'"),
        ("Mon Tue", "more than one weekday list in 'Mon Tue'"),
        ("08:00-09:00 10:00-11:00", "more than one time window in '08:00-09:00 10:00-11:00'"),
        ("UTC CET", "unexpected 'CET' in 'UTC CET'"),
        ("Mon-Funday", "unknown time zone 'Mon-Funday'"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(DialPlanError) as info:
        TimeCondition.parse(text)
    assert str(info.value) == message


def test_constructor_checks() -> None:
    with pytest.raises(DialPlanError, match="non-empty subset"):
        TimeCondition(days=frozenset())
    with pytest.raises(DialPlanError, match="non-empty subset"):
        TimeCondition(days=frozenset({7}))
    with pytest.raises(DialPlanError, match="whole minutes"):
        TimeCondition(start=time(8, 0, 30))
    with pytest.raises(DialPlanError, match="unknown time zone 'Nowhere'"):
        TimeCondition(tz="Nowhere")


OFFICE = "Mon-Fri 08:00-17:00 Europe/Budapest"
NIGHT = "Fri 22:00-06:00"


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [
        # Budapest winter time is UTC+1
        (OFFICE, "2024-01-01 07:00", True),
        (OFFICE, "2024-01-01 06:59", False),
        (OFFICE, "2024-01-01 15:59", True),
        (OFFICE, "2024-01-01 16:00", False),  # end is exclusive
        (OFFICE, "2024-01-05 12:00", True),  # Friday
        (OFFICE, "2024-01-06 12:00", False),  # Saturday
        # summer time, UTC+2
        (OFFICE, "2024-07-01 06:00", True),
        (OFFICE, "2024-07-01 05:59", False),
        (OFFICE, "2024-07-01 14:59", True),
        (OFFICE, "2024-07-01 15:00", False),
        # crossing midnight: the night belongs to the day it starts on
        (NIGHT, "2024-01-05 21:59", False),
        (NIGHT, "2024-01-05 22:00", True),
        (NIGHT, "2024-01-05 23:59", True),
        (NIGHT, "2024-01-06 00:00", True),
        (NIGHT, "2024-01-06 05:59", True),
        (NIGHT, "2024-01-06 06:00", False),
        (NIGHT, "2024-01-05 05:00", False),  # Thursday's night
        (NIGHT, "2024-01-06 22:00", False),  # Saturday evening
        ("22:00-06:00", "2024-01-03 03:00", True),
        ("22:00-06:00", "2024-01-03 12:00", False),
        ("Sun 22:00-06:00", "2024-01-01 05:00", True),  # Sunday night into Monday (week wrap)
        ("Sun 22:00-06:00", "2024-01-02 05:00", False),
        # whole days
        ("Sat,Sun", "2024-01-06 00:00", True),
        ("Sat,Sun", "2024-01-07 23:59", True),
        ("Sat,Sun", "2024-01-08 00:00", False),
        ("Sat,Sun", "2024-01-05 23:59", False),
        ("UTC", "2024-01-03 12:34", True),
        # until midnight
        ("18:00-24:00", "2024-01-01 17:59", False),
        ("18:00-24:00", "2024-01-01 18:00", True),
        ("18:00-24:00", "2024-01-01 23:59", True),
        ("Mon 18:00-24:00", "2024-01-02 00:00", False),
        # start == end: 24 hours from start
        ("Mon 08:00-08:00", "2024-01-01 07:59", False),
        ("Mon 08:00-08:00", "2024-01-01 08:00", True),
        ("Mon 08:00-08:00", "2024-01-02 07:59", True),
        ("Mon 08:00-08:00", "2024-01-02 08:00", False),
        # the zone decides the weekday
        ("Mon America/New_York", "2024-01-02 03:00", True),  # Mon 22:00 in New York
        ("Mon America/New_York", "2024-01-01 03:00", False),  # Sun 22:00 there
        ("Mon Asia/Tokyo", "2024-01-07 16:00", True),  # Mon 01:00 in Tokyo
        ("Mon-Fri 09:00-10:00 Asia/Kolkata", "2024-01-01 03:30", True),  # UTC+5:30
        ("Mon-Fri 09:00-10:00 Asia/Kolkata", "2024-01-01 03:29", False),
    ],
)
def test_matches(text: str, now: str, expected: bool) -> None:
    assert TimeCondition.parse(text).matches(utc(now)) is expected


def test_matches_any_aware_datetime() -> None:
    condition = TimeCondition.parse(OFFICE)
    plus_five = timezone(timedelta(hours=5))
    assert condition.matches(datetime(2024, 1, 1, 12, 0, tzinfo=plus_five))  # 08:00 Budapest
    assert not condition.matches(datetime(2024, 1, 1, 11, 59, tzinfo=plus_five))


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TimeCondition.parse(OFFICE).matches(datetime(2024, 1, 1, 8, 0))


@settings(max_examples=100, deadline=None)
@given(
    st.frozensets(st.integers(0, 6), min_size=1),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    st.sampled_from(["UTC", "Europe/Budapest", "America/New_York", "Asia/Kolkata"]),
)
def test_text_round_trip(days: frozenset[int], start: time, end: time, tz: str) -> None:
    condition = TimeCondition(days=days, start=start, end=end, tz=tz)
    assert TimeCondition.parse(str(condition)) == condition
