"""Team-scoped access (AUTHZ_MODE=team): every REST route and every GraphQL field, walked as an
outsider, a member, a viewer and an admin, on both databases.

The expected answers are computed here from the seeded catalog and a plain Python walk of the
team tree (not from the service's SQL): what a principal may not see must be missing from
lookups, lists, counts, cursors, sums and breakdowns alike, and an invisible row must answer
exactly like one that does not exist. The matrix is checked against the schema and the app's
routes, so a new query field, nested field or REST route without an entry fails here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLType,
    GraphQLUnionType,
)
from starlette.routing import Route

from finops_gql.access import EVERYTHING, NOTHING, Scope, scope_for
from finops_gql.app import create_app
from finops_gql.auth import Principal, mint_token
from finops_gql.catalog.service import ComponentOrder, Page, TeamOrder
from finops_gql.config import ConfigError, Settings
from finops_gql.costs import explorer
from finops_gql.db.models import Alert, Component, Domain, SyncRun, System, Team
from finops_gql.graphql.schema import schema
from finops_gql.services import Services
from finops_gql.validation import decode_cursor
from tests.conftest import QueryCounter, make_records, today

WHO = ("outsider", "member", "viewer", "admin")
ROLES = {"outsider": [], "member": [], "viewer": ["viewer"], "admin": ["admin"]}
# The outsider names a team that does not exist; the member a team with a sub-team.
MEMBER_OF = {"outsider": ["nobody"], "member": ["payments"], "viewer": [], "admin": []}

# slug -> parent slug
TEAMS = {"platform": None, "payments": "platform", "fraud": "payments", "search": None}
# name -> (team, daily totals ending yesterday): sums exact in binary floating point
COMPONENTS = {
    "ledger": ("platform", [5.0, 6.0]),
    "ledger-api": ("platform", [4.0, 0.25]),
    "checkout": ("payments", [1.25, 2.5]),
    "scorer": ("fraud", [3.0, 0.5]),
    "search-api": ("search", [20.0, 30.0]),
}
# slug -> (owner team, domain, components). `shop` is another team's system holding one of the
# member's components; `billing` is the member's system holding only another team's component.
SYSTEMS = {
    "shop": ("search", "commerce", ["checkout", "search-api"]),
    "infra": ("platform", "core", ["ledger"]),
    "billing": ("payments", None, ["ledger-api"]),
}
DOMAINS = {"commerce": "search", "core": "platform"}
LAST_30 = "{preset: LAST_30_DAYS}"


def subtree(slug: str) -> set[str]:
    found = {slug}
    for child, parent in TEAMS.items():
        if parent == slug:
            found |= subtree(child)
    return found


@dataclass
class World:
    who: str
    http: httpx.AsyncClient
    services: Services
    teams: dict[str, Team] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    systems: dict[str, System] = field(default_factory=dict)
    domains: dict[str, Domain] = field(default_factory=dict)

    # -- what the principal should see, from the catalog above --------------------------------

    @property
    def sees_everything(self) -> bool:
        return self.who in ("viewer", "admin")

    @property
    def team_slugs(self) -> set[str]:
        if self.sees_everything:
            return set(TEAMS)
        return {t for slug in MEMBER_OF[self.who] if slug in TEAMS for t in subtree(slug)}

    @property
    def component_names(self) -> set[str]:
        return {c for c, (team, _) in COMPONENTS.items() if team in self.team_slugs}

    @property
    def system_slugs(self) -> set[str]:
        return {
            s
            for s, (owner, _, members) in SYSTEMS.items()
            if owner in self.team_slugs or set(members) & self.component_names
        }

    @property
    def domain_slugs(self) -> set[str]:
        return {
            d
            for d, owner in DOMAINS.items()
            if owner in self.team_slugs or any(SYSTEMS[s][1] == d for s in self.system_slugs)
        }

    def cost(self, names: set[str]) -> float:
        return sum(sum(COMPONENTS[n][1]) for n in names)

    def ids(self, kind: dict[str, Any], names: set[str]) -> set[str]:
        return {str(kind[n].id) for n in names}

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        sent = {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in variables.items()}
        response = await self.http.post("/graphql", json={"query": query, "variables": sent})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


async def build_world(who: str, http: httpx.AsyncClient, services: Services) -> World:
    world = World(who, http, services)
    for slug in TEAMS:  # parents first
        parent = world.teams.get(TEAMS[slug] or "")
        world.teams[slug] = await Team.create(
            id=uuid.uuid4(), slug=slug, name=slug.title(), parent=parent
        )
    for slug, owner in DOMAINS.items():
        world.domains[slug] = await Domain.create(
            id=uuid.uuid4(), slug=slug, name=slug.title(), owner=world.teams[owner]
        )
    system_of = {}
    for slug, (owner, domain, members) in SYSTEMS.items():
        world.systems[slug] = await System.create(
            id=uuid.uuid4(),
            slug=slug,
            name=slug.title(),
            owner=world.teams[owner],
            domain=world.domains[domain] if domain else None,
        )
        system_of.update(dict.fromkeys(members, world.systems[slug]))
    for name, (team, totals) in COMPONENTS.items():
        component = await Component.create(
            id=uuid.uuid4(), name=name, team=world.teams[team], system=system_of.get(name)
        )
        world.components[name] = component
        await make_records(component, totals)
    await explorer.refresh_daily_totals()
    await services.costs.refresh_rollups()
    await SyncRun.create(started_at=datetime.now(UTC), status="succeeded", trigger="cron")
    return world


@contextlib.asynccontextmanager
async def client_as(
    services: Services, who: str, mode: str = "team"
) -> AsyncIterator[httpx.AsyncClient]:
    settings = services.settings.with_(authz_mode=mode)
    services.settings = settings  # REST reads the mode from the services, GraphQL from the app
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    token = mint_token(settings, who, ROLES[who], timedelta(hours=1), teams=MEMBER_OF[who])
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@pytest.fixture(params=WHO)
async def world(request: pytest.FixtureRequest, services: Services) -> AsyncIterator[World]:
    async with client_as(services, request.param) as http:
        yield await build_world(request.param, http, services)


Check = Callable[[World], Awaitable[None]]
QUERY_CHECKS: dict[str, Check] = {}
REST_CHECKS: dict[str, Check] = {}


def query(name: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        QUERY_CHECKS[name] = check
        return check

    return register


def rest(path: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        REST_CHECKS[path] = check
        return check

    return register


def by_cost(names: set[str]) -> list[str]:
    return sorted(names, key=lambda n: (-sum(COMPONENTS[n][1]), n))


UNASSIGNED = "unassigned"


def system_of(name: str) -> str | None:
    return next((s for s, (_, _, members) in SYSTEMS.items() if name in members), None)


def domain_of(name: str) -> str | None:
    system = system_of(name)
    return None if system is None else SYSTEMS[system][1]


def grouped(names: set[str], group: Callable[[str], str | None]) -> dict[str, float]:
    """The cost of `names` by group slug (UNASSIGNED for none): a SYSTEM / DOMAIN breakdown."""
    found: dict[str, float] = {}
    for name in names:
        key = group(name) or UNASSIGNED
        found[key] = found.get(key, 0.0) + sum(COMPONENTS[name][1])
    return found


def check_groups(
    world: World,
    breakdown: dict[str, Any],
    names: set[str],
    group: Callable[[str], str | None],
    kind: dict[str, Any],
    typename: str,
) -> None:
    """A SYSTEM or DOMAIN breakdown of `names`: keys, labels, totals, count and entities, with
    nothing of another team's components (no group, no label, no entity, nothing in a total)."""
    expected = grouped(names, group)
    assert breakdown["total"] == world.cost(names)
    assert breakdown["totalCount"] == len(expected)
    found = {}
    for node in breakdown["nodes"]:
        slug = next((s for s, o in kind.items() if str(o.id) == node["key"]), None)
        if node["key"] == UNASSIGNED:
            slug = UNASSIGNED
            assert node["entity"] is None
        else:
            assert slug is not None
            assert node["label"] == slug.title()
            assert node["entity"] == {"__typename": typename, "slug": slug}
        found[slug] = node["total"]
    assert found == expected


