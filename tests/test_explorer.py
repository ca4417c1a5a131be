"""The cost explorer's series (Component.cost, Team.cost, platformCost) through GraphQL, on both
databases: presets, granularities, gap filling, change, incomplete buckets, bad input, batching."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from finops_gql.alerts import anomalies
from finops_gql.costs import coverage, explorer
from finops_gql.costs.ranges import Granularity, Preset, buckets, preset_range
from finops_gql.db.models import Component, CostRecord, Team
from finops_gql.db.setup import SqlParams, dialect
from finops_gql.graphql.cost import document_cost
from finops_gql.graphql.schema import schema as strawberry_schema
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_records, make_team, today

pytestmark = pytest.mark.usefixtures("services")

SERIES = """total currency start end granularity
  breakdown { cpuCost memoryCost pvCost totalCost }
  points { start end complete totalCost breakdown { cpuCost totalCost } }
  change { previousTotal amount ratio }"""

COMPONENT_COST = f"""
query ComponentCost($id: ID!, $range: DateRange!, $granularity: Granularity) {{
  component(id: $id) {{ cost30d cost(range: $range, granularity: $granularity) {{ {SERIES} }} }}
}}"""

TEAM_COST = f"""
query TeamCost($id: ID!, $range: DateRange!, $granularity: Granularity, $sub: Boolean) {{
  team(id: $id) {{ cost(range: $range, granularity: $granularity, includeSubTeams: $sub)
    {{ {SERIES} }} }}
}}"""

PLATFORM_COST = f"""
query PlatformCost($range: DateRange!, $granularity: Granularity) {{
  platformCost(range: $range, granularity: $granularity) {{ {SERIES} }}
}}"""


EXAMPLE = (Path(__file__).parent.parent / "examples" / "catalog-info.yaml").read_text()


def yesterday() -> date:
    return today() - timedelta(days=1)


async def daily(component: Component, costs: dict[date, float]) -> None:
    """One record per day given, in one INSERT; cpu 60 %, memory 30 %, pv 10 % of the total."""
    synced = datetime.now(UTC).replace(microsecond=0)
    await CostRecord.bulk_create(
        [
            CostRecord(
                component=component,
                day=day,
                cpu_cost=round(total * 0.6, 5),
                ram_cost=round(total * 0.3, 5),
                pv_cost=round(total * 0.1, 5),
                total_cost=total,
                currency="USD",
                synced_at=synced,
            )
            for day, total in costs.items()
        ]
    )
    # Written behind the services' back: bring the team and platform daily totals along, as the
    # sync and the catalog do in their own transactions.
    await explorer.refresh_daily_totals()


def ramp(days: int, end: date | None = None) -> dict[date, float]:
    """`days` days ending `end` (yesterday), costing 1.25, 1.5, ... going back in time."""
    end = end or yesterday()
    return {end - timedelta(days=i): 1.0 + 0.25 * (i % 40 + 1) for i in range(days)}


async def component_series(
    client: httpx.AsyncClient, component: Component, range_: dict[str, Any], granularity: str
) -> dict[str, Any]:
    body = await gql(
        client,
        COMPONENT_COST,
        {"id": str(component.id), "range": range_, "granularity": granularity},
    )
    assert "errors" not in body, body
    series: dict[str, Any] = body["data"]["component"]["cost"]
    return series


def expected_total(costs: dict[date, float], start: date, end: date) -> float:
    return round(sum(v for d, v in costs.items() if start <= d <= end), 5)


async def test_every_preset_and_granularity(client: httpx.AsyncClient) -> None:
    team = await make_team()
    component = await make_component(team)
    costs = ramp(400)
    await daily(component, costs)
    for preset in Preset:
        chosen = preset_range(preset, today())
        for granularity in Granularity:
            series = await component_series(
                client, component, {"preset": preset.name}, granularity.name
            )
            want = buckets(chosen, granularity)
            assert [(p["start"], p["end"], p["complete"]) for p in series["points"]] == [
                (b.start.isoformat(), b.end.isoformat(), b.complete) for b in want
            ], (preset, granularity)
            assert (series["start"], series["end"]) == (
                chosen.start.isoformat(),
                chosen.end.isoformat(),
            )
            assert series["granularity"] == granularity.name
            assert series["currency"] == "USD"
            assert series["total"] == expected_total(costs, chosen.start, chosen.end)
            assert round(sum(p["totalCost"] for p in series["points"]), 5) == series["total"]
            assert series["breakdown"]["totalCost"] == series["total"]
            for point in series["points"]:
                start, end = date.fromisoformat(point["start"]), date.fromisoformat(point["end"])
                assert point["totalCost"] == expected_total(costs, start, end)
                assert point["breakdown"]["totalCost"] == point["totalCost"]
            previous = chosen.previous()
            assert series["change"]["previousTotal"] == expected_total(
                costs, previous.start, previous.end
            )


async def test_gaps_are_zeros_and_every_bucket_is_present_in_order(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team()
    component = await make_component(team)
    end = yesterday()
    await daily(component, {end: 3.0, end - timedelta(days=3): 2.0})
    series = await component_series(client, component, {"preset": "LAST_7_DAYS"}, "DAY")
    days = [end - timedelta(days=6 - i) for i in range(7)]
    assert [p["start"] for p in series["points"]] == [d.isoformat() for d in days]
    assert [p["totalCost"] for p in series["points"]] == [0, 0, 0, 2.0, 0, 0, 3.0]
    assert series["points"][0]["breakdown"] == {"cpuCost": 0, "totalCost": 0}
    assert series["total"] == 5.0
    # A component with no records at all: every bucket, all zeros.
    empty = await make_component(team, "search")
    series = await component_series(client, empty, {"preset": "LAST_30_DAYS"}, "DAY")
    assert len(series["points"]) == 30
    assert {p["totalCost"] for p in series["points"]} == {0}
    assert series["change"] == {"previousTotal": 0, "amount": 0, "ratio": None}


async def test_last_30_days_agrees_with_cost30d_and_rest(
    client: httpx.AsyncClient, services: Services
) -> None:
    team = await make_team()
    component = await make_component(team)
    await make_records(component, [2.38, 2.28, 1.11, 0.07] * 10)  # 40 days, 10 outside
    await services.costs.refresh_rollups()
    body = await gql(
        client,
        COMPONENT_COST,
        {"id": str(component.id), "range": {"preset": "LAST_30_DAYS"}, "granularity": "WEEK"},
    )
    found = body["data"]["component"]
    rest = (await client.get(f"/api/v1/cost/teams/{team.id}/summary")).json()
    assert found["cost"]["total"] == found["cost30d"] == rest["totalCost"]
    assert found["cost"]["total"] == round(sum(([2.38, 2.28, 1.11, 0.07] * 10)[10:]), 5)


async def test_change_against_the_previous_range(client: httpx.AsyncClient) -> None:
    team = await make_team()
    component = await make_component(team)
    end = yesterday()
    # Only the last 7 days have cost: the 7 before cost nothing, so no ratio.
    await daily(component, {end - timedelta(days=i): 1.5 for i in range(7)})
    series = await component_series(client, component, {"preset": "LAST_7_DAYS"}, "DAY")
    assert series["change"] == {"previousTotal": 0, "amount": 10.5, "ratio": None}
    # Days 8..14 back cost 3.0 each: the last 7 days fell by half.
    await daily(component, {end - timedelta(days=i): 3.0 for i in range(7, 14)})
    series = await component_series(client, component, {"preset": "LAST_7_DAYS"}, "DAY")
    assert series["change"] == {"previousTotal": 21.0, "amount": -10.5, "ratio": -0.5}


async def test_buckets_cut_by_the_range_are_incomplete(client: httpx.AsyncClient) -> None:
    team = await make_team()
    component = await make_component(team)
    # A Wednesday to the Tuesday two weeks later, safely in the past.
    wednesday = yesterday() - timedelta(days=60)
    wednesday -= timedelta(days=(wednesday.weekday() - 2) % 7)
    tuesday = wednesday + timedelta(days=13)
    await daily(component, {wednesday + timedelta(days=i): 1.0 for i in range(14)})
    range_ = {"from": wednesday.isoformat(), "to": tuesday.isoformat()}
    series = await component_series(client, component, range_, "WEEK")
    assert [(p["complete"], p["totalCost"]) for p in series["points"]] == [
        (False, 5.0),
        (True, 7.0),
        (False, 2.0),
    ]
    assert series["points"][0]["start"] == wednesday.isoformat()  # clipped to the range
    assert series["points"][-1]["end"] == tuesday.isoformat()
    series = await component_series(client, component, range_, "MONTH")
    assert all(not p["complete"] for p in series["points"])
    assert series["total"] == 14.0


async def test_team_and_platform_series(client: httpx.AsyncClient) -> None:
    payments, search = await make_team("payments"), await make_team("search")
    checkout = await make_component(payments, "checkout")
    api = await make_component(payments, "payments-api")
    indexer = await make_component(search, "indexer")
    end = yesterday()
    await daily(checkout, {end: 1.0, end - timedelta(days=8): 2.0})
    await daily(api, {end: 4.0})
    await daily(indexer, {end - timedelta(days=1): 8.0})
    for sub in (True, False):
        body = await gql(
            client,
            TEAM_COST,
            {
                "id": str(payments.id),
                "range": {"preset": "LAST_7_DAYS"},
                "granularity": "DAY",
                "sub": sub,
            },
        )
        series = body["data"]["team"]["cost"]
        assert series["total"] == 5.0
        assert series["points"][-1]["totalCost"] == 5.0
        assert series["change"] == {"previousTotal": 2.0, "amount": 3.0, "ratio": 1.5}
    body = await gql(client, PLATFORM_COST, {"range": {"preset": "LAST_7_DAYS"}})
    series = body["data"]["platformCost"]
    assert series["total"] == 13.0
    assert [p["totalCost"] for p in series["points"]][-2:] == [8.0, 5.0]
    assert series["breakdown"]["cpuCost"] == round(13.0 * 0.6, 5)
    assert series["change"]["previousTotal"] == 2.0


async def test_a_team_series_covers_its_sub_teams_unless_asked_not_to(
    client: httpx.AsyncClient,
) -> None:
    payments = await make_team("payments")
    fraud, rules = await make_team("fraud"), await make_team("fraud-rules")
    await Team.filter(id=fraud.id).update(parent_id=payments.id)
    await Team.filter(id=rules.id).update(parent_id=fraud.id)  # a grandchild
    end = yesterday()
    await daily(await make_component(payments, "checkout"), {end: 1.0})
    await daily(await make_component(fraud, "scorer"), {end: 2.0})
    await daily(await make_component(rules, "rules-engine"), {end: 4.0})
    totals = {}
    for sub in (None, True, False):
        variables: dict[str, Any] = {"id": str(payments.id), "range": {"preset": "LAST_7_DAYS"}}
        if sub is not None:
            variables["sub"] = sub
        body = await gql(client, TEAM_COST, variables)
        totals[sub] = body["data"]["team"]["cost"]["total"]
    assert totals == {None: 7.0, True: 7.0, False: 1.0}


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"range": {"preset": "LAST_7_DAYS", "from": "2026-01-01"}}, "either preset"),
        (
            {"range": {"preset": "LAST_7_DAYS", "from": "2026-01-01", "to": "2026-01-02"}},
            "not both",
        ),
        ({"range": {"from": "2026-01-01"}}, "both from and to"),
        ({"range": {"to": "2026-01-01"}}, "both from and to"),
        ({"range": {}}, "either preset"),
        ({"range": {"from": "{-1}", "to": "{-5}"}}, "is after to"),
        ({"range": {"from": "{1}", "to": "{9}"}}, "in the future"),
        ({"range": {"from": "{-402}", "to": "{-1}"}}, "COST_RETENTION_DAYS"),
        ({"range": {"preset": "LAST_7_DAYS"}, "granularity": "HOUR"}, "HOUR"),
        ({"range": {"preset": "YESTERDAY"}}, "YESTERDAY"),
        ({"range": {"from": "2026-13-01", "to": "2026-12-31"}}, "2026-13-01"),
        ({"range": {"from": "today", "to": "2026-12-31"}}, "today"),
    ],
)
async def test_bad_input_is_bad_user_input(
    client: httpx.AsyncClient, variables: dict[str, Any], message: str
) -> None:
    team = await make_team()
    range_ = {
        k: (today() + timedelta(days=int(v[1:-1]))).isoformat() if v.startswith("{") else v
        for k, v in variables["range"].items()
    }
    for query, extra in (
        (PLATFORM_COST, {}),
        (TEAM_COST, {"id": str(team.id)}),
    ):
        body = await gql(client, query, {**variables, "range": range_, **extra})
        assert body.get("data") in (None, {"team": None}, {"platformCost": None}), body
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", error
        assert message in error["message"], error


async def test_explicit_range_ending_in_the_future_is_cut_at_yesterday(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team()
    component = await make_component(team)
    start = yesterday() - timedelta(days=2)
    range_ = {"from": start.isoformat(), "to": (today() + timedelta(days=5)).isoformat()}
    series = await component_series(client, component, range_, "DAY")
    assert series["end"] == yesterday().isoformat()
    assert len(series["points"]) == 3


async def test_page_of_teams_with_cost_is_not_n_plus_1(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    query = """query Teams($first: Int!) { teams(first: $first) { nodes { slug
      cost(range: {preset: LAST_30_DAYS}, granularity: WEEK) { total points { totalCost } }
      components(first: 5) { nodes { cost(range: {preset: LAST_7_DAYS}) { total } } }
    } } }"""
    counts = []
    for n in (2, 6):
        for i in range(n):
            team = await make_team(f"team-{n}-{i}")
            component = await make_component(team, f"c-{n}-{i}")
            await daily(component, {yesterday(): float(i + 1)})
        sql_counter.statements.clear()
        body = await gql(client, query, {"first": 50})
        assert "errors" not in body, body
        totals = {node["slug"]: node["cost"]["total"] for node in body["data"]["teams"]["nodes"]}
        assert totals[f"team-{n}-{n - 1}"] == float(n)
        counts.append(len(sql_counter.statements))
    assert counts[0] == counts[1], counts


def test_points_are_bounded_in_the_query_cost() -> None:
    from graphql import parse

    document = parse("{ platformCost(range: {preset: LAST_7_DAYS}) { points { totalCost } } }")
    assert document_cost(strawberry_schema._schema, document) == 1 + 400


async def series_totals(client: httpx.AsyncClient, *teams: Team) -> list[float]:
    """LAST_30_DAYS totals of each team, then of the platform."""
    totals = []
    for team in teams:
        body = await gql(
            client, TEAM_COST, {"id": str(team.id), "range": {"preset": "LAST_30_DAYS"}}
        )
        totals.append(body["data"]["team"]["cost"]["total"])
    body = await gql(client, PLATFORM_COST, {"range": {"preset": "LAST_30_DAYS"}})
    totals.append(body["data"]["platformCost"]["total"])
    return totals


async def test_sync_keeps_the_team_and_platform_totals(
    client: httpx.AsyncClient, services: Services
) -> None:
    payments, search = await make_team("payments"), await make_team("search")
    await make_component(payments, "checkout")
    await make_component(payments, "payments-api")
    await make_component(search, "search")
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    teams = await Team.all().order_by("slug")
    summaries = await services.costs.team_summaries([t.id for t in teams])
    want = [summaries[t.id].total_cost for t in teams]
    got = await series_totals(client, *teams)
    assert got[:-1] == want
    assert want[0] > 0
    assert got[-1] == round(sum(want), 5)


async def test_moving_or_deleting_a_component_moves_its_cost(
    client: httpx.AsyncClient, services: Services
) -> None:
    payments, search = await make_team("payments"), await make_team("search")
    checkout = await make_component(payments, "checkout")
    indexer = await make_component(search, "indexer")
    await daily(checkout, {yesterday(): 5.0, yesterday() - timedelta(days=3): 1.0})
    await daily(indexer, {yesterday(): 2.0})
    assert await series_totals(client, payments, search) == [6.0, 2.0, 8.0]
    await services.catalog.update_component(checkout.id, team_id=search.id)
    assert await series_totals(client, payments, search) == [0, 8.0, 8.0]
    await services.catalog.delete_component(indexer.id)
    assert await series_totals(client, payments, search) == [0, 6.0, 6.0]


async def test_catalog_import_moves_the_cost_of_components_that_change_team(
    client: httpx.AsyncClient,
) -> None:
    from finops_gql.catalog.backstage import import_catalog

    text = EXAMPLE
    await import_catalog(text, "example")
    payments = await Team.get(slug="payments")
    discovery = await Team.get(slug="discovery")
    checkout = await Component.get(name="checkout")
    await daily(checkout, {yesterday(): 4.0})
    assert (await series_totals(client, payments, discovery))[:2] == [4.0, 0]
    moved = text.replace("  owner: payments\n", "  owner: discovery\n", 1)
    assert moved != text
    await import_catalog(moved, "example")
    assert (await series_totals(client, payments, discovery))[:2] == [0, 4.0]


BREAKDOWN = """
query Breakdown($range: DateRange!, $by: CostDimension!, $first: Int) {
  costBreakdown(range: $range, groupBy: $by, first: $first) {
    total totalCount groupBy currency
    nodes { key label total share change { previousTotal amount ratio } }
  }
}"""

TEAM_BREAKDOWN = """
query TeamBreakdown($id: ID!, $range: DateRange!, $by: CostDimension!, $first: Int) {
  team(id: $id) { costBreakdown(range: $range, groupBy: $by, first: $first) {
    total totalCount nodes { key label total share change { previousTotal ratio } } } }
}"""


async def test_cost_breakdown_by_team_component_and_resource(client: httpx.AsyncClient) -> None:
    payments, search = await make_team("payments"), await make_team("search")
    checkout = await make_component(payments, "checkout")
    api = await make_component(payments, "payments-api")
    indexer = await make_component(search, "indexer")
    end = yesterday()
    await daily(checkout, {end: 1.0, end - timedelta(days=8): 2.0})
    await daily(api, {end: 3.0})
    await daily(indexer, {end - timedelta(days=1): 12.0, end - timedelta(days=10): 6.0})
    week = {"preset": "LAST_7_DAYS"}

    body = await gql(client, BREAKDOWN, {"range": week, "by": "TEAM"})
    found = body["data"]["costBreakdown"]
    assert (found["total"], found["totalCount"], found["groupBy"]) == (16.0, 2, "TEAM")
    assert [(n["label"], n["total"], n["share"]) for n in found["nodes"]] == [
        ("Search", 12.0, 0.75),
        ("Payments", 4.0, 0.25),
    ]
    assert found["nodes"][0]["key"] == str(search.id)
    assert found["nodes"][0]["change"] == {"previousTotal": 6.0, "amount": 6.0, "ratio": 1.0}
    assert found["nodes"][1]["change"]["ratio"] == 1.0  # 4 against 2

    body = await gql(client, BREAKDOWN, {"range": week, "by": "COMPONENT", "first": 2})
    found = body["data"]["costBreakdown"]
    assert (found["total"], found["totalCount"]) == (16.0, 3)
    assert [(n["label"], n["total"]) for n in found["nodes"]] == [
        ("indexer", 12.0),
        ("payments-api", 3.0),
    ]
    assert found["nodes"][1]["change"]["ratio"] is None  # no cost the week before

    body = await gql(client, BREAKDOWN, {"range": week, "by": "RESOURCE"})
    found = body["data"]["costBreakdown"]
    assert found["total"] == 16.0
    shown = {n["key"]: n["total"] for n in found["nodes"]}
    assert shown["cpu"] == round(16.0 * 0.6, 5)
    assert shown["memory"] == round(16.0 * 0.3, 5)
    assert [n["key"] for n in found["nodes"]][:3] == ["cpu", "memory", "pv"]

    body = await gql(
        client, TEAM_BREAKDOWN, {"id": str(payments.id), "range": week, "by": "COMPONENT"}
    )
    found = body["data"]["team"]["costBreakdown"]
    assert (found["total"], found["totalCount"]) == (4.0, 2)
    assert [n["label"] for n in found["nodes"]] == ["payments-api", "checkout"]
    body = await gql(
        client, TEAM_BREAKDOWN, {"id": str(payments.id), "range": week, "by": "RESOURCE"}
    )
    assert body["data"]["team"]["costBreakdown"]["total"] == 4.0


@pytest.mark.parametrize("first", [0, 101, -1])
async def test_cost_breakdown_first_is_bounded(client: httpx.AsyncClient, first: int) -> None:
    body = await gql(
        client, BREAKDOWN, {"range": {"preset": "LAST_7_DAYS"}, "by": "TEAM", "first": first}
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first must be between 1 and 100" in error["message"]


async def test_cost_breakdown_with_no_cost_has_no_share(client: httpx.AsyncClient) -> None:
    await make_component(await make_team(), "idle")
    body = await gql(client, BREAKDOWN, {"range": {"preset": "LAST_30_DAYS"}, "by": "RESOURCE"})
    found = body["data"]["costBreakdown"]
    assert found["total"] == 0
    assert {n["share"] for n in found["nodes"]} == {None}


def test_a_series_spans_at_most_400_days_even_with_a_longer_retention(
    services: Services,
) -> None:
    from finops_gql.costs.service import CostService
    from finops_gql.errors import InvalidInput

    costs = CostService(services.opencost, retention_days=730)
    end = yesterday()
    assert costs.resolve_range(start=end - timedelta(days=399), end=end).days == 400
    with pytest.raises(InvalidInput, match="401 days is longer than the 400 days a cost series"):
        costs.resolve_range(start=end - timedelta(days=400), end=end)


PARAMETER_DAY_BOUND = re.compile(r"\bday\s*(?:>=|<=|<|>|=)\s*\$\d")


async def test_day_bounds_are_literals_on_postgresql(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    """PostgreSQL keeps a statement's plan after five runs, costed without its parameters: a day
    range as parameters counts as 0.5 % of the rows, and the breakdowns' GROUP BY became a sort
    (twice the CPU). So every read's day bounds are literals there (SqlParams.day), planned
    with the range; SQLite takes them as parameters."""
    payments = await make_team("payments")
    checkout = await make_component(payments, "checkout")
    await daily(checkout, ramp(40))
    week, month = {"preset": "LAST_7_DAYS"}, {"preset": "LAST_30_DAYS"}
    sql_counter.statements.clear()
    await component_series(client, checkout, month, "WEEK")
    await gql(client, TEAM_COST, {"id": str(payments.id), "range": month, "granularity": "DAY"})
    await gql(client, PLATFORM_COST, {"range": month, "granularity": "DAY"})
    for by in ("TEAM", "COMPONENT", "SYSTEM", "RESOURCE"):
        body = await gql(client, BREAKDOWN, {"range": week, "by": by})
        assert "errors" not in body, body
    await coverage.sums(yesterday() - timedelta(days=6), yesterday())
    await coverage.unmapped_keys(yesterday() - timedelta(days=6), yesterday(), 5)
    await anomalies._may_change_enough(yesterday() - timedelta(days=29), yesterday(), 1.0)
    ranged = [s for s in sql_counter.statements if re.search(r"\bday\s*>=", s)]
    assert len(ranged) >= 10
    if dialect() == "postgres":
        assert [s for s in ranged if PARAMETER_DAY_BOUND.search(s)] == []
        assert all("day >= DATE '" in s for s in ranged)
    else:
        assert all("day >= ?" in s for s in ranged)


def test_a_day_bound_is_a_date() -> None:
    p = SqlParams()
    with pytest.raises(TypeError, match="must be a date, not datetime"):
        p.day(datetime(2026, 11, 23, tzinfo=UTC))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not str"):
        p.day("2026-11-23'; DROP TABLE team; --")  # type: ignore[arg-type]
    marker = p.day(date(2026, 11, 23))
    if dialect() == "postgres":
        assert (marker, p.values) == ("DATE '2026-11-23'", [])
    else:
        assert (marker, p.values) == ("?", ["2026-11-23"])
