"""`TimeCondition` of a dial plan rule (spec notifications 9.2): weekdays and a daily window.

Text form, parts separated by spaces, each optional but at least one present, in any order:

* weekdays: `Mon-Fri`, `Sat,Sun`, `Mon-Wed,Fri`, `Fri-Mon` (ranges wrap over the week);
  names are English, three letters or full, case-insensitive; absent = every day;
* a window `HH:MM-HH:MM`, start inclusive, end exclusive; `24:00` is accepted as an end.
  An end not after the start means the window crosses midnight (`22:00-06:00`), and the
  window belongs to the day it *starts* on: `Fri 22:00-06:00` covers Friday night up to
  Saturday 06:00, not Friday 00:00-06:00. Absent = the whole day;
* an IANA time zone (`Europe/Budapest`); absent = `UTC`. Local clock time is what office
  hours are about, so DST shifts move the window with the wall clock.

Canonical form (what `str()` gives): `Mon-Fri 08:00-17:00 Europe/Budapest`, with the day list
left out when it is every day and the window left out when it is the whole day.

The zone is loaded once, when the condition is built; matching does no I/O and reads no
clock (the instant comes in as `now`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pypbx.pbx.dialplan_patterns import DialPlanError

__all__ = ["DAY_NAMES", "TimeCondition"]

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_INDEX = {name.casefold(): i for i, name in enumerate(DAY_NAMES)} | {
    name: i for i, name in enumerate(_FULL_NAMES)
}
_ALL_DAYS = frozenset(range(7))
_MIDNIGHT = time(0, 0)
_WINDOW = re.compile(r"(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})")


@dataclass(frozen=True)
class TimeCondition:
    """Weekdays (0 = Monday) and a daily window [start, end) in the time zone `tz`."""

    days: frozenset[int] = _ALL_DAYS
    start: time = _MIDNIGHT
    end: time = _MIDNIGHT
    tz: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.days or not self.days <= _ALL_DAYS:
            raise DialPlanError(f"weekdays must be a non-empty subset of 0-6, got {set(self.days)}")
        for moment in (self.start, self.end):
            if moment.second or moment.microsecond or moment.tzinfo is not None:
                raise DialPlanError(f"window times are whole minutes without a zone, got {moment}")
        object.__setattr__(self, "_zone", _zone(self.tz))

    @classmethod
    def parse(cls, text: str) -> TimeCondition:
        """Parse the text form; DialPlanError says what is wrong (without the field name)."""
        spaced = re.sub(r"\s*([-,])\s*", r"\1", text.strip())
        if not spaced:
            raise DialPlanError("time condition is empty")
        days: frozenset[int] | None = None
        window: tuple[time, time] | None = None
        tz: str | None = None
        for token in spaced.split():
            if _WINDOW.fullmatch(token):
                if window is not None:
                    raise DialPlanError(f"more than one time window in {text!r}")
                window = _parse_window(token)
            elif _is_day_list(token):
                if days is not None:
                    raise DialPlanError(f"more than one weekday list in {text!r}")
                days = _parse_days(token)
            else:
                if tz is not None:
                    raise DialPlanError(f"unexpected {token!r} in {text!r}")
                _zone(token)
                tz = token
        start, end = window or (_MIDNIGHT, _MIDNIGHT)
        return cls(days=_ALL_DAYS if days is None else days, start=start, end=end, tz=tz or "UTC")

    def matches(self, now: datetime) -> bool:
        """Whether the instant `now` (timezone-aware) falls in the window."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        local = now.astimezone(self._zone)
        clock = local.time().replace(tzinfo=None)
        weekday = local.weekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= clock < self.end
        # Crossing midnight (or a full 24 hours when start == end): the early-morning part
        # belongs to the window that started the evening before.
        if clock >= self.start:
            return weekday in self.days
        return clock < self.end and (weekday - 1) % 7 in self.days

    def __str__(self) -> str:
        parts = []
        if self.days != _ALL_DAYS:
            parts.append(_format_days(self.days))
        if not (self.start == _MIDNIGHT and self.end == _MIDNIGHT):
            end = "24:00" if self.end == _MIDNIGHT else self.end.strftime("%H:%M")
            parts.append(f"{self.start.strftime('%H:%M')}-{end}")
        parts.append(self.tz)
        return " ".join(parts)


def _zone(key: str) -> ZoneInfo:
    try:
        return ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise DialPlanError(f"unknown time zone {key!r}") from None


def _parse_time(text: str, *, end: bool) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    if end and hours == 24 and minutes == 0:
        return _MIDNIGHT
    if hours > 23 or minutes > 59:
        raise DialPlanError(f"invalid time {text!r}")
    return time(hours, minutes)


def _parse_window(token: str) -> tuple[time, time]:
    first, second = token.split("-")
    return _parse_time(first, end=False), _parse_time(second, end=True)


def _is_day_list(token: str) -> bool:
    """Whether `token` consists of weekday names only (`UTC`, `CET` are zones, not days)."""
    names = re.split(r"[,-]", token)
    return all(name.casefold() in _DAY_INDEX for name in names)


def _day(name: str) -> int:
    index = _DAY_INDEX.get(name.casefold())
    if index is None:
        raise DialPlanError(f"unknown weekday {name!r}")
    return index


def _parse_days(token: str) -> frozenset[int]:
    days: set[int] = set()
    for part in token.split(","):
        first, _, last = part.partition("-")
        lo = _day(first)
        hi = _day(last) if last else lo
        days.update((lo + step) % 7 for step in range((hi - lo) % 7 + 1))
    return frozenset(days)


def _format_days(days: frozenset[int]) -> str:
    """Runs of consecutive days Monday-first: {0,1,2,4} -> `Mon-Wed,Fri`."""
    runs: list[str] = []
    day = 0
    while day < 7:
        if day not in days:
            day += 1
            continue
        last = day
        while last + 1 in days:
            last += 1
        runs.append(DAY_NAMES[day] if last == day else f"{DAY_NAMES[day]}-{DAY_NAMES[last]}")
        day = last + 1
    return ",".join(runs)
