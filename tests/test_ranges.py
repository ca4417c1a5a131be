"""Presets, explicit ranges and buckets of the cost explorer: table-driven, no clock."""

from __future__ import annotations

from datetime import date

import pytest

from finops_gql.costs.ranges import (
    Bucket,
    DayRange,
    Granularity,
    Preset,
    buckets,
    explicit_range,
    preset_range,
)
from finops_gql.errors import InvalidInput

D = date


@pytest.mark.parametrize(
    ("preset", "today", "start", "end"),
    [
        (Preset.LAST_7_DAYS, D(2026, 11, 23), D(2026, 11, 16), D(2026, 11, 22)),
        (Preset.LAST_30_DAYS, D(2026, 3, 1), D(2026, 1, 30), D(2026, 2, 28)),
        (Preset.LAST_90_DAYS, D(2026, 1, 1), D(2025, 10, 3), D(2025, 12, 31)),
        # Month, quarter and year to date end yesterday, and start with yesterday's period.
        (Preset.MONTH_TO_DATE, D(2026, 11, 23), D(2026, 11, 1), D(2026, 11, 22)),
        (Preset.MONTH_TO_DATE, D(2026, 12, 1), D(2026, 11, 1), D(2026, 11, 30)),
        (Preset.MONTH_TO_DATE, D(2024, 3, 1), D(2024, 2, 1), D(2024, 2, 29)),  # leap day
        (Preset.QUARTER_TO_DATE, D(2026, 11, 23), D(2026, 10, 1), D(2026, 11, 22)),
        (Preset.QUARTER_TO_DATE, D(2026, 4, 1), D(2026, 1, 1), D(2026, 3, 31)),
        (Preset.YEAR_TO_DATE, D(2026, 11, 23), D(2026, 1, 1), D(2026, 11, 22)),
        (Preset.YEAR_TO_DATE, D(2027, 1, 1), D(2026, 1, 1), D(2026, 12, 31)),
        # Last month is the calendar month before today's, always complete.
        (Preset.LAST_MONTH, D(2026, 11, 23), D(2026, 10, 1), D(2026, 10, 31)),
        (Preset.LAST_MONTH, D(2026, 12, 1), D(2026, 11, 1), D(2026, 11, 30)),
        (Preset.LAST_MONTH, D(2026, 1, 15), D(2025, 12, 1), D(2025, 12, 31)),
        (Preset.LAST_MONTH, D(2024, 3, 10), D(2024, 2, 1), D(2024, 2, 29)),
    ],
)
def test_presets_end_at_the_last_complete_day(
    preset: Preset, today: date, start: date, end: date
) -> None:
    assert preset_range(preset, today) == DayRange(start, end)


@pytest.mark.parametrize(
    ("start", "end", "today", "expected"),
    [
        (
            D(2026, 11, 1),
            D(2026, 11, 10),
            D(2026, 11, 23),
            DayRange(D(2026, 11, 1), D(2026, 11, 10)),
        ),
        (
            D(2026, 11, 22),
            D(2026, 11, 22),
            D(2026, 11, 23),
            DayRange(D(2026, 11, 22), D(2026, 11, 22)),
        ),
        # An end past yesterday is cut there.
        (
            D(2026, 11, 20),
            D(2026, 12, 31),
            D(2026, 11, 23),
            DayRange(D(2026, 11, 20), D(2026, 11, 22)),
        ),
    ],
)
def test_explicit_ranges(start: date, end: date, today: date, expected: DayRange) -> None:
    assert explicit_range(start, end, today, retention_days=400) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (D(2026, 11, 10), D(2026, 11, 1), "is after"),
        (D(2026, 11, 23), D(2026, 11, 30), "in the future"),
        (D(2025, 1, 1), D(2026, 11, 22), "longer than the 400 days"),
    ],
)
def test_bad_explicit_ranges_are_bad_input(start: date, end: date, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        explicit_range(start, end, D(2026, 11, 23), retention_days=400)


def test_previous_range_has_the_same_length_just_before() -> None:
    # 31 days before March: all of February (28) and the last 3 days of January.
    assert DayRange(D(2026, 3, 1), D(2026, 3, 31)).previous() == DayRange(
        D(2026, 1, 29), D(2026, 2, 28)
    )


@pytest.mark.parametrize(
    ("chosen", "granularity", "expected"),
    [
        (
            DayRange(D(2026, 11, 20), D(2026, 11, 22)),
            Granularity.DAY,
            [Bucket(D(2026, 11, d), D(2026, 11, d), True) for d in (20, 21, 22)],
        ),
        # ISO weeks start on Monday; a week the range cuts is incomplete.
        (
            DayRange(D(2026, 11, 11), D(2026, 11, 29)),
            Granularity.WEEK,
            [
                Bucket(D(2026, 11, 11), D(2026, 11, 15), False),
                Bucket(D(2026, 11, 16), D(2026, 11, 22), True),
                Bucket(D(2026, 11, 23), D(2026, 11, 29), True),
            ],
        ),
        # ISO week 1 of 2026 starts on Monday 2025-12-29: one bucket across the year boundary.
        (
            DayRange(D(2025, 12, 29), D(2026, 1, 4)),
            Granularity.WEEK,
            [Bucket(D(2025, 12, 29), D(2026, 1, 4), True)],
        ),
        (
            DayRange(D(2024, 1, 15), D(2024, 3, 31)),
            Granularity.MONTH,
            [
                Bucket(D(2024, 1, 15), D(2024, 1, 31), False),
                Bucket(D(2024, 2, 1), D(2024, 2, 29), True),  # leap year
                Bucket(D(2024, 3, 1), D(2024, 3, 31), True),
            ],
        ),
        (
            DayRange(D(2025, 12, 5), D(2026, 1, 10)),
            Granularity.MONTH,
            [
                Bucket(D(2025, 12, 5), D(2025, 12, 31), False),
                Bucket(D(2026, 1, 1), D(2026, 1, 10), False),
            ],
        ),
    ],
)
def test_buckets(chosen: DayRange, granularity: Granularity, expected: list[Bucket]) -> None:
    assert buckets(chosen, granularity) == expected


@pytest.mark.parametrize("granularity", list(Granularity))
def test_buckets_cover_every_day_once(granularity: Granularity) -> None:
    chosen = DayRange(D(2023, 12, 17), D(2025, 3, 3))
    days = sum((b.end - b.start).days + 1 for b in buckets(chosen, granularity))
    assert days == chosen.days