# -- GraphQL: the Query type's fields ------------------------------------------------------------


async def by_id_and_slug(
    world: World,
    field: str,
    objects: dict[str, Any],
    deep: str,
    check: Callable[[World, dict[str, Any] | None, str], None],
) -> None:
    """`field(id:)` and `field(slug:)` of each object, and of an id nothing has."""
    for slug, found in objects.items():
        by_id = await world.gql(f"query($id: ID!) {{ {field}(id: $id) {{ {deep} }} }}", id=found.id)
        check(world, by_id[field], slug)
        by_slug = await world.gql(
            f"query($s: String!) {{ {field}(slug: $s) {{ {deep} }} }}", s=slug
        )
        check(world, by_slug[field], slug)
    missing = await world.gql(f"query($id: ID!) {{ {field}(id: $id) {{ id }} }}", id=uuid.uuid4())
    assert missing[field] is None


TEAM_DEEP = f"""
  id slug
  parent {{ slug }}
  children(first: 100) {{ nodes {{ slug }} totalCount pageInfo {{ hasNextPage }} }}
  components(first: 100) {{ nodes {{ name }} totalCount }}
  costSummary {{ totalCost components(limit: 100) {{ componentId component {{ name }} }} }}
  cost(range: {LAST_30}, granularity: WEEK) {{ total points {{ totalCost }} }}
  costBreakdown(range: {LAST_30}, groupBy: COMPONENT, first: 100) {{ total totalCount nodes {{ key }} }}
  cost30d
  bySystem: costBreakdown(range: {LAST_30}, groupBy: SYSTEM, first: 100) {{
    total totalCount nodes {{ key label total entity {{ __typename ... on System {{ slug }} }} }}
  }}
  budgetStatus {{ spent }}
  forecast(days: 1) {{ historyDays points {{ expected }} }}
"""


def check_team_deep(world: World, team: dict[str, Any] | None, slug: str) -> None:
    """A team found by id or slug: null when invisible, else every nested field scoped."""
    if slug not in world.team_slugs:
        assert team is None
        return
    assert team is not None
    assert team["slug"] == slug
    parent = TEAMS[slug]
    assert team["parent"] == ({"slug": parent} if parent in world.team_slugs else None)
    children = sorted(c for c, p in TEAMS.items() if p == slug)  # all in scope: a subtree
    assert [n["slug"] for n in team["children"]["nodes"]] == children
    assert team["children"]["totalCount"] == len(children)
    own = {c for c, (t, _) in COMPONENTS.items() if t == slug}
    assert [n["name"] for n in team["components"]["nodes"]] == sorted(own)
    assert team["components"]["totalCount"] == len(own)
    summary = team["costSummary"]
    assert summary["totalCost"] == world.cost(own)
    assert [c["component"]["name"] for c in summary["components"]] == by_cost(own)
    whole = {c for c, (t, _) in COMPONENTS.items() if t in subtree(slug)}
    assert team["cost"]["total"] == world.cost(whole)
    assert sum(p["totalCost"] for p in team["cost"]["points"]) == pytest.approx(world.cost(whole))
    breakdown = team["costBreakdown"]
    assert breakdown["total"] == world.cost(whole)
    assert {n["key"] for n in breakdown["nodes"]} == world.ids(world.components, whole)
    assert breakdown["totalCount"] == len(whole)
    assert team["cost30d"] == world.cost(own)
    check_groups(world, team["bySystem"], whole, system_of, world.systems, "System")
    # The subtree's two days, averaged (fewer than 14: the MEAN fallback).
    assert team["forecast"]["points"] == [{"expected": world.cost(whole) / 2}]
    assert team["budgetStatus"] is None


