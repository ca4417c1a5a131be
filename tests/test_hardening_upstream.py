"""Upstream faults (issue 13): OpenCost being slow, failing, chatty, huge or swamped never turns into
failed live calls it could have answered, leaked internals, unbounded memory or a request storm.

Bounds are proven on the stand-in's side (requests counted and in flight there), not by the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from aiohttp import web
from tortoise.contrib.test import truncate_all_models

from finops_gql.app import create_app
from finops_gql.config import ConfigError, Settings
from finops_gql.db.models import SyncProgress
from finops_gql.dev.opencost_fake import FakeOpenCost, _allocation
from finops_gql.logs import JsonFormatter
from finops_gql.opencost.client import OpenCostClient
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.services import Services, open_services
from tests.conftest import gql, make_component, make_team, served, today, token

SECRET = "http://prometheus-server.monitoring.svc.cluster.local:9090/api/v1/query?token=s3cr3t"

ACTUAL_QUERY = """
query($id: ID!) { component(id: $id) { name actualCost { sevenDay { totalCost } } } }
"""


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, **changes: Any
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The real app with changed settings (the `services` fixture's are the defaults)."""
    changed = settings.with_(**changes)
    async with open_services(changed, publish_budgets=False) as services:
        await truncate_all_models()
        app = create_app(changed, services)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            http.headers["Authorization"] = f"Bearer {token(changed)}"
            yield services, http


# -- 1. the URL style is probed once, a slow or failing /healthz never fails live calls -----------


@pytest.mark.parametrize("ui", [False, True])
@pytest.mark.parametrize("healthz", ["slow", "failing"])
async def test_bad_healthz_never_fails_live_calls_and_is_probed_at_most_twice(
    session: aiohttp.ClientSession, ui: bool, healthz: str
) -> None:
    fake = FakeOpenCost(keys=["a"], ui=ui)
    if healthz == "slow":
        fake.healthz_delay = 2  # far beyond the client's health bound below
    else:
        fake.fail = "down"  # /healthz answers 503, /allocation still answers
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url, cache_ttl_s=0, health_timeout_s=0.1)
        # Concurrent first callers share one probe.
        windows = [f"{days}d" for days in range(1, 21)]
        answers = await asyncio.gather(
            *(client.allocation(window=w, aggregate="label:app") for w in windows)
        )
        assert all(set(steps[0]) == {"a"} for steps in answers)
        for window in windows:
            assert set((await client.allocation(window=window, aggregate="label:app"))[0]) == {"a"}
        assert len(fake.requests) == 40
        probes = fake.healthz_probes
        assert probes <= 2
        assert await client.api_root() == (url + "/model" if ui else url)

        # A failed health check is reported, and forgets nothing: no probe follows it.
        health = await client.health()
        assert not health.available
        expected = (
            "OpenCost timed out after 0.1s"
            if healthz == "slow"
            else "OpenCost is unhealthy: HTTP 503"
        )
        assert health.reason == expected
        for window in windows:
            await client.allocation(window=window, aggregate="label:app")
        assert fake.healthz_probes == probes + 1  # the health check's own request only


async def test_live_calls_through_the_app_never_reprobe(
    client: httpx.AsyncClient, fake: FakeOpenCost, services: Services
) -> None:
    fake.fail = "down"
    team = await make_team()
    components = [await make_component(team, n) for n in ("checkout", "search", "payments-api")]
    for _ in range(3):
        for component in components:
            services.costs.opencost._cache.clear()
            response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
            assert response.status_code == 200, response.text
            assert response.json()["sevenDay"] is not None
        body = (await client.get("/api/v1/cost/available")).json()
        assert body == {"available": False, "reason": "OpenCost is unhealthy: HTTP 503"}
    # Two probes to find the root (/model/healthz, /healthz), then one per availability check.
    assert fake.healthz_probes == 2 + 3


