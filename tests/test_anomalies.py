"""Anomaly detection on generated series (pure), and over the database in bounded statements."""

from __future__ import annotations

import math
import random
import uuid
from datetime import date, timedelta

import pytest

from finops_gql.alerts.anomalies import AnomalySettings, detect, find_anomalies
from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.models import Component, CostRecord
from finops_gql.services import Services
from tests.conftest import QueryCounter, make_component, make_team

DEFAULTS = AnomalySettings()
LAST = date(2026, 3, 15)  # a Sunday
RESOURCES = ("cpu_cost", "ram_cost", "pv_cost")


def row(total: float, *, cpu: float = 0.6, ram: float = 0.3, pv: float = 0.1) -> tuple[float, ...]:
    """A day's sums in COLUMNS order, split between cpu, memory and pv."""
    values = dict.fromkeys(COLUMNS, 0.0)
    values.update(cpu_cost=total * cpu, ram_cost=total * ram, pv_cost=total * pv, total_cost=total)
    return tuple(values[c] for c in COLUMNS)


def series(
    days: int, level: float, *, noise: float = 0.03, weekend: float = 1.0, seed: int = 7
) -> dict[date, tuple[float, ...]]:
    """`days` days ending LAST around `level` (+-noise, relative), weekends at `weekend` x."""
    rng = random.Random(seed)
    found = {}
    for offset in range(days):
        day = LAST - timedelta(days=offset)
        factor = weekend if day.weekday() >= 5 else 1.0
        found[day] = row(level * factor * (1 + rng.uniform(-noise, noise)))
    return found


def test_a_spike_is_found_with_expected_cost_and_score() -> None:
    days = series(35, 100.0)
    days[LAST] = row(260.0)
    found = detect(days, LAST, DEFAULTS)
    assert found is not None
    assert found.day == LAST
    assert found.actual == pytest.approx(260.0)
    assert found.expected == pytest.approx(100.0, rel=0.05)
    assert found.score > 10
    assert found.weekly is True
    assert found.as_details()["actual"] == 260.0


def test_ordinary_noise_is_not_an_anomaly() -> None:
    days = series(40, 100.0, noise=0.05)
    for offset in range(7):
        assert detect(days, LAST - timedelta(days=offset), DEFAULTS) is None


def test_a_weekly_cycle_is_not_an_anomaly() -> None:
    # Weekdays cost 100, weekends 30: against the plain median every weekend would be a -70%
    # "anomaly"; against its own weekday it is ordinary.
    days = series(42, 100.0, weekend=0.3)
    assert LAST.weekday() == 6
    for offset in range(7):
        assert detect(days, LAST - timedelta(days=offset), DEFAULTS) is None
    # With too short a window for the weekly profile (< 2 of each weekday), the plain median
    # is used, and a Sunday looks low against it.
    few = AnomalySettings(window_days=10, min_history_days=10)
    assert detect(days, LAST, few) is not None


def test_a_weekend_spike_to_weekday_level_is_found() -> None:
    # 100 on a Sunday is ordinary on a Monday: only the weekday profile sees it.
    days = series(42, 100.0, weekend=0.3)
    days[LAST] = row(100.0)
    found = detect(days, LAST, DEFAULTS)
    assert found is not None
    assert found.expected == pytest.approx(30.0, rel=0.05)


def test_cents_never_page_anyone() -> None:
    days = series(35, 0.03)
    days[LAST] = row(0.09)  # three times the usual, a huge score, 6 cents
    assert detect(days, LAST, DEFAULTS) is None
    cheap = AnomalySettings(min_cost=0.01)
    assert detect(days, LAST, cheap) is not None  # the minimum cost is what refused it


def test_a_small_relative_change_is_ignored_however_steady_the_series() -> None:
    days = series(35, 1000.0, noise=0.001)
    days[LAST] = row(1100.0)  # +10%: a score of about 100, 100 dollars, below min_change 0.3
    assert detect(days, LAST, DEFAULTS) is None
    assert detect(days, LAST, AnomalySettings(min_change=0.05)) is not None


def test_the_resource_that_drove_it_is_named() -> None:
    days = series(35, 100.0)
    days[LAST] = row(200.0, cpu=0.3, ram=0.65, pv=0.05)  # memory 30 -> 130
    found = detect(days, LAST, DEFAULTS)
    assert found is not None
    assert found.resource == "memory"
    assert found.resource_delta == pytest.approx(100.0, rel=0.1)
    assert found.deltas["cpu"] == pytest.approx(0.0, abs=5)


def test_a_drop_is_found_and_attributed_in_its_direction() -> None:
    days = series(35, 100.0)
    days[LAST] = row(20.0, cpu=0.0, ram=1.0, pv=0.0)  # cpu 60 -> 0, memory 30 -> 20
    found = detect(days, LAST, DEFAULTS)
    assert found is not None
    assert found.score < 0
    assert found.resource == "cpu"


def test_too_little_history_is_not_judged() -> None:
    days = series(10, 100.0)
    days[LAST] = row(500.0)
    assert detect(days, LAST, DEFAULTS) is None


