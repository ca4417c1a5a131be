"""COST_SYNC_CRON -> arq cron fields, checked against croniter's next run times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from arq.cron import next_cron
from croniter import croniter

from finops_gql.cron import ArqSchedule, CronError, parse_cron
from finops_gql.worker import cron_jobs

EXPRESSIONS = [
    "0 3 * * *",
    "*/15 * * * *",
    "5,35 */6 * * *",
    "0 0 1 * *",
    "0 12 * * 1-5",
    "0 12 * * MON-FRI",
    "30 2 * * 0",
    "30 2 * * 7",
    "30 2 * * sun",
    "0 9 1,15 * *",
    "0 9 1,15 * 1",  # day-of-month OR day-of-week
    "0 0 13 * 5",  # every Friday and every 13th
    "0 4 */2 * *",  # starts with *: AND semantics (every odd day)
    "0 4 */2 * 1",  # starts with *: odd days that are also Mondays
    "0 4 * * */2",
    "0 22 * 1-3 *",
    "0 22 * jan,jul *",
    "15 10 * DEC *",
    "0 0 29 2 *",
    "0 0 31 * *",
    "1-5/2 8-10 * * *",
    "59 23 28-31 * *",
    "0 6 * * 6,0",
    "0 6 * * 5-7",
    "0 1 1-7 * 1",
    "0 */3 * * 1-5",
    "10 3/4 * * *",
    "0 0 1 */3 *",
    "7 7 7 7 *",
    "0 0 * * 3",
    "@daily",
    "@hourly",
    "@weekly",
    "@monthly",
]


def arq_next(schedules: list[ArqSchedule], after: datetime) -> datetime:
    return min(
        next_cron(
            after,
            month=s.month and set(s.month),
            day=s.day and set(s.day),
            weekday=s.weekday and set(s.weekday),
            hour=s.hour and set(s.hour),
            minute=s.minute and set(s.minute),
            second=0,
            microsecond=0,
        )
        for s in schedules
    )


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_next_runs_match_croniter(expression: str) -> None:
    schedules = parse_cron(expression)
    start = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    # Vixie cron (and cronie) OR the day fields only when neither starts with `*`; croniter also
    # ORs `*/2`-style fields, so for those the reference is croniter's AND mode.
    fields = expression.split()
    starred = len(fields) == 5 and (fields[2].startswith("*") or fields[4].startswith("*"))
    reference = croniter(expression, start, day_or=not starred)
    ours = start
    for _ in range(25):
        expected = reference.get_next(datetime)
        ours = arq_next(schedules, ours)
        assert ours == expected, f"{expression}: {ours} != {expected}"


def test_sunday_is_arq_weekday_6() -> None:
    assert parse_cron("0 0 * * 0")[0].weekday == frozenset({6})
    assert parse_cron("0 0 * * 7")[0].weekday == frozenset({6})
    assert parse_cron("0 0 * * 1")[0].weekday == frozenset({0})


def test_or_of_day_fields_becomes_two_schedules() -> None:
    schedules = parse_cron("0 9 1,15 * 1")
    assert [(s.day, s.weekday) for s in schedules] == [
        (frozenset({1, 15}), None),
        (None, frozenset({0})),
    ]
    jobs = cron_jobs("0 9 1,15 * 1")
    assert len(jobs) == 2
    assert len({j.name for j in jobs}) == 2
    assert {j.job_id for j in jobs} == {"finops_gql:cost-sync"}


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("0 3 * *", "5 fields"),
        ("60 3 * * *", "minute field"),
        ("0 24 * * *", "hour field"),
        ("0 3 0 * *", "day-of-month field"),
        ("0 3 * 13 *", "month field"),
        ("0 3 * * 8", "day-of-week field"),
        ("0 3 * * funday", "day-of-week field"),
        ("*/0 3 * * *", "minute field"),
        ("0 5-2 * * *", "hour field"),
        ("0 3,,4 * * *", "hour field"),
        ("", "5 fields"),
    ],
)
def test_invalid_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        parse_cron(expression)
