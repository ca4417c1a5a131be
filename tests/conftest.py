"""Fixtures: the real app over ASGITransport, real SQLite and PostgreSQL, OpenCost faked over HTTP.

Environment:
- DATABASE_URL_TEST: a PostgreSQL URL; every database test then runs on SQLite AND PostgreSQL.
- REDIS_URL_TEST: a Redis URL for the worker tests.
Unset, those tests are skipped with a reason; with CI set, a missing one fails the run instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestServer
from arq.worker import Worker
from tortoise.backends.base.executor import EXECUTOR_CACHE
from tortoise.contrib.test import truncate_all_models

from finops_gql.app import create_app
from finops_gql.auth import mint_token
from finops_gql.config import Settings
from finops_gql.db.models import Component, CostRecord, Team
from finops_gql.db.setup import close_db, connection, init_db, migrate
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.events import on_wire
from finops_gql.observability import OPERATION_LABELS
from finops_gql.services import Services, open_services
from finops_gql.worker import worker_settings

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
FIXTURES = Path(__file__).parent / "fixtures"
IN_CI = bool(os.environ.get("CI"))
# pytest-xdist (scripts/test passes `-n`) names each worker process gw0, gw1, ...; each gets its own
# PostgreSQL database and Redis database, so tests in different workers never meet.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(WORKER.removeprefix("gw")) if WORKER.startswith("gw") else 0


def for_worker(url: str | None) -> str | None:
    """This worker's own database: `<name>_gwN` on PostgreSQL (created on first use), the Redis
    database N below the one named (15 -> 15, 14, ...)."""
    if url is None or not WORKER:
        return url
    parts = urlsplit(url)
    if parts.scheme.startswith("redis"):
        base = int(parts.path.strip("/") or 0)
        return urlunsplit(parts._replace(path=f"/{(base - WORKER_INDEX) % 16}"))
    return urlunsplit(parts._replace(path=f"{parts.path}_{WORKER}"))


PG_URL = for_worker(os.environ.get("DATABASE_URL_TEST"))
REDIS_URL = for_worker(os.environ.get("REDIS_URL_TEST"))
# Pub/sub channels ignore the Redis database: each test process (and every gateway or worker it
# starts as a subprocess, which inherits the environment) publishes under its own prefix, so
# parallel runs and xdist workers never hear each other's events.
CHANNEL_PREFIX = f"finops_gql_test{os.getpid()}"
os.environ["REDIS_CHANNEL_PREFIX"] = CHANNEL_PREFIX


def wire(channel: str) -> str:
    """A logical channel (finops_gql/events.py) as this test process's Redis carries it."""
    return on_wire(channel, CHANNEL_PREFIX)


def need(value: str | None, name: str) -> str:
    if value:
        return value
    if IN_CI:
        pytest.fail(f"{name} is not set, and CI must not skip these tests")
    pytest.skip(f"{name} is not set")


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A freshly migrated database per backend, shared by the session (tests truncate)."""
    # Tortoise caches INSERT statements per connection name, not per dialect: switching backend
    # inside one process would reuse SQLite's `?` placeholders on asyncpg.
    EXECUTOR_CACHE.clear()
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    else:
        url = need(PG_URL, "DATABASE_URL_TEST")
        if WORKER:
            await create_database(url)
        await init_db(url)
        await connection().execute_script(
            "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;"
        )
        await close_db()
    await migrate(url)
    await close_db()
    return url


async def create_database(url: str) -> None:
    """Create the PostgreSQL database `url` names unless it exists (connecting to `postgres`)."""
    parts = urlsplit(url)
    name = parts.path.strip("/")
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another worker's race
                await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """Serve an aiohttp app on a free loopback port; yields its base URL (no trailing slash)."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@pytest.fixture
async def opencost() -> AsyncIterator[tuple[FakeOpenCost, str]]:
    fake = FakeOpenCost(keys=["checkout", "payments-api", "search"])
    async with served(fake.app()) as url:
        yield fake, url


@pytest.fixture
def fake(opencost: tuple[FakeOpenCost, str]) -> FakeOpenCost:
    return opencost[0]