@query("team")
async def _team(world: World) -> None:
    await by_id_and_slug(world, "team", world.teams, TEAM_DEEP, check_team_deep)


@query("teams")
async def _teams(world: World) -> None:
    visible = sorted(world.team_slugs)
    data = await world.gql("{ teams(first: 100) { nodes { slug } totalCount } }")
    assert [n["slug"] for n in data["teams"]["nodes"]] == visible
    assert data["teams"]["totalCount"] == len(visible)
    searched = await world.gql('{ teams(search: "a") { nodes { slug } totalCount } }')
    assert searched["teams"]["totalCount"] == len([s for s in visible if "a" in s])
    # Page one by one: each cursor names a visible team only, and the walk finds them all.
    seen: list[str] = []
    after = None
    while True:
        page = await world.gql(
            "query($a: String) { teams(first: 1, after: $a) "
            "{ nodes { slug } pageInfo { endCursor hasNextPage } } }",
            a=after,
        )
        seen += [n["slug"] for n in page["teams"]["nodes"]]
        info = page["teams"]["pageInfo"]
        if info["endCursor"] is not None:
            assert decode_cursor(info["endCursor"], 4)[2] in world.team_slugs
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert seen == visible
    # A cursor issued under a wider scope (an admin's, after `platform`) pages on over what this
    # principal sees.
    wide = await world.services.catalog.list_teams(first=3)
    assert wide.items[-1].slug == "platform"
    rest = await world.gql(
        "query($a: String) { teams(after: $a) { nodes { slug } } }", a=wide.end_cursor
    )
    assert [n["slug"] for n in rest["teams"]["nodes"]] == [s for s in visible if s > "platform"]
    await check_teams_by_cost(world)


def own_cost(slug: str) -> float:
    return sum(sum(totals) for team, totals in COMPONENTS.values() if team == slug)


TEAMS_BY_COST = """
query($o: TeamOrder!, $a: String, $n: Int) {
  teams(orderBy: $o, first: $n, after: $a) {
    totalCount nodes { slug cost30d } pageInfo { endCursor hasNextPage }
  }
}
"""
TEAM_ORDERS = {"SLUG", "NAME", "COST_30D_DESC", "COST_30D_ASC"}  # every TeamOrder, checked


async def check_teams_by_cost(world: World) -> None:
    """teams(orderBy: COST_30D_*): the visible teams only, by their own cost, paged one by one
    on cursors naming visible teams; an admin's cursor pages on over the visible ones."""
    for order, sign in (("COST_30D_DESC", -1), ("COST_30D_ASC", 1)):
        ranked = sorted(world.team_slugs, key=lambda t: (sign * own_cost(t), t))
        data = (await world.gql(TEAMS_BY_COST, o=order, n=100))["teams"]
        assert [n["slug"] for n in data["nodes"]] == ranked
        assert [n["cost30d"] for n in data["nodes"]] == [own_cost(t) for t in ranked]
        assert data["totalCount"] == len(ranked)
        seen: list[str] = []
        after = None
        while True:
            page = (await world.gql(TEAMS_BY_COST, o=order, n=1, a=after))["teams"]
            seen += [n["slug"] for n in page["nodes"]]
            if page["pageInfo"]["endCursor"] is not None:
                assert decode_cursor(page["pageInfo"]["endCursor"], 4)[3] in world.team_slugs
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert seen == ranked
    wide = await world.services.catalog.list_teams(first=2, order=TeamOrder.COST_30D_DESC)
    everyone = sorted(TEAMS, key=lambda t: (-own_cost(t), t))
    assert [t.slug for t in wide.items] == everyone[:2]
    rest = (await world.gql(TEAMS_BY_COST, o="COST_30D_DESC", a=wide.end_cursor, n=100))["teams"]
    assert [n["slug"] for n in rest["nodes"]] == [t for t in everyone[2:] if t in world.team_slugs]


COMPONENT_DEEP = f"""
  id name cost30d
  team {{ slug }}
  system {{ slug }}
  history(limit: 10) {{ totalCost }}
  cost(range: {LAST_30}) {{ total }}
  clusters
  inDefault: cost(range: {LAST_30}, clusters: ["default"]) {{ total }}
  actualCost {{ sevenDay {{ totalCost }} }}
  budgetStatus {{ spent }}
  forecast(days: 1) {{ historyDays points {{ expected }} }}
"""


async def check_component_deep(world: World, found: dict[str, Any] | None, name: str) -> None:
    if name not in world.component_names:
        assert found is None
        return
    assert found is not None
    assert found["name"] == name
    team, totals = COMPONENTS[name]
    assert found["team"] == {"slug": team}
    system = next((s for s, (_, _, members) in SYSTEMS.items() if name in members), None)
    assert found["system"] == ({"slug": system} if system else None)
    assert [h["totalCost"] for h in found["history"]] == list(reversed(totals))
    assert found["cost"]["total"] == sum(totals) == found["cost30d"]
    # The seeded records are the `default` cluster's (OPENCOST_URL's).
    assert found["clusters"] == ["default"]
    assert found["inDefault"] == found["cost"]
    assert found["forecast"] == {"historyDays": 2, "points": [{"expected": sum(totals) / 2}]}
    assert found["budgetStatus"] is None


