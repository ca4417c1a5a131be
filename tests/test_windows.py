"""Pure window arithmetic, table-driven."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from finops_gql.costs.windows import (
    day_window,
    days_to_sync,
    last_complete_day,
    money,
    money_column,
    rollup_range,
)

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (NOW, date(2026, 3, 14)),
        (datetime(2026, 3, 15, 0, 0, tzinfo=UTC), date(2026, 3, 14)),
        (datetime(2026, 3, 14, 23, 59, tzinfo=UTC), date(2026, 3, 13)),
        # 01:00 in UTC+2 is still the previous UTC day
        (datetime(2026, 3, 15, 1, 0, tzinfo=timezone(timedelta(hours=2))), date(2026, 3, 13)),
        (datetime(2026, 1, 1, 5, 0, tzinfo=UTC), date(2025, 12, 31)),
    ],
)
def test_last_complete_day(now: datetime, expected: date) -> None:
    assert last_complete_day(now) == expected


def test_rollup_range_is_30_complete_days() -> None:
    assert rollup_range(NOW) == (date(2026, 2, 13), date(2026, 3, 14))
    start, end = rollup_range(NOW)
    assert (end - start).days + 1 == 30


@pytest.mark.parametrize(
    ("last_stored", "expected"),
    [
        (None, (date(2026, 2, 13), date(2026, 3, 14))),  # first run: 30 days
        (date(2026, 3, 14), None),  # up to date
        (date(2026, 3, 13), (date(2026, 3, 14), date(2026, 3, 14))),  # one missed day
        (date(2026, 3, 12), (date(2026, 3, 13), date(2026, 3, 14))),  # a two-day gap
        (date(2025, 1, 1), (date(2025, 12, 15), date(2026, 3, 14))),  # capped at 90 days
        (date(2026, 3, 20), None),  # clock went backwards: nothing to do
    ],
)
def test_days_to_sync(last_stored: date | None, expected: tuple[date, date] | None) -> None:
    assert days_to_sync(last_stored, NOW) == expected


def test_day_window_covers_whole_utc_days() -> None:
    assert day_window(date(2026, 3, 13), date(2026, 3, 14)) == (
        "2026-03-13T00:00:00Z,2026-03-15T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(0.1 + 0.2, 0.3), (71.300000000001, 71.3), (1.234564, 1.23456)]
)
def test_money_rounds_to_opencost_precision(value: float, expected: float) -> None:
    assert money(value) == expected


def test_money_column_is_money_of_each_value() -> None:
    """The fast path gives the very doubles round(x, 5) gives (repr compares -0.0 and NaN too):
    random magnitudes, products on and near half-integers, both sides of its bound, specials."""
    rng = random.Random(3)
    values = [0.0, -0.0, -1e-9, 1e-9, 5e-324, math.nan, math.inf, -math.inf, 1e300, -1e300]
    values += [2.0**46 / 1e5, -(2.0**46) / 1e5, 7.03687441776639e8, 71.30000000000001]
    for _ in range(50_000):
        values.append(rng.uniform(-1, 1) * 10.0 ** rng.randint(-12, 22))
        k = rng.randint(-(10**12), 10**12)
        values.append((k + 0.5) / 1e5)
        values.append(k / 1e5 + rng.choice([-1, 1]) * 5e-6 * (1 + rng.uniform(-1e-9, 1e-9)))
        values.append(round(rng.uniform(0, 300), rng.randint(0, 12)))
    assert [repr(v) for v in money_column(values)] == [repr(money(v)) for v in values]
