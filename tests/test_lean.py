"""Queries over HTTP run by graphql/lean.py answer byte for byte what Strawberry's own path (with
OperationGuard's hooks) answers: data, errors, the cost extension, refusals; everything that is
not a valid query (mutations, subscriptions over HTTP, invalid documents, GET rules) is left to
Strawberry's path, untouched.

Each request goes through the real app twice, as it runs and with the lean path switched off,
and a spy shows which requests the lean path answered.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from finops_gql.app import create_app
from finops_gql.graphql import lean, view
from finops_gql.metrics import GRAPHQL_SECONDS
from finops_gql.services import Services
from tests.conftest import make_component, make_records, make_team, token

QUERIES: list[dict[str, Any]] = [
    {"query": "{ __typename }"},
    {
        "query": "query Page($n: Int!) { components(first: $n) { totalCount nodes { name } } }",
        "variables": {"n": 2},
    },
    {
        "query": "query A { teams { nodes { slug } } } query B { components { nodes { id } } }",
        "operationName": "B",
    },
    {"query": '{ components(first: 2, after: "garbage!") { nodes { name } } }'},
    {"query": '{ component(id: "not-a-uuid") { name } ok: __typename }'},
    {"query": "{ components(first: 500) { nodes { name } } }"},
    {
        "query": "query($n: Int!) { components(first: $n) { nodes { name } } }",
        "variables": {"n": "two"},
    },
]
# Left to Strawberry's path: the lean path must not answer them.
OTHERS: list[dict[str, Any]] = [
    {"query": "{ nope }"},
    {"query": "{ components { "},
    {"query": "query A { __typename } query B { __typename }"},
    {"query": "query A { __typename }", "operationName": "C"},
    {"query": 'mutation { createTeam(name: "N", slug: "n") { slug } }'},
    {"query": "subscription { costSyncProgress { status } }"},
    {"query": ""},
]


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each request, whether the lean path answered it."""
    seen: list[bool] = []
    real = lean.execute_query

    async def spy(*args: Any) -> Any:
        result = await real(*args)
        seen.append(result is not None)
        return result

    monkeypatch.setattr(view, "execute_query", spy)
    return seen


async def _both(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, requests: list[dict[str, Any]]
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    async def run() -> list[tuple[int, bytes]]:
        found = []
        for request in requests:
            response = await http.post("/graphql", json=request)
            found.append((response.status_code, response.content))
        return found

    first = await run()

    async def never(*args: Any) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(view, "execute_query", never)
        second = await run()
    return first, second


async def test_queries_answer_as_strawberry_answers_them(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, answered: list[bool]
) -> None:
    team = await make_team("payments")
    await make_records(await make_component(team, "api", budget_usd=5.0), [1.5, 2.25])
    await make_component(team, "web")
    lean_path, strawberry_path = await _both(client, monkeypatch, QUERIES)
    assert lean_path == strawberry_path
    assert answered == [True] * len(QUERIES)
    assert all(status == 200 for status, _ in lean_path)
    assert b'"errors"' not in lean_path[1][1]
    assert b'"BAD_USER_INPUT"' in lean_path[3][1]
    assert b'"ok":"Query"' in lean_path[4][1]
    assert b'"cost":{"requested":' in lean_path[0][1]


async def test_everything_else_is_left_to_strawberry(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, answered: list[bool]
) -> None:
    lean_path, strawberry_path = await _both(client, monkeypatch, OTHERS)
    assert lean_path == strawberry_path
    assert answered == [False] * len(OTHERS)
    # GET: queries are Strawberry's to allow or refuse.
    get = await client.get("/graphql", params={"query": "{ __typename }"})
    post_mutation = await client.get(
        "/graphql", params={"query": 'mutation { createTeam(name: "N", slug: "n") { slug } }'}
    )
    assert get.status_code == 200, get.text
    assert post_mutation.status_code in (400, 405), post_mutation.text
    assert answered[-2:] == [True, False]


async def test_refusals_are_the_guard_s(
    services: Services, monkeypatch: pytest.MonkeyPatch, answered: list[bool]
) -> None:
    settings = services.settings.with_(graphql_max_cost=10)
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token(settings, 'viewer')}"
        requests = [{"query": "{ components(first: 100) { nodes { name team { slug } } } }"}]
        lean_path, strawberry_path = await _both(http, monkeypatch, requests)
    assert lean_path == strawberry_path
    assert b'"QUERY_TOO_COMPLEX"' in lean_path[0][1]
    assert answered == [True]


async def test_operations_are_timed_under_their_name(client: httpx.AsyncClient) -> None:
    def count() -> float:
        for metric in GRAPHQL_SECONDS.collect():
            for sample in metric.samples:
                if (
                    sample.name.endswith("_count")
                    and sample.labels.get("operation") == "LeanTimed"
                    and sample.labels.get("type") == "query"
                ):
                    return sample.value
        return 0.0

    before = count()
    response = await client.post("/graphql", json={"query": "query LeanTimed { __typename }"})
    assert response.status_code == 200, response.text
    assert count() == before + 1


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("application/json", 200),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
        ("application/json-patch+json", 200),  # Strawberry's own path: a JSON type too
        ("text/plain", 400),
    ],
)
async def test_json_bodies_of_every_spelling_are_read(
    client: httpx.AsyncClient, content_type: str, status: int
) -> None:
    response = await client.post(
        "/graphql", content=b'{"query": "{ __typename }"}', headers={"content-type": content_type}
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["data"] == {"__typename": "Query"}
    else:
        assert "Unsupported content type" in response.text