@query("component")
async def _component(world: World) -> None:
    for name, component in world.components.items():
        data = await world.gql(
            f"query($id: ID!) {{ component(id: $id) {{ {COMPONENT_DEEP} }} }}", id=component.id
        )
        await check_component_deep(world, data["component"], name)
    missing = await world.gql("query($id: ID!) { component(id: $id) { id } }", id=uuid.uuid4())
    assert missing["component"] is None


COMPONENTS_PAGE = """
query($first: Int, $after: String, $team: ID, $system: ID, $order: ComponentOrder) {
  components(first: $first, after: $after, teamId: $team, systemId: $system, orderBy: $order) {
    nodes { name } totalCount pageInfo { endCursor hasNextPage }
  }
}
"""


@query("components")
async def _components(world: World) -> None:
    visible = world.component_names
    data = (await world.gql(COMPONENTS_PAGE, first=100))["components"]
    assert [n["name"] for n in data["nodes"]] == sorted(visible)
    assert data["totalCount"] == len(visible)
    for slug, team in world.teams.items():
        own = {c for c, (t, _) in COMPONENTS.items() if t == slug} & visible
        found = (await world.gql(COMPONENTS_PAGE, team=team.id))["components"]
        assert [n["name"] for n in found["nodes"]] == sorted(own)
        assert found["totalCount"] == len(own)
    for slug, system in world.systems.items():
        members = set(SYSTEMS[slug][2]) & visible
        found = (await world.gql(COMPONENTS_PAGE, system=system.id))["components"]
        assert [n["name"] for n in found["nodes"]] == sorted(members)
        assert found["totalCount"] == len(members)
    # Cursors: the member's own name visible rows only; an admin's (after an invisible row)
    # pages on over the visible rows.
    page = (await world.gql(COMPONENTS_PAGE, first=1))["components"]
    if page["pageInfo"]["endCursor"]:
        assert decode_cursor(page["pageInfo"]["endCursor"], 5)[3] in visible
    for order, service_order in (
        ("NAME", ComponentOrder.NAME),
        ("COST_30D_DESC", ComponentOrder.COST_30D_DESC),
    ):
        wide = await world.services.catalog.list_components(first=2, order=service_order)
        ranked = sorted(COMPONENTS) if order == "NAME" else by_cost(set(COMPONENTS))
        assert [c.name for c in wide.items] == ranked[:2]
        found = await world.gql(COMPONENTS_PAGE, after=wide.end_cursor, order=order)
        assert [n["name"] for n in found["components"]["nodes"]] == [
            n for n in ranked[2:] if n in visible
        ]


@query("topComponents")
async def _top(world: World) -> None:
    data = await world.gql(
        "{ topComponents(limit: 100) { componentId totalCost component { name } } }"
    )
    top = data["topComponents"]
    assert [c["component"]["name"] for c in top] == by_cost(world.component_names)
    assert [c["componentId"] for c in top] == [
        str(world.components[n].id) for n in by_cost(world.component_names)
    ]


@query("platformCost")
async def _platform(world: World) -> None:
    data = await world.gql(
        f"{{ platformCost(range: {LAST_30}) {{ total breakdown {{ totalCost cpuCost }} "
        "points { totalCost } change { previousTotal } "
        "coverage { catalogCost clusterCost } unmappedKeys { key } } }"
    )
    series = data["platformCost"]
    expected = world.cost(world.component_names)
    assert series["total"] == series["breakdown"]["totalCost"] == expected
    assert sum(p["totalCost"] for p in series["points"]) == pytest.approx(expected)
    assert series["breakdown"]["cpuCost"] == pytest.approx(expected * 0.6)
    # The cluster beyond the catalog belongs to no team: only for who sees everything.
    if world.sees_everything:
        assert series["coverage"] == {"catalogCost": expected, "clusterCost": expected}
        assert series["unmappedKeys"] == []
    else:
        assert series["coverage"] is None
        assert series["unmappedKeys"] is None


@query("platformForecast")
async def _platform_forecast(world: World) -> None:
    data = await world.gql("{ platformForecast(days: 2) { method points { expected } } }")
    forecast = data["platformForecast"]
    # Two days of history: the mean of the visible components' daily totals (none: zeros).
    expected = world.cost(world.component_names) / 2
    assert forecast["points"] == [{"expected": expected}] * 2
    assert forecast["method"] == ("MEAN" if world.component_names else "NO_DATA")


BREAKDOWN = f"""
query($by: CostDimension!) {{
  costBreakdown(range: {LAST_30}, groupBy: $by, first: 100) {{
    total totalCount nodes {{
      key label total share
      entity {{ __typename ... on System {{ slug }} ... on Domain {{ slug }} }}
    }}
  }}
}}
"""
# every CostDimension, checked
DIMENSIONS = {"TEAM", "COMPONENT", "RESOURCE", "SYSTEM", "DOMAIN", "CLUSTER"}
FILTERED_BREAKDOWN = BREAKDOWN.replace("first: 100)", 'first: 100, clusters: ["default"])')


