"""The legacy REST contract under /api/v1/cost: paths, field names, NestJS error bodies."""

from __future__ import annotations

import uuid

import httpx
import pytest

from finops_gql.access import Scope
from finops_gql.costs.service import CostService
from finops_gql.db.models import Component
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.errors import NotFound
from finops_gql.jsonjs import dumps
from finops_gql.services import Services
from tests.conftest import make_component, make_records, make_team

pytestmark = pytest.mark.usefixtures("services")


def assert_nest_error(response: httpx.Response, status: int, phrase: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body = response.json()
    assert list(body) == ["statusCode", "message", "error"]
    assert body["statusCode"] == status
    assert body["error"] == phrase
    assert isinstance(body["message"], str)
    assert body["message"]
    return body


async def test_actual_cost_is_live_from_opencost(
    client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    team = await make_team()
    component = await make_component(team, "checkout")
    response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
    assert response.status_code == 200
    body = response.json()
    assert body["componentId"] == str(component.id)
    for window in ("sevenDay", "thirtyDay"):
        costs = body[window]
        for field in ("cpuCost", "memoryCost", "pvCost", "networkCost", "totalCost"):
            assert isinstance(costs[field], int | float)
        assert costs["totalCost"] > 0
        assert costs["currency"] == "USD"
    assert body["thirtyDay"]["totalCost"] > body["sevenDay"]["totalCost"]
    # one request per window, whatever the number of components
    assert sorted(r["window"] for r in fake.requests) == ["30d", "7d"]
    assert all(r["aggregate"] == "label:app" and r["accumulate"] == "true" for r in fake.requests)


async def test_actual_cost_null_when_opencost_has_no_data(client: httpx.AsyncClient) -> None:
    component = await make_component(await make_team(), "not-deployed")
    body = (await client.get(f"/api/v1/cost/components/{component.id}/actual")).json()
    assert body == {"componentId": str(component.id), "sevenDay": None, "thirtyDay": None}


async def test_many_components_share_one_opencost_request_per_window(
    client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    team = await make_team()
    components = [
        await make_component(team, name) for name in ("checkout", "search", "payments-api")
    ]
    for component in components:
        response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
        assert response.status_code == 200
        assert response.json()["sevenDay"] is not None
    assert len(fake.requests) == 2


async def test_actual_cost_503_when_opencost_fails(
    client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    fake.fail = "500"
    response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
    body = assert_nest_error(response, 503, "Service Unavailable")
    assert "OpenCost" in str(body["message"])


async def test_actual_cost_503_on_unparsable_body(
    client: httpx.AsyncClient, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    fake.fail = "garbage"
    response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
    assert_nest_error(response, 503, "Service Unavailable")


async def test_history_newest_first_with_day_and_synced_at(client: httpx.AsyncClient) -> None:
    component = await make_component(await make_team())
    await make_records(component, [1.0 + i / 100 for i in range(40)])
    response = await client.get(f"/api/v1/cost/components/{component.id}/history")
    assert response.status_code == 200
    rows = response.json()
    assert len(rows) == 30
    assert [r["day"] for r in rows] == sorted((r["day"] for r in rows), reverse=True)
    assert rows[0]["totalCost"] == 1.39
    first = rows[0]
    for field in (
        "cpuCost",
        "memoryCost",
        "pvCost",
        "networkCost",
        "totalCost",
        "currency",
        "syncedAt",
        "day",
    ):
        assert field in first
    assert first["syncedAt"].endswith("Z")
    assert "." in first["syncedAt"]


async def test_team_summary_largest_first(client: httpx.AsyncClient, services: Services) -> None:
    team = await make_team()
    small = await make_component(team, "small")
    big = await make_component(team, "big")
    other = await make_component(await make_team("other"), "elsewhere")
    await make_records(small, [2.38] * 30)
    await make_records(big, [100.0] * 30)
    await make_records(other, [5.0] * 30)
    await services.costs.refresh_rollups()
    body = (await client.get(f"/api/v1/cost/teams/{team.id}/summary")).json()
    assert body == {
        "teamId": str(team.id),
        "totalCost": 3071.4,
        "currency": "USD",
        "components": [
            {"componentId": str(big.id), "totalCost": 3000, "window": "30d"},
            {"componentId": str(small.id), "totalCost": 71.4, "window": "30d"},
        ],
    }
    # A team without components: its summary is empty, not a 404 (the statement's LEFT JOIN).
    empty = await make_team("empty")
    body = (await client.get(f"/api/v1/cost/teams/{empty.id}/summary")).json()
    assert body == {"teamId": str(empty.id), "totalCost": 0, "currency": "USD", "components": []}


# 30-day totals as the rollup may hold them: float noise, integral values, ties (broken by name,
# unicode included), tiny values around JavaScript's switch to exponents, huge ones, negatives.
AWKWARD_TOTALS = {
    "checkout": 71.30000000000001,
    "search": 3000.0,
    "zéro": 0.0,
    "Ärger": 119.949564,
    "ärger": 119.949564,
    "日本": 119.949564,
    "tiny": 0.000014,
    "tinier": 0.0000051,
    "tiniest": 1e-7,
    "minus-tiny": -0.000001,
    "refund": -2.5,
    "huge": 1.5e21,
    "big": 1e16,
    "long": 123456.789012345,
}


async def test_team_summary_bytes_equal_the_object_path(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The summary written from the service's columns has the bytes of the former writer: one
    ComponentCost per row (team_summaries, GraphQL's read) and dumps' walk over every value."""
    team = await make_team()
    await make_component(await make_team("other"), "elsewhere", cost_30d=5.0)
    for name, total in AWKWARD_TOTALS.items():
        await make_component(team, name, cost_30d=total)
    response = await client.get(f"/api/v1/cost/teams/{team.id}/summary")
    assert response.status_code == 200
    summary = (await services.costs.team_summaries([team.id]))[team.id]
    assert len(summary.components) == len(AWKWARD_TOTALS)
    old = dumps(
        {
            "teamId": str(summary.team_id),
            "totalCost": summary.total_cost,
            "currency": summary.currency,
            "components": [
                {"componentId": c.component_id, "totalCost": c.total_cost, "window": "30d"}
                for c in summary.components
            ],
        }
    )
    assert response.content == old
    # The awkward values are really there, written as JavaScript writes them.
    for text in (b'"totalCost":3000,', b'"totalCost":0.00001,', b'"totalCost":1.5e+21,'):
        assert text in response.content
    assert b'"totalCost":10000000000000000,' in response.content
    assert b'"totalCost":-2.5,' in response.content


async def test_team_cost_columns_scope(services: Services) -> None:
    """Invisible is missing, with components or without; visible and empty is an empty summary."""
    costs = services.costs
    seen, hidden, hidden_empty = (
        await make_team("seen"),
        await make_team("hidden"),
        await make_team(),
    )
    await make_component(hidden, "secret", cost_30d=9.0)
    scope = Scope(frozenset({seen.id}))
    empty = await costs.team_cost_columns(seen.id, scope)
    assert (empty.total_cost, empty.component_ids, empty.totals) == (0, [], [])
    for team in (hidden, hidden_empty):
        with pytest.raises(NotFound):
            await costs.team_cost_columns(team.id, scope)
    visible = await costs.team_cost_columns(hidden.id)
    secret = await Component.get(name="secret")
    assert (visible.component_ids, visible.totals) == ([str(secret.id)], [9.0])


async def test_summary_orders_numerically_and_limits(
    client: httpx.AsyncClient, services: Services
) -> None:
    team = await make_team()
    cheap = await make_component(team, "cheap", budget_usd=50.0)
    dear = await make_component(team, "dear")
    await make_records(cheap, [71.30 / 30] * 30)
    await make_records(dear, [100.0 / 30] * 30)
    await services.costs.refresh_rollups()
    rows = (await client.get("/api/v1/cost/summary")).json()
    assert [r["componentId"] for r in rows] == [str(dear.id), str(cheap.id)]
    assert rows[0]["totalCost"] == 100
    assert rows[1]["totalCost"] == 71.3
    assert rows[1]["budgetUsd"] == 50
    assert rows[0]["budgetUsd"] is None
    assert list(rows[0]) == ["componentId", "totalCost", "currency", "syncedAt", "budgetUsd"]
    one = (await client.get("/api/v1/cost/summary", params={"limit": 1})).json()
    assert [r["componentId"] for r in one] == [str(dear.id)]


async def test_summary_is_byte_compatible(client: httpx.AsyncClient, services: Services) -> None:
    team = await make_team()
    component = await make_component(team, "only", budget_usd=120.0)
    await make_records(component, [2.0] * 30)
    await services.costs.refresh_rollups()
    response = await client.get("/api/v1/cost/summary")
    synced = response.json()[0]["syncedAt"]
    assert (
        response.content
        == (
            f'[{{"componentId":"{component.id}","totalCost":60,"currency":"USD",'
            f'"syncedAt":"{synced}","budgetUsd":120}}]'
        ).encode()
    )


async def test_summary_bytes_equal_the_object_path(
    client: httpx.AsyncClient, services: Services
) -> None:
    """The top-N written from the service's columns has the bytes of the former writer: one
    ComponentCost per row (top_components, GraphQL's read) and dumps' walk over every value."""
    team = await make_team()
    budgets = [None, 120.0, 33.333, 1e-6, 2.0**60]
    for i, (name, total) in enumerate(AWKWARD_TOTALS.items()):
        await make_component(team, name, budget_usd=budgets[i % len(budgets)], cost_30d=total)
    synced = await make_component(team, "synced", budget_usd=50.0)
    await make_records(synced, [2.38] * 30)  # cost_synced_at set, the others' NULL
    await services.costs.refresh_rollups([synced.id])
    response = await client.get("/api/v1/cost/summary", params={"limit": 100})
    assert response.status_code == 200
    top = await services.costs.top_components(100)
    assert len(top) == len(AWKWARD_TOTALS) + 1
    old = dumps(
        [
            {
                "componentId": cost.component_id,
                "totalCost": cost.total_cost,
                "currency": cost.currency,
                "syncedAt": cost.synced_at,
                "budgetUsd": cost.budget_usd,
            }
            for cost in top
        ]
    )
    assert response.content == old
    assert b'"syncedAt":null' in response.content
    assert b'"budgetUsd":1152921504606847000}' in response.content
    assert b'"budgetUsd":0.000001}' in response.content


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", ""])
async def test_summary_bad_limit_is_400(client: httpx.AsyncClient, limit: str) -> None:
    response = await client.get("/api/v1/cost/summary", params={"limit": limit})
    body = assert_nest_error(response, 400, "Bad Request")
    assert "limit" in str(body["message"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/cost/components/{id}/actual",
        "/api/v1/cost/components/{id}/history",
        "/api/v1/cost/teams/{id}/summary",
    ],
)
async def test_unknown_id_is_404_and_malformed_is_400(client: httpx.AsyncClient, path: str) -> None:
    assert_nest_error(await client.get(path.format(id=uuid.uuid4())), 404, "Not Found")
    body = assert_nest_error(await client.get(path.format(id="not-a-uuid")), 400, "Bad Request")
    assert "UUID" in str(body["message"])


async def test_unknown_route_is_nest_404(client: httpx.AsyncClient) -> None:
    body = assert_nest_error(await client.get("/api/v1/cost/nope"), 404, "Not Found")
    assert body["message"] == "Cannot GET /api/v1/cost/nope"


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    assert_nest_error(await client.post("/api/v1/cost/summary"), 405, "Method Not Allowed")


async def test_available_true_and_false(client: httpx.AsyncClient, fake: FakeOpenCost) -> None:
    response = await client.get("/api/v1/cost/available")
    assert response.status_code == 200
    assert response.content == b'{"available":true}'
    fake.fail = "down"
    body = (await client.get("/api/v1/cost/available")).json()
    assert body["available"] is False
    assert "503" in body["reason"]


async def test_available_false_when_unreachable(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.costs.opencost._base = "http://127.0.0.1:9"  # nothing listens on the discard port
    services.costs.opencost._api_root = None
    body = (await client.get("/api/v1/cost/available")).json()
    assert body["available"] is False
    assert "unreachable" in body["reason"]


async def test_unexpected_error_is_500_without_trace(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def boom(self: CostService, limit: int = 10) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(CostService, "top_component_columns", boom)
    response = await client.get("/api/v1/cost/summary")
    body = assert_nest_error(response, 500, "Internal Server Error")
    assert "secret" not in response.text
    assert body["message"] == "Internal server error"
