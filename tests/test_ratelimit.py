"""The per-principal budget (RATE_LIMIT_POINTS_PER_MINUTE) in a real Redis (REDIS_URL_TEST): REST
and GraphQL share it, app instances share it, principals do not; it refills; Redis down fails open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from finops_gql.app import create_app
from finops_gql.auth import mint_token
from finops_gql.config import ConfigError, Settings
from finops_gql.metrics import REGISTRY
from finops_gql.ratelimit import KEY_PREFIX, RateLimiter, budget_key
from finops_gql.services import Services
from tests.conftest import REDIS_URL, need

pytestmark = pytest.mark.usefixtures("services")

BUDGET = 10
WAIT = 360  # seconds for one point to come back
REST = "/api/v1/cost/summary"  # answered from the database alone


def page(n: int) -> str:
    """A document whose cost is n + 1 (the connection, and n nodes)."""
    return f"query Page {{ components(first: {n}) {{ nodes {{ name }} }} }}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.with_(
        redis_url=need(REDIS_URL, "REDIS_URL_TEST"),
        rate_limit_points_per_minute=BUDGET,
        # 10 points an hour: none comes back while a test counts (test_the_budget_comes_back
        # shortens it instead).
        rate_limit_period_s=3600,
        # These tests count points: a Redis call slower than the default 0.1 s on a loaded
        # machine would fail open and lose a count (the outage tests set their own bound).
        rate_limit_timeout_s=5,
    )


@contextlib.asynccontextmanager
async def app_client(
    settings: Settings, services: Services, subject: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """One API replica's client, as a principal of its own (a fresh subject unless given)."""
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        token = mint_token(settings, subject or f"rate-{uuid.uuid4()}", [], timedelta(hours=1))
        http.headers["Authorization"] = f"Bearer {token}"
        yield http


@contextlib.asynccontextmanager
async def replica(settings: Settings, services: Services) -> AsyncIterator[Services]:
    """Another process's services: the same database, its own limiter and Redis connections."""
    limiter = RateLimiter.from_settings(settings)
    try:
        yield dataclasses.replace(services, ratelimit=limiter)
    finally:
        if limiter is not None:
            await limiter.aclose()


async def post(http: httpx.AsyncClient, query: str) -> httpx.Response:
    return await http.post("/graphql", json={"query": query})


