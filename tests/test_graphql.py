"""GraphQL: queries, mutations, permissions, error codes, DataLoaders and agreement with REST."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from finops_gql.config import Settings
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.services import Services
from tests.conftest import QueryCounter, gql, make_component, make_records, make_team, token

pytestmark = pytest.mark.usefixtures("services")

PAGE_QUERY = """
query Page($first: Int!, $after: String) {
  components(first: $first, after: $after) {
    nodes { id name budgetUsd cost30d overBudget team { id slug } }
    pageInfo { endCursor hasNextPage }
  }
}
"""


def admin(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, 'admin')}"}


async def test_component_with_team_costs_and_history(
    client: httpx.AsyncClient, services: Services
) -> None:
    team = await make_team()
    component = await make_component(team, "checkout", budget_usd=50.0)
    await make_records(component, [2.0] * 35)
    await services.costs.refresh_rollups()
    body = await gql(
        client,
        """query($id: ID!) { component(id: $id) {
            id name budgetUsd cost30d overBudget costSyncedAt opencostAggregate opencostKey
            team { slug costSummary { totalCost window components { componentId totalCost } } }
            history(limit: 3) { day totalCost currency breakdown { cpuCost memoryCost } }
            actualCost { sevenDay { window currency totalCost start end breakdown { totalCost } }
                         thirtyDay { totalCost } }
        } }""",
        {"id": str(component.id)},
    )
    assert "errors" not in body, body
    c = body["data"]["component"]
    assert c["cost30d"] == 60.0
    assert c["overBudget"] is True
    assert c["budgetUsd"] == 50.0
    assert c["opencostAggregate"] == "label:app"
    assert c["opencostKey"] == "checkout"
    assert c["team"]["costSummary"]["totalCost"] == 60.0
    assert c["team"]["costSummary"]["components"] == [
        {"componentId": str(component.id), "totalCost": 60.0}
    ]
    assert len(c["history"]) == 3
    assert c["history"][0]["totalCost"] == 2.0
    assert c["actualCost"]["sevenDay"]["window"] == "7d"
    assert c["actualCost"]["sevenDay"]["totalCost"] > 0


async def test_unknown_component_is_null_and_bad_id_is_bad_user_input(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(
        client, "query($id: ID!) { component(id: $id) { id } }", {"id": str(uuid.uuid4())}
    )
    assert body["data"] == {"component": None}
    assert "errors" not in body
    body = await gql(client, 'query { component(id: "nope") { id } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_team_by_slug_and_id(client: httpx.AsyncClient) -> None:
    team = await make_team("platform", "Platform")
    await make_component(team, "b-svc")
    await make_component(team, "a-svc")
    body = await gql(client, '{ team(slug: "platform") { id name components { nodes { name } } } }')
    assert body["data"]["team"] == {
        "id": str(team.id),
        "name": "Platform",
        "components": {"nodes": [{"name": "a-svc"}, {"name": "b-svc"}]},
    }
    body = await gql(client, "query($id: ID!) { team(id: $id) { slug } }", {"id": str(team.id)})
    assert body["data"]["team"] == {"slug": "platform"}
    body = await gql(client, "{ team { slug } }")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_cursor_pagination_walks_everything_once(client: httpx.AsyncClient) -> None:
    team = await make_team()
    names = {f"svc-{i:02d}" for i in range(7)}
    for name in names:
        await make_component(team, name)
    seen: list[str] = []
    after = None
    while True:
        body = await gql(client, PAGE_QUERY, {"first": 3, "after": after})
        page = body["data"]["components"]
        seen.extend(n["name"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(names)
    teams = await gql(client, "{ teams(first: 1) { nodes { slug } pageInfo { hasNextPage } } }")
    assert teams["data"]["teams"] == {
        "nodes": [{"slug": "payments"}],
        "pageInfo": {"hasNextPage": False},
    }


@pytest.mark.parametrize(("first", "after"), [(0, None), (101, None), (10, "garbage!")])
async def test_bad_page_arguments(client: httpx.AsyncClient, first: int, after: str | None) -> None:
    body = await gql(client, PAGE_QUERY, {"first": first, "after": after})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_page_of_50_components_uses_constant_queries(
    client: httpx.AsyncClient, services: Services, sql_counter: QueryCounter
) -> None:
    teams = [await make_team(f"team-{i}") for i in range(5)]
    for i in range(60):
        await make_component(teams[i % 5], f"svc-{i:03d}", budget_usd=10.0)
    sql_counter.statements.clear()
    body = await gql(client, PAGE_QUERY, {"first": 50})
    assert len(body["data"]["components"]["nodes"]) == 50
    small = len(sql_counter.statements)
    sql_counter.statements.clear()
    body = await gql(
        client,
        PAGE_QUERY.replace(
            "team { id slug }",
            "team { id slug components { nodes { id } } costSummary { totalCost } }",
        ),
        {"first": 50},
    )
    assert "errors" not in body
    # the page reads its teams in the same statement; then one query each for the teams'
    # components and their summaries
    assert small == 1, sql_counter.statements
    assert len(sql_counter.statements) == 3, sql_counter.statements


async def test_history_loader_batches_across_components(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    team = await make_team()
    for i in range(10):
        await make_records(await make_component(team, f"svc-{i}"), [1.0] * 5)
    sql_counter.statements.clear()
    body = await gql(
        client, "{ components(first: 10) { nodes { history(limit: 2) { totalCost } } } }"
    )
    assert all(len(n["history"]) == 2 for n in body["data"]["components"]["nodes"])
    assert len(sql_counter.statements) == 2, sql_counter.statements


async def test_rest_and_graphql_agree(client: httpx.AsyncClient, services: Services) -> None:
    team = await make_team()
    a = await make_component(team, "checkout", budget_usd=10.0)
    b = await make_component(team, "search")
    await make_records(a, [1.23456] * 30)
    await make_records(b, [0.33333] * 30)
    await services.costs.refresh_rollups()
    rest_top = (await client.get("/api/v1/cost/summary")).json()
    rest_team = (await client.get(f"/api/v1/cost/teams/{team.id}/summary")).json()
    rest_history = (await client.get(f"/api/v1/cost/components/{a.id}/history")).json()
    rest_actual = (await client.get(f"/api/v1/cost/components/{a.id}/actual")).json()
    body = await gql(
        client,
        """query($team: ID!, $c: ID!) {
          topComponents { componentId totalCost budgetUsd currency }
          team(id: $team) { costSummary { totalCost components { componentId totalCost } } }
          component(id: $c) { history(limit: 30) { day totalCost } actualCost { sevenDay { totalCost } thirtyDay { totalCost } } }
        }""",
        {"team": str(team.id), "c": str(a.id)},
    )
    data = body["data"]
    assert [(r["componentId"], r["totalCost"], r["budgetUsd"]) for r in rest_top] == [
        (r["componentId"], r["totalCost"], r["budgetUsd"]) for r in data["topComponents"]
    ]
    assert rest_team["totalCost"] == data["team"]["costSummary"]["totalCost"]
    assert [(c["componentId"], c["totalCost"]) for c in rest_team["components"]] == [
        (c["componentId"], c["totalCost"]) for c in data["team"]["costSummary"]["components"]
    ]
    assert [(r["day"], r["totalCost"]) for r in rest_history] == [
        (r["day"], r["totalCost"]) for r in data["component"]["history"]
    ]
    assert (
        rest_actual["sevenDay"]["totalCost"]
        == data["component"]["actualCost"]["sevenDay"]["totalCost"]
    )
    assert (
        rest_actual["thirtyDay"]["totalCost"]
        == data["component"]["actualCost"]["thirtyDay"]["totalCost"]
    )


async def test_opencost_down_is_opencost_unavailable(
    client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    fake.fail = "500"
    body = await gql(
        client,
        "query($id: ID!) { component(id: $id) { name actualCost { sevenDay { totalCost } } } }",
        {"id": str(component.id)},
    )
    assert body["errors"][0]["extensions"]["code"] == "OPENCOST_UNAVAILABLE"
    # actualCost is nullable: the error sits beside it and the persisted fields survive.
    assert body["data"]["component"] == {"name": "checkout", "actualCost": None}
    assert body["errors"][0]["path"] == ["component", "actualCost"]
    availability = await gql(client, "{ opencostAvailability { available reason } }")
    assert (
        availability["data"]["opencostAvailability"]["available"] is True
    )  # healthz still answers
    fake.fail = "down"
    availability = await gql(client, "{ opencostAvailability { available reason } }")
    assert availability["data"]["opencostAvailability"]["available"] is False


async def test_mutations_need_admin(client: httpx.AsyncClient) -> None:
    body = await gql(client, 'mutation { createTeam(input: {name: "X", slug: "x"}) { id } }')
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "admin" in body["errors"][0]["message"]


async def test_admin_crud_and_budgets(client: httpx.AsyncClient, settings: Settings) -> None:
    h = admin(settings)
    team = (
        await gql(
            client,
            'mutation { createTeam(input: {name: "Payments", slug: "payments"}) { id slug } }',
            headers=h,
        )
    )["data"]["createTeam"]
    dup = await gql(
        client,
        'mutation { createTeam(input: {name: "Again", slug: "payments"}) { id } }',
        headers=h,
    )
    assert dup["errors"][0]["extensions"]["code"] == "CONFLICT"
    created = await gql(
        client,
        'mutation($t: ID!) { createComponent(input: {name: "checkout", teamId: $t, budgetUsd: 12.5, opencostKey: "checkout-v2"}) { id budgetUsd opencostKey team { slug } } }',
        {"t": team["id"]},
        headers=h,
    )
    component = created["data"]["createComponent"]
    assert component["budgetUsd"] == 12.5
    assert component["opencostKey"] == "checkout-v2"
    assert component["team"]["slug"] == "payments"
    budget = await gql(
        client,
        "mutation($c: ID!) { setBudget(componentId: $c, budgetUsd: null) { budgetUsd } }",
        {"c": component["id"]},
        headers=h,
    )
    assert budget["data"]["setBudget"]["budgetUsd"] is None
    bad = await gql(
        client,
        "mutation($c: ID!) { setBudget(componentId: $c, budgetUsd: -1) { budgetUsd } }",
        {"c": component["id"]},
        headers=h,
    )
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    bad_agg = await gql(
        client,
        'mutation($c: ID!) { updateComponent(input: {id: $c, opencostAggregate: "label:app; drop"}) { id } }',
        {"c": component["id"]},
        headers=h,
    )
    assert bad_agg["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    renamed = await gql(
        client,
        'mutation($c: ID!) { updateComponent(input: {id: $c, name: "checkout-2"}) { name } }',
        {"c": component["id"]},
        headers=h,
    )
    assert renamed["data"]["updateComponent"]["name"] == "checkout-2"
    busy = await gql(
        client, "mutation($t: ID!) { deleteTeam(id: $t) }", {"t": team["id"]}, headers=h
    )
    assert busy["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert (
        await gql(
            client,
            "mutation($c: ID!) { deleteComponent(id: $c) }",
            {"c": component["id"]},
            headers=h,
        )
    )["data"] == {"deleteComponent": True}
    gone = await gql(
        client, "mutation($c: ID!) { deleteComponent(id: $c) }", {"c": component["id"]}, headers=h
    )
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert (
        await gql(client, "mutation($t: ID!) { deleteTeam(id: $t) }", {"t": team["id"]}, headers=h)
    )["data"] == {"deleteTeam": True}
    renamed_team = await gql(
        client,
        'mutation($t: ID!) { updateTeam(input: {id: $t, name: "x"}) { id } }',
        {"t": team["id"]},
        headers=h,
    )
    assert renamed_team["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_create_component_for_unknown_team(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = await gql(
        client,
        'mutation($t: ID!) { createComponent(input: {name: "x", teamId: $t}) { id } }',
        {"t": str(uuid.uuid4())},
        headers=admin(settings),
    )
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_invalid_query_is_validation_error(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ nope }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_top_components_limit_checked(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ topComponents(limit: 101) { totalCost } }")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_graphiql_page_is_served_with_local_assets(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    response = await client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    assert "unpkg.com" not in response.text
    assets = re.findall(r'(?:src|href)="(/graphql/static/[^"]+)"', response.text)
    assert len(assets) == 7
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset
        assert served.content, asset
    traversal = await client.get("/graphql/static/%2e%2e/%2e%2e/config.py")
    assert traversal.status_code == 404


async def test_deep_or_alias_heavy_documents_are_refused(client: httpx.AsyncClient) -> None:
    nested = "name " + "team { components { nodes { " * 4 + "name" + " } } }" * 4
    body = await gql(client, "{ components(first: 1) { nodes { " + nested + " } } }")
    assert body["data"] is None
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    aliases = " ".join(f"a{i}: topComponents {{ totalCost }}" for i in range(21))
    body = await gql(client, "{ " + aliases + " }")
    assert body["data"] is None
    assert "aliases" in body["errors"][0]["message"]
