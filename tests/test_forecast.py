"""Forecasts: the method backtested on generated series (pure), and forecast(days) on Component,
Team and platformForecast through GraphQL on both databases (fallback, bounds, batching)."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from finops_gql.costs import forecast as f
from finops_gql.db.models import Component
from finops_gql.errors import InvalidInput
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_team
from tests.test_explorer import daily

WEEK = (1.0, 1.06, 1.1, 1.04, 0.98, 0.62, 0.55)  # Monday..Sunday
FIRST = date(2026, 1, 5)  # a Monday


def generated(days: int, rng: random.Random, noise: float = 0.05) -> list[float]:
    """A known trend (100 + 0.6/day), a weekly cycle and multiplicative Gaussian noise."""
    return [
        (100 + 0.6 * i) * WEEK[(FIRST + timedelta(days=i)).weekday()] * (1 + rng.gauss(0, noise))
        for i in range(days)
    ]


def test_backtest_error_on_a_held_out_fortnight_is_small() -> None:
    """56 days fitted, the next 14 held out, 50 seeded series: MAPE below 8 %, whereas a flat
    mean (no trend, no week) misses by far more; the 80 % interval covers 65..92 % of them."""
    rng = random.Random(20260315)
    errors, naive, covered, total = [], [], 0, 0
    for _ in range(50):
        series = generated(70, rng)
        history, held = series[:56], series[56:]
        found = f.forecast(history, FIRST + timedelta(days=55), 14)
        assert found.method is f.Method.TREND_WEEKLY
        assert not found.fallback
        assert [p.day for p in found.points] == [FIRST + timedelta(days=56 + i) for i in range(14)]
        mean = sum(history) / len(history)
        for point, actual in zip(found.points, held, strict=True):
            errors.append(abs(point.expected - actual) / actual)
            naive.append(abs(mean - actual) / actual)
            covered += point.lower <= actual <= point.upper
            total += 1
            assert point.lower <= point.expected <= point.upper
    mape = sum(errors) / len(errors)
    assert mape < 0.08, mape
    assert sum(naive) / len(naive) > 2 * mape  # the trend and the week are what is learned
    assert 0.65 <= covered / total <= 0.92, covered / total


def test_interval_widens_with_the_horizon() -> None:
    found = f.forecast(generated(56, random.Random(1)), FIRST + timedelta(days=55), 90)
    widths = [p.upper - p.lower for p in found.points]
    # Same weekday a week apart, further out: wider (the trend's uncertainty grows).
    assert all(widths[i + 7] > widths[i] for i in range(len(widths) - 7))
    assert len(found.points) == 90


def test_a_flat_series_forecasts_flat() -> None:
    found = f.forecast([12.5] * 40, date(2026, 3, 31), 30)
    assert found.method is f.Method.TREND_WEEKLY
    assert found.history_days == 40
    assert {(p.expected, p.lower, p.upper) for p in found.points} == {(12.5, 12.5, 12.5)}
    noisy = [10 + random.Random(3).uniform(-0.5, 0.5) for _ in range(56)]
    found = f.forecast(noisy, date(2026, 3, 31), 30)
    assert all(abs(p.expected - 10) < 0.6 for p in found.points)


def test_three_days_fall_back_to_the_mean_with_a_wide_interval() -> None:
    found = f.forecast([4.0, 6.0, 5.0], date(2026, 3, 31), 5)
    assert found.method is f.Method.MEAN
    assert found.fallback
    assert found.history_days == 3
    assert {p.expected for p in found.points} == {5.0}
    assert all(p.lower < 3.0 and p.upper > 7.0 for p in found.points)  # wide on purpose
    one = f.forecast([8.0], date(2026, 3, 31), 1)
    assert one.method is f.Method.MEAN
    assert one.points[0].lower < 8 < one.points[0].upper
    thirteen = f.forecast([1.0] * 13, date(2026, 3, 31), 1)
    assert thirteen.method is f.Method.MEAN  # 14 is the threshold
    assert f.forecast([1.0] * 14, date(2026, 3, 31), 1).method is f.Method.TREND_WEEKLY


def test_no_history_is_zeros_and_costs_never_go_negative() -> None:
    none = f.forecast([], date(2026, 3, 31), 3)
    assert none.method is f.Method.NO_DATA
    assert none.fallback
    assert none.history_days == 0
    assert {(p.expected, p.lower, p.upper) for p in none.points} == {(0.0, 0.0, 0.0)}
    falling = [max(50 - 2.0 * i, 0.0) for i in range(30)]  # heading below zero
    found = f.forecast(falling, date(2026, 3, 31), 60)
    assert all(p.expected >= 0 and p.lower >= 0 and p.upper >= p.expected for p in found.points)
    assert found.points[-1].expected == 0.0


def test_only_the_last_56_days_are_fitted_and_the_inputs_are_checked() -> None:
    found = f.forecast([1000.0] * 100 + [5.0] * 56, date(2026, 3, 31), 3)
    assert found.history_days == 56
    assert found.points[0].expected == 5.0
    for bad in (0, 91, -1):
        with pytest.raises(InvalidInput, match="between 1 and 90"):
            f.forecast([1.0], date(2026, 3, 31), bad)
    assert f.student_t(0.9, 6) == pytest.approx(1.440, abs=0.003)  # Student's table
    assert f.student_t(0.9, 30) == pytest.approx(1.310, abs=0.002)


def test_observed_starts_at_the_first_record_and_counts_gaps_as_zero() -> None:
    last = date(2026, 3, 31)
    days = {last - timedelta(days=4): 2.0, last - timedelta(days=1): 3.0, date(2025, 1, 1): 9.0}
    assert f.observed(days, last) == [2.0, 0.0, 0.0, 3.0, 0.0]
    assert f.observed({}, last) == []


# -- GraphQL ----------------------------------------------------------------------------------

FORECAST = "method fallback interval historyDays points { day expected lower upper }"


async def test_component_forecast_and_the_3_day_fallback(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.costs.clock = lambda: datetime(2026, 4, 1, 9, tzinfo=UTC)
    team = await make_team()
    old, new = await make_component(team, "old"), await make_component(team, "new")
    last = date(2026, 3, 31)
    await daily(old, {last - timedelta(days=i): 7.0 for i in range(60)})
    await daily(new, {last - timedelta(days=i): 3.0 + i for i in range(3)})
    body = await gql(
        client,
        f"""query($a: ID!, $b: ID!) {{ a: component(id: $a) {{ forecast(days: 3) {{ {FORECAST} }} }}
        b: component(id: $b) {{ forecast(days: 2) {{ {FORECAST} }} }} }}""",
        {"a": str(old.id), "b": str(new.id)},
    )
    assert "errors" not in body, body
    steady = body["data"]["a"]["forecast"]
    assert steady["method"] == "TREND_WEEKLY"
    assert steady["fallback"] is False
    assert (steady["interval"], steady["historyDays"]) == (0.8, 56)
    assert steady["points"] == [
        {"day": f"2026-04-0{d}", "expected": 7, "lower": 7, "upper": 7} for d in (1, 2, 3)
    ]
    fresh = body["data"]["b"]["forecast"]
    assert (fresh["method"], fresh["fallback"], fresh["historyDays"]) == ("MEAN", True, 3)
    assert [p["expected"] for p in fresh["points"]] == [4, 4]


async def test_team_and_platform_forecasts(client: httpx.AsyncClient, services: Services) -> None:
    services.costs.clock = lambda: datetime(2026, 4, 1, 9, tzinfo=UTC)
    parent, child = await make_team("payments"), await make_team("fraud")
    child.parent_id = parent.id
    await child.save()
    last = date(2026, 3, 31)
    await daily(
        await make_component(parent, "checkout"), {last - timedelta(i): 2.0 for i in range(20)}
    )
    await daily(
        await make_component(child, "scoring"), {last - timedelta(i): 1.0 for i in range(20)}
    )
    body = await gql(
        client,
        """query($t: ID!) { team(id: $t) { all: forecast(days: 1) { historyDays points { expected } }
          own: forecast(days: 1, includeSubTeams: false) { points { expected } } }
          platformForecast(days: 1) { method points { day expected } } }""",
        {"t": str(parent.id)},
    )
    assert "errors" not in body, body
    team = body["data"]["team"]
    assert team["all"] == {"historyDays": 20, "points": [{"expected": 3}]}
    assert team["own"]["points"] == [{"expected": 2}]
    assert body["data"]["platformForecast"] == {
        "method": "TREND_WEEKLY",
        "points": [{"day": "2026-04-01", "expected": 3}],
    }
    nothing = await make_component(parent, "unused")
    body = await gql(
        client,
        "query($c: ID!) { component(id: $c) { forecast(days: 90) { method fallback points "
        "{ upper } } } }",
        {"c": str(nothing.id)},
    )
    empty = body["data"]["component"]["forecast"]
    assert (empty["method"], empty["fallback"], len(empty["points"])) == ("NO_DATA", True, 90)
    assert {p["upper"] for p in empty["points"]} == {0}


@pytest.mark.parametrize("days", [0, 91, -5])
async def test_forecast_days_out_of_range_is_bad_input(
    client: httpx.AsyncClient, services: Services, days: int
) -> None:
    component = await make_component(await make_team())
    for query, variables in (
        ("query($d: Int!) { platformForecast(days: $d) { method } }", {"d": days}),
        (
            "query($c: ID!, $d: Int!) { component(id: $c) { forecast(days: $d) { method } } }",
            {"c": str(component.id), "d": days},
        ),
        (
            "query($t: ID!, $d: Int!) { team(id: $t) { forecast(days: $d) { method } } }",
            {"t": str(component.team_id), "d": days},
        ),
    ):
        body = await gql(client, query, variables)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", body
        assert "days must be between 1 and 90" in body["errors"][0]["message"]


async def test_a_page_of_forecasts_costs_a_fixed_number_of_statements(
    client: httpx.AsyncClient, services: Services, sql_counter: QueryCounter
) -> None:
    team = await make_team()
    query = "{ components(first: 50) { nodes { forecast(days: 7) { historyDays } } } }"

    async def statements(count: int) -> int:
        start = len(await Component.all())
        for i in range(start, count):
            component = await make_component(team, f"c{i:02d}")
            await daily(component, {date(2026, 3, 1) + timedelta(days=d): 1.0 for d in range(5)})
        sql_counter.statements.clear()
        body = await gql(client, query)
        assert "errors" not in body, body
        return len(sql_counter.statements)

    assert await statements(3) == await statements(12) == 2  # the page, one daily read
