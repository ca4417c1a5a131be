"""Several OpenCost sources (clusters): the configuration, a real sync of three stand-ins (one
answering, one slow, one failing) on both databases, every figure summed across clusters (REST
and GraphQL), the CLUSTER dimension and `clusters` filter, /available per source, and the
migration that assigns existing records to `default`."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise.exceptions import IntegrityError

from finops_gql.app import create_app
from finops_gql.config import ConfigError, Settings
from finops_gql.db.models import Component, CostRecord, SyncProgress
from finops_gql.db.setup import (
    close_db,
    connection,
    init_db,
    migrate,
    placeholders,
    tortoise_config,
)
from finops_gql.dev.opencost_fake import FakeOpenCost, daily_total
from finops_gql.services import Services, open_services
from tests.conftest import gql, make_component, make_team, served, token

NOW = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)
FIRST, LAST = date(2026, 2, 13), date(2026, 3, 14)
DAYS = [FIRST + timedelta(days=i) for i in range(30)]
KEYS = ["checkout", "search", "payments-api"]


# -- configuration ---------------------------------------------------------------------------


def test_sources_parsed_in_order() -> None:
    settings = Settings.from_env(
        {"OPENCOST_SOURCES": " prod-eu=http://opencost.eu:9003/ , prod-us=https://oc.us/model "}
    )
    assert settings.sources() == (
        ("prod-eu", "http://opencost.eu:9003"),
        ("prod-us", "https://oc.us/model"),
    )


def test_opencost_url_alone_is_the_default_source() -> None:
    settings = Settings.from_env({"OPENCOST_URL": "http://opencost:9090/"})
    assert settings.sources() == (("default", "http://opencost:9090"),)
    assert Settings.from_env({}).sources() == (("default", "http://localhost:9090"),)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"OPENCOST_SOURCES": "a=http://a:9003", "OPENCOST_URL": "http://b:9003"},
            "OPENCOST_URL .* or OPENCOST_SOURCES .*not both",
        ),
        ({"OPENCOST_SOURCES": "a=http://a:9003,,b=http://b"}, "OPENCOST_SOURCES: entry 2 is empty"),
        ({"OPENCOST_SOURCES": "a=http://a:9003,"}, "OPENCOST_SOURCES: entry 2 is empty"),
        ({"OPENCOST_SOURCES": "http://a:9003"}, "OPENCOST_SOURCES: entry 1 is not name=url"),
        ({"OPENCOST_SOURCES": "a="}, "OPENCOST_SOURCES: entry 1 is not name=url"),
        (
            {"OPENCOST_SOURCES": "a=http://a:9003,a=http://b:9003"},
            "OPENCOST_SOURCES: source name 'a' is given twice",
        ),
        ({"OPENCOST_SOURCES": "Prod=http://a:9003"}, "OPENCOST_SOURCES: source name 'Prod'"),
        ({"OPENCOST_SOURCES": "-eu=http://a:9003"}, "OPENCOST_SOURCES: source name '-eu'"),
        ({"OPENCOST_SOURCES": f"{'a' * 64}=http://a:9003"}, "OPENCOST_SOURCES: source name"),
        ({"OPENCOST_SOURCES": "a=ftp://a:21"}, "OPENCOST_SOURCES: the URL of 'a' must be http"),
        ({"OPENCOST_SOURCES": "a=http://"}, "OPENCOST_SOURCES: the URL of 'a' must be http"),
        ({"OPENCOST_SOURCES": "a=opencost:9003"}, "OPENCOST_SOURCES: the URL of 'a' must be"),
        ({"OPENCOST_SOURCES": "a=http://a:99999"}, "OPENCOST_SOURCES: the URL of 'a' is malformed"),
        (
            {"OPENCOST_SOURCES": ",".join(f"s{i}=http://s{i}:9003" for i in range(51))},
            "OPENCOST_SOURCES: at most 50 sources, got 51",
        ),
    ],
)
def test_malformed_sources_are_refused_at_start(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_source_url_password_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"OPENCOST_SOURCES": "a=ftp://user:s3cr3t@a:21"})
    assert "s3cr3t" not in str(refused.value)


# -- three stand-in sources through the real services ---------------------------------------


@contextlib.asynccontextmanager
async def gateway(
    database_url: str, fakes: dict[str, FakeOpenCost]
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """The app with one OpenCost source per fake, by name, at NOW."""
    async with contextlib.AsyncExitStack() as stack:
        urls = {name: await stack.enter_async_context(served(f.app())) for name, f in fakes.items()}
        for fake in fakes.values():
            fake.now = NOW
        settings = Settings(
            database_url=database_url,
            opencost_sources=tuple(urls.items()),
            opencost_timeout_s=5,
            jwt_secret="test-secret-that-is-long-enough-for-hs256-0123456789",
            redis_url="redis://127.0.0.1:1",
            sync_retry_backoff_s=0.01,
            rate_limit_points_per_minute=0,
        )
        services = await stack.enter_async_context(open_services(settings, publish_budgets=False))
        from tortoise.contrib.test import truncate_all_models

        await truncate_all_models()
        services.costs.clock = lambda: NOW
        transport = httpx.ASGITransport(app=create_app(settings, services))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://gateway")
        )
        http.headers["Authorization"] = f"Bearer {token(settings)}"
        yield services, http


def expected(key: str, clusters: int = 2) -> float:
    return clusters * sum(daily_total(key, d) for d in DAYS)


async def test_sync_asks_each_source_and_survives_one_down(database_url: str) -> None:
    fakes = {
        "eu": FakeOpenCost(keys=KEYS),
        "us": FakeOpenCost(keys=KEYS, allocation_delay=0.05),  # slow: answers after the others
        "ap": FakeOpenCost(keys=KEYS, fail="500"),  # down for the first run
    }
    async with gateway(database_url, fakes) as (services, http):
        team = await make_team()
        for name in KEYS:
            await make_component(team, name)
        await make_component(team, "by-ns", opencost_aggregate="namespace", opencost_key="x")

        run = await services.sync.run("cli")
        assert run.status == "partial"
        # One request per (source, aggregate), never per component; the failing source's
        # retried ones counted too (1 + SYNC_RETRIES each).
        for name in ("eu", "us"):
            assert sorted(r["aggregate"] for r in fakes[name].requests) == [
                "label:app",
                "namespace",
            ]
        assert len(fakes["ap"].requests) == 2 * 4
        assert run.opencost_requests == 2 + 2 + 8
        failed = sorted((f["source"], f["aggregate"]) for f in run.failed_aggregates or [])
        assert failed == [("ap", "label:app"), ("ap", "namespace")]
        assert "2 of 6 aggregates failed" in (run.error or "")
        assert "ap/label:app: OpenCost answered HTTP 500" in (run.error or "")
        # The answering sources' days are written, each record under its cluster.
        assert run.records == 2 * 3 * 30
        assert await CostRecord.filter(cluster="eu").count() == 90
        assert await CostRecord.filter(cluster="us").count() == 90
        assert await CostRecord.filter(cluster="ap").count() == 0
        progress = {(p.source, p.aggregate) for p in await SyncProgress.all()}
        assert progress == {(s, a) for s in ("eu", "us") for a in ("label:app", "namespace")}
        checkout = await Component.get(name="checkout")
        assert checkout.cost_30d == pytest.approx(expected("checkout"), abs=1e-3)
        runs = await gql(
            http, "{ syncRuns(limit: 1) { status failedAggregates { source aggregate } } }"
        )
        (shown,) = runs["data"]["syncRuns"]
        assert shown["status"] == "partial"
        assert sorted((f["source"], f["aggregate"]) for f in shown["failedAggregates"]) == failed

        # The next run heals exactly the failed source's gap.
        fakes["ap"].fail = None
        before = {name: len(f.requests) for name, f in fakes.items()}
        healed = await services.sync.run("cli")
        assert healed.status == "succeeded"
        assert healed.records == 90
        assert {name: len(f.requests) - before[name] for name, f in fakes.items()} == {
            "eu": 0,
            "us": 0,
            "ap": 2,
        }
        assert await CostRecord.filter(cluster="ap").count() == 90
        checkout = await Component.get(name="checkout")
        assert checkout.cost_30d == pytest.approx(expected("checkout", 3), abs=1e-3)


async def test_every_figure_sums_the_clusters(database_url: str) -> None:
    fakes = {"eu": FakeOpenCost(keys=KEYS), "us": FakeOpenCost(keys=["checkout", "search"])}
    async with gateway(database_url, fakes) as (services, http):
        team = await make_team()
        components = {name: await make_component(team, name) for name in KEYS}
        assert (await services.sync.run("cli")).status == "succeeded"
        checkout = str(components["checkout"].id)

        # REST: history (one row per day, both clusters), top-N, team summary, live figures.
        history = (await http.get(f"/api/v1/cost/components/{checkout}/history")).json()
        assert [row["day"][:10] for row in history][:2] == ["2026-03-14", "2026-03-13"]
        assert len(history) == 30
        assert history[0]["totalCost"] == pytest.approx(2 * daily_total("checkout", LAST), 1e-4)
        top = (await http.get("/api/v1/cost/summary")).json()
        by_id = {row["componentId"]: row["totalCost"] for row in top}
        assert by_id[checkout] == pytest.approx(expected("checkout"), abs=0.01)
        assert by_id[str(components["payments-api"].id)] == pytest.approx(
            expected("payments-api", 1), abs=0.01
        )
        summary = (await http.get(f"/api/v1/cost/teams/{team.id}/summary")).json()
        total = expected("checkout") + expected("search") + expected("payments-api", 1)
        assert summary["totalCost"] == pytest.approx(total, abs=0.02)
        actual = (await http.get(f"/api/v1/cost/components/{checkout}/actual")).json()
        live = [r for f in fakes.values() for r in f.requests if r.get("accumulate") == "true"]
        assert len(live) == 2 * 2  # once per source and window (7d, 30d)
        window = {"window": "7d", "aggregate": "label:app", "accumulate": "true"}
        one_source = fakes["eu"].allocations(window)[0]["checkout"]["totalCost"]
        assert actual["sevenDay"]["totalCost"] == pytest.approx(2 * one_source, abs=1e-4)

        # GraphQL: the series, the platform, breakdowns, the CLUSTER dimension and filter.
        query = """query($id: ID!, $team: ID!) {
          component(id: $id) {
            clusters cost30d
            all: cost(range: {preset: LAST_30_DAYS}) { total }
            eu: cost(range: {preset: LAST_30_DAYS}, clusters: ["eu"]) { total }
            history(limit: 1) { totalCost }
          }
          team(id: $team) {
            cost(range: {preset: LAST_30_DAYS}) { total }
            us: cost(range: {preset: LAST_30_DAYS}, clusters: ["us"]) { total }
            costBreakdown(range: {preset: LAST_30_DAYS}, groupBy: CLUSTER) {
              total nodes { key label total entity { __typename } } }
          }
          platformCost(range: {preset: LAST_30_DAYS}) { total }
          eu: platformCost(range: {preset: LAST_30_DAYS}, clusters: ["eu"]) { total }
          byCluster: costBreakdown(range: {preset: LAST_30_DAYS}, groupBy: CLUSTER) {
            total totalCount nodes { key label total } }
          usTeams: costBreakdown(range: {preset: LAST_30_DAYS}, groupBy: COMPONENT,
                                 clusters: ["us"]) { total totalCount }
          payments: component(id: $payments) { clusters }
        }""".replace("$team: ID!)", "$team: ID!, $payments: ID!)")
        variables = {"id": checkout, "team": str(team.id)}
        variables["payments"] = str(components["payments-api"].id)
        body = await gql(http, query, variables)
        assert "errors" not in body, body
        data = body["data"]
        c = data["component"]
        assert c["clusters"] == ["eu", "us"]
        assert data["payments"]["clusters"] == ["eu"]
        assert c["all"]["total"] == pytest.approx(expected("checkout"), abs=0.01)
        assert c["eu"]["total"] == pytest.approx(expected("checkout", 1), abs=0.01)
        assert c["cost30d"] == pytest.approx(c["all"]["total"], abs=0.01)
        assert c["history"][0]["totalCost"] == pytest.approx(history[0]["totalCost"], abs=1e-4)
        assert data["team"]["cost"]["total"] == pytest.approx(total, abs=0.02)
        us = expected("checkout", 1) + expected("search", 1)
        assert data["team"]["us"]["total"] == pytest.approx(us, abs=0.02)
        assert data["platformCost"]["total"] == pytest.approx(total, abs=0.02)
        assert data["eu"]["total"] == pytest.approx(total - us, abs=0.02)
        groups = {n["key"]: n for n in data["byCluster"]["nodes"]}
        assert set(groups) == {"eu", "us"}
        assert data["byCluster"]["totalCount"] == 2
        assert groups["us"]["label"] == "us"
        assert groups["eu"]["total"] == pytest.approx(total - us, abs=0.02)
        assert groups["us"]["total"] == pytest.approx(us, abs=0.02)
        assert data["byCluster"]["total"] == pytest.approx(total, abs=0.02)
        team_groups = data["team"]["costBreakdown"]["nodes"]
        assert {n["key"] for n in team_groups} == {"eu", "us"}
        assert all(n["entity"] is None for n in team_groups)
        assert data["usTeams"]["totalCount"] == 2  # payments-api has no cost in us
        assert data["usTeams"]["total"] == pytest.approx(us, abs=0.02)

        # The showback export: one row per component, the month's days of both clusters.
        export = await http.get("/api/v1/cost/export.csv", params={"month": "2026-03"})
        assert export.status_code == 200, export.text
        rows = {line.split(",")[2]: line.split(",") for line in export.text.splitlines()[1:]}
        march = [d for d in DAYS if d.month == 3]
        assert float(rows["checkout"][13]) == pytest.approx(
            2 * sum(daily_total("checkout", d) for d in march), abs=1e-3
        )
        assert float(rows["payments-api"][13]) == pytest.approx(
            sum(daily_total("payments-api", d) for d in march), abs=1e-3
        )


async def test_bad_cluster_filters_are_user_errors(database_url: str) -> None:
    async with gateway(database_url, {"eu": FakeOpenCost(keys=KEYS)}) as (_, http):
        for clusters, message in (
            ([], "give at least one cluster name"),
            (["EU"], "'EU' is not a cluster name"),
            ([f"c{i}" for i in range(51)], "at most 50 names"),
        ):
            body = await gql(
                http,
                "query($c: [String!]) { platformCost(range: {preset: LAST_7_DAYS}, clusters: $c) "
                "{ total } }",
                {"c": clusters},
            )
            (error,) = body["errors"]
            assert error["extensions"]["code"] == "BAD_USER_INPUT", error
            assert message in error["message"]
        # An unknown (well-formed) cluster simply has no cost.
        body = await gql(
            http, '{ platformCost(range: {preset: LAST_7_DAYS}, clusters: ["gone"]) { total } }'
        )
        assert body["data"]["platformCost"]["total"] == 0


async def test_available_only_when_every_source_answers(database_url: str) -> None:
    fakes = {"eu": FakeOpenCost(keys=KEYS), "us": FakeOpenCost(keys=KEYS)}
    async with gateway(database_url, fakes) as (_, http):
        response = await http.get("/api/v1/cost/available")
        assert response.content == (
            b'{"available":true,"sources":[{"name":"eu","available":true,"error":null},'
            b'{"name":"us","available":true,"error":null}]}'
        )
        fakes["us"].fail = "down"
        body = (await http.get("/api/v1/cost/available")).json()
        assert list(body) == ["available", "reason", "sources"]  # the legacy keys first
        assert body == {
            "available": False,
            "reason": "us: OpenCost is unhealthy: HTTP 503",
            "sources": [
                {"name": "eu", "available": True, "error": None},
                {"name": "us", "available": False, "error": "OpenCost is unhealthy: HTTP 503"},
            ],
        }
        data = await gql(
            http, "{ opencostAvailability { available reason sources { name available error } } }"
        )
        assert data["data"]["opencostAvailability"] == {
            "available": False,
            "reason": body["reason"],
            "sources": body["sources"],
        }
        # Live figures need every source: a sum missing a cluster would be a wrong total.
        team = await make_team()
        component = await make_component(team, "checkout")
        fakes["us"].fail = "500"
        response = await http.get(f"/api/v1/cost/components/{component.id}/actual")
        assert response.status_code == 503, response.text


# -- the migration ----------------------------------------------------------------------------

MIGRATION_SCHEMA = "clusters_migration"


async def _sql(url: str, sql: str, values: list[Any] | None = None) -> list[dict[str, Any]]:
    await init_db(url)
    try:
        values = values or []
        return await connection().execute_query_dict(sql.format(*placeholders(len(values))), values)
    finally:
        await close_db()


async def test_migration_0016_keeps_records_as_default(database_url: str, tmp_path: Path) -> None:
    from tortoise.migrations.api.migrate import migrate as tortoise_migrate

    postgres = database_url.startswith("postgres")
    if postgres:
        url = f"{database_url}?schema={MIGRATION_SCHEMA}"
        await _sql(database_url, f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE")
        await _sql(database_url, f"CREATE SCHEMA {MIGRATION_SCHEMA}")
    else:
        url = f"sqlite://{tmp_path / 'clusters.sqlite3'}"
    try:
        await tortoise_migrate(config=tortoise_config(url), target="models.0015_system_daily_cost")
        await close_db()
        team, comp = uuid.uuid4(), uuid.uuid4()
        now = datetime(2026, 1, 1, tzinfo=UTC)

        def value(v: Any) -> Any:
            if postgres:
                return v
            return str(v) if isinstance(v, uuid.UUID) else v.isoformat() if v in (now,) else v

        days = [date(2025, 12, 30), date(2025, 12, 31)]
        await _sql(
            url,
            "INSERT INTO team (id, name, slug, created_at, updated_at) VALUES ({}, {}, {}, {}, {})",
            [value(v) for v in (team, "Payments", "payments", now, now)],
        )
        await _sql(
            url,
            "INSERT INTO component (id, name, team_id, opencost_aggregate, cost_30d, "
            "created_at, updated_at) VALUES ({}, {}, {}, {}, {}, {}, {})",
            [value(v) for v in (comp, "checkout", team, "label:app", 3.0, now, now)],
        )
        for day, total in zip(days, (1.25, 1.75), strict=True):
            await _sql(
                url,
                "INSERT INTO cost_record (component_id, day, cpu_cost, ram_cost, pv_cost, "
                "network_cost, gpu_cost, load_balancer_cost, shared_cost, external_cost, "
                "total_cost, currency, synced_at) "
                "VALUES ({}, {}, 0, 0, 0, 0, 0, 0, 0, 0, {}, {}, {})",
                [value(comp), day if postgres else day.isoformat(), total, "USD", value(now)],
            )
        assert (await migrate(url))[0] == "0016_clusters"  # and any later ones
        await close_db()
        rows = await _sql(url, "SELECT day, cluster, total_cost FROM cost_record ORDER BY day")
        assert [(str(r["day"]), r["cluster"], r["total_cost"]) for r in rows] == [
            ("2025-12-30", "default", 1.25),
            ("2025-12-31", "default", 1.75),
        ]
        # The key is (component, day, cluster): another cluster's record of the same day fits,
        # the same cluster's does not.
        insert = (
            "INSERT INTO cost_record (component_id, day, cluster, cpu_cost, ram_cost, pv_cost, "
            "network_cost, gpu_cost, load_balancer_cost, shared_cost, external_cost, "
            "total_cost, currency, synced_at) "
            "VALUES ({}, {}, {}, 0, 0, 0, 0, 0, 0, 0, 0, {}, {}, {})"
        )
        day = days[0] if postgres else days[0].isoformat()
        await _sql(url, insert, [value(comp), day, "prod-eu", 2.0, "USD", value(now)])
        with pytest.raises(IntegrityError):
            await _sql(url, insert, [value(comp), day, "prod-eu", 2.0, "USD", value(now)])
        if postgres:
            index_sql = (
                "SELECT indexname AS name FROM pg_indexes WHERE schemaname = current_schema()"
            )
        else:
            index_sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
        names = {r["name"] for r in await _sql(url, index_sql)}
        assert "cost_record_day_idx" in names, names
    finally:
        await close_db()
        if postgres:
            await _sql(database_url, f"DROP SCHEMA IF EXISTS {MIGRATION_SCHEMA} CASCADE")
