"""One JSON writer and one instant format for every answer, REST and GraphQL alike."""

from __future__ import annotations

import httpx
import pytest

from finops_gql.graphql.scalars import parse_datetime
from tests.conftest import gql, make_component, make_records, make_team


async def test_graphql_401_is_written_like_every_other_answer(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ teams { nodes { slug } } }"}, headers={"Authorization": ""}
    )
    assert response.status_code == 401
    assert response.content.startswith(b'{"data":null,"errors":[{"message":')  # compact, no spaces
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_graphql_and_rest_write_instants_and_numbers_alike(
    client: httpx.AsyncClient,
) -> None:
    team = await make_team()
    component = await make_component(team)
    await make_records(component, [2.0, 2.5])
    rest = (await client.get(f"/api/v1/cost/components/{component.id}/history")).json()
    body = await gql(
        client,
        "query H($id: ID!) { component(id: $id) { history(limit: 2) { syncedAt totalCost } } }",
        {"id": str(component.id)},
    )
    history = body["data"]["component"]["history"]
    assert [h["syncedAt"] for h in history] == [r["syncedAt"] for r in rest]
    assert history[0]["syncedAt"].endswith(".000Z")
    raw = (
        await client.post(
            "/graphql",
            json={
                "query": "query H($id: ID!) { component(id: $id) { history(limit: 2) { totalCost } } }",
                "variables": {"id": str(component.id)},
            },
        )
    ).content
    assert b'[{"totalCost":2.5},{"totalCost":2}]' in raw  # 2, not 2.0, like REST


def test_datetime_input_must_carry_an_offset() -> None:
    assert parse_datetime("2026-11-21T03:00:00.000Z").utcoffset() is not None
    for bad in ("2026-11-21T03:00:00", "yesterday", 42):
        with pytest.raises(ValueError, match="DateTime"):
            parse_datetime(bad)