@pytest.fixture
def settings(database_url: str, opencost: tuple[FakeOpenCost, str]) -> Settings:
    return Settings(
        database_url=database_url,
        opencost_url=opencost[1],
        opencost_timeout_s=5,
        opencost_cache_ttl_s=30,
        jwt_secret=TEST_SECRET,
        redis_url=REDIS_URL or "redis://127.0.0.1:1",
        redis_channel_prefix=CHANNEL_PREFIX,
        sync_retry_backoff_s=0.01,
        # Off: tests share one subject and one Redis; tests/test_ratelimit.py turns it on.
        rate_limit_points_per_minute=0,
        # Off: factories write rows directly, without the data version a writer bumps;
        # tests/test_answercache.py turns it on.
        graphql_answer_cache_mb=0,
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings, publish_budgets=False) as opened:
        await truncate_all_models()
        yield opened


@pytest.fixture
async def client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        http.headers["Authorization"] = f"Bearer {token(settings)}"
        yield http


def token(settings: Settings, *roles: str, ttl: timedelta = timedelta(hours=1)) -> str:
    return mint_token(settings, "tester", list(roles), ttl)


async def gql(
    client: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def graphql_bodies(client: httpx.AsyncClient, requests: list[dict[str, Any]]) -> list[bytes]:
    """The body of each GraphQL request, in order (each must answer HTTP 200)."""
    bodies = []
    for request in requests:
        response = await client.post("/graphql", json=request)
        assert response.status_code == 200, response.text
        bodies.append(response.content)
    return bodies


# -- factories -----------------------------------------------------------------------------------


async def make_team(slug: str = "payments", name: str | None = None) -> Team:
    return await Team.create(id=uuid.uuid4(), slug=slug, name=name or slug.title())


async def make_component(
    team: Team, name: str = "checkout", budget_usd: float | None = None, **extra: Any
) -> Component:
    return await Component.create(
        id=uuid.uuid4(), name=name, team=team, budget_usd=budget_usd, **extra
    )


async def sync_catalog(services: Services, fake: FakeOpenCost, now: datetime) -> None:
    """Two components, `checkout` and `search`, that the fake OpenCost reports, with the
    service's and the fake's clocks at `now`: what the sync's write tests sync."""
    services.costs.clock = lambda: now
    fake.now = now
    fake.keys = ["checkout", "search"]
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search")


def today() -> date:
    return datetime.now(UTC).date()


async def make_records(
    component: Component, totals: list[float], end: date | None = None
) -> list[CostRecord]:
    """Daily records ending yesterday (newest last in `totals`)."""
    end = end or today() - timedelta(days=1)
    synced = datetime.now(UTC).replace(microsecond=0)
    records = []
    for offset, total in enumerate(reversed(totals)):
        records.append(
            await CostRecord.create(
                component=component,
                day=end - timedelta(days=offset),
                cpu_cost=round(total * 0.6, 5),
                ram_cost=round(total * 0.3, 5),
                pv_cost=round(total * 0.1, 5),
                total_cost=total,
                currency="USD",
                synced_at=synced,
            )
        )
    return records


class QueryCounter(logging.Handler):
    """Counts SQL statements Tortoise sends (it logs each one at DEBUG)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.statements.append(record.getMessage())


@pytest.fixture
def sql_counter() -> Iterator[QueryCounter]:
    logger = logging.getLogger("tortoise.db_client")
    counter = QueryCounter()
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(previous)


@pytest.fixture
async def redis_url(settings: Settings) -> str:
    """REDIS_URL_TEST, its database flushed."""
    url = need(REDIS_URL, "REDIS_URL_TEST")
    client = aioredis.from_url(url)
    await client.flushdb()
    await client.aclose()
    return url


async def run_worker(settings: Settings) -> Worker:
    """A real arq worker in burst mode: runs the queued jobs, then returns; none may fail."""
    options: dict[str, Any] = worker_settings(settings)
    options["handle_signals"] = False
    worker = Worker(**options, burst=True, poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await worker.close()
        # The worker opened and closed the process-wide Tortoise connections as in production;
        # reopen them for the rest of the test.
        await init_db(settings.database_url)
    assert worker.jobs_failed == 0
    return worker


@pytest.fixture(autouse=True)
def _fresh_operation_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    """/metrics' bound on GraphQL operation names is process-wide: each test starts with none
    seen, so the names other tests (or a fuzzer) used cannot push its own into `other`."""
    monkeypatch.setattr(OPERATION_LABELS, "seen", set())