@query("costBreakdown")
async def _breakdown(world: World) -> None:
    visible = world.component_names
    expected = world.cost(visible)
    by_team = (await world.gql(BREAKDOWN, by="TEAM"))["costBreakdown"]
    paying = {COMPONENTS[c][0] for c in visible}
    assert by_team["total"] == expected
    assert by_team["totalCount"] == len(paying)
    assert {n["key"] for n in by_team["nodes"]} == world.ids(world.teams, paying)
    for node in by_team["nodes"]:
        slug = next(s for s, t in world.teams.items() if str(t.id) == node["key"])
        assert node["total"] == world.cost({c for c in visible if COMPONENTS[c][0] == slug})
    by_component = (await world.gql(BREAKDOWN, by="COMPONENT"))["costBreakdown"]
    assert by_component["total"] == expected
    assert by_component["totalCount"] == len(visible)
    assert {n["label"] for n in by_component["nodes"]} == visible
    assert sum(n["total"] for n in by_component["nodes"]) == expected
    by_resource = (await world.gql(BREAKDOWN, by="RESOURCE"))["costBreakdown"]
    assert by_resource["total"] == expected
    cpu = next(n for n in by_resource["nodes"] if n["key"] == "cpu")
    assert cpu["total"] == pytest.approx(expected * 0.6)
    # SYSTEM / DOMAIN: the visible teams' rows of the team x system cube only. The member's
    # `shop` holds another team's component (not counted) and its `billing` only another team's
    # (no group).
    by_system = (await world.gql(BREAKDOWN, by="SYSTEM"))["costBreakdown"]
    check_groups(world, by_system, visible, system_of, world.systems, "System")
    by_domain = (await world.gql(BREAKDOWN, by="DOMAIN"))["costBreakdown"]
    check_groups(world, by_domain, visible, domain_of, world.domains, "Domain")
    # CLUSTER (and any clusters filter) read the records: the visible components' only.
    by_cluster = (await world.gql(BREAKDOWN, by="CLUSTER"))["costBreakdown"]
    assert by_cluster["total"] == expected
    assert by_cluster["totalCount"] == (1 if visible else 0)
    assert [(n["key"], n["entity"]) for n in by_cluster["nodes"]] == (
        [("default", None)] if visible else []
    )
    for by in ("TEAM", "COMPONENT", "SYSTEM", "DOMAIN", "RESOURCE"):
        filtered = (await world.gql(FILTERED_BREAKDOWN, by=by))["costBreakdown"]
        unfiltered = (await world.gql(BREAKDOWN, by=by))["costBreakdown"]
        assert filtered["total"] == pytest.approx(unfiltered["total"]), by
        assert {n["key"]: n["total"] for n in filtered["nodes"]} == pytest.approx(
            {n["key"]: n["total"] for n in unfiltered["nodes"]}
        ), by


@query("opencostAvailability")
async def _availability(world: World) -> None:
    data = await world.gql("{ opencostAvailability { available sources { name available } } }")
    assert data["opencostAvailability"] == {
        "available": True,
        "sources": [{"name": "default", "available": True}],
    }


@query("syncRuns")
async def _sync_runs(world: World) -> None:
    # A run counts every team's components: platform operations, for those who see everything.
    data = await world.gql("{ syncRuns { status components } }")
    assert len(data["syncRuns"]) == (1 if world.sees_everything else 0)


SYSTEM_DEEP = f"""
  slug
  owner {{ slug }}
  domain {{ slug }}
  components(first: 100) {{ nodes {{ name }} totalCount }}
  cost(range: {LAST_30}) {{ total change {{ previousTotal }} }}
"""


def check_system_deep(world: World, found: dict[str, Any] | None, slug: str) -> None:
    if slug not in world.system_slugs:
        assert found is None
        return
    assert found is not None
    assert found["slug"] == slug
    owner, domain, members = SYSTEMS[slug]
    assert found["owner"] == ({"slug": owner} if owner in world.team_slugs else None)
    assert found["domain"] == ({"slug": domain} if domain else None)
    shown = set(members) & world.component_names
    assert [n["name"] for n in found["components"]["nodes"]] == sorted(shown)
    assert found["components"]["totalCount"] == len(shown)
    # Its visible components' cost only: the member's `billing` costs it nothing.
    assert found["cost"]["total"] == world.cost(shown)
    assert found["cost"]["change"] == {"previousTotal": 0.0}


@query("system")
async def _system(world: World) -> None:
    await by_id_and_slug(world, "system", world.systems, SYSTEM_DEEP, check_system_deep)


async def slug_list(
    world: World,
    field: str,
    deep: str,
    visible: set[str],
    check: Callable[[World, dict[str, Any] | None, str], None],
    wide: Page[Any],
) -> None:
    """A list by slug shows the visible ones, each scoped within; `wide`, a first page of one
    row issued to a principal that sees everything, pages on over the visible ones only."""
    data = await world.gql(f"{{ {field}(first: 100) {{ nodes {{ {deep} }} }} }}")
    nodes = data[field]["nodes"]
    assert [n["slug"] for n in nodes] == sorted(visible)
    for node in nodes:
        check(world, node, node["slug"])
    first = wide.items[0].slug
    rest = await world.gql(
        f"query($a: String) {{ {field}(after: $a) {{ nodes {{ slug }} }} }}", a=wide.end_cursor
    )
    assert [n["slug"] for n in rest[field]["nodes"]] == sorted(s for s in visible if s > first)


@query("systems")
async def _systems(world: World) -> None:
    wide = await world.services.catalog.list_systems(first=1)
    await slug_list(world, "systems", SYSTEM_DEEP, world.system_slugs, check_system_deep, wide)


DOMAIN_DEEP = f"slug owner {{ slug }} systems(first: 100) {{ nodes {{ slug }} }} cost(range: {LAST_30}) {{ total }}"


