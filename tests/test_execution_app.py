"""The app's answers with FastExecutor are byte for byte those of Strawberry's own executor.

The same HTTP requests go through the real app on SQLite and PostgreSQL twice: once as it runs,
once with the schema's executor swapped for Strawberry's, and the response bodies must be equal:
pages whose teams come with their statement (Component.team held, execution.PRELOADED), a
component whose team the loader reads, aliases, fragments, __typename, variables, @include, and
the errors of bad arguments.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from finops_gql.config import Settings
from finops_gql.graphql.execution import FastExecutor
from finops_gql.graphql.schema import schema
from finops_gql.services import Services
from tests.conftest import graphql_bodies, make_component, make_records, make_team

PAGE = """query Page($first: Int!) { components(first: $first) { totalCount nodes { id name
  budgetUsd cost30d costSyncedAt overBudget team { id name slug cost30d } }
  pageInfo { endCursor hasNextPage } } }"""
SHAPES = """query Shapes($n: Int!, $withTeam: Boolean!) {
  a: components(first: $n, orderBy: COST_30D_DESC) { nodes { ...C t: team @include(if: $withTeam) { __typename s: slug } } }
  b: components(first: $n) { nodes { n: name team { ... on Team { slug } name } } } }
fragment C on Component { __typename n: name c: cost30d b: budgetUsd }"""
NESTED = """{ teams(first: 5) { nodes { slug components(first: 2) { nodes { name team { slug
  components(first: 1) { nodes { name team { slug } } } } } } } } }"""
ONE = "query One($id: ID!) { component(id: $id) { name team { slug parent { slug } } } }"
BAD = [
    "{ components(first: 0) { nodes { name } } }",
    '{ components(first: 2, after: "not-a-cursor") { nodes { name team { slug } } } }',
    '{ component(id: "nope") { name } }',
    "{ components(first: 2) { nodes { name nope } } }",
]


async def test_the_fast_executor_answers_byte_for_byte(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.graphql_answer_cache_mb == 0  # both passes execute: no answer is replayed
    payments, search = await make_team("payments"), await make_team("search")
    search.parent_id = payments.id
    await search.save()
    made = []
    for i, (team, budget) in enumerate(
        [(payments, 50.0), (payments, None), (search, 1.0), (search, None), (payments, 10.0)]
    ):
        component = await make_component(team, f"svc-{i}", budget_usd=budget)
        await make_records(component, [1.25 * (i + 1), 2.5, 0.1 * i])
        made.append(component)
    await make_component(search, "no-records")
    await services.costs.refresh_rollups()

    requests: list[dict[str, Any]] = [
        {"query": PAGE, "variables": {"first": 3}},
        {"query": PAGE, "variables": {"first": 50}},
        {"query": SHAPES, "variables": {"n": 4, "withTeam": True}},
        {"query": SHAPES, "variables": {"n": 4, "withTeam": False}},
        {"query": NESTED},
        {"query": ONE, "variables": {"id": str(made[2].id)}},
        *({"query": query} for query in BAD),
    ]
    assert schema.execution_context_class is FastExecutor
    fast = await graphql_bodies(client, requests)
    monkeypatch.setattr(schema, "execution_context_class", StrawberryGraphQLCoreExecutionContext)
    ordinary = await graphql_bodies(client, requests)
    assert fast == ordinary
    assert b'"team":{"id":"' in fast[0]
    assert b'"errors"' not in fast[0]
    assert fast[1].count(b'"slug":"payments"') == 3  # every row of the page has its team
    assert all(b'"errors"' in body for body in fast[-len(BAD) :])
