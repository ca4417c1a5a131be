"""Pure date arithmetic for cost windows: every function takes `now`, none reads the clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

ROLLUP_DAYS = 30
FIRST_SYNC_DAYS = 30
# A gap longer than this is not healed further back: OpenCost's Prometheus rarely keeps more.
MAX_BACKFILL_DAYS = 90


def last_complete_day(now: datetime) -> date:
    """The most recent UTC day that has fully ended."""
    return now.astimezone(UTC).date() - timedelta(days=1)


def rollup_range(now: datetime, days: int = ROLLUP_DAYS) -> tuple[date, date]:
    """The inclusive day range of a 30-day figure: the 30 complete UTC days before today."""
    end = last_complete_day(now)
    return end - timedelta(days=days - 1), end


def days_to_sync(
    last_stored: date | None,
    now: datetime,
    first_run_days: int = FIRST_SYNC_DAYS,
    max_backfill_days: int = MAX_BACKFILL_DAYS,
) -> tuple[date, date] | None:
    """The inclusive range of complete days a sync must fetch, or None when up to date.

    A missed night or a first install heals itself: the first run fetches `first_run_days`,
    later runs everything since the last stored day, at most `max_backfill_days` back.
    """
    end = last_complete_day(now)
    if last_stored is None:
        start = end - timedelta(days=first_run_days - 1)
    else:
        start = max(last_stored + timedelta(days=1), end - timedelta(days=max_backfill_days - 1))
    if start > end:
        return None
    return start, end


def day_window(start: date, end: date) -> str:
    """OpenCost's RFC3339 window covering whole UTC days start..end inclusive."""
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    finish = datetime(end.year, end.month, end.day, tzinfo=UTC) + timedelta(days=1)
    return f"{begin:%Y-%m-%dT%H:%M:%SZ},{finish:%Y-%m-%dT%H:%M:%SZ}"


def as_date(value: object) -> date:
    """A day as the database driver returns it: a date, a datetime, or ISO text (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def money(value: float) -> float:
    """OpenCost's own precision; also hides float noise from sums."""
    return round(value, 5)


# money_column's fast path: below this |value * 1e5| a double's error is at most 2**-7, so a
# product at least 0.01 away from a half-integer has the exact value's nearest integer.
_FAST_SCALED_MAX = 2.0**46


def money_column(values: Iterable[float]) -> list[float]:
    """money() of each value, the same doubles, in about two thirds of the time: for columns of
    hundreds of rows (a team summary), where round(x, 5) at 0.35 us a value was the largest cost.

    round(x, 5) is the double nearest to n / 10**5, n the integer nearest to the exact x * 10**5
    (CPython rounds correctly). When the double product y = x * 1e5 (error at most 2**-7 below
    2**46) lies more than 0.01 from a half-integer, round(y) is that n, and n / 1e5 (both exact
    doubles, IEEE division rounds correctly) is that nearest double. Otherwise (near a tie, huge,
    NaN or infinite, or 0, whose sign round() keeps) round() itself.
    """
    rounded = []
    for x in values:
        y = x * 100000.0
        if -_FAST_SCALED_MAX < y < _FAST_SCALED_MAX:
            n = round(y)
            if n and abs(y - n) < 0.49:
                rounded.append(n / 100000.0)
                continue
        rounded.append(round(x, 5))
    return rounded