async def gql_body(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    response = await post(http, query)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_rest_limited(response: httpx.Response, retry_at_most: int) -> dict[str, Any]:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    body: dict[str, Any] = response.json()
    assert list(body) == ["statusCode", "message", "error"]
    assert body["statusCode"] == 429
    assert body["error"] == "Too Many Requests"
    assert "rate limit exceeded" in body["message"]
    assert "RATE_LIMIT_POINTS_PER_MINUTE" in body["message"]
    assert 1 <= int(response.headers["retry-after"]) <= retry_at_most
    assert response.headers["x-ratelimit-remaining"] == "0"
    return body


def assert_graphql_limited(response: httpx.Response) -> dict[str, Any]:
    # HTTP 200, as GitHub and Shopify answer it: the refusal is a GraphQL error like
    # QUERY_TOO_COMPLEX, with the time to wait in its extensions and in Retry-After.
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert "rate limit exceeded" in error["message"]
    assert error["extensions"]["retryAfter"] >= 1
    assert response.headers["retry-after"] == str(error["extensions"]["retryAfter"])
    datetime.fromisoformat(error["extensions"]["resetAt"])
    return body


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- REST ----------------------------------------------------------------------------------------


async def test_rest_calls_cost_one_point_until_429(settings: Settings, services: Services) -> None:
    limited_before = metric("finops_gql_rate_limited_total", api="rest")
    async with app_client(settings, services) as http:
        for left in range(BUDGET - 1, -1, -1):
            response = await http.get(REST)
            assert response.status_code == 200, response.text
            assert response.headers["x-ratelimit-limit"] == str(BUDGET)
            assert response.headers["x-ratelimit-remaining"] == str(left)
            reset = int(response.headers["x-ratelimit-reset"])
            assert time.time() < reset <= time.time() + 3601
        # A point comes back every 6 minutes (10 an hour): that is the wait announced.
        assert_rest_limited(await http.get(REST), retry_at_most=WAIT)
        # A refused call is not charged: the wait does not grow.
        assert_rest_limited(await http.get(REST), retry_at_most=WAIT)
        # Other routes (an unknown one too: it still cost the server work) share the same budget.
        assert_rest_limited(await http.get("/api/v1/cost/available"), retry_at_most=WAIT)
        assert_rest_limited(await http.get("/api/v1/nope"), retry_at_most=WAIT)
    assert metric("finops_gql_rate_limited_total", api="rest") == limited_before + 4


# -- GraphQL -------------------------------------------------------------------------------------


async def test_graphql_is_charged_its_cost_and_reports_what_remains(
    settings: Settings, services: Services
) -> None:
    hundred = settings.with_(rate_limit_points_per_minute=100)
    async with (
        replica(hundred, services) as replica_services,
        app_client(hundred, replica_services) as http,
    ):
        first = await gql_body(http, page(20))
        assert "errors" not in first, first
        cost = first["extensions"]["cost"]
        assert cost["requested"] == 21
        assert cost["limit"] == 50_000
        assert cost["remaining"] == 100 - 21
        reset = datetime.fromisoformat(cost["resetAt"])
        assert datetime.now(UTC) < reset <= datetime.now(UTC) + timedelta(seconds=3601)
        second = await gql_body(http, page(40))
        assert second["extensions"]["cost"]["remaining"] == 100 - 21 - 41
        # 38 left: a document of 41 does not fit, and is not run.
        refused = await post(http, page(40))
        body = assert_graphql_limited(refused)
        assert body["extensions"]["cost"]["requested"] == 41
        assert body["extensions"]["cost"]["remaining"] == 38
        assert "costs 41 points and 38" in body["errors"][0]["message"]
        # A smaller one still fits: refusals charge nothing.
        fits = await gql_body(http, page(36))
        assert "errors" not in fits
        assert fits["extensions"]["cost"]["remaining"] == 1


async def test_every_operation_costs_at_least_one_point(
    settings: Settings, services: Services
) -> None:
    async with app_client(settings.with_(graphql_max_cost=30), services) as http:
        free = await gql_body(http, "query Name { __typename }")
        assert free["extensions"]["cost"]["requested"] == 0
        assert free["extensions"]["cost"]["remaining"] == BUDGET - 1
        # Refused as too complex: 1 point, whatever its size; the refusal says so, not "wait".
        complex_ = await gql_body(http, page(100))
        assert complex_["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert complex_["extensions"]["cost"]["remaining"] == BUDGET - 2
        # Never executed (invalid): 1 point too.
        invalid = await gql_body(http, "query Bad { nope }")
        assert invalid["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert invalid["extensions"]["cost"] == {
            "requested": 0,
            "limit": 30,
            "remaining": BUDGET - 3,
            "resetAt": invalid["extensions"]["cost"]["resetAt"],
        }


async def test_an_operation_dearer_than_the_whole_budget_needs_a_full_bucket(
    settings: Settings, services: Services
) -> None:
    limited_before = metric("finops_gql_rate_limited_total", api="graphql")
    subject = f"big-{uuid.uuid4()}"
    async with app_client(settings, services, subject) as http:
        # 41 points asked of a budget of 10: charged the whole budget, never refused forever.
        big = await gql_body(http, page(40))
        assert "errors" not in big, big
        assert big["extensions"]["cost"]["requested"] == 41
        assert big["extensions"]["cost"]["remaining"] == 0
        refused = assert_graphql_limited(await post(http, page(1)))
        # Two points must come back for a document costing 2.
        assert WAIT < refused["errors"][0]["extensions"]["retryAfter"] <= 2 * WAIT
        assert_graphql_limited(await post(http, page(40)))
        # Still too complex first: no retry makes it fit.
        small_max = settings.with_(graphql_max_cost=5)
        async with app_client(small_max, services, subject) as other:
            complex_ = await gql_body(other, page(40))
            assert complex_["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert metric("finops_gql_rate_limited_total", api="graphql") == limited_before + 2


# -- sharing -------------------------------------------------------------------------------------


async def test_rest_and_graphql_share_one_budget(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as http:
        spent = await gql_body(http, page(7))  # 8 points
        assert spent["extensions"]["cost"]["remaining"] == 2
        response = await http.get(REST)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == "1"
        assert (await gql_body(http, "query Name { __typename }"))["extensions"]["cost"][
            "remaining"
        ] == 0
        assert_rest_limited(await http.get(REST), retry_at_most=WAIT)
        assert_graphql_limited(await post(http, "query Name { __typename }"))


async def test_two_app_instances_share_a_principals_budget(
    settings: Settings, services: Services
) -> None:
    subject = f"shared-{uuid.uuid4()}"
    async with (
        replica(settings, services) as other_services,
        app_client(settings, services, subject) as one,
        app_client(settings, other_services, subject) as two,
    ):
        assert other_services.ratelimit is not services.ratelimit
        remaining = []
        for http in (one, two) * (BUDGET // 2):
            response = await http.get(REST)
            assert response.status_code == 200
            remaining.append(int(response.headers["x-ratelimit-remaining"]))
        assert remaining == list(range(BUDGET - 1, -1, -1))
        assert_rest_limited(await one.get(REST), retry_at_most=WAIT)
        assert_rest_limited(await two.get(REST), retry_at_most=WAIT)
        assert_graphql_limited(await post(two, "query Name { __typename }"))


async def test_principals_have_budgets_of_their_own(settings: Settings, services: Services) -> None:
    async with app_client(settings, services) as spender, app_client(settings, services) as other:
        await gql_body(spender, page(40))
        assert_rest_limited(await spender.get(REST), retry_at_most=WAIT)
        response = await other.get(REST)
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining"] == str(BUDGET - 1)


async def test_concurrent_requests_are_charged_exactly(
    settings: Settings, services: Services
) -> None:
    """The check and the charge are one atomic script: 30 requests at once, 10 pass."""
    subject = f"burst-{uuid.uuid4()}"
    async with (
        replica(settings, services) as one_services,
        replica(settings, services) as two_services,
        app_client(settings, one_services, subject) as one,
        app_client(settings, two_services, subject) as two,
    ):
        responses = await asyncio.gather(*(http.get(REST) for http in (one, two) * 15))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * BUDGET + [429] * (30 - BUDGET)


# -- refill --------------------------------------------------------------------------------------


async def test_the_budget_comes_back_over_the_period(
    settings: Settings, services: Services
) -> None:
    # 10 points per 0.5 s: one comes back every 50 ms.
    fast = settings.with_(rate_limit_period_s=0.5)
    async with replica(fast, services) as fast_services, app_client(fast, fast_services) as http:
        await gql_body(http, page(40))
        refused = assert_graphql_limited(await post(http, page(3)))  # 4 points: 200 ms away
        assert refused["errors"][0]["extensions"]["retryAfter"] == 1  # whole seconds, at least 1
        reset = datetime.fromisoformat(refused["extensions"]["cost"]["resetAt"])
        assert reset <= datetime.now(UTC) + timedelta(seconds=0.5)
        await asyncio.sleep(0.25)
        fits = await gql_body(http, page(3))
        assert "errors" not in fits, fits
        assert 0 <= fits["extensions"]["cost"]["remaining"] <= BUDGET - 4
        await asyncio.sleep(0.55)  # a whole period: the whole budget
        response = await http.get(REST)
        assert response.headers["x-ratelimit-remaining"] == str(BUDGET - 1)


async def test_the_key_is_a_hash_of_the_subject_and_expires(
    settings: Settings, services: Services
) -> None:
    subject = f"someone@example.com/{uuid.uuid4()}"
    async with app_client(settings, services, subject) as http:
        assert (await http.get(REST)).status_code == 200
    redis = Redis.from_url(need(REDIS_URL, "REDIS_URL_TEST"))
    try:
        key = budget_key(subject)
        assert key.startswith(KEY_PREFIX)
        assert len(key) == len(KEY_PREFIX) + 32
        assert subject not in key
        ttl_ms = await redis.pttl(key)
        # One point's worth: the key is gone once the bucket is full again.
        assert 0 < ttl_ms <= WAIT * 1000 + 1
    finally:
        await redis.aclose()


# -- never limited -------------------------------------------------------------------------------


async def test_health_metrics_and_the_ide_page_are_never_limited(
    settings: Settings, services: Services
) -> None:
    async with app_client(settings, services) as http:
        await gql_body(http, page(40))
        assert_rest_limited(await http.get(REST), retry_at_most=WAIT)
        for _ in range(3):
            for path in ("/healthz", "/readyz", "/metrics"):
                response = await http.get(path)
                assert response.status_code == 200, (path, response.text)
                assert "x-ratelimit-remaining" not in response.headers
            ide = await http.get("/graphql", headers={"Accept": "text/html"})
            assert ide.status_code == 200
        http.headers.pop("Authorization")
        assert (await http.get(REST)).status_code == 401  # refused by auth, not by the limiter


async def test_zero_turns_the_limiter_off(settings: Settings, services: Services) -> None:
    off = settings.with_(rate_limit_points_per_minute=0)
    assert RateLimiter.from_settings(off) is None
    async with (
        replica(off, services) as off_services,
        app_client(off, off_services) as http,
    ):
        assert off_services.ratelimit is None
        for _ in range(BUDGET + 2):
            response = await http.get(REST)
            assert response.status_code == 200
            assert "x-ratelimit-remaining" not in response.headers
        body = await gql_body(http, page(40))
        assert body["extensions"]["cost"] == {"requested": 41, "limit": 50_000}


# -- Redis down ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def silent_redis() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: Redis hung, not down."""
    held: list[asyncio.StreamWriter] = []

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("failure", ["refused", "hung"])
async def test_redis_unavailable_fails_open_with_a_metric(
    settings: Settings, services: Services, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if failure == "hung":
            url = await stack.enter_async_context(silent_redis())
        else:
            url = "redis://127.0.0.1:1/0"  # nothing listens there: connection refused
        down = settings.with_(redis_url=url, rate_limit_timeout_s=0.05)
        down_services = await stack.enter_async_context(replica(down, services))
        http = await stack.enter_async_context(app_client(down, down_services))
        unavailable = metric("finops_gql_rate_limit_fail_open_total", reason="unavailable")
        backoff = metric("finops_gql_rate_limit_fail_open_total", reason="backoff")
        caplog.set_level(logging.WARNING, logger="finops_gql.ratelimit")
        started = time.perf_counter()
        response = await http.get(REST)
        assert response.status_code == 200, response.text
        assert "x-ratelimit-remaining" not in response.headers
        # Within the bound, and the next requests do not wait for Redis at all.
        assert time.perf_counter() - started < 1.0
        for _ in range(BUDGET + 2):
            assert (await http.get(REST)).status_code == 200
        body = await gql_body(http, page(40))
        assert "errors" not in body
        assert body["extensions"]["cost"] == {"requested": 41, "limit": 50_000}
    # Every request let through unchecked is counted: asked and failed, or not asked (Redis
    # failed less than a second before; on a slow machine it may be asked again).
    asked = metric("finops_gql_rate_limit_fail_open_total", reason="unavailable") - unavailable
    skipped = metric("finops_gql_rate_limit_fail_open_total", reason="backoff") - backoff
    assert asked >= 1
    assert asked + skipped == 1 + BUDGET + 3
    warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(warnings) == 1, warnings


@contextlib.asynccontextmanager
async def forwarder(port: int, target: str) -> AsyncIterator[None]:
    """Redis coming back on `port`: a TCP relay to the real one."""
    parts = urlsplit(target)
    tasks: set[asyncio.Task[None]] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            parts.hostname, parts.port or 6379
        )
        for task in (pipe(reader, upstream_writer), pipe(upstream_reader, writer)):
            tasks.add(asyncio.create_task(task))

    server = await asyncio.start_server(relay, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_the_warning_is_rate_limited_and_redis_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = need(REDIS_URL, "REDIS_URL_TEST")
    port = free_port()
    now = [0.0]
    limiter = RateLimiter(
        f"redis://127.0.0.1:{port}{urlsplit(real).path}", 10, timeout_s=0.5, clock=lambda: now[0]
    )
    caplog.set_level(logging.INFO, logger="finops_gql.ratelimit")
    subject = f"back-{uuid.uuid4()}"
    try:
        assert await limiter.charge(subject, 1) is None
        assert await limiter.charge(subject, 1) is None  # within the backoff: not asked
        now[0] = 2.0
        assert await limiter.charge(subject, 1) is None  # asked again, failed: no new warning
        now[0] = 70.0
        assert await limiter.charge(subject, 1) is None
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 2
        assert "ConnectionError" in warnings[0]
        assert "3 unchecked since the last warning" in warnings[1]
        async with forwarder(port, real):
            # Still within the backoff of the last failure: not asked yet.
            assert await limiter.charge(subject, 3) is None
            now[0] = 72.0
            decision = await limiter.charge(subject, 3)
            assert decision is not None
            assert decision.allowed
            assert decision.remaining == 7
    finally:
        await limiter.aclose()
    assert [r for r in caplog.records if "answers again" in r.getMessage()]


async def test_a_burst_queues_for_connections_and_never_fails_open() -> None:
    """More requests at once than the limiter has Redis connections wait for their turn (outside
    the timeout), and every one is charged: a burst must not switch the limiter off for all.
    One connection, 1,500 charges at once: queued inside the 0.25 s bound, the last ones would
    wait far longer than that (1,500 round trips) and be let through unchecked."""
    real = need(REDIS_URL, "REDIS_URL_TEST")
    limiter = RateLimiter(real, 1000, timeout_s=0.25, max_connections=1)
    before = metric("finops_gql_rate_limit_fail_open_total", reason="unavailable") + metric(
        "finops_gql_rate_limit_fail_open_total", reason="backoff"
    )
    subject = f"crowd-{uuid.uuid4()}"
    started = time.perf_counter()
    try:
        decisions = await asyncio.gather(*(limiter.charge(subject, 1) for _ in range(1500)))
    finally:
        elapsed = time.perf_counter() - started
        await limiter.aclose()
    after = metric("finops_gql_rate_limit_fail_open_total", reason="unavailable") + metric(
        "finops_gql_rate_limit_fail_open_total", reason="backoff"
    )
    assert after == before
    assert all(d is not None for d in decisions)
    # The whole budget, and what came back while the burst ran (1,000 a minute).
    refilled = elapsed * 1000 / 60
    assert 1000 <= sum(1 for d in decisions if d is not None and d.allowed) <= 1001 + refilled


# -- settings ------------------------------------------------------------------------------------


def test_settings_read_and_refuse_bad_values() -> None:
    assert Settings.from_env({}).rate_limit_points_per_minute == 5000
    assert Settings.from_env({}).rate_limit_timeout_s == 0.1
    read = Settings.from_env(
        {"RATE_LIMIT_POINTS_PER_MINUTE": "0", "RATE_LIMIT_TIMEOUT_SECONDS": "0.25"}
    )
    assert read.rate_limit_points_per_minute == 0
    assert read.rate_limit_timeout_s == 0.25
    for name, value in (
        ("RATE_LIMIT_POINTS_PER_MINUTE", "-1"),
        ("RATE_LIMIT_POINTS_PER_MINUTE", "lots"),
        ("RATE_LIMIT_TIMEOUT_SECONDS", "0"),
        ("RATE_LIMIT_TIMEOUT_SECONDS", "10"),
        ("RATE_LIMIT_TIMEOUT_SECONDS", "nan"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
