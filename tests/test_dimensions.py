"""Breakdowns by SYSTEM and DOMAIN (with the unassigned group), System and Domain cost series,
Team.costBreakdown batched, and teams ordered by their 30-day cost: on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from finops_gql.db.models import Component, Domain, System, Team
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_team
from tests.test_authz import client_as
from tests.test_explorer import EXAMPLE, daily, yesterday

pytestmark = pytest.mark.usefixtures("services")

GROUPS = """total totalCount groupBy
  nodes { key label total share change { previousTotal amount ratio }
    entity { __typename ... on System { slug } ... on Domain { slug } ... on Team { slug }
      ... on Component { name } } }"""

BREAKDOWN = f"""
query Breakdown($range: DateRange!, $by: CostDimension!, $first: Int) {{
  costBreakdown(range: $range, groupBy: $by, first: $first) {{ {GROUPS} }}
}}"""

TEAM_BREAKDOWN = f"""
query TeamBreakdown($id: ID!, $range: DateRange!, $by: CostDimension!, $sub: Boolean) {{
  team(id: $id) {{ costBreakdown(range: $range, groupBy: $by, includeSubTeams: $sub) {{
    {GROUPS} }} }}
}}"""

SERIES = "total points { start totalCost } change { previousTotal amount ratio }"
SYSTEM_COST = f"""
query SystemCost($slug: String!, $range: DateRange!, $granularity: Granularity) {{
  system(slug: $slug) {{ cost(range: $range, granularity: $granularity) {{ {SERIES} }} }}
}}"""
DOMAIN_COST = f"""
query DomainCost($slug: String!, $range: DateRange!, $granularity: Granularity) {{
  domain(slug: $slug) {{ cost(range: $range, granularity: $granularity) {{ {SERIES} }} }}
}}"""

WEEK = {"preset": "LAST_7_DAYS"}


@dataclass
class Catalog:
    payments: Team
    payments_eu: Team  # a sub-team of payments
    search: Team
    commerce: Domain
    shop: System  # in commerce
    engine: System  # in no domain
    checkout: Component  # payments, shop
    api: Component  # payments, no system
    eu_checkout: Component  # payments-eu, shop
    indexer: Component  # search, engine


async def catalog() -> Catalog:
    """Cost over the last 7 days: checkout 1 + 2, api 4, eu-checkout 8, indexer 16 (31 in all);
    the 7 days before: checkout 3, indexer 16."""
    payments, search = await make_team("payments"), await make_team("search")
    payments_eu = await make_team("payments-eu", "Payments EU")
    payments_eu.parent_id = str(payments.id)
    await payments_eu.save()
    commerce = await Domain.create(id=uuid.uuid4(), name="Commerce", slug="commerce")
    shop = await System.create(id=uuid.uuid4(), name="Shop", slug="shop", domain=commerce)
    engine = await System.create(id=uuid.uuid4(), name="Search engine", slug="engine")
    checkout = await make_component(payments, "checkout", system=shop)
    api = await make_component(payments, "payments-api")
    eu_checkout = await make_component(payments_eu, "eu-checkout", system=shop)
    indexer = await make_component(search, "indexer", system=engine)
    end = yesterday()
    before = end - timedelta(days=7)
    await daily(checkout, {end: 1.0, end - timedelta(days=2): 2.0, before: 3.0})
    await daily(api, {end: 4.0})
    await daily(eu_checkout, {end - timedelta(days=6): 8.0})
    await daily(indexer, {end: 16.0, before - timedelta(days=3): 16.0})
    return Catalog(
        payments,
        payments_eu,
        search,
        commerce,
        shop,
        engine,
        checkout,
        api,
        eu_checkout,
        indexer,
    )


def rows(found: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (n["key"], n["label"], n["total"], n["share"], n["entity"] and n["entity"]["__typename"])
        for n in found["nodes"]
    ]


async def breakdown(client: httpx.AsyncClient, by: str, **extra: Any) -> dict[str, Any]:
    body = await gql(client, BREAKDOWN, {"range": WEEK, "by": by, **extra})
    assert "errors" not in body, body
    found: dict[str, Any] = body["data"]["costBreakdown"]
    return found


async def test_breakdown_by_system_has_an_unassigned_group(client: httpx.AsyncClient) -> None:
    c = await catalog()
    found = await breakdown(client, "SYSTEM")
    assert (found["total"], found["totalCount"], found["groupBy"]) == (31.0, 3, "SYSTEM")
    assert rows(found) == [
        (str(c.engine.id), "Search engine", 16.0, 16 / 31, "System"),
        (str(c.shop.id), "Shop", 11.0, 11 / 31, "System"),
        ("unassigned", "(no system)", 4.0, 4 / 31, None),
    ]
    assert found["nodes"][0]["entity"]["slug"] == "engine"
    changes = [n["change"] for n in found["nodes"]]
    assert changes == [
        {"previousTotal": 16.0, "amount": 0.0, "ratio": 0.0},
        {"previousTotal": 3.0, "amount": 8.0, "ratio": 8 / 3},
        {"previousTotal": 0.0, "amount": 4.0, "ratio": None},
    ]
    first = await breakdown(client, "SYSTEM", first=1)
    assert (first["total"], first["totalCount"], len(first["nodes"])) == (31.0, 3, 1)


async def test_breakdown_by_domain_counts_systems_without_one_as_unassigned(
    client: httpx.AsyncClient,
) -> None:
    c = await catalog()
    found = await breakdown(client, "DOMAIN")
    # The engine system has no domain: its cost joins the cost in no system.
    assert (found["total"], found["totalCount"]) == (31.0, 2)
    assert rows(found) == [
        ("unassigned", "(no domain)", 20.0, 20 / 31, None),
        (str(c.commerce.id), "Commerce", 11.0, 11 / 31, "Domain"),
    ]
    assert found["nodes"][1]["entity"]["slug"] == "commerce"
    assert found["nodes"][0]["change"] == {"previousTotal": 16.0, "amount": 4.0, "ratio": 0.25}
    # Moving a system into a domain needs no rewrite: the breakdown joins the system.
    c.engine.domain_id = str(c.commerce.id)
    await c.engine.save()
    found = await breakdown(client, "DOMAIN")
    assert rows(found) == [
        (str(c.commerce.id), "Commerce", 27.0, 27 / 31, "Domain"),
        ("unassigned", "(no domain)", 4.0, 4 / 31, None),
    ]


async def test_team_breakdown_by_system_and_domain_covers_sub_teams_unless_asked_not_to(
    client: httpx.AsyncClient,
) -> None:
    c = await catalog()

    async def team(by: str, sub: bool = True) -> dict[str, Any]:
        variables = {"id": str(c.payments.id), "range": WEEK, "by": by, "sub": sub}
        body = await gql(client, TEAM_BREAKDOWN, variables)
        assert "errors" not in body, body
        found: dict[str, Any] = body["data"]["team"]["costBreakdown"]
        return found

    found = await team("SYSTEM")
    assert found["total"] == 15.0
    assert rows(found) == [
        (str(c.shop.id), "Shop", 11.0, 11 / 15, "System"),
        ("unassigned", "(no system)", 4.0, 4 / 15, None),
    ]
    own = await team("SYSTEM", sub=False)
    assert rows(own) == [
        ("unassigned", "(no system)", 4.0, 4 / 7, None),
        (str(c.shop.id), "Shop", 3.0, 3 / 7, "System"),
    ]
    assert own["nodes"][1]["change"] == {"previousTotal": 3.0, "amount": 0.0, "ratio": 0.0}
    found = await team("DOMAIN")
    assert rows(found) == [
        (str(c.commerce.id), "Commerce", 11.0, 11 / 15, "Domain"),
        ("unassigned", "(no domain)", 4.0, 4 / 15, None),
    ]
    # The other dimensions name their entities too.
    found = await team("COMPONENT")
    assert [(n["label"], n["entity"]) for n in found["nodes"]][:1] == [
        ("eu-checkout", {"__typename": "Component", "name": "eu-checkout"})
    ]
    found = await team("TEAM")
    assert [(n["entity"]["slug"], n["total"]) for n in found["nodes"]] == [
        ("payments-eu", 8.0),
        ("payments", 7.0),
    ]
    found = await team("RESOURCE")
    assert {n["entity"] for n in found["nodes"]} == {None}


async def test_system_and_domain_cost_series(client: httpx.AsyncClient) -> None:
    await catalog()
    body = await gql(client, SYSTEM_COST, {"slug": "shop", "range": WEEK, "granularity": "DAY"})
    assert "errors" not in body, body
    shop = body["data"]["system"]["cost"]
    # checkout (payments) and eu-checkout (payments-eu): every team's components of the system.
    assert shop["total"] == 11.0
    assert len(shop["points"]) == 7
    assert [p["totalCost"] for p in shop["points"]] == [8.0, 0, 0, 0, 2.0, 0, 1.0]
    assert shop["change"] == {"previousTotal": 3.0, "amount": 8.0, "ratio": 8 / 3}
    body = await gql(
        client, DOMAIN_COST, {"slug": "commerce", "range": WEEK, "granularity": "WEEK"}
    )
    commerce = body["data"]["domain"]["cost"]
    assert commerce["total"] == 11.0
    assert sum(p["totalCost"] for p in commerce["points"]) == 11.0
    body = await gql(client, SYSTEM_COST, {"slug": "engine", "range": {"preset": "LAST_30_DAYS"}})
    engine = body["data"]["system"]["cost"]
    assert (engine["total"], engine["change"]["previousTotal"]) == (32.0, 0)
    body = await gql(client, SYSTEM_COST, {"slug": "engine", "range": {"from": "2020-02-01"}})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_page_of_systems_asks_their_series_in_one_statement(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    query = """{ systems(first: 10) { nodes { slug cost(range: {preset: LAST_7_DAYS}) { total } }
      } domains(first: 10) { nodes { cost(range: {preset: LAST_7_DAYS}) { total } } } }"""
    await catalog()
    sql_counter.statements.clear()
    body = await gql(client, query)
    assert "errors" not in body, body
    totals = {n["slug"]: n["cost"]["total"] for n in body["data"]["systems"]["nodes"]}
    assert totals == {"engine": 16.0, "shop": 11.0}
    assert [n["cost"]["total"] for n in body["data"]["domains"]["nodes"]] == [11.0]
    series = [s for s in sql_counter.statements if "team_system_daily_cost" in s]
    assert len(series) == 2, series  # one for the systems, one for the domain


async def system_totals(client: httpx.AsyncClient) -> dict[str, float]:
    found = await breakdown(client, "SYSTEM")
    return {n["label"]: n["total"] for n in found["nodes"]}


async def test_catalog_changes_move_system_cost(
    client: httpx.AsyncClient, services: Services
) -> None:
    from finops_gql.catalog.backstage import import_catalog

    await import_catalog(EXAMPLE, "example")
    checkout = await Component.get(name="checkout")
    search = await Component.get(name="search")
    await daily(checkout, {yesterday(): 4.0})
    await daily(search, {yesterday(): 1.0})
    assert await system_totals(client) == {"Storefront": 4.0, "Discovery Engine": 1.0}
    # The import moves checkout to another system: its team's cube rows are rewritten.
    marker = "  owner: payments\n  system: storefront\n"
    assert marker in EXAMPLE
    moved = EXAMPLE.replace(marker, "  owner: payments\n  system: discovery-engine\n", 1)
    await import_catalog(moved, "example")
    assert await system_totals(client) == {"Discovery Engine": 5.0}
    # Out of any system.
    await import_catalog(moved.replace("  system: discovery-engine\n", "\n", 1), "example")
    assert await system_totals(client) == {"(no system)": 4.0, "Discovery Engine": 1.0}
    # A move to another team keeps the system's cost; a deletion takes it away.
    discovery = await Team.get(slug="discovery")
    await services.catalog.update_component(checkout.id, team_id=discovery.id)
    assert await system_totals(client) == {"(no system)": 4.0, "Discovery Engine": 1.0}
    await services.catalog.delete_component(search.id)
    assert await system_totals(client) == {"(no system)": 4.0}


async def test_the_sync_keeps_the_system_totals(
    client: httpx.AsyncClient, services: Services
) -> None:
    c = await catalog()
    run = await services.sync.run("cli")  # the stand-in costs checkout and search only
    assert run.status == "succeeded", run.error
    await services.costs.refresh_rollups()
    month = {"preset": "LAST_30_DAYS"}
    platform = await gql(client, "{ platformCost(range: {preset: LAST_30_DAYS}) { total } }")
    body = await gql(client, BREAKDOWN, {"range": month, "by": "SYSTEM"})
    found = body["data"]["costBreakdown"]
    assert found["total"] == platform["data"]["platformCost"]["total"] > 0
    shop = next(n for n in found["nodes"] if n["key"] == str(c.shop.id))
    checkout = await Component.get(id=c.checkout.id)
    eu = await Component.get(id=c.eu_checkout.id)
    assert shop["total"] == round(checkout.cost_30d + eu.cost_30d, 5)


async def test_team_breakdowns_of_a_page_are_batched(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    query = """query Teams($by: CostDimension!) { teams(first: 50) { nodes { slug
      costBreakdown(range: {preset: LAST_7_DAYS}, groupBy: $by, first: 3) { total
        nodes { label total } } } } }"""
    for by in ("SYSTEM", "COMPONENT"):
        counts = []
        for n in (2, 6):
            for i in range(n):
                team = await make_team(f"t-{by.lower()}-{n}-{i}")
                component = await make_component(team, f"c-{by.lower()}-{n}-{i}")
                await daily(component, {yesterday(): float(i + 1)})
            sql_counter.statements.clear()
            body = await gql(client, query, {"by": by})
            assert "errors" not in body, body
            totals = {
                node["slug"]: node["costBreakdown"]["total"]
                for node in body["data"]["teams"]["nodes"]
            }
            assert totals[f"t-{by.lower()}-{n}-{n - 1}"] == float(n)
            counts.append(len(sql_counter.statements))
        assert counts[0] == counts[1], (by, counts)
        # The page, the subtrees, the groups, the labels.
        assert counts[0] <= 4, sql_counter.statements


async def test_team_breakdown_bad_first_is_bad_user_input(client: httpx.AsyncClient) -> None:
    await catalog()
    query = """{ teams(first: 5) { nodes { slug
      costBreakdown(range: {preset: LAST_7_DAYS}, groupBy: SYSTEM, first: 0) { total } } } }"""
    body = await gql(client, query)
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "first must be between 1 and 100" in body["errors"][0]["message"]
    # One batch, one refusal: each team's field carries it (non-null, so the list is null).
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert body["data"] is None


# -- teams ordered by cost ------------------------------------------------------------------------

TEAMS = """query Teams($first: Int!, $after: String, $order: TeamOrder, $search: String) {
  teams(first: $first, after: $after, orderBy: $order, search: $search) {
    totalCount nodes { slug cost30d costSummary { totalCost } }
    pageInfo { endCursor hasNextPage } } }"""


async def all_pages(client: httpx.AsyncClient, order: str, first: int) -> list[tuple[str, float]]:
    seen: list[tuple[str, float]] = []
    after = None
    while True:
        body = await gql(client, TEAMS, {"first": first, "after": after, "order": order})
        assert "errors" not in body, body
        page = body["data"]["teams"]
        for node in page["nodes"]:
            assert node["cost30d"] == node["costSummary"]["totalCost"]
            seen.append((node["slug"], node["cost30d"]))
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]


async def test_teams_ordered_by_cost_with_cursors_and_ties(
    client: httpx.AsyncClient, services: Services
) -> None:
    costs = {"alpha": 5.0, "bravo": 2.5, "charlie": 5.0, "delta": 0.0, "echo": 7.25, "foxtrot": 2.5}
    for slug, cost in costs.items():
        team = await make_team(slug)
        if cost:
            # Two components: the team's figure is the sum of its own.
            first_half = await make_component(team, f"{slug}-a")
            second_half = await make_component(team, f"{slug}-b")
            await daily(first_half, {yesterday(): cost - 1.0})
            await daily(second_half, {yesterday() - timedelta(days=3): 1.0})
    sub = await make_team("golf")
    sub.parent_id = str((await Team.get(slug="delta")).id)  # sub-teams do not count
    await sub.save()
    await daily(await make_component(sub, "golf-a"), {yesterday(): 1.0})
    await services.costs.refresh_rollups()
    want_desc = [
        ("echo", 7.25),
        ("alpha", 5.0),
        ("charlie", 5.0),
        ("bravo", 2.5),
        ("foxtrot", 2.5),
        ("golf", 1.0),
        ("delta", 0.0),
    ]
    for first in (1, 2, 3, 50):
        assert await all_pages(client, "COST_30D_DESC", first) == want_desc
    want_asc = sorted(want_desc, key=lambda item: (item[1], item[0]))
    assert await all_pages(client, "COST_30D_ASC", 2) == want_asc
    # A move between teams moves the team figure in the same transaction.
    delta = await Team.get(slug="delta")
    echo_a = await Component.get(name="echo-a")
    await services.catalog.update_component(echo_a.id, team_id=delta.id)
    assert (await all_pages(client, "COST_30D_DESC", 50))[:2] == [("delta", 6.25), ("alpha", 5.0)]
    await services.catalog.delete_component(echo_a.id)
    assert dict(await all_pages(client, "COST_30D_DESC", 50))["delta"] == 0.0


async def test_the_sync_keeps_team_cost(client: httpx.AsyncClient, services: Services) -> None:
    payments, discovery = await make_team("payments"), await make_team("discovery")
    await make_component(payments, "checkout")
    await make_component(payments, "payments-api")
    await make_component(discovery, "search")
    run = await services.sync.run("cli")
    assert run.status == "succeeded", run.error
    found = await all_pages(client, "COST_30D_DESC", 1)
    summaries = await services.costs.team_summaries([payments.id, discovery.id])
    assert dict(found) == {
        "payments": summaries[payments.id].total_cost,
        "discovery": summaries[discovery.id].total_cost,
    }
    assert found[0][1] > 0


async def test_team_cost_cursors_are_checked(client: httpx.AsyncClient) -> None:
    for slug in ("alpha", "bravo", "charlie"):
        await make_team(slug)
    body = await gql(client, TEAMS, {"first": 1, "order": "COST_30D_DESC"})
    cursor = body["data"]["teams"]["pageInfo"]["endCursor"]
    for order, search, message in (
        ("COST_30D_ASC", None, "orderBy COST_30D_DESC, not COST_30D_ASC"),
        ("SLUG", None, "orderBy COST_30D_DESC, not SLUG"),
        ("COST_30D_DESC", "a", "another search"),
    ):
        variables = {"first": 1, "after": cursor, "order": order, "search": search}
        body = await gql(client, TEAMS, variables)
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert message in body["errors"][0]["message"]
    slug_cursor = (await gql(client, TEAMS, {"first": 1}))["data"]["teams"]["pageInfo"]
    body = await gql(
        client, TEAMS, {"first": 1, "after": slug_cursor["endCursor"], "order": "COST_30D_ASC"}
    )
    assert "orderBy SLUG, not COST_30D_ASC" in body["errors"][0]["message"]
    from finops_gql.validation import encode_cursor

    for forged in (
        encode_cursor("cost_desc", "x", "not-hex", "alpha"),
        encode_cursor("cost_desc", "x", float("inf").hex(), "alpha"),
        encode_cursor("cost_desc", "x", "0x0p+0", "a" * 101),
    ):
        body = await gql(client, TEAMS, {"first": 1, "after": forged, "order": "COST_30D_DESC"})
        assert body["errors"][0]["message"] == "after: not a cursor this API issued"


async def test_a_member_sees_its_teams_share_of_systems_and_domains(
    client: httpx.AsyncClient, services: Services
) -> None:
    """AUTHZ_MODE=team, a member of payments (so of payments-eu too): the platform's SYSTEM and
    DOMAIN breakdowns are its teams' rows of the cube only, a system another team shares costs
    it only its own components, a system of another team's alone does not exist for it, and its
    team breakdowns (the batched loader) leave the rest out."""
    c = await catalog()
    # search's component in shop: in everyone's figure for shop and commerce, not the member's.
    await daily(await make_component(c.search, "search-ui", system=c.shop), {yesterday(): 64.0})
    await services.costs.refresh_rollups()
    everything = await breakdown(client, "SYSTEM")
    assert rows(everything)[0] == (str(c.shop.id), "Shop", 75.0, 75 / 95, "System")
    async with client_as(services, "member") as member:
        found = await breakdown(member, "SYSTEM")
        assert (found["total"], found["totalCount"]) == (15.0, 2)
        assert rows(found) == [
            (str(c.shop.id), "Shop", 11.0, 11 / 15, "System"),
            ("unassigned", "(no system)", 4.0, 4 / 15, None),
        ]
        found = await breakdown(member, "DOMAIN")
        assert (found["total"], found["totalCount"]) == (15.0, 2)
        assert rows(found) == [
            (str(c.commerce.id), "Commerce", 11.0, 11 / 15, "Domain"),
            ("unassigned", "(no domain)", 4.0, 4 / 15, None),
        ]
        for query, slug in ((SYSTEM_COST, "shop"), (DOMAIN_COST, "commerce")):
            body = await gql(member, query, {"slug": slug, "range": WEEK})
            assert "errors" not in body, body
            assert next(iter(body["data"].values()))["cost"]["total"] == 11.0
        body = await gql(member, SYSTEM_COST, {"slug": "engine", "range": WEEK})
        assert body["data"]["system"] is None  # search's alone: invisible, like a missing one
        teams = await gql(
            member,
            "{ teams(first: 10) { nodes { slug costBreakdown(range: {preset: LAST_7_DAYS}, "
            "groupBy: SYSTEM) { total totalCount } } } }",
        )
        assert {n["slug"]: n["costBreakdown"] for n in teams["data"]["teams"]["nodes"]} == {
            "payments": {"total": 15.0, "totalCount": 2},
            "payments-eu": {"total": 8.0, "totalCount": 1},
        }
        by_cost = await gql(member, "{ teams(orderBy: COST_30D_DESC) { nodes { slug cost30d } } }")
        assert by_cost["data"]["teams"]["nodes"] == [
            {"slug": "payments", "cost30d": 10.0},  # its own: checkout 6 and payments-api 4
            {"slug": "payments-eu", "cost30d": 8.0},
        ]