def check_domain_deep(world: World, found: dict[str, Any] | None, slug: str) -> None:
    if slug not in world.domain_slugs:
        assert found is None
        return
    assert found is not None
    assert found["slug"] == slug
    owner = DOMAINS[slug]
    assert found["owner"] == ({"slug": owner} if owner in world.team_slugs else None)
    systems = {s for s, (_, d, _) in SYSTEMS.items() if d == slug} & world.system_slugs
    assert [n["slug"] for n in found["systems"]["nodes"]] == sorted(systems)
    inside = {c for c in world.component_names if domain_of(c) == slug}
    assert found["cost"]["total"] == world.cost(inside)


@query("domain")
async def _domain(world: World) -> None:
    await by_id_and_slug(world, "domain", world.domains, DOMAIN_DEEP, check_domain_deep)


@query("domains")
async def _domains(world: World) -> None:
    wide = await world.services.catalog.list_domains(first=1)
    await slug_list(world, "domains", DOMAIN_DEEP, world.domain_slugs, check_domain_deep, wide)


async def seed_alerts(world: World) -> dict[str, Alert]:
    """One alert per component (its team's) and one without a team (a failed sync)."""
    now = datetime.now(UTC)
    common = {"status": "OPEN", "title": "t", "raised_at": now, "updated_at": now}
    found = {
        name: await Alert.create(
            kind="BUDGET_THRESHOLD",
            subject=f"component:{c.id}",
            period="rolling-30d@1",
            team_id=c.team_id,
            component_id=c.id,
            last_seen_at=now,
            **common,
        )
        for name, c in world.components.items()
    }
    found["sync"] = await Alert.create(
        kind="SYNC_FAILED", subject="sync:default", period="latest", last_seen_at=now, **common
    )
    return found


ALERTS_PAGE = """query($first: Int!, $after: String, $team: ID) {
  alerts(first: $first, after: $after, filter: {teamId: $team}) {
    totalCount pageInfo { endCursor hasNextPage } nodes { id team { slug } component { name } }
  }
}"""


