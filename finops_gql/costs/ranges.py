"""Date ranges and buckets for the cost explorer: pure arithmetic, no clock, no I/O.

A range is a span of whole UTC days, both ends inclusive. Presets end at the last complete UTC
day (yesterday), like the 30-day rollups: `*_TO_DATE` presets start at the first day of that
day's month, quarter or year; `LAST_MONTH` is the calendar month before the current one (always
complete). An explicit range may not be reversed, lie wholly in the future, or be longer than the
retention; an end after the last complete day is cut there (a day not yet over has no cost).

Buckets split a range by granularity: days, ISO weeks (Monday to Sunday) or calendar months. A
bucket that the range cuts is marked incomplete, so a chart can show that its bar is partial.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, timedelta

from finops_gql.errors import InvalidInput


class Preset(enum.Enum):
    LAST_7_DAYS = "LAST_7_DAYS"
    LAST_30_DAYS = "LAST_30_DAYS"
    LAST_90_DAYS = "LAST_90_DAYS"
    MONTH_TO_DATE = "MONTH_TO_DATE"
    LAST_MONTH = "LAST_MONTH"
    QUARTER_TO_DATE = "QUARTER_TO_DATE"
    YEAR_TO_DATE = "YEAR_TO_DATE"


class Granularity(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


@dataclass(frozen=True, slots=True)
class DayRange:
    """Whole UTC days, start..end inclusive."""

    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> DayRange:
        """The range of the same length just before this one (for period-over-period change)."""
        end = self.start - timedelta(days=1)
        return DayRange(end - timedelta(days=self.days - 1), end)


@dataclass(frozen=True, slots=True)
class Bucket:
    """One point of a series: whole days start..end inclusive; incomplete when the range cuts it."""

    start: date
    end: date
    complete: bool


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _next_month(day: date) -> date:
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def preset_range(preset: Preset, today: date) -> DayRange:
    """The days a preset covers on `today` (a UTC date); it ends at the last complete day."""
    last = today - timedelta(days=1)
    match preset:
        case Preset.LAST_7_DAYS | Preset.LAST_30_DAYS | Preset.LAST_90_DAYS:
            days = {Preset.LAST_7_DAYS: 7, Preset.LAST_30_DAYS: 30, Preset.LAST_90_DAYS: 90}
            return DayRange(last - timedelta(days=days[preset] - 1), last)
        case Preset.MONTH_TO_DATE:
            return DayRange(_month_start(last), last)
        case Preset.QUARTER_TO_DATE:
            return DayRange(_quarter_start(last), last)
        case Preset.YEAR_TO_DATE:
            return DayRange(date(last.year, 1, 1), last)
        case Preset.LAST_MONTH:
            end = _month_start(today) - timedelta(days=1)
            return DayRange(_month_start(end), end)
    raise AssertionError(preset)  # pragma: no cover (the match is exhaustive)


def explicit_range(start: date, end: date, today: date, retention_days: int) -> DayRange:
    """A client's own from/to, checked: never reversed, never all in the future, never longer
    than the retention; an end past the last complete day is cut there."""
    last = today - timedelta(days=1)
    if end < start:
        raise InvalidInput(f"range: from {start} is after to {end}")
    if start > last:
        raise InvalidInput(
            f"range: from {start} is in the future; the last complete UTC day is {last}"
        )
    chosen = DayRange(start, min(end, last))
    check_retention(chosen, retention_days)
    return chosen


def check_retention(chosen: DayRange, retention_days: int) -> DayRange:
    if chosen.days > retention_days:
        raise InvalidInput(
            f"range: {chosen.days} days is longer than the {retention_days} days of cost kept "
            "(COST_RETENTION_DAYS)"
        )
    return chosen


def bucket_start(day: date, granularity: Granularity) -> date:
    """The first day of the bucket holding `day`."""
    match granularity:
        case Granularity.DAY:
            return day
        case Granularity.WEEK:
            return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
        case Granularity.MONTH:
            return _month_start(day)
    raise AssertionError(granularity)  # pragma: no cover


def _bucket_end(start: date, granularity: Granularity) -> date:
    match granularity:
        case Granularity.DAY:
            return start
        case Granularity.WEEK:
            return start + timedelta(days=6)
        case Granularity.MONTH:
            return _next_month(start) - timedelta(days=1)
    raise AssertionError(granularity)  # pragma: no cover


def buckets(chosen: DayRange, granularity: Granularity) -> list[Bucket]:
    """Every bucket the range touches, in order, each clipped to the range."""
    result = []
    start = bucket_start(chosen.start, granularity)
    while start <= chosen.end:
        end = _bucket_end(start, granularity)
        clipped = Bucket(max(start, chosen.start), min(end, chosen.end), True)
        if clipped.start != start or clipped.end != end:
            clipped = Bucket(clipped.start, clipped.end, False)
        result.append(clipped)
        start = end + timedelta(days=1)
    return result