def moving_opencost(fake: FakeOpenCost, state: dict[str, bool]) -> web.Application:
    """The stand-in at the API root, silent (every request hangs) while state["hung"]."""

    @web.middleware
    async def hang(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if state["hung"]:
            await asyncio.sleep(5)
        return await handler(request)

    app = fake.app()
    app.middlewares.append(hang)
    return app


async def test_a_404_under_the_chosen_root_probes_again_once(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeOpenCost(keys=["a"])  # API-root style: /model/... is a 404
    state = {"hung": True}
    async with served(moving_opencost(fake, state)) as url:
        client = OpenCostClient(session, url, timeout_s=0.2, cache_ttl_s=0)
        # While OpenCost hangs, a timed-out /model/healthz is taken as "exists but slow".
        with pytest.raises(OpenCostUnavailable, match="timed out"):
            await client.allocation(window="7d", aggregate="label:app")
        assert await client.api_root() == url + "/model"
        state["hung"] = False
        # /model/allocation answers 404: one new probe finds the root, the call is retried.
        assert set((await client.allocation(window="7d", aggregate="label:app"))[0]) == {"a"}
        assert await client.api_root() == url
        probes = client.probes_made
        for _ in range(5):
            await client.allocation(window="7d", aggregate="label:app")
        assert client.probes_made == probes == 3


async def test_a_404_at_every_root_is_an_error_not_a_loop(
    session: aiohttp.ClientSession,
) -> None:
    calls = {"healthz": 0}

    async def healthz(request: web.Request) -> web.Response:
        calls["healthz"] += 1
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/healthz", healthz)  # healthy, but no /allocation anywhere
    async with served(app) as url:
        client = OpenCostClient(session, url)
        with pytest.raises(OpenCostUnavailable) as caught:
            await client.allocation(window="7d", aggregate="label:app")
        assert str(caught.value) == "OpenCost answered HTTP 404"
        assert calls["healthz"] == 2  # found once, probed again once after the 404


# -- 2. clients get a generic reason, the log gets OpenCost's words with the request id -----------


def leaky_opencost(mode: str) -> web.Application:
    """An OpenCost whose failures quote an internal URL, as a real one was seen to."""
    window = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}

    async def allocation(request: web.Request) -> web.Response:
        if mode == "http500":
            message = f'Error: Post "{SECRET}": dial tcp 10.0.3.7:9090: connect: refused'
            return web.json_response({"code": 500, "message": message}, status=500)
        if mode == "code500":  # HTTP 200, error in the body
            return web.json_response({"code": 500, "message": f"Error: {SECRET}"})
        if mode == "http400":
            return web.Response(status=400, text=f"Bad Request: {SECRET}")
        if mode == "html":
            return web.Response(text=f"<html>{SECRET}</html>", content_type="text/html")
        if mode == "number":
            raw = {"window": window, "cpuCost": SECRET, "totalCost": 1.0}
        elif mode == "time":
            raw = {"window": {"start": SECRET, "end": SECRET}, "totalCost": 1.0}
        else:  # "key": a step entry that is not an object, under a secret key
            return web.json_response({"code": 200, "data": [{SECRET: "x"}]})
        return web.json_response({"code": 200, "data": [{"checkout": raw}]})

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/allocation", allocation)
    return app


class JsonLines(logging.Handler):
    """Log lines as production writes them (JSON, with the request id)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def opencost_log() -> Iterator[JsonLines]:
    logger = logging.getLogger("finops_gql.opencost.client")
    handler = JsonLines()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("http500", "OpenCost answered HTTP 500"),
        ("code500", "OpenCost answered code 500"),
        ("http400", "OpenCost answered HTTP 400"),
        ("html", "OpenCost answered with a body that is not JSON"),
        ("number", "OpenCost sent a non-numeric cpuCost"),
        ("time", "OpenCost sent an unreadable start time"),
        ("key", "an OpenCost allocation is not an object"),
    ],
)
async def test_opencost_error_text_never_reaches_clients(
    settings: Settings, opencost_log: JsonLines, mode: str, reason: str
) -> None:
    async with (
        served(leaky_opencost(mode)) as url,
        gateway(settings, opencost_url=url) as (
            _,
            http,
        ),
    ):
        component = await make_component(await make_team())
        response = await http.get(
            f"/api/v1/cost/components/{component.id}/actual",
            headers={"X-Request-ID": "req-rest-1"},
        )
        assert response.status_code == 503
        assert response.json() == {
            "statusCode": 503,
            "message": f"OpenCost unavailable: {reason}",
            "error": "Service Unavailable",
        }
        http.headers["X-Request-ID"] = "req-gql-1"
        body = await gql(http, ACTUAL_QUERY, {"id": str(component.id)})
        assert SECRET not in json.dumps(body)
        assert body["errors"][0]["message"] == reason
        assert body["errors"][0]["extensions"]["code"] == "OPENCOST_UNAVAILABLE"
    # The detail is logged, with the request that met it.
    logged = [line for line in opencost_log.lines if "s3cr3t" in line["message"]]
    assert {line.get("requestId") for line in logged} >= {"req-rest-1", "req-gql-1"}


async def test_availability_names_no_host_or_credentials(
    client: httpx.AsyncClient, services: Services, opencost_log: JsonLines
) -> None:
    client_ = services.costs.opencost
    client_._base = "http://opencost-admin:s3cr3t@127.0.0.1:9"  # nothing listens on port 9
    client_._api_root = None
    body = (await client.get("/api/v1/cost/available")).json()
    assert body == {"available": False, "reason": "OpenCost is unreachable"}
    data = await gql(client, "{ opencostAvailability { available reason } }")
    assert data["data"]["opencostAvailability"] == body
    component = await make_component(await make_team())
    response = await client.get(f"/api/v1/cost/components/{component.id}/actual")
    assert response.json()["message"] == "OpenCost unavailable: OpenCost is unreachable"
    # The log says where, but never with OPENCOST_URL's password.
    assert any("127.0.0.1:9" in line["message"] for line in opencost_log.lines)
    assert not any("s3cr3t" in line["message"] for line in opencost_log.lines)


async def test_not_opencost_is_reported_without_its_url(session: aiohttp.ClientSession) -> None:
    async with served(web.Application()) as url:  # 404 everywhere
        client = OpenCostClient(session, url)
        health = await client.health()
        assert health == health.__class__(False, "OpenCost API not found under OPENCOST_URL")
        assert url not in (health.reason or "")


async def test_timeout_reason_is_whole_seconds_when_whole(session: aiohttp.ClientSession) -> None:
    fake = FakeOpenCost(keys=["a"])
    fake.allocation_delay = 3
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url, timeout_s=1)
        with pytest.raises(OpenCostUnavailable) as caught:
            await client.allocation(window="7d", aggregate="label:app")
        assert str(caught.value) == "OpenCost timed out after 1s"


# -- 3. answers are read incrementally and bounded ------------------------------------------------


def huge_opencost(total_mb: int, sent: dict[str, int], done: asyncio.Event) -> web.Application:
    """Streams a valid allocation answer of `total_mb` without Content-Length, counting what it
    managed to write before the client hung up."""
    one = orjson.dumps(_allocation("x", datetime(2026, 1, 1, tzinfo=UTC), datetime.now(UTC), 1.0))

    async def allocation(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b'{"code":200,"status":"success","data":[{')
            i = 0
            while sent["bytes"] < total_mb * 1024 * 1024:
                chunk = b",".join(b'"k%d":%s' % (i + j, one) for j in range(200))
                i += 200
                await response.write((b"," if sent["bytes"] else b"") + chunk)
                sent["bytes"] += len(chunk) + 1
            await response.write(b"}]}")
            sent["complete"] = 1
        except (ConnectionError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            done.set()
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/allocation", allocation)
    return app


async def test_streamed_answer_over_the_bound_is_refused_unread(
    session: aiohttp.ClientSession,
) -> None:
    sent = {"bytes": 0}
    done = asyncio.Event()
    async with served(huge_opencost(256, sent, done)) as url:
        client = OpenCostClient(session, url, max_response_mb=1)
        with pytest.raises(OpenCostUnavailable) as caught:
            await client.allocation(window="7d", aggregate="label:app")
        assert str(caught.value) == "OpenCost answer exceeds OPENCOST_MAX_RESPONSE_MB=1"
        await asyncio.wait_for(done.wait(), 30)  # generous: a hang here is the bug
    # The stand-in could not push the 256 MB: the client stopped reading and hung up past 1 MB.
    assert "complete" not in sent
    assert sent["bytes"] < 64 * 1024 * 1024


async def test_declared_length_over_the_bound_is_refused(session: aiohttp.ClientSession) -> None:
    fake = FakeOpenCost(keys=[f"app-{i}" for i in range(1500)])  # about 1.4 MB per answer
    async with served(fake.app()) as url:
        client = OpenCostClient(session, url, max_response_mb=1, sync_max_response_mb=2)
        with pytest.raises(OpenCostUnavailable, match=r"exceeds OPENCOST_MAX_RESPONSE_MB=1$"):
            await client.allocation(window="7d", aggregate="label:app", accumulate=True)
        # The sync's bound is its own.
        steps = await client.allocation(window="7d", aggregate="label:app", bulk=True)
        assert len(steps[0]) == 1500
        with pytest.raises(OpenCostUnavailable, match=r"exceeds OPENCOST_SYNC_MAX_RESPONSE_MB=2$"):
            await client.allocation(window="2d", aggregate="label:app", step="1d", bulk=True)


async def test_live_bound_through_the_app_and_sync_bound(
    settings: Settings, fake: FakeOpenCost
) -> None:
    fake.keys[:] = [f"app-{i}" for i in range(1500)]
    async with gateway(settings, opencost_max_response_mb=1) as (services, http):
        component = await make_component(await make_team(), "app-7")
        response = await http.get(f"/api/v1/cost/components/{component.id}/actual")
        assert response.status_code == 503
        assert response.json()["message"] == (
            "OpenCost unavailable: OpenCost answer exceeds OPENCOST_MAX_RESPONSE_MB=1"
        )
        # Two days of 1,500 keys (about 2.8 MB) pass the sync's own, larger default bound.
        await synced_until_yesterday("label:app")  # so the backfill is the whole window
        run = await services.sync.run("test", backfill_days=2)
        assert run.status == "succeeded"
        assert run.records == 2
    async with gateway(settings, opencost_sync_max_response_mb=1) as (services, _):
        await make_component(await make_team(), "app-7")
        await synced_until_yesterday("label:app")
        with pytest.raises(OpenCostUnavailable, match=r"OPENCOST_SYNC_MAX_RESPONSE_MB=1$"):
            await services.sync.run("test", backfill_days=2)


@pytest.mark.parametrize(
    "name",
    ["OPENCOST_MAX_CONCURRENCY", "OPENCOST_MAX_RESPONSE_MB", "OPENCOST_SYNC_MAX_RESPONSE_MB"],
)
def test_limits_are_settings(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "0"})
    changed = Settings.from_env({name: "7"})
    field = {
        "OPENCOST_MAX_CONCURRENCY": "opencost_max_concurrency",
        "OPENCOST_MAX_RESPONSE_MB": "opencost_max_response_mb",
        "OPENCOST_SYNC_MAX_RESPONSE_MB": "opencost_sync_max_response_mb",
    }[name]
    assert getattr(changed, field) == 7
    assert getattr(Settings.from_env({}), field) == getattr(Settings(), field)


# -- 4. concurrency to OpenCost is bounded for every caller ---------------------------------------


async def test_graphql_over_100_aggregates_is_bounded(
    client: httpx.AsyncClient, fake: FakeOpenCost, services: Services
) -> None:
    team = await make_team()
    fake.keys[:] = [f"c{i}" for i in range(100)]
    for i in range(100):
        await make_component(team, f"c{i}", opencost_aggregate=f"label:l{i}")
    fake.allocation_delay = 0.02  # requests overlap, so the bound is what limits them
    body = await gql(
        client,
        "{ components(first: 100) { nodes { name actualCost {"
        " sevenDay { totalCost } thirtyDay { totalCost } } } } }",
    )
    assert "errors" not in body, body["errors"]
    nodes = body["data"]["components"]["nodes"]
    assert len(nodes) == 100
    assert all(n["actualCost"]["sevenDay"]["totalCost"] > 0 for n in nodes)
    limit = services.opencost.max_concurrency
    assert limit == 4
    assert 2 <= fake.max_in_flight <= limit
    windows = [r["window"] for r in fake.requests]
    assert windows.count("7d") == windows.count("30d") == 100
    assert len({(r["window"], r["aggregate"]) for r in fake.requests}) == 200
    assert fake.healthz_probes <= 2


async def test_sync_shares_the_bound(settings: Settings, fake: FakeOpenCost) -> None:
    fake.keys[:] = [f"c{i}" for i in range(12)]
    fake.allocation_delay = 0.02
    async with gateway(settings, opencost_max_concurrency=2) as (services, _):
        team = await make_team()
        for i in range(12):
            await make_component(team, f"c{i}", opencost_aggregate=f"label:l{i}")
            await synced_until_yesterday(f"label:l{i}")
        run = await services.sync.run("test", backfill_days=1)
        assert run.opencost_requests == 12
        assert run.records == 12
    assert len(fake.requests) == 12
    assert 1 <= fake.max_in_flight <= 2


async def test_health_check_waits_for_a_slot_within_its_own_bound(
    session: aiohttp.ClientSession,
) -> None:
    fake = FakeOpenCost(keys=["a"])
    slot_taken = asyncio.Event()

    @web.middleware
    async def seen(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/allocation"):
            slot_taken.set()
        return await handler(request)

    app = fake.app()
    app.middlewares.append(seen)
    async with served(app) as url:
        client = OpenCostClient(session, url, max_concurrency=1, health_timeout_s=0.1)
        await client.allocation(window="1d", aggregate="label:app")  # root found
        probes = fake.healthz_probes
        fake.allocation_delay = 3
        slot_taken.clear()
        busy = asyncio.ensure_future(client.allocation(window="7d", aggregate="label:app"))
        await asyncio.wait_for(slot_taken.wait(), 10)  # the one slot is taken
        health = await client.health()
        assert health.reason == "OpenCost timed out after 0.1s"
        assert fake.healthz_probes == probes  # it never got a slot, so never reached OpenCost
        busy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await busy


async def synced_until_yesterday(aggregate: str) -> None:
    """Progress as after a sync yesterday: a backfill then fetches exactly its own days (on an
    empty database it also fetches the first 30)."""
    await SyncProgress.create(aggregate=aggregate, last_day=today() - timedelta(days=1))