@query("alerts")
async def _alerts(world: World) -> None:
    alerts = await seed_alerts(world)
    visible = set(world.component_names) | ({"sync"} if world.sees_everything else set())
    newest_first = [n for n, a in sorted(alerts.items(), key=lambda kv: -kv[1].id) if n in visible]
    name_of = {str(a.id): n for n, a in alerts.items()}
    data = (await world.gql(ALERTS_PAGE, first=100))["alerts"]
    assert [name_of[n["id"]] for n in data["nodes"]] == newest_first
    assert data["totalCount"] == len(newest_first)
    seen: list[str] = []  # one by one: every cursor pages the visible alerts only
    after = None
    while True:
        page = (await world.gql(ALERTS_PAGE, first=1, after=after))["alerts"]
        seen += [name_of[n["id"]] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == newest_first
    for slug, team in world.teams.items():
        covered = {c for c, (t, _) in COMPONENTS.items() if t in subtree(slug)} & visible
        found = (await world.gql(ALERTS_PAGE, first=100, team=team.id))["alerts"]
        assert {name_of[n["id"]] for n in found["nodes"]} == covered
        assert found["totalCount"] == len(covered)
        nested = await world.gql(
            "query($id: ID!) { team(id: $id) { alerts(first: 100) { totalCount nodes { id } } } }",
            id=team.id,
        )
        if slug in world.team_slugs:
            assert {name_of[n["id"]] for n in nested["team"]["alerts"]["nodes"]} == covered
            assert nested["team"]["alerts"]["totalCount"] == len(covered)
        else:
            assert nested["team"] is None
    for name, component in world.components.items():
        nested = await world.gql(
            "query($id: ID!) { component(id: $id) { alerts(first: 5) { totalCount } } }",
            id=component.id,
        )
        expected = {"alerts": {"totalCount": 1}} if name in visible else None
        assert nested["component"] == expected


@query("alert")
async def _alert(world: World) -> None:
    alerts = await seed_alerts(world)
    visible = set(world.component_names) | ({"sync"} if world.sees_everything else set())
    lookup = "query($id: ID!) { alert(id: $id) { id } }"
    acknowledge = "mutation($id: ID!) { acknowledgeAlert(id: $id) { status } }"
    for name, alert in alerts.items():
        found = (await world.gql(lookup, id=str(alert.id)))["alert"]
        assert found == ({"id": str(alert.id)} if name in visible else None)
        if name in visible:
            continue
        # Acting on an invisible alert answers like acting on a missing one.
        hidden = await world.http.post(
            "/graphql", json={"query": acknowledge, "variables": {"id": str(alert.id)}}
        )
        missing = await world.http.post(
            "/graphql", json={"query": acknowledge, "variables": {"id": "999999999"}}
        )
        assert hidden.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert hidden.json()["errors"][0]["message"] == missing.json()["errors"][0][
            "message"
        ].replace("999999999", str(alert.id))


# Object fields reached from the queries above (the *_DEEP selections and the checks): a new
# object-valued field on these types needs a line here, and a check.
NESTED = {
    "Team": {
        "parent",
        "children",
        "components",
        "costSummary",
        "cost",
        "costBreakdown",
        "budgetStatus",
        "forecast",
        "alerts",
    },
    "Component": {
        "team",
        "system",
        "history",
        "cost",
        "actualCost",
        "budgetStatus",
        "forecast",
        "alerts",
    },
    "System": {"owner", "domain", "components", "cost"},
    "Domain": {"owner", "systems", "cost"},
    "CostGroup": {"entity", "change"},
    "ComponentCost": {"component"},
    "TeamCostSummary": {"components"},
}


def _named(t: GraphQLType) -> GraphQLType:
    while isinstance(t, GraphQLNonNull | GraphQLList):
        t = t.of_type
    return t


def test_every_query_field_and_nested_object_field_has_a_check() -> None:
    graphql_schema = schema._schema
    query_type = graphql_schema.query_type
    assert query_type is not None
    assert set(query_type.fields) == set(QUERY_CHECKS)
    for type_name, covered in NESTED.items():
        found = graphql_schema.get_type(type_name)
        assert isinstance(found, GraphQLObjectType)
        objects = {
            n
            for n, f in found.fields.items()
            if isinstance(_named(f.type), GraphQLObjectType | GraphQLUnionType)
        }
        assert objects == covered, type_name
    # Every value of the arguments that choose what is summed or ordered has its check too.
    for enum_name, checked in (("CostDimension", DIMENSIONS), ("TeamOrder", TEAM_ORDERS)):
        values = graphql_schema.get_type(enum_name)
        assert isinstance(values, GraphQLEnumType)
        assert set(values.values) == checked, enum_name


@pytest.mark.parametrize("name", sorted(QUERY_CHECKS))
async def test_query_field(name: str, world: World) -> None:
    await QUERY_CHECKS[name](world)


# -- REST: every route -------------------------------------------------------------------------


async def assert_missing_alike(world: World, path: str, hidden: uuid.UUID) -> None:
    """An invisible id answers byte for byte like an id that does not exist."""
    nobody = uuid.uuid4()
    invisible = await world.http.get(path.format(id=hidden))
    missing = await world.http.get(path.format(id=nobody))
    assert invisible.status_code == missing.status_code == 404
    assert invisible.headers["content-type"] == missing.headers["content-type"]
    assert invisible.content == missing.content.replace(str(nobody).encode(), str(hidden).encode())


@rest("/api/v1/cost/components/{id}/actual")
async def _actual(world: World) -> None:
    path = "/api/v1/cost/components/{id}/actual"
    for name, component in world.components.items():
        if name in world.component_names:
            response = await world.http.get(path.format(id=component.id))
            assert response.status_code == 200
            assert response.json()["componentId"] == str(component.id)
        else:
            await assert_missing_alike(world, path, component.id)


@rest("/api/v1/cost/components/{id}/history")
async def _history(world: World) -> None:
    path = "/api/v1/cost/components/{id}/history"
    for name, component in world.components.items():
        if name in world.component_names:
            response = await world.http.get(path.format(id=component.id))
            assert response.status_code == 200
            totals = [r["totalCost"] for r in response.json()]
            assert totals == list(reversed(COMPONENTS[name][1]))
        else:
            await assert_missing_alike(world, path, component.id)


@rest("/api/v1/cost/teams/{id}/summary")
async def _team_summary(world: World) -> None:
    path = "/api/v1/cost/teams/{id}/summary"
    for slug, team in world.teams.items():
        if slug in world.team_slugs:
            body = (await world.http.get(path.format(id=team.id))).json()
            own = {c for c, (t, _) in COMPONENTS.items() if t == slug}
            assert body["totalCost"] == world.cost(own)
            assert [c["componentId"] for c in body["components"]] == [
                str(world.components[n].id) for n in by_cost(own)
            ]
        else:
            await assert_missing_alike(world, path, team.id)


@rest("/api/v1/cost/summary")
async def _summary(world: World) -> None:
    response = await world.http.get("/api/v1/cost/summary?limit=100")
    assert response.status_code == 200
    assert [c["componentId"] for c in response.json()] == [
        str(world.components[n].id) for n in by_cost(world.component_names)
    ]


@rest("/api/v1/cost/available")
async def _available(world: World) -> None:
    response = await world.http.get("/api/v1/cost/available")
    assert response.json() == {"available": True}


def export_months() -> list[str]:
    """The months of the seeded records (yesterday and the day before: one or two)."""
    days = (today() - timedelta(days=n) for n in (2, 1))
    return list(dict.fromkeys(f"{d:%Y-%m}" for d in days))


async def exported(world: World, team: uuid.UUID | None = None) -> dict[str, dict[str, str]]:
    """Each exported component's row (money summed over the seeded months) by name."""
    found: dict[str, dict[str, str]] = {}
    for month in export_months():
        params = {"month": month, **({"teamId": str(team)} if team else {})}
        response = await world.http.get("/api/v1/cost/export.csv", params=params)
        assert response.status_code == 200, response.text
        for row in csv.DictReader(io.StringIO(response.text)):
            if row["component"] in found:
                total = float(found[row["component"]]["total_cost"]) + float(row["total_cost"])
                row["total_cost"] = repr(total)
            found[row["component"]] = row
    return found


@rest("/api/v1/cost/export.csv")
async def _export(world: World) -> None:
    """The request's scope: visible components only (their teams and systems in the columns);
    another team is a 404 byte for byte like a missing one."""
    rows = await exported(world)
    assert set(rows) == world.component_names
    for name, row in rows.items():
        assert row["team"] == COMPONENTS[name][0]
        assert row["system"] == (system_of(name) or "")
        assert float(row["total_cost"]) == sum(COMPONENTS[name][1])
    month = export_months()[-1]
    for slug, team in world.teams.items():
        if slug in world.team_slugs:
            inside = {c for c, (t, _) in COMPONENTS.items() if t in subtree(slug)}
            assert set(await exported(world, team.id)) == inside
        else:
            path = f"/api/v1/cost/export.csv?month={month}&teamId={{id}}"
            await assert_missing_alike(world, path, team.id)


@rest("/api/v1/openapi.json")
async def _openapi(world: World) -> None:
    response = await world.http.get("/api/v1/openapi.json")
    assert response.status_code == 200


def test_every_rest_route_has_a_check(settings: Settings) -> None:
    app = create_app(settings)
    paths = {r.path for r in app.routes if isinstance(r, Route) and r.path.startswith("/api/")}
    assert paths == set(REST_CHECKS)


@pytest.mark.parametrize("path", sorted(REST_CHECKS))
async def test_rest_route(path: str, world: World) -> None:
    await REST_CHECKS[path](world)


# -- the mode, the function, mutations ----------------------------------------------------------


async def test_open_mode_shows_everything_to_a_member(services: Services) -> None:
    async with client_as(services, "member", mode="open") as http:
        world = await build_world("viewer", http, services)  # expected: everything
        await _components(world)
        await _summary(world)
        await _platform(world)


@pytest.mark.parametrize("who", ["outsider", "member", "viewer"])
async def test_only_admins_mutate_in_team_mode(services: Services, who: str) -> None:
    async with client_as(services, who) as http:
        world = await build_world(who, http, services)
        body = (
            await http.post(
                "/graphql",
                json={
                    "query": "mutation($id: ID!) { setBudget(componentId: $id, budgetUsd: 5) "
                    "{ budgetUsd } }",
                    "variables": {"id": str(world.components["checkout"].id)},
                },
            )
        ).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (await Component.get(id=world.components["checkout"].id)).budget_usd is None


async def test_admin_mutates_in_team_mode(services: Services) -> None:
    async with client_as(services, "admin") as http:
        world = await build_world("admin", http, services)
        data = await world.gql(
            "mutation($id: ID!) { setBudget(componentId: $id, budgetUsd: 5) { budgetUsd } }",
            id=str(world.components["search-api"].id),
        )
    assert data["setBudget"] == {"budgetUsd": 5.0}


async def test_scope_for(services: Services, settings: Settings) -> None:
    async with httpx.AsyncClient() as unused:
        world = await build_world("member", unused, services)
    team = settings.with_(authz_mode="team")
    ids = {slug: t.id for slug, t in world.teams.items()}

    def member(*slugs: str, roles: tuple[str, ...] = ()) -> Principal:
        return Principal("p", frozenset(roles), frozenset(slugs))

    assert await scope_for(member("payments"), settings) == EVERYTHING  # open mode
    assert await scope_for(member("payments", roles=("viewer",)), team) == EVERYTHING
    assert await scope_for(member(roles=("admin",)), team) == EVERYTHING
    assert await scope_for(member(), team) == NOTHING
    # A parent team's members see its sub-teams; unknown, overlong and NUL slugs are ignored
    # (PostgreSQL would refuse the last two as parameters).
    scope = await scope_for(member("payments", "nobody", "x" * 500, "a\x00b", "fraud"), team)
    assert scope == Scope(frozenset({ids["payments"], ids["fraud"]}))
    assert scope.can_see_team(ids["fraud"])
    assert scope.can_see_team(str(ids["payments"]))
    assert not scope.can_see_team(ids["platform"])
    assert not scope.can_see_team(None)
    assert EVERYTHING.can_see_team(ids["platform"])
    assert not NOTHING.can_see_team(ids["fraud"])
    everyone = await scope_for(member("platform", "search"), team)
    assert everyone.team_ids == frozenset(ids.values())


async def test_nothing_visible_still_runs_valid_sql(services: Services) -> None:
    """NOTHING's `1 = 0` and EVERYTHING's no-condition both keep every statement valid."""
    async with httpx.AsyncClient() as unused:
        world = await build_world("outsider", unused, services)
    catalog, costs = services.catalog, services.costs
    for scope, expected in ((NOTHING, 0), (EVERYTHING, len(COMPONENTS))):
        assert await catalog.count_components(scope=scope) == expected
        assert len((await catalog.list_components(first=100, scope=scope)).items) == expected
        assert len(await costs.top_components(100, scope)) == expected
        assert len((await catalog.list_systems(scope=scope)).items) == (
            0 if scope is NOTHING else len(SYSTEMS)
        )
        assert len((await catalog.list_domains(scope=scope)).items) == (
            0 if scope is NOTHING else len(DOMAINS)
        )
    assert await catalog.teams_by_ids(list(t.id for t in world.teams.values()), NOTHING) == {}


@pytest.mark.parametrize("raw", ["closed", "teams", "1"])
def test_bad_authz_mode_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="AUTHZ_MODE must be open or team"):
        Settings.from_env({"AUTHZ_MODE": raw})


def test_authz_mode_defaults_to_open() -> None:
    assert Settings.from_env({}).authz_mode == "open"
    assert Settings.from_env({"AUTHZ_MODE": " Team "}).authz_mode == "team"


PAGE_OF_TEAMS = """
{ teams(first: 100) { totalCount nodes { slug parent { slug } costSummary { totalCost }
  components(first: 10) { totalCount nodes { name system { slug owner { slug } } } } } } }
"""


async def test_scope_costs_one_statement_per_request(
    services: Services, sql_counter: QueryCounter
) -> None:
    """The scope is resolved once per request (one recursive statement for a member), and the
    page's loaders batch as in open mode: the member's page is one statement more, not one per
    team or per loader."""
    counts = {}
    for who in ("admin", "member"):
        async with client_as(services, who) as http:
            if who == "admin":
                world = await build_world(who, http, services)
            world.http, world.who = http, who
            sql_counter.statements.clear()
            data = await world.gql(PAGE_OF_TEAMS)
            counts[who] = len(sql_counter.statements)
            assert [n["slug"] for n in data["teams"]["nodes"]] == sorted(world.team_slugs)
    assert counts["member"] == counts["admin"] + 1
