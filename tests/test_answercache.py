"""The GraphQL answer cache (answercache.py): served again only to the same scope, never after a
change, never with live OpenCost figures or errors, and still charged to the rate budget.

Every Mutation field is walked (WRITERS must name each one, so a new mutation without an entry,
or one that writes without bumping the data version, fails here), and so are the writers outside
GraphQL: the sync, the catalog import, the alert evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from finops_gql.app import create_app
from finops_gql.auth import mint_token
from finops_gql.catalog.backstage import import_catalog
from finops_gql.config import AUTHZ_TEAM, Settings
from finops_gql.db import dataversion
from finops_gql.db.models import Alert, Component, Team
from finops_gql.graphql.schema import schema
from finops_gql.metrics import ANSWER_CACHE
from finops_gql.ratelimit import RateLimiter
from finops_gql.services import Services
from tests.conftest import REDIS_URL, QueryCounter, make_component, make_records, make_team, need

EXAMPLES = Path(__file__).parent.parent / "examples" / "catalog-info.yaml"
PAGE = "query Page($first: Int!) { components(first: $first) { nodes { name budgetUsd cost30d } } }"
TEAMS = "query Teams { teams { totalCount nodes { slug } } }"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(graphql_answer_cache_mb=4)


def counts() -> dict[str, float]:
    return {r: ANSWER_CACHE.labels(r)._value.get() for r in ("hit", "miss", "bypass")}


def moved(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in counts().items() if v != before[k]}


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, services: Services
) -> AsyncIterator[Callable[..., Awaitable[httpx.Response]]]:
    """post(document, variables, roles=..., teams=..., sub=...) as any principal."""
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:

        async def post(
            query: str,
            variables: dict[str, Any] | None = None,
            *,
            roles: tuple[str, ...] = (),
            teams: tuple[str, ...] = (),
            sub: str = "alice",
        ) -> httpx.Response:
            token = mint_token(settings, sub, list(roles), timedelta(hours=1), teams=list(teams))
            body: dict[str, Any] = {"query": query}
            if variables is not None:
                body["variables"] = variables
            response = await http.post(
                "/graphql", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
            return response

        yield post


async def seed() -> tuple[Team, Component]:
    team = await make_team("payments")
    component = await make_component(team, "checkout", budget_usd=10.0)
    await make_records(component, [1.5, 2.5])
    await dataversion.bump()  # the factories write directly, as no writer of the app does
    return team, component


async def test_a_repeated_query_is_answered_from_the_cache_without_sql(
    settings: Settings, services: Services, sql_counter: QueryCounter
) -> None:
    await seed()
    async with app_client(settings, services) as post:
        before = counts()
        first = await post(PAGE, {"first": 50})
        assert moved(before) == {"miss": 1}
        sql_counter.statements.clear()
        before = counts()
        second = await post(PAGE, {"first": 50})
        assert moved(before) == {"hit": 1}
        # The hit reads the data version and nothing else.
        assert [s for s in sql_counter.statements if "data_version" not in s] == []
        assert second.content == first.content
        assert second.json()["data"]["components"]["nodes"][0]["name"] == "checkout"
        assert second.json()["extensions"]["cost"] == first.json()["extensions"]["cost"]


async def test_the_document_is_normalized_but_variables_and_operation_count(
    settings: Settings, services: Services
) -> None:
    await seed()
    async with app_client(settings, services) as post:
        await post(PAGE, {"first": 50})
        before = counts()
        spaced = "# a comment\n" + PAGE.replace(" { ", "  {\n   ").replace("name ", "name, ")
        await post(spaced, {"first": 50})
        assert moved(before) == {"hit": 1}
        before = counts()
        other = await post(PAGE, {"first": 1})
        assert moved(before) == {"miss": 1}
        assert len(other.json()["data"]["components"]["nodes"]) == 1
        two = f"{PAGE} {TEAMS}"
        before = counts()
        page = await post(two, {"first": 50} | {}, sub="bob")
        assert "errors" in page.json()  # no operation name: an error, never cached
        assert moved(before) == {"bypass": 1}


async def test_answers_are_never_shared_across_scopes(
    settings: Settings, services: Services
) -> None:
    team_mode = settings.with_(authz_mode=AUTHZ_TEAM)
    for slug in ("payments", "fraud", "search"):
        await make_team(slug)
    payments, fraud = await Team.get(slug="payments"), await Team.get(slug="fraud")
    fraud.parent_id = str(payments.id)
    await fraud.save()
    await dataversion.bump()
    expected = {
        "payments": ["fraud", "payments"],
        "search": ["search"],
        "nobody": [],
    }
    everything = ["fraud", "payments", "search"]
    async with app_client(team_mode, services) as post:
        for _ in range(2):  # the second round is answered from the cache, each to its own
            for slug, slugs in expected.items():
                body = (await post(TEAMS, teams=(slug,), sub=f"member-{slug}")).json()
                assert [n["slug"] for n in body["data"]["teams"]["nodes"]] == slugs
            for role in ("viewer", "admin"):
                body = (await post(TEAMS, roles=(role,), teams=("search",))).json()
                assert [n["slug"] for n in body["data"]["teams"]["nodes"]] == everything
        # Two members of one team share; a viewer and an admin share the whole scope.
        before = counts()
        await post(TEAMS, teams=("payments",), sub="another-member")
        await post(TEAMS, roles=("viewer",), sub="another-viewer")
        assert moved(before) == {"hit": 2}
    async with app_client(settings, services) as post:  # AUTHZ_MODE=open: everyone shares
        await post(TEAMS, teams=("search",), sub="one")
        before = counts()
        body = (await post(TEAMS, teams=("nobody",), sub="two")).json()
        assert moved(before) == {"hit": 1}
        assert [n["slug"] for n in body["data"]["teams"]["nodes"]] == everything


async def test_a_change_is_seen_at_once(settings: Settings, services: Services) -> None:
    _, component = await seed()
    async with app_client(settings, services) as post:
        await post(PAGE, {"first": 50})
        await post(PAGE, {"first": 50})
        await post(
            "mutation { setBudget(componentId: $id, budgetUsd: 99) { id } }".replace(
                "$id", f'"{component.id}"'
            ),
            roles=("admin",),
        )
        before = counts()
        body = (await post(PAGE, {"first": 50})).json()
        assert moved(before) == {"miss": 1}
        assert body["data"]["components"]["nodes"][0]["budgetUsd"] == 99


async def test_relative_ranges_follow_the_utc_day(settings: Settings, services: Services) -> None:
    await seed()
    query = "{ platformCost(range: {preset: LAST_7_DAYS}, granularity: DAY) { points { start } } }"
    async with app_client(settings, services) as post:
        first = (await post(query)).json()
        services.costs.clock = lambda: datetime.now(UTC) + timedelta(days=1)
        before = counts()
        second = (await post(query)).json()
        assert moved(before) == {"miss": 1}
        starts = [p["start"] for p in second["data"]["platformCost"]["points"]]
        assert starts != [p["start"] for p in first["data"]["platformCost"]["points"]]


async def test_live_opencost_figures_and_errors_are_never_kept(
    settings: Settings, services: Services
) -> None:
    _, component = await seed()
    live = (
        "query Live($id: ID!) { component(id: $id) { name actualCost { sevenDay { totalCost } } } }"
    )
    availability = "{ opencostAvailability { available } }"
    bad = '{ team(id: "x", slug: "y") { slug } }'
    async with app_client(settings, services) as post:
        for query, variables in ((live, {"id": str(component.id)}), (availability, None)):
            for _ in range(2):
                before = counts()
                body = (await post(query, variables)).json()
                assert "errors" not in body, body
                assert moved(before) == {"miss": 1}
        for _ in range(2):
            before = counts()
            assert (await post(bad)).json()["errors"]
            assert moved(before) == {"miss": 1}


async def test_mutations_and_an_unreadable_version_bypass_the_cache(
    settings: Settings, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed()
    async with app_client(settings, services) as post:
        before = counts()
        await post(
            'mutation { createTeam(input: {name: "S", slug: "s"}) { slug } }', roles=("admin",)
        )
        assert moved(before) == {"bypass": 1}

        async def broken() -> int:
            raise OSError("the database went away")

        monkeypatch.setattr(dataversion, "read", broken)
        for _ in range(2):
            before = counts()
            body = (await post(PAGE, {"first": 50})).json()
            assert body["data"]["components"]["nodes"][0]["name"] == "checkout"
            assert moved(before) == {"bypass": 1}


async def test_hit_and_miss_are_counted_in_metrics(settings: Settings, services: Services) -> None:
    await seed()
    async with app_client(settings, services) as post:
        await post(PAGE, {"first": 50})
        await post(PAGE, {"first": 50})
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        text = (await http.get("/metrics")).text
    for result in ("hit", "miss"):
        assert f'finops_gql_answer_cache_requests_total{{result="{result}"}}' in text
    assert "finops_gql_answer_cache_bytes" in text


async def test_a_hit_is_charged_to_the_rate_budget(settings: Settings, services: Services) -> None:
    limited = settings.with_(
        redis_url=need(REDIS_URL, "REDIS_URL_TEST"),
        rate_limit_points_per_minute=3,
        rate_limit_period_s=3600,
    )
    await seed()
    limiter = RateLimiter.from_settings(limited)

    sub = f"cache-{uuid.uuid4()}"
    try:
        async with app_client(limited, dataclasses.replace(services, ratelimit=limiter)) as post:
            query = '{ team(slug: "payments") { slug } }'  # costs 1 point
            bodies = [(await post(query, sub=sub)).json() for _ in range(4)]
    finally:
        assert limiter is not None
        await limiter.aclose()
    assert [b["extensions"]["cost"]["requested"] for b in bodies[:3]] == [1, 1, 1]
    assert [b["extensions"]["cost"]["remaining"] for b in bodies[:3]] == [2, 1, 0]
    assert bodies[3]["data"] is None
    assert bodies[3]["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


# -- every writer bumps the data version -----------------------------------------------------

Setup = Callable[[Team, Component], Awaitable[tuple[str, dict[str, Any]]]]


async def _alert(team: Team) -> int:
    now = datetime.now(UTC)
    alert = await Alert.create(
        kind="SYNC_FAILED",
        status="OPEN",
        subject=f"sync:{uuid.uuid4()}",
        period="latest",
        title="t",
        raised_at=now,
        updated_at=now,
        last_seen_at=now,
        team_id=team.id,
    )
    return int(alert.id)


def _fixed(document: str) -> Setup:
    async def setup(team: Team, component: Component) -> tuple[str, dict[str, Any]]:
        return document, {"team": str(team.id), "component": str(component.id)}

    return setup


def _on_alert(document: str) -> Setup:
    async def setup(team: Team, component: Component) -> tuple[str, dict[str, Any]]:
        return document, {"alert": str(await _alert(team))}

    return setup


async def _empty_team(team: Team, component: Component) -> tuple[str, dict[str, Any]]:
    other = await make_team("empty")
    return "mutation($id: ID!) { deleteTeam(id: $id) }", {"id": str(other.id)}


async def _parent(team: Team, component: Component) -> tuple[str, dict[str, Any]]:
    other = await make_team("child")
    document = "mutation($t: ID!, $p: ID) { setTeamParent(teamId: $t, parentId: $p) { slug } }"
    return document, {"t": str(other.id), "p": str(team.id)}


BUDGET = "{amount: 5, period: MONTHLY}"
# Mutation field -> its setup (a valid call), or None with the reason it writes nothing.
WRITERS: dict[str, Setup | None] = {
    "createTeam": _fixed('mutation { createTeam(input: {name: "N", slug: "new-team"}) { slug } }'),
    "updateTeam": _fixed(
        'mutation($team: ID!) { updateTeam(input: {id: $team, name: "Renamed"}) { name } }'
    ),
    "deleteTeam": _empty_team,
    "createComponent": _fixed(
        'mutation($team: ID!) { createComponent(input: {name: "new", teamId: $team}) { id } }'
    ),
    "updateComponent": _fixed(
        'mutation($component: ID!) { updateComponent(input: {id: $component, name: "n2"}) '
        "{ name } }"
    ),
    "deleteComponent": _fixed("mutation($component: ID!) { deleteComponent(id: $component) }"),
    "setBudget": _fixed(
        "mutation($component: ID!) { setBudget(componentId: $component, budgetUsd: 7) { id } }"
    ),
    "setComponentBudget": _fixed(
        f"mutation($component: ID!) {{ setComponentBudget(componentId: $component, "
        f"budget: {BUDGET}) {{ id }} }}"
    ),
    "setTeamBudget": _fixed(
        f"mutation($team: ID!) {{ setTeamBudget(teamId: $team, budget: {BUDGET}) {{ id }} }}"
    ),
    "removeBudget": _fixed("mutation($component: ID!) { removeBudget(componentId: $component) }"),
    "setTeamParent": _parent,
    # Queues a job on Redis and writes nothing: the run it queues bumps the version when it
    # starts and when it ends (test_the_sync_bumps_the_version).
    "triggerCostSync": None,
    "acknowledgeAlert": _on_alert("mutation($alert: ID!) { acknowledgeAlert(id: $alert) { id } }"),
    "snoozeAlert": _on_alert(
        "mutation($alert: ID!) { snoozeAlert(id: $alert, until: "
        f'"{(datetime.now(UTC) + timedelta(days=2)):%Y-%m-%dT%H:%M:%SZ}") {{ id }} }}'
    ),
    "resolveAlert": _on_alert("mutation($alert: ID!) { resolveAlert(id: $alert) { id } }"),
}
MUTATIONS = sorted(schema._schema.mutation_type.fields) if schema._schema.mutation_type else []


def test_every_mutation_has_a_writer_entry() -> None:
    assert sorted(WRITERS) == MUTATIONS


@pytest.mark.parametrize("field", MUTATIONS)
async def test_every_mutation_bumps_the_data_version(
    settings: Settings, services: Services, field: str
) -> None:
    setup = WRITERS.get(field, "missing")
    assert setup != "missing", f"Mutation.{field}: add it to WRITERS (does it bump the version?)"
    if setup is None:
        pytest.skip(f"Mutation.{field} writes nothing to the database")
    assert callable(setup)
    team, component = await seed()
    async with app_client(settings, services) as post:
        await post(TEAMS)
        document, variables = await setup(team, component)
        before = await dataversion.read()
        body = (await post(document, variables, roles=("admin",))).json()
        assert "errors" not in body, body
        assert await dataversion.read() > before
        counted = counts()
        await post(TEAMS)
        assert moved(counted) == {"miss": 1}


async def test_the_sync_bumps_the_version(settings: Settings, services: Services) -> None:
    team = await make_team("payments")
    await make_component(team, "checkout")
    await dataversion.bump()
    async with app_client(settings, services) as post:
        empty = (await post(PAGE, {"first": 50})).json()
        assert empty["data"]["components"]["nodes"][0]["cost30d"] == 0
        before = await dataversion.read()
        await services.sync.run("cli")
        # Its start, its end, and the alert evaluation that follows, at least.
        assert await dataversion.read() >= before + 2
        synced = (await post(PAGE, {"first": 50})).json()
        assert synced["data"]["components"]["nodes"][0]["cost30d"] > 0


async def test_the_catalog_import_and_the_alert_evaluation_bump_the_version(
    settings: Settings, services: Services
) -> None:
    before = await dataversion.read()
    await import_catalog(EXAMPLES.read_bytes(), str(EXAMPLES))
    after_import = await dataversion.read()
    assert after_import > before
    await services.alerts.evaluate()
    assert await dataversion.read() > after_import


async def test_concurrent_version_reads_see_every_bump(services: Services) -> None:
    """The PostgreSQL reader's own connection serves one read at a time; the others go through
    the pool, and all of them see the same committed version."""
    await dataversion.bump()
    before = await dataversion.read()
    assert set(await asyncio.gather(*(dataversion.read() for _ in range(20)))) == {before}
    await dataversion.bump()
    assert set(await asyncio.gather(*(dataversion.read() for _ in range(20)))) == {before + 1}
