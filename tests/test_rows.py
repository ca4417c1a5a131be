"""A page of components written as JSON by the database (graphql/rows.py, catalog/rowjson.py)
answers byte for byte what the ordinary path answers, on SQLite and PostgreSQL.

Each request goes through the real app twice: as it runs (the database writes the rows), then
with Strawberry's own executor (which never takes prerendered rows: every row is a model and a
GraphQL object). Values are the awkward ones: names that need escaping, costs on and near the
money() rounding ties, floats that JavaScript writes differently from either database, empty and
null OpenCost keys. A spy on the service shows which requests the database wrote, so a test
cannot pass by quietly taking the ordinary path.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from finops_gql.app import create_app
from finops_gql.auth import mint_token
from finops_gql.catalog import rowjson
from finops_gql.catalog.service import CatalogService, WrittenPage
from finops_gql.config import Settings
from finops_gql.db.models import Component
from finops_gql.db.setup import dialect
from finops_gql.graphql.schema import schema
from finops_gql.services import Services
from tests.conftest import graphql_bodies, make_team

NAMES = [
    'quote " and backslash \\',
    "tab\tnew\nline\r\x01\x1f\x7f",
    "é ü 漢字 \U0001f600",
    "line\u2028para\u2029",
    "</script>&<>'",
    "plain",
]
# cost_30d as the sync could leave it: sums with float noise, money() ties and near-ties.
COSTS = [
    0.0,
    0.1 + 0.2,
    1 / 64,  # 0.015625: an exact tie at the 5th decimal, rounds to even
    3 / 64,
    0.123455,
    2.675,
    1234.567891234,
    0.000015,
    0.00001,
    0.000004,
    99999.999995,
    7_000_000.123456789,
    12.5,
    1e-12,
]
# budget_usd as entered: written by float_json, no rounding (17-digit doubles: see below).
BUDGETS = [None, 1234.5, 0.3, 100.0, 0.0001, 5e-5, 123456789.123, 99999999999.5, 3.0, 1e-7, 1.5e-6]

PAGE = """query Page($first: Int!, $after: String, $order: ComponentOrder) {
  components(first: $first, after: $after, orderBy: $order) { totalCount
    nodes { id name budgetUsd cost30d opencostAggregate opencostKey overBudget __typename
      team { id name slug cost30d __typename } }
    pageInfo { endCursor hasNextPage } } }"""
SHAPES = """query Shapes($n: Int!, $withTeam: Boolean!, $skipName: Boolean!) {
  a: components(first: $n, orderBy: COST_30D_DESC) { nodes { ...C t: team @include(if: $withTeam) { __typename s: slug } } }
  b: components(first: $n) { __typename nodes { n: name @skip(if: $skipName) team { ... on Team { slug } name } name } }
  c: components(first: $n) { nodes { cost30d } nodes { cost: cost30d } } }
