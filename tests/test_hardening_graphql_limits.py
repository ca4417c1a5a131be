"""Issue 13, GraphQL as a denial-of-service lever: query cost, bounded lists, execution deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from finops_gql.app import create_app
from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_records, make_team, token

pytestmark = pytest.mark.usefixtures("services")

# The document of the issue (45.9 s, 61 MB on main), as written there (Team.components was a
# list) and as it reads now that Team.components is a connection.
ATTACK_AS_FILED = (
    "{components(first:100){nodes{team{components{history(limit:30){totalCost day}}}}}}"
)
ATTACK = "{components(first:100){nodes{team{components{nodes{history(limit:30){totalCost day}}}}}}}"
ATTACK_COST = 155_301

TEAM_PAGE = """
query($slug: String!, $first: Int!, $after: String) {
  team(slug: $slug) {
    components(first: $first, after: $after) {
      nodes { name }
      pageInfo { endCursor hasNextPage }
    }
  }
}
"""

ACTUAL = "query($id: ID!) { component(id: $id) { name actualCost { sevenDay { totalCost } } } }"


@asynccontextmanager
async def app_client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(settings, services), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token(settings)}"
        yield http


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for something the test caused; the bound only catches a hang."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


# -- cost -----------------------------------------------------------------------------------------


async def test_attack_document_is_refused_before_any_resolver_runs(
    client: httpx.AsyncClient, fake: FakeOpenCost, sql_counter: QueryCounter
) -> None:
    team = await make_team()
    for i in range(3):
        await make_records(await make_component(team, f"svc-{i}"), [1.0] * 30)
    sql_counter.statements.clear()
    body = await gql(client, ATTACK)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert f"{ATTACK_COST}" in error["message"]
    assert "50000" in error["message"]
    assert "GRAPHQL_MAX_COST" in error["message"]
    assert body["extensions"]["cost"] == {"requested": ATTACK_COST, "limit": 50_000}
    assert sql_counter.statements == []  # nothing resolved: not one SQL statement
    assert fake.requests == []
    # The document exactly as filed no longer validates: refused too, without running.
    filed = await gql(client, ATTACK_AS_FILED)
    assert filed["data"] is None
    assert filed["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert sql_counter.statements == []


async def test_cost_is_reported_on_every_answer(client: httpx.AsyncClient) -> None:
    await make_component(await make_team())
    ok = await gql(client, "{ components(first: 5) { nodes { name team { slug } } } }")
    assert "errors" not in ok
    assert ok["extensions"]["cost"] == {"requested": 11, "limit": 50_000}
    # A resolver error: the cost is still the operation's.
    bad = await gql(client, "{ components(first: 500) { nodes { name } } }")
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert bad["extensions"]["cost"] == {"requested": 501, "limit": 50_000}
    # Never executed (invalid document): nothing requested.
    invalid = await gql(client, "{ nope }")
    assert invalid["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert invalid["extensions"]["cost"] == {"requested": 0, "limit": 50_000}


async def test_variables_and_fragments_are_costed(client: httpx.AsyncClient) -> None:
    document = """
    query($n: Int!) { ...Q }
    fragment Q on Query { components(first: $n) { nodes { ... on Component { team { slug } } } } }
    """
    small = await gql(client, document, {"n": 10})
    assert "errors" not in small, small
    assert small["extensions"]["cost"]["requested"] == 21
    aliased = " ".join(
        f"p{i}: components(first: 100) {{ nodes {{ team {{ name }} }} }}" for i in range(20)
    )
    # 20 aliases of 201 each fits; nested under history it would not.
    body = await gql(client, "{ " + aliased + " }")
    assert "errors" not in body, body
    assert body["extensions"]["cost"]["requested"] == 20 * 201


async def test_max_cost_is_configurable(settings: Settings, services: Services) -> None:
    async with app_client(settings.with_(graphql_max_cost=10), services) as http:
        fits = await gql(http, "{ components(first: 9) { nodes { name } } }")
        assert "errors" not in fits
        assert fits["extensions"]["cost"] == {"requested": 10, "limit": 10}
        over = await gql(http, "{ components(first: 10) { nodes { name } } }")
        assert over["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert "query cost 11 exceeds the limit of 10" in over["errors"][0]["message"]


async def test_introspection_is_not_refused(client: httpx.AsyncClient) -> None:
    from graphql import get_introspection_query

    body = await gql(client, get_introspection_query(descriptions=True))
    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
    assert 0 < body["extensions"]["cost"]["requested"] < 50_000


# -- Team.components is a connection ------------------------------------------------------------


async def test_team_components_are_paginated(client: httpx.AsyncClient) -> None:
    team = await make_team("big")
    other = await make_team("other")
    names = sorted(f"svc-{i:03d}" for i in range(7))
    for name in reversed(names):
        await make_component(team, name)
    # Same name elsewhere (its own OpenCost key): never on this team's pages.
    await make_component(other, "svc-000", opencost_key="other-svc-000")
    seen: list[str] = []
    after = None
    while True:
        body = await gql(client, TEAM_PAGE, {"slug": "big", "first": 3, "after": after})
        page = body["data"]["team"]["components"]
        seen.extend(n["name"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == names
    # Default page size 50, and the cursor is the root connection's: both resume alike.
    body = await gql(client, '{ team(slug: "big") { components { nodes { name } } } }')
    assert [n["name"] for n in body["data"]["team"]["components"]["nodes"]] == names
    root = await gql(
        client,
        "query($t: ID!) { components(first: 2, teamId: $t) { pageInfo { endCursor } } }",
        {"t": str(team.id)},
    )
    cursor = root["data"]["components"]["pageInfo"]["endCursor"]
    body = await gql(client, TEAM_PAGE, {"slug": "big", "first": 2, "after": cursor})
    assert [n["name"] for n in body["data"]["team"]["components"]["nodes"]] == names[2:4]


@pytest.mark.parametrize(
    ("first", "after"),
    [
        (0, None),
        (101, None),
        (10, "garbage!"),
        # A well-formed cursor whose id is not a UUID: tampered.
        (10, "WyJhIiwgIm5vdC1hLXV1aWQiXQ=="),
    ],
)
async def test_bad_team_page_arguments(
    client: httpx.AsyncClient, first: int, after: str | None
) -> None:
    await make_component(await make_team("big"))
    body = await gql(client, TEAM_PAGE, {"slug": "big", "first": first, "after": after})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_bad_page_of_one_alias_does_not_fail_the_other(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    await make_component(await make_team("big"))
    body = await gql(
        client,
        '{ ok: team(slug: "big") { components(first: 1) { nodes { name } } } '
        'bad: team(slug: "big") { components(first: 0) { nodes { name } } } }',
    )
    assert body["data"]["ok"] == {"components": {"nodes": [{"name": "checkout"}]}}
    assert body["data"]["bad"] is None
    assert body["errors"][0]["path"] == ["bad", "components"]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_team_pages_of_a_page_of_teams_take_one_statement(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    for t in range(8):
        team = await make_team(f"team-{t}")
        for i in range(t):
            await make_component(team, f"svc-{t}-{i}")
    query = "{ teams(first: 8) { nodes { slug components(first: 3) { nodes { name } pageInfo { hasNextPage } } } } }"
    sql_counter.statements.clear()
    body = await gql(client, query)
    teams = body["data"]["teams"]["nodes"]
    assert [len(t["components"]["nodes"]) for t in teams] == [0, 1, 2, 3, 3, 3, 3, 3]
    assert [t["components"]["pageInfo"]["hasNextPage"] for t in teams] == [False] * 4 + [True] * 4
    assert len(sql_counter.statements) == 2, sql_counter.statements  # teams, then components


async def test_summary_components_are_bounded(
    client: httpx.AsyncClient, services: Services
) -> None:
    team = await make_team("big")
    for i, total in enumerate([3.0, 1.0, 2.0]):
        await make_records(await make_component(team, f"svc-{i}"), [total] * 30)
    await services.costs.refresh_rollups()
    body = await gql(
        client,
        '{ team(slug: "big") { costSummary { totalCost components(limit: 2) { totalCost } } } }',
    )
    summary = body["data"]["team"]["costSummary"]
    assert summary["totalCost"] == 180.0  # every component, whatever the limit
    assert summary["components"] == [{"totalCost": 90.0}, {"totalCost": 60.0}]
    bad = await gql(
        client, '{ team(slug: "big") { costSummary { components(limit: 1001) { totalCost } } } }'
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "1000" in bad["errors"][0]["message"]


# -- execution deadline ---------------------------------------------------------------------------


async def test_slow_operation_is_stopped_while_the_server_keeps_answering(
    settings: Settings, services: Services, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    fake.fail = "hang"
    try:
        async with app_client(settings.with_(graphql_timeout_s=1.5), services) as http:
            slow = asyncio.create_task(gql(http, ACTUAL, {"id": str(component.id)}))
            await until(lambda: len(fake.requests) == 2, "both windows to reach OpenCost")
            health = await http.get("/healthz")
            assert health.status_code == 200
            other = await gql(http, "{ components(first: 1) { nodes { name } } }")
            assert other["data"]["components"]["nodes"] == [{"name": "checkout"}]
            assert not slow.done()  # both answered while the operation hung
            body = await asyncio.wait_for(slow, 60)
    finally:
        fake.release.set()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_TIMEOUT"
    assert "1.5 s" in error["message"]
    assert "GRAPHQL_TIMEOUT_SECONDS" in error["message"]
    assert body["extensions"]["cost"] == {"requested": 3, "limit": 50_000}


async def test_a_stopped_operation_does_not_fail_others_sharing_its_opencost_call(
    settings: Settings, services: Services, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    variables = {"id": str(component.id)}
    fake.fail = "hang"
    try:
        async with (
            app_client(settings.with_(graphql_timeout_s=0.5), services) as impatient,
            app_client(settings, services) as patient,
        ):
            first = asyncio.create_task(gql(impatient, ACTUAL, variables))
            await until(lambda: len(fake.requests) == 2, "both windows to reach OpenCost")
            second = asyncio.create_task(gql(patient, ACTUAL, variables))
            stopped = await asyncio.wait_for(first, 60)
            assert stopped["errors"][0]["extensions"]["code"] == "GRAPHQL_TIMEOUT"
            assert not second.done()
            fake.release.set()
            body: dict[str, Any] = await asyncio.wait_for(second, 60)
    finally:
        fake.release.set()
    assert "errors" not in body, body
    assert body["data"]["component"]["actualCost"]["sevenDay"]["totalCost"] > 0
    assert len(fake.requests) == 2  # the second joined the first one's OpenCost calls
