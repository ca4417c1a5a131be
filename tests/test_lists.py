"""Component and team lists: orderBy, filters, totalCount and keyset cursors, on both databases."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest

from finops_gql.db.models import Component, Team
from finops_gql.db.setup import connection, dialect
from tests.conftest import QueryCounter, gql, make_team

pytestmark = pytest.mark.usefixtures("services")

ORDER_SQL = {
    "NAME": "name, id",
    "COST_30D_DESC": "cost_30d DESC, name, id",
    "COST_30D_ASC": "cost_30d, name, id",
}
# Few distinct costs so most rows tie; 0.1 + 0.2 and 0.3 differ only in the last bit, so a cursor
# that rounded its cost would skip or repeat rows at that boundary.
COSTS = [0.0, 0.3, 0.1 + 0.2, 1 / 3, 7.0, 7.0, 12.5]
BUDGETS = [None, 5.0, 0.3, 100.0]

PAGE = """
query Page($first: Int!, $after: String, $orderBy: ComponentOrder!, $teamId: ID,
           $search: String, $overBudget: Boolean, $minCost30d: Float) {
  components(first: $first, after: $after, orderBy: $orderBy, teamId: $teamId, search: $search,
             overBudget: $overBudget, minCost30d: $minCost30d) {
    totalCount
    nodes { id name cost30d budgetUsd overBudget }
    pageInfo { endCursor hasNextPage }
  }
}
"""


async def make(team: Team, name: str, cost: float, budget: float | None = None) -> Component:
    # Names repeat across teams (distinct OpenCost keys), so (cost, name) ties reach the id.
    return await Component.create(
        id=uuid.uuid4(),
        name=name,
        team=team,
        budget_usd=budget,
        cost_30d=cost,
        opencost_key=f"{name}-{uuid.uuid4().hex[:8]}",
    )


async def catalog(count: int = 120) -> list[Team]:
    teams = [await make_team(f"team-{i}", f"Team {i % 2}") for i in range(3)]
    for i in range(count):
        await make(teams[i % 3], f"svc-{i % 40:02d}", COSTS[i % 7], BUDGETS[i % 4])
    return teams


async def sql_ids(where: str, order: str, params: list[Any] | None = None) -> list[str]:
    if dialect() == "postgres":
        where = where.replace("?", "$1")
    rows = await connection().execute_query_dict(
        f"SELECT id FROM component WHERE {where} ORDER BY {ORDER_SQL[order]}",  # noqa: S608
        params or [],
    )
    return [str(r["id"]) for r in rows]


async def page_all(
    client: httpx.AsyncClient, first: int, **variables: Any
) -> tuple[list[str], set[int]]:
    """Every id, following cursors; and the totalCounts seen on the way."""
    seen: list[str] = []
    totals: set[int] = set()
    after = None
    for _ in range(1000):
        body = await gql(client, PAGE, {"first": first, "after": after, **variables})
        assert "errors" not in body, body
        page = body["data"]["components"]
        totals.add(page["totalCount"])
        seen.extend(n["id"] for n in page["nodes"])
        if not page["pageInfo"]["hasNextPage"]:
            return seen, totals
        after = page["pageInfo"]["endCursor"]
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("order", list(ORDER_SQL))
@pytest.mark.parametrize("first", [1, 7, 50])
async def test_paging_every_ordering_matches_sql_without_skips_or_repeats(
    client: httpx.AsyncClient, order: str, first: int
) -> None:
    await catalog()
    expected = await sql_ids("1 = 1", order)
    seen, totals = await page_all(client, first, orderBy=order)
    assert len(expected) == 120
    assert seen == expected
    assert totals == {120}


@pytest.mark.parametrize("order", list(ORDER_SQL))
async def test_filters_combine_and_page_like_sql(client: httpx.AsyncClient, order: str) -> None:
    teams = await catalog()
    team = str(teams[1].id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"teamId": team}, f"team_id = '{team}'"),
        ({"search": "SVC-1"}, "name LIKE 'svc-1%'"),
        ({"overBudget": True}, "budget_usd IS NOT NULL AND cost_30d > budget_usd"),
        ({"overBudget": False}, "NOT (budget_usd IS NOT NULL AND cost_30d > budget_usd)"),
        ({"minCost30d": 0.3}, "cost_30d >= 0.3"),
        ({"minCost30d": 0.1 + 0.2}, "cost_30d > 0.3"),
        (
            {"teamId": team, "search": "vc-0", "overBudget": True, "minCost30d": 1.0},
            f"team_id = '{team}' AND name LIKE '%vc-0%' AND budget_usd IS NOT NULL "
            "AND cost_30d > budget_usd AND cost_30d >= 1.0",
        ),
        ({"search": "no-such-name"}, "1 = 0"),
    ]
    for variables, where in cases:
        expected = await sql_ids(where, order)
        seen, totals = await page_all(client, 4, orderBy=order, **variables)
        assert seen == expected, variables
        assert totals == {len(expected)}, variables
    # the nodes' own fields agree with the filters
    body = await gql(client, PAGE, {"first": 100, "orderBy": order, "overBudget": True})
    nodes = body["data"]["components"]["nodes"]
    assert nodes
    assert all(n["overBudget"] for n in nodes)
    body = await gql(client, PAGE, {"first": 100, "orderBy": order, "overBudget": False})
    assert not any(n["overBudget"] for n in body["data"]["components"]["nodes"])


async def test_search_is_case_insensitive_and_matches_wildcards_literally(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team()
    for name in ["cpu-100%", "cpu-1000", "a_b", "axb", "back\\slash", "backxslash", "Checkout"]:
        await make(team, name, 1.0)

    async def names(search: str) -> list[str]:
        body = await gql(client, PAGE, {"first": 50, "orderBy": "NAME", "search": search})
        assert "errors" not in body, body
        page = body["data"]["components"]
        assert page["totalCount"] == len(page["nodes"])
        return [n["name"] for n in page["nodes"]]

    assert await names("100%") == ["cpu-100%"]
    assert await names("%") == ["cpu-100%"]
    assert await names("a_b") == ["a_b"]
    assert await names("_") == ["a_b"]
    assert await names("k\\s") == ["back\\slash"]
    assert await names("\\") == ["back\\slash"]
    assert await names("CHECK") == ["Checkout"]
    assert await names("checkOUT") == ["Checkout"]
    assert len(await names("")) == 7  # a cleared search box filters nothing


async def test_total_count_costs_no_statement_unless_asked(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    await catalog(12)
    sql_counter.statements.clear()
    body = await gql(client, "{ components(first: 5, overBudget: true) { nodes { id } } }")
    assert "errors" not in body
    assert not any("COUNT(" in s for s in sql_counter.statements), sql_counter.statements
    sql_counter.statements.clear()
    body = await gql(client, "{ components(first: 5, overBudget: true) { totalCount } }")
    over = await sql_ids("budget_usd IS NOT NULL AND cost_30d > budget_usd", "NAME")
    assert body["data"]["components"]["totalCount"] == len(over) > 0
    assert sum("COUNT(" in s for s in sql_counter.statements) == 1, sql_counter.statements
    # Asked through fragments (the count then starts beside the page): counted once, the same.
    for query in (
        "{ components(first: 5, overBudget: true) { ... on ComponentConnection { totalCount } } }",
        "query { components(first: 5, overBudget: true) { ...n } } "
        "fragment n on ComponentConnection { nodes { id } totalCount }",
    ):
        sql_counter.statements.clear()
        body = await gql(client, query)
        assert body["data"]["components"]["totalCount"] == len(over), body
        assert sum("COUNT(" in s for s in sql_counter.statements) == 1, sql_counter.statements


def cursor_parts(cursor: str) -> list[str]:
    parts: list[str] = json.loads(base64.urlsafe_b64decode(cursor))
    return parts


def make_cursor(parts: list[str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


async def first_cursor(client: httpx.AsyncClient, **variables: Any) -> str:
    body = await gql(client, PAGE, {"first": 2, **variables})
    cursor: str = body["data"]["components"]["pageInfo"]["endCursor"]
    return cursor


async def test_cursor_only_pages_the_ordering_and_filters_it_came_from(
    client: httpx.AsyncClient,
) -> None:
    teams = await catalog(12)
    by_cost = await first_cursor(client, orderBy="COST_30D_DESC")
    body = await gql(client, PAGE, {"first": 2, "after": by_cost, "orderBy": "NAME"})
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "issued for orderBy COST_30D_DESC, not NAME" in error["message"]
    body = await gql(client, PAGE, {"first": 2, "after": by_cost, "orderBy": "COST_30D_ASC"})
    assert "not COST_30D_ASC" in body["errors"][0]["message"]

    for other in [
        {"search": "svc"},
        {"overBudget": False},
        {"minCost30d": 0.0},
        {"teamId": str(teams[0].id)},
    ]:
        body = await gql(
            client, PAGE, {"first": 2, "after": by_cost, "orderBy": "COST_30D_DESC", **other}
        )
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", other
        assert "issued for other filters" in error["message"], other
    # and a filtered cursor does not page the unfiltered list
    filtered = await first_cursor(client, orderBy="NAME", search="svc")
    body = await gql(client, PAGE, {"first": 2, "after": filtered, "orderBy": "NAME"})
    assert "issued for other filters" in body["errors"][0]["message"]


async def test_tampered_cursors_are_bad_user_input(client: httpx.AsyncClient) -> None:
    await catalog(12)
    good = cursor_parts(await first_cursor(client, orderBy="COST_30D_ASC"))
    assert float.fromhex(good[2]) in COSTS  # the cost round-trips exactly
    tampered = [
        [*good[:2], "not-hex", *good[3:]],
        [*good[:2], "inf", *good[3:]],
        [*good[:2], "nan", *good[3:]],
        [*good[:4], "not-a-uuid"],
        [*good[:3], "x" * 201, good[4]],
        [*good[:3], "nul\x00", good[4]],
        ["cost_sideways", *good[1:]],
        good[:4],
        [good[3], good[4]],  # the name-only cursors of earlier versions
    ]
    for parts in tampered:
        body = await gql(
            client, PAGE, {"first": 2, "after": make_cursor(parts), "orderBy": "COST_30D_ASC"}
        )
        error = body["errors"][0]
        assert error["extensions"]["code"] == "BAD_USER_INPUT", parts
        assert error["message"] == "after: not a cursor this API issued", parts


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"minCost30d": -0.01}, "minCost30d must be >= 0"),
        ({"search": "s" * 201}, "search must be 1 to 200 characters, got 201"),
        ({"search": "a\x00b"}, "search contains a NUL character"),
    ],
)
async def test_bad_filter_values_are_bad_user_input(
    client: httpx.AsyncClient, variables: dict[str, Any], message: str
) -> None:
    response = await client.post(
        "/graphql",
        content=json.dumps(
            {"query": PAGE, "variables": {"first": 2, "orderBy": "NAME", **variables}}
        ),
        headers={"Content-Type": "application/json"},
    )
    body = response.json()
    error = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in error["message"]


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("1e999", "minCost30d must be a finite number, got inf"),
        ("-1e999", "minCost30d must be a finite number, got -inf"),
        ("-1", "minCost30d must be >= 0, got -1.0"),
    ],
)
async def test_non_finite_or_negative_min_cost_literal_is_bad_user_input(
    client: httpx.AsyncClient, literal: str, message: str
) -> None:
    body = await gql(client, f"{{ components(minCost30d: {literal}) {{ totalCount }} }}")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert body["errors"][0]["message"] == message
    assert body["data"] is None


async def test_nan_variable_is_refused_before_the_resolver(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "query($m: Float) { components(minCost30d: $m) { totalCount } }",'
        b' "variables": {"m": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_bad_filters_fail_team_components_alone(client: httpx.AsyncClient) -> None:
    await catalog(6)
    body = await gql(
        client,
        '{ teams(first: 3) { nodes { slug components(search: "") { totalCount } '
        "bad: components(minCost30d: -1) { totalCount } } } }",
    )
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "minCost30d must be >= 0" in body["errors"][0]["message"]


TEAM_PAGE = """
query Teams($first: Int!, $after: String, $order: ComponentOrder!, $overBudget: Boolean,
            $min: Float, $search: String) {
  teams(first: 10) {
    nodes {
      id
      components(first: $first, after: $after, orderBy: $order, overBudget: $overBudget,
                 minCost30d: $min, search: $search) {
        totalCount
        nodes { id }
        pageInfo { endCursor hasNextPage }
      }
    }
  }
}
"""


@pytest.mark.parametrize("order", list(ORDER_SQL))
async def test_team_components_order_filter_and_count(
    client: httpx.AsyncClient, order: str, sql_counter: QueryCounter
) -> None:
    teams = await catalog(90)
    team_ids = {str(t.id) for t in teams}
    variables: dict[str, Any] = {"first": 4, "order": order, "overBudget": False, "min": 0.3}
    sql_counter.statements.clear()
    body = await gql(client, TEAM_PAGE, variables)
    assert "errors" not in body, body
    # teams, one page of every team's components, one count for all of them
    assert len(sql_counter.statements) == 3, sql_counter.statements
    for node in body["data"]["teams"]["nodes"]:
        assert node["id"] in team_ids
        where = (
            f"team_id = '{node['id']}' AND (budget_usd IS NULL OR cost_30d <= budget_usd) "
            "AND cost_30d >= 0.3"
        )
        expected = await sql_ids(where, order)
        connection_ = node["components"]
        assert connection_["totalCount"] == len(expected)
        seen = [n["id"] for n in connection_["nodes"]]
        while connection_["pageInfo"]["hasNextPage"]:
            more = await gql(
                client,
                TEAM_PAGE.replace("teams(first: 10)", f'team(id: "{node["id"]}")')
                .replace("nodes {\n      id", "id")
                .replace("}\n    }\n  }\n}", "}\n  }\n}"),
                {**variables, "after": connection_["pageInfo"]["endCursor"]},
            )
            assert "errors" not in more, more
            connection_ = more["data"]["team"]["components"]
            seen += [n["id"] for n in connection_["nodes"]]
        assert seen == expected


async def test_team_components_search(client: httpx.AsyncClient) -> None:
    team = await make_team()
    for name in ["checkout", "Check-in", "search"]:
        await make(team, name, 1.0)
    body = await gql(
        client,
        '{ team(slug: "payments") { components(search: "CHECK", orderBy: NAME) '
        "{ totalCount nodes { name } } } }",
    )
    found = body["data"]["team"]["components"]
    assert found["totalCount"] == 2
    assert sorted(n["name"] for n in found["nodes"]) == ["Check-in", "checkout"]


TEAMS = """
query($first: Int!, $after: String, $order: TeamOrder!, $search: String) {
  teams(first: $first, after: $after, orderBy: $order, search: $search) {
    totalCount nodes { slug name } pageInfo { endCursor hasNextPage }
  }
}
"""


async def all_teams(client: httpx.AsyncClient, **variables: Any) -> tuple[list[str], set[int]]:
    slugs: list[str] = []
    totals: set[int] = set()
    after = None
    while True:
        body = await gql(client, TEAMS, {"first": 2, "after": after, **variables})
        assert "errors" not in body, body
        page = body["data"]["teams"]
        totals.add(page["totalCount"])
        slugs += [n["slug"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            return slugs, totals
        after = page["pageInfo"]["endCursor"]


async def test_teams_order_search_and_count(client: httpx.AsyncClient) -> None:
    for i in range(7):  # names repeat: name order falls back to the id
        await make_team(f"team-{i}", ["Platform", "Payments", "Data"][i % 3])
    rows = await connection().execute_query_dict("SELECT slug FROM team ORDER BY name, id")
    by_name = [r["slug"] for r in rows]
    assert await all_teams(client, order="NAME") == (by_name, {7})
    assert await all_teams(client, order="SLUG") == (sorted(by_name), {7})
    pay = [s for s in by_name if s in {"team-1", "team-4"}]
    assert await all_teams(client, order="NAME", search="PAY") == (pay, {2})
    assert await all_teams(client, order="SLUG", search="team-5") == (["team-5"], {1})
    cursor = (await gql(client, TEAMS, {"first": 2, "order": "NAME"}))["data"]["teams"]["pageInfo"][
        "endCursor"
    ]
    body = await gql(client, TEAMS, {"first": 2, "after": cursor, "order": "SLUG"})
    assert "issued for orderBy NAME, not SLUG" in body["errors"][0]["message"]
    body = await gql(client, TEAMS, {"first": 2, "after": cursor, "order": "NAME", "search": "a"})
    assert "issued for another search" in body["errors"][0]["message"]
    body = await gql(client, TEAMS, {"first": 2, "order": "NAME", "search": "x" * 201})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_team_components_cursor_belongs_to_its_team(client: httpx.AsyncClient) -> None:
    teams = await catalog(12)
    query = """query($id: ID!, $after: String) { team(id: $id) {
      components(first: 2, after: $after, orderBy: COST_30D_DESC) {
        nodes { id } pageInfo { endCursor } } } }"""
    body = await gql(client, query, {"id": str(teams[0].id)})
    cursor = body["data"]["team"]["components"]["pageInfo"]["endCursor"]
    # the root list with that teamId resumes it
    root = await gql(
        client,
        PAGE,
        {"first": 2, "after": cursor, "orderBy": "COST_30D_DESC", "teamId": str(teams[0].id)},
    )
    expected = await sql_ids(f"team_id = '{teams[0].id}'", "COST_30D_DESC")
    assert [n["id"] for n in root["data"]["components"]["nodes"]] == expected[2:4]
    # another team's list refuses it, in its own field only
    body = await gql(
        client,
        """query($a: ID!, $b: ID!, $after: String) {
          a: team(id: $a) { components(first: 2, after: $after, orderBy: COST_30D_DESC) {
            nodes { id } } }
          b: team(id: $b) { components(first: 2, after: $after, orderBy: COST_30D_DESC) {
            nodes { id } } } }""",
        {"a": str(teams[0].id), "b": str(teams[1].id), "after": cursor},
    )
    assert [n["id"] for n in body["data"]["a"]["components"]["nodes"]] == expected[2:4]
    assert body["data"]["b"] is None
    assert body["errors"][0]["path"] == ["b", "components"]
    assert "issued for other filters" in body["errors"][0]["message"]


async def test_system_filter_and_system_components_share_cursors(
    client: httpx.AsyncClient,
) -> None:
    from finops_gql.db.models import System

    team = await make_team("payments")
    storefront = await System.create(id=uuid.uuid4(), name="Storefront", slug="storefront")
    for name in ("a", "b", "c"):
        await Component.create(id=uuid.uuid4(), name=name, team=team, system_id=storefront.id)
    await Component.create(id=uuid.uuid4(), name="loose", team=team)
    root = await gql(
        client,
        "query($s: ID!) { components(first: 2, systemId: $s) "
        "{ totalCount nodes { name } pageInfo { endCursor } } }",
        {"s": str(storefront.id)},
    )
    page = root["data"]["components"]
    assert [n["name"] for n in page["nodes"]] == ["a", "b"]
    assert page["totalCount"] == 3
    # The system's own list is the same list: its cursor resumes it.
    body = await gql(
        client,
        'query($a: String) { system(slug: "storefront") { components(first: 2, after: $a) '
        "{ totalCount nodes { name } } } }",
        {"a": page["pageInfo"]["endCursor"]},
    )
    assert body["data"]["system"]["components"] == {"totalCount": 3, "nodes": [{"name": "c"}]}
    bad = await gql(client, '{ components(systemId: "not-a-uuid") { nodes { name } } }')
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "systemId" in bad["errors"][0]["message"]