fragment C on Component { __typename n: name c: cost30d b: budgetUsd }"""
RACE = "{ components(first: 50) { nodes { name budgetUsd cost30d team { slug } } } }"
# Selections the database does not write: they must take the ordinary path.
ORDINARY = [
    "{ components(first: 5) { nodes { name system { name } } } }",
    "{ components(first: 5) { nodes { name costSyncedAt } } }",
    "{ components(first: 5) { nodes { name history(limit: 2) { day } } } }",
    "{ components(first: 5) { nodes { name team { slug parent { slug } } } } }",
    "{ components(first: 5) { x: nodes { name } y: nodes { id } } }",
]


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[WrittenPage | None]:
    """Every answer of list_components_json, in order (None: the page fell back)."""
    answers: list[WrittenPage | None] = []
    real = CatalogService.list_components_json

    async def spy(self: CatalogService, *args: Any, **kwargs: Any) -> WrittenPage | None:
        answer = await real(self, *args, **kwargs)
        answers.append(answer)
        return answer

    monkeypatch.setattr(CatalogService, "list_components_json", spy)
    return answers


async def _catalog(costs: list[float], budgets: list[float | None]) -> None:
    teams = [await make_team("payments", NAMES[0]), await make_team("search", NAMES[2])]
    teams[1].cost_30d = 0.1 + 0.2
    await teams[1].save()
    for i, cost in enumerate(costs):
        await Component.create(
            name=f"{NAMES[i % len(NAMES)]} {i:02d}",
            team=teams[i % 2],
            budget_usd=budgets[i % len(budgets)],
            cost_30d=cost,
            # An empty key shows the name, like no key (Component.selector_key); once, since
            # the database's selector index tells '' from NULL.
            opencost_key="" if i == 2 else [None, f"key-{i}"][i % 2],
        )


async def _both(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, requests: list[dict[str, Any]]
) -> tuple[list[bytes], list[bytes]]:
    written = await graphql_bodies(client, requests)
    with monkeypatch.context() as patch:
        patch.setattr(schema, "execution_context_class", StrawberryGraphQLCoreExecutionContext)
        ordinary = await graphql_bodies(client, requests)
    return written, ordinary


async def test_written_pages_are_byte_for_byte_the_ordinary_answer(
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    written: list[WrittenPage | None],
) -> None:
    assert settings.graphql_answer_cache_mb == 0
    await _catalog(COSTS * 2, BUDGETS)
    requests: list[dict[str, Any]] = [
        {"query": PAGE, "variables": {"first": 50}},
        {"query": PAGE, "variables": {"first": 7, "order": "COST_30D_DESC"}},
        {"query": PAGE, "variables": {"first": 7, "order": "COST_30D_ASC"}},
        {"query": RACE},
        *(
            {"query": SHAPES, "variables": {"n": 6, "withTeam": w, "skipName": s}}
            for w in (True, False)
            for s in (True, False)
        ),
    ]
    # Cursors from written pages page on like the ordinary ones.
    first = (await client.post("/graphql", json=requests[1])).json()
    cursor = first["data"]["components"]["pageInfo"]["endCursor"]
    requests.append(
        {"query": PAGE, "variables": {"first": 7, "after": cursor, "order": "COST_30D_DESC"}}
    )
    written.clear()
    fast, ordinary = await _both(client, monkeypatch, requests)
    assert fast == ordinary
    # Every page of every request was written by the database (SHAPES has three lists).
    assert len(written) == 4 + 4 * 3 + 1
    assert all(page is not None for page in written), written
    assert b'"errors"' not in b"".join(fast)
    assert b'"budgetUsd":0.00005' in fast[0]
    assert b'"cost30d":0.01562' in fast[0]


async def test_a_value_the_database_cannot_write_falls_back_to_the_ordinary_path(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    written: list[WrittenPage | None],
) -> None:
    # 2**60: JavaScript writes 1152921504606847000; neither database's text is sure to be it.
    await _catalog([1.0, 2.0, 3.0], [None, 2.0**60, 1.0])
    request = {"query": PAGE, "variables": {"first": 2}}
    fast, ordinary = await _both(client, monkeypatch, [request])
    assert fast == ordinary
    assert written == [None]
    assert b'"budgetUsd":1152921504606847000' in fast[0]
    # The value past the page's last row (read to tell hasNextPage) does not matter.
    written.clear()
    request = {"query": PAGE, "variables": {"first": 1}}
    fast, ordinary = await _both(client, monkeypatch, [request])
    assert fast == ordinary
    assert written[0] is not None


async def test_budgets_of_17_digits_are_written_by_postgresql_only(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    written: list[WrittenPage | None],
) -> None:
    """SQLite prints 15 digits: 0.30000000000000004 reads back as another double there."""
    await _catalog([1.0, 2.0, 3.0], [0.1 + 0.2, 8.379259238982531, 1e14 + 0.5])
    fast, ordinary = await _both(client, monkeypatch, [{"query": PAGE, "variables": {"first": 5}}])
    assert fast == ordinary
    assert b'"budgetUsd":0.30000000000000004' in fast[0]
    assert b'"budgetUsd":100000000000000.5' in fast[0]
    assert (written[0] is not None) is (dialect() == "postgres")


async def test_other_selections_take_the_ordinary_path(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    written: list[WrittenPage | None],
) -> None:
    await _catalog(COSTS[:4], BUDGETS[:2])
    fast, ordinary = await _both(client, monkeypatch, [{"query": q} for q in ORDINARY])
    assert fast == ordinary
    assert written == []
    assert all(b'"errors"' not in body for body in fast), fast


async def test_errors_of_bad_arguments_are_the_ordinary_ones(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = [
        {"query": "{ components(first: 0) { nodes { name } } }"},
        {"query": "{ components(first: 101) { nodes { name } } }"},
        {"query": '{ components(first: 2, after: "garbage!") { nodes { name team { slug } } } }'},
        {"query": '{ components(first: 2, search: "' + "x" * 300 + '") { nodes { name } } }'},
    ]
    fast, ordinary = await _both(client, monkeypatch, bad)
    assert fast == ordinary
    assert all(b'"BAD_USER_INPUT"' in body for body in fast), fast


async def test_a_team_scoped_principal_sees_only_its_rows(
    services: Services, written: list[WrittenPage | None]
) -> None:
    await _catalog(COSTS[:6], BUDGETS[:3])
    settings = services.settings.with_(authz_mode="team")
    services.settings = settings
    member = mint_token(settings, "member", [], timedelta(hours=1), teams=["search"])
    transport = httpx.ASGITransport(app=create_app(settings, services))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.post(
            "/graphql",
            json={"query": PAGE, "variables": {"first": 50}},
            headers={"Authorization": f"Bearer {member}"},
        )
    assert response.status_code == 200, response.text
    page = response.json()["data"]["components"]
    assert {n["team"]["slug"] for n in page["nodes"]} == {"search"}
    assert len(page["nodes"]) == page["totalCount"] == 3
    assert len(written) == 1
    assert written[0] is not None


def test_shapes_refuse_what_they_do_not_write() -> None:
    with pytest.raises(rowjson.ShapeError):
        rowjson.row_json((("name", "password"),), "postgres")
    with pytest.raises(rowjson.ShapeError):
        rowjson.row_json((("a'b", "name"),), "postgres")
    with pytest.raises(rowjson.ShapeError):
        rowjson.row_json((("t", rowjson.Team((("t", rowjson.Team((("id", "id"),))),))),), "sqlite")
    with pytest.raises(rowjson.ShapeError):
        rowjson.row_json((), "sqlite")
