"""Request ids, JSON logs and Prometheus metrics."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.logs import JsonFormatter, request_id
from finops_gql.services import Services
from tests.conftest import gql, make_component, make_team

pytestmark = pytest.mark.usefixtures("services")


async def test_request_id_is_echoed_or_made(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    made = (await client.get("/healthz", headers={"X-Request-ID": "bad id\n"})).headers[
        "x-request-id"
    ]
    assert len(made) == 32
    assert made != "bad id\n"


async def test_metrics_are_public_and_count_by_route(
    client: httpx.AsyncClient, services: Services, fake: FakeOpenCost
) -> None:
    component = await make_component(await make_team())
    await client.get(f"/api/v1/cost/components/{component.id}/actual")
    await gql(client, "query TopThree { topComponents(limit: 3) { totalCost } }")
    await services.sync.run()
    client.headers.pop("Authorization")
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert (
        'finops_gql_http_requests_total{method="GET",route="/api/v1/cost/components/{id}/actual",status="200"}'
        in text
    )
    assert 'finops_gql_graphql_operation_seconds_count{operation="TopThree",type="query"}' in text
    assert 'finops_gql_opencost_request_seconds_count{endpoint="allocation"}' in text
    assert "finops_gql_sync_last_success 1.0" in text
    assert str(component.id) not in text


def test_json_log_lines_carry_the_request_id() -> None:
    token = request_id.set("rid-1")
    try:
        record = logging.LogRecord(
            "finops_gql", logging.INFO, __file__, 1, "hello %s", ("world",), None
        )
        record.status = 200
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id.reset(token)
    assert line["message"] == "hello world"
    assert line["requestId"] == "rid-1"
    assert line["status"] == 200
    assert line["level"] == "info"


async def test_readyz_reports_dependencies_without_failing_on_them(
    client: httpx.AsyncClient, services: Services, fake: FakeOpenCost
) -> None:
    services.settings = services.settings.with_(redis_url="redis://127.0.0.1:1")
    fake.fail = "down"
    client.headers.pop("Authorization")
    response = await client.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    # Only ok/unavailable in the public answer; the reasons are logged (test_hardening_ops).
    assert checks == {"database": "ok", "opencost": "unavailable", "redis": "unavailable"}


async def test_readyz_answers_in_time_when_a_dependency_hangs(
    client: httpx.AsyncClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from finops_gql.costs.service import CostService
    from finops_gql.opencost.client import Health

    async def hang(self: CostService) -> Health:
        await asyncio.sleep(30)
        return Health(True)

    monkeypatch.setattr(CostService, "availability", hang)
    # The hang is 30 s; an answer at all within 10 s means the check was cut short.
    response = await asyncio.wait_for(client.get("/readyz"), timeout=10)
    assert response.status_code == 200
    assert response.json()["checks"]["opencost"] == "unavailable"


async def test_readyz_is_503_when_the_database_fails(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import finops_gql.app as app_module

    class Broken:
        async def execute_query(self, sql: str) -> None:
            raise ConnectionError("database down")

    monkeypatch.setattr(app_module, "connection", lambda: Broken())
    response = await client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert body["checks"]["database"] == "unavailable"