def test_a_flat_baseline_gives_a_finite_score() -> None:
    days = {LAST - timedelta(days=i): row(50.0) for i in range(30)}
    days[LAST] = row(80.0)
    found = detect(days, LAST, DEFAULTS)
    assert found is not None
    assert math.isfinite(found.score)


async def _records(component_id: uuid.UUID, days: dict[date, tuple[float, ...]]) -> None:
    await CostRecord.bulk_create(
        [
            CostRecord(
                component_id=component_id,
                day=day,
                currency="USD",
                synced_at="2026-03-16T03:00:00+00:00",
                **dict(zip(COLUMNS, sums, strict=True)),
            )
            for day, sums in days.items()
        ]
    )


@pytest.mark.usefixtures("services")
async def test_find_anomalies_reads_every_component_in_bounded_statements(
    services: Services, sql_counter: QueryCounter
) -> None:
    team = await make_team()
    spiking = await make_component(team, "checkout")
    days = series(35, 100.0)
    days[LAST - timedelta(days=1)] = row(400.0)
    await _records(spiking.id, days)
    for name in ("search", "payments-api", "ledger", "quiet"):
        await _records((await make_component(team, name)).id, series(35, 100.0, seed=len(name)))
    sql_counter.statements.clear()
    found = await find_anomalies(LAST, DEFAULTS, batch=2)
    reads = [s for s in sql_counter.statements if "cost_record" in s]
    totals = [s for s in reads if "t.day AS day, SUM(t.total_cost) AS total_cost FROM" in s]
    assert len(totals) == 3  # 5 components, 2 per statement, their totals only
    # The spread of every component's days (the prefilter), and the breakdown of the one with
    # an anomaly.
    assert len(reads) - len(totals) == 2
    assert [(f.name, f.anomaly.day) for f in found] == [("checkout", LAST - timedelta(days=1))]
    assert found[0].team_id == team.id
    # Only the newest check_days days are judged: an older spike is not reported again.
    assert await find_anomalies(LAST + timedelta(days=3), DEFAULTS) == []


async def _cluster_records(
    component_id: uuid.UUID, days: dict[date, tuple[float, ...]], cluster: str
) -> None:
    await CostRecord.bulk_create(
        [
            CostRecord(
                component_id=component_id,
                day=day,
                cluster=cluster,
                currency="USD",
                synced_at="2026-03-16T03:00:00+00:00",
                **dict(zip(COLUMNS, sums, strict=True)),
            )
            for day, sums in days.items()
        ]
    )


def flat(days: int, level: float) -> dict[date, tuple[float, ...]]:
    return {LAST - timedelta(days=offset): row(level) for offset in range(days)}


@pytest.mark.usefixtures("services")
async def test_the_prefilter_finds_the_same_anomalies_and_reads_fewer_components() -> None:
    """Components whose days cannot change by min_cost are left out before their days are read;
    the anomalies found are the same as judging every component, at the gate's edge too."""
    team = await make_team()
    spike = series(35, 100.0)
    spike[LAST] = row(260.0)
    drop = series(35, 100.0, seed=3)
    drop[LAST - timedelta(days=2)] = row(20.0)
    at_the_edge = flat(35, 100.0)
    at_the_edge[LAST] = row(105.0)  # a change of exactly min_cost
    under_the_edge = flat(35, 100.0)
    under_the_edge[LAST] = row(104.99)
    old_spike = flat(35, 10.0)
    old_spike[LAST - timedelta(days=20)] = row(400.0)  # in a baseline, never judged itself
    for name, days in [
        ("spike", spike),
        ("drop", drop),
        ("edge", at_the_edge),
        ("under-edge", under_the_edge),
        ("old-spike", old_spike),
        ("quiet", flat(35, 3.0)),
        ("noisy-cents", series(35, 2.0, noise=0.5)),
    ]:
        await _records((await make_component(team, name)).id, days)
    # Two clusters: each one's days are flat, their sum spikes.
    split = await make_component(team, "split")
    left = flat(35, 50.0)
    left[LAST - timedelta(days=1)] = row(53.0)
    right = flat(35, 50.0)
    right[LAST - timedelta(days=1)] = row(54.0)
    await _cluster_records(split.id, left, "left")
    await _cluster_records(split.id, right, "right")

    loose = AnomalySettings(min_change=0.0, min_score=0.0)  # min_cost decides alone
    for settings in (DEFAULTS, loose):
        every = await find_anomalies(LAST, settings, batch=3, prefilter=False)
        assert every  # the comparison means something
        assert await find_anomalies(LAST, settings, batch=3) == every
    names = {f.name for f in await find_anomalies(LAST, loose)}
    assert {"spike", "drop", "edge", "split"} <= names
    assert not {"under-edge", "quiet", "noisy-cents"} & names

    from finops_gql.alerts.anomalies import _may_change_enough

    first = LAST - timedelta(days=DEFAULTS.check_days - 1 + DEFAULTS.window_days)
    judged = await _may_change_enough(first, LAST, DEFAULTS.min_cost)
    components = {str(c.id): c.name for c in await Component.all()}
    assert sorted(components[c] for c in judged) == [
        "drop",
        "edge",
        "old-spike",
        "spike",
        "split",
    ]
