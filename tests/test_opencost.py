"""OpenCost parsing (real captured responses) and the HTTP client (both URL styles, errors, cache)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.opencost.client import OpenCostClient
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.opencost.parse import normalize_key, parse_allocation_response
from tests.conftest import FIXTURES, served


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_parses_real_namespace_response() -> None:
    steps = parse_allocation_response(
        load("allocation-aggregate-namespace-window-2d.json"), "namespace"
    )
    assert len(steps) == 1
    assert set(steps[0]) == {"kube-system", "opencost", "prometheus"}
    kube = steps[0]["kube-system"]
    assert kube.cpu_cost == 0.408822
    assert kube.ram_cost == 0.016647
    assert kube.total_cost == 0.425469
    assert kube.start == datetime(2023, 1, 18, 11, 38, 45, tzinfo=UTC)


def test_parses_legacy_label_keys_and_skips_synthetic() -> None:
    steps = parse_allocation_response(
        load("allocation-aggregate-label-app-legacy-keys.json"), "label:app"
    )
    assert set(steps[0]) == {"opencost", "prometheus"}  # app= stripped, __unallocated__ skipped
    assert steps[0]["opencost"].total_cost == 0.004003


@pytest.mark.parametrize(
    ("aggregate", "key", "expected"),
    [
        ("label:app", "app=checkout", "checkout"),
        ("label:app", "checkout", "checkout"),
        ("label:team", "team=payments", "payments"),
        ("namespace", "app=x", "app=x"),
    ],
)
def test_normalize_key(aggregate: str, key: str, expected: str) -> None:
    assert normalize_key(aggregate, key) == expected


def test_null_floats_are_zero_and_null_total_is_sum_of_parts() -> None:
    raw = load("allocation-aggregate-namespace-window-2d.json")
    entry = raw["data"][0]["kube-system"]
    entry["pvCost"] = None
    entry["cpuCostAdjustment"] = None
    entry["totalCost"] = None
    parsed = parse_allocation_response(raw, "namespace")[0]["kube-system"]
    assert parsed.pv_cost == 0.0
    assert parsed.total_cost == pytest.approx(0.408822 + 0.016647)


def test_adjustments_are_counted() -> None:
    raw = load("allocation-aggregate-namespace-window-2d.json")
    raw["data"][0]["opencost"]["cpuCostAdjustment"] = 0.5
    assert parse_allocation_response(raw, "namespace")[0]["opencost"].cpu_cost == pytest.approx(
        0.51817
    )


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"code": 500, "message": "Error: boom"},
        {"code": 200, "data": {"not": "a list"}},
        {"code": 200, "data": ["nope"]},
        {"code": 200, "data": [{"x": "not an object"}]},
        {
            "code": 200,
            "data": [
                {
                    "x": {
                        "cpuCost": "1",
                        "window": {"start": "2023-01-01T00:00:00Z", "end": "2023-01-02T00:00:00Z"},
                    }
                }
            ],
        },
        {"code": 200, "data": [{"x": {"window": {"start": "yesterday", "end": "now"}}}]},
    ],
)
def test_bad_shapes_raise_unavailable(body: Any) -> None:
    with pytest.raises(OpenCostUnavailable):
        parse_allocation_response(body, "namespace")


def test_empty_data_is_no_steps() -> None:
    assert parse_allocation_response({"code": 200, "status": "success", "data": None}, "x") == []
    assert parse_allocation_response({"code": 200, "data": [None]}, "x") == [{}]


# -- client -----------------------------------------------------------------------------------------


def slow_healthz(seconds: float) -> web.Application:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/healthz", slow)
    app.router.add_get("/allocation", slow)
    return app


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.parametrize(
    ("ui", "legacy"), [(False, False), (True, False), (False, True), (True, True)]
)
async def test_both_url_styles_and_key_styles(
    session: aiohttp.ClientSession, ui: bool, legacy: bool
) -> None:
    fake = FakeOpenCost(keys=["checkout"], ui=ui, legacy_keys=legacy)
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url)
        steps = await client.allocation(window="7d", aggregate="label:app", accumulate=True)
        assert set(steps[0]) == {"checkout"}
        assert await client.api_root() == (url + "/model" if ui else url)
        assert (await client.health()).available


async def test_explicit_model_url_is_used_as_is(session: aiohttp.ClientSession) -> None:
    async with served(FakeOpenCost(keys=["a"], ui=True).app()) as url:
        client = OpenCostClient(session, url + "/model/")
        assert set((await client.allocation(window="1d", aggregate="label:app"))[0]) == {"a"}


async def test_cache_and_concurrent_dedupe(session: aiohttp.ClientSession) -> None:
    fake = FakeOpenCost(keys=["a"])
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url, cache_ttl_s=60)
        results = await asyncio.gather(
            *(
                client.allocation(window="7d", aggregate="label:app", accumulate=True)
                for _ in range(10)
            )
        )
        assert all(r == results[0] for r in results)
        await client.allocation(window="7d", aggregate="label:app", accumulate=True)
        assert len(fake.requests) == 1
        assert client.requests_made == 1
        await client.allocation(window="7d", aggregate="label:app", accumulate=True, cached=False)
        assert len(fake.requests) == 2


async def test_errors_are_typed(session: aiohttp.ClientSession) -> None:
    fake = FakeOpenCost(keys=["a"])
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url, cache_ttl_s=0)
        fake.fail = "500"
        with pytest.raises(OpenCostUnavailable, match="HTTP 500"):
            await client.allocation(window="7d", aggregate="label:app")
        fake.fail = "garbage"
        with pytest.raises(OpenCostUnavailable, match="not JSON"):
            await client.allocation(window="7d", aggregate="label:app")
        fake.fail = None
        with pytest.raises(OpenCostUnavailable, match="HTTP 400"):
            await client.allocation(window="bogus", aggregate="label:app")


async def test_unreachable_and_not_opencost(session: aiohttp.ClientSession) -> None:
    client = OpenCostClient(session, "http://127.0.0.1:9")
    with pytest.raises(OpenCostUnavailable, match="unreachable"):
        await client.allocation(window="7d", aggregate="label:app")
    health = await client.health()
    assert not health.available
    assert health.reason

    async with served(web.Application()) as url:  # not OpenCost: 404 everywhere
        other = OpenCostClient(session, url)
        with pytest.raises(OpenCostUnavailable, match="not found"):
            await other.allocation(window="7d", aggregate="label:app")


async def test_timeout_is_bounded(session: aiohttp.ClientSession) -> None:
    async with served(slow_healthz(2)) as url:
        client = OpenCostClient(session, url, timeout_s=0.2)
        # A slow /healthz still tells where the API lives; the request itself is bounded.
        assert await client.api_root() == url
        with pytest.raises(OpenCostUnavailable, match=r"timed out after 0\.2s"):
            await client.allocation(window="7d", aggregate="label:app")


async def test_health_check_is_bounded_shorter_than_allocation(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finops_gql.opencost import client as client_module

    monkeypatch.setattr(client_module, "HEALTH_TIMEOUT_S", 0.2)
    async with served(slow_healthz(1)) as url:
        client = OpenCostClient(session, url, timeout_s=30)
        health = await client.health()
        assert not health.available
        assert "timed out after 0.2s" in (health.reason or "")
