#!/usr/bin/env python3
"""Benchmark harness: read latency and throughput of the real server, and the sync.

    .venv/bin/python scripts/bench.py                       # default scale, SQLite
    .venv/bin/python scripts/bench.py --db postgres         # PostgreSQL (database finops_bench)
    .venv/bin/python scripts/bench.py --db postgres --db-name mine  # databases mine, mine_sync
    .venv/bin/python scripts/bench.py --smoke               # tiny scale, for CI: checks, no timings

It generates a catalog and cost history (default 200 teams, 10,000 components, 90 days), starts
`finops-gql serve` (uvicorn, production settings) and, from a separate client process, measures
REST and GraphQL reads: p50/p95/p99 at concurrency 1 and throughput at concurrency 32. Every
figure stands beside two references measured in the same run: the database floor (the same
answer from one hand-written SQL query through the same driver) and the framework ceiling (a bare
Starlette route returning a JSON constant under the same uvicorn settings and the same number of
worker processes, --workers, default the usable cores). The server measured for those rows runs
without the answer cache (GRAPHQL_ANSWER_CACHE_MB=0), so repeated requests measure execution; a
second server with the cache on gives the `_hit` rows (a repeated query answered from it). It then
times the sync (30-day backfill and a 1-day run) against the local OpenCost stand-in, and reads the
server's peak RSS. Output: a table on stdout and JSON under bench-results/.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from finops_gql.costs import explorer
from finops_gql.costs.sync import RECORD_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results"
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"

# -- the two reference servers and the load client run as subprocesses of this same file ---------


def ceiling_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    payload = {"componentId": str(uuid.UUID(int=1)), "totalCost": 71.3, "currency": "USD"}

    async def constant(request: Any) -> JSONResponse:
        return JSONResponse([payload] * 10)

    return Starlette(routes=[Route("/constant", constant)])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def load(spec: dict[str, Any]) -> dict[str, Any]:
    """Latency at concurrency 1, then throughput at concurrency N, for one request."""
    import aiohttp

    method, url, body = spec["method"], spec["url"], spec.get("body")
    headers = spec.get("headers", {})
    errors = 0

    connector = aiohttp.TCPConnector(limit=spec["concurrency"])
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def once() -> float:
            nonlocal errors
            started = time.perf_counter()
            async with session.request(method, url, json=body) as response:
                payload = await response.read()
                if response.status != 200 or (body is not None and b'"errors"' in payload):
                    errors += 1
            return time.perf_counter() - started

        for _ in range(spec["warmup"]):
            await once()
        latencies = [await once() for _ in range(spec["requests"])]
        remaining = spec["throughput_requests"]

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await once()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
        elapsed = time.perf_counter() - started
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "rps": spec["throughput_requests"] / elapsed,
        "errors": errors,
    }


def run_subcommand(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """This script's `name` subcommand in a process of its own; its JSON answer."""
    out = subprocess.run(
        [sys.executable, __file__, name, json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    return run_subcommand("load", spec)


# -- data generation -----------------------------------------------------------------------------


@dataclass
class Scale:
    teams: int
    components: int
    days: int
    big_team: int  # components in team 0, for the team-summary measurement
    requests: int
    throughput_requests: int
    warmup: int


DEFAULT = Scale(200, 10_000, 90, 500, 300, 2_000, 30)
SMOKE = Scale(5, 60, 35, 20, 10, 40, 2)


def generate(scale: Scale, seed: int = 7) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(seed)
    teams = [
        (uuid.UUID(int=rng.getrandbits(128), version=4), f"Team {i}", f"team-{i:03d}")
        for i in range(scale.teams)
    ]
    components = []
    for i in range(scale.components):
        team = teams[0] if i < scale.big_team else teams[1 + i % (scale.teams - 1)]
        budget = round(rng.uniform(30, 150), 2) if i % 3 == 0 else None
        components.append(
            (uuid.UUID(int=rng.getrandbits(128), version=4), f"svc-{i:05d}", team[0], budget)
        )
    return teams, components


def catalog_rollups(
    teams: list[tuple[Any, ...]], components: list[tuple[Any, ...]]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[Any, Any]]:
    """Domains, systems and each component's system, as a Backstage catalog has them: every team
    owns two systems holding its components, one component in ten is in no system, 20 domains
    hold the systems but one system in ten is in none (the SYSTEM/DOMAIN breakdowns' data)."""
    rng = random.Random(11)
    domains = [
        (uuid.UUID(int=rng.getrandbits(128), version=4), f"Domain {i}", f"domain-{i:02d}")
        for i in range(20)
    ]
    systems = []
    for t, team in enumerate(teams):
        for half in range(2):
            k = 2 * t + half
            domain = None if k % 10 == 0 else domains[k % len(domains)][0]
            sid = uuid.UUID(int=rng.getrandbits(128), version=4)
            systems.append((sid, f"System {k}", f"system-{k:03d}", domain, team[0]))
    owned: dict[Any, list[Any]] = {}
    for system in systems:
        owned.setdefault(system[4], []).append(system[0])
    placed = {
        cid: None if i % 10 == 9 else owned[team_id][i % 2]
        for i, (cid, _, team_id, _) in enumerate(components)
    }
    return domains, systems, placed


def source_names(sources: int) -> list[str]:
    """The stand-in sources' names: OPENCOST_URL's `default` alone, else c0, c1, ..."""
    return ["default"] if sources == 1 else [f"c{i}" for i in range(sources)]


def record_rows(
    components: list[tuple[Any, ...]], days: int, end: date, synced: datetime, sources: int = 1
) -> list[tuple[Any, ...]]:
    """Each component's days, its records in one cluster: component i runs in source i mod N,
    so N sources hold the same components and rows as one."""
    from finops_gql.dev.opencost_fake import daily_total

    names = source_names(sources)
    rows = []
    for i, (cid, name, _, _) in enumerate(components):
        cluster = names[i % sources]
        for offset in range(days):
            day = end - timedelta(days=offset)
            total = round(daily_total(name, day), 5)
            rows.append(
                (
                    cid,
                    day,
                    cluster,
                    round(total * 0.55, 5),
                    round(total * 0.3, 5),
                    round(total * 0.1, 5),
                    round(total * 0.05, 5),
                    0.0,
                    0.0,
                    0.0,
                    0.0,
                    total,
                    "USD",
                    synced,
                )
            )
    return rows


UNMAPPED_KEYS = 50  # OpenCost keys no component matches, every day (platformCost.unmappedKeys)
COVERAGE_COLS = [
    "source",
    "aggregate",
    "day",
    "mapped_cost",
    "unmapped_cost",
    "unallocated_cost",
    "idle_cost",
    "unmounted_cost",
]
UNMAPPED_COLS = ["source", "aggregate", "key", "day", *explorer.COLUMNS]


def coverage_rows(
    records: list[tuple[Any, ...]],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the sync keeps beside the records (costs/coverage.py), for the coverage scenario: per
    day one label:app view (mapped: the records' total; UNMAPPED_KEYS unmapped keys; fixed
    unallocated, idle and unmounted cost) and the unmapped keys' rows."""
    from finops_gql.dev.opencost_fake import daily_total

    mapped: dict[date, float] = {}
    for record in records:
        mapped[record[1]] = mapped.get(record[1], 0.0) + record[10]
    daily, unmapped = [], []
    for day, total in sorted(mapped.items()):
        keys = [
            (f"legacy-{i:02d}", round(daily_total(f"legacy-{i:02d}", day), 5))
            for i in range(UNMAPPED_KEYS)
        ]
        for key, cost in keys:
            unmapped.append(
                ("default", "label:app", key, day, cost, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, cost)
            )
        daily.append(
            ("default", "label:app", day, total, sum(c for _, c in keys), 40.0, 500.0, 2.0)
        )
    return daily, unmapped


COMPONENT_COLS = "id, name, team_id, budget_usd, opencost_aggregate, opencost_key, cost_30d, created_at, updated_at, system_id"
# Column order of record_rows(): the sync's own upsert order.
RECORD_COLS = RECORD_COLUMNS


def sqlite_ts(value: datetime) -> str:
    return value.isoformat(sep=" ")  # as Tortoise writes DatetimeField on SQLite


async def load_data(
    url: str,
    teams: list[Any],
    components: list[Any],
    records: list[Any],
    rollups: tuple[list[Any], list[Any], dict[Any, Any]] | None = None,
) -> None:
    now = datetime.now(UTC)
    domains, systems, placed = rollups or ([], [], {})
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        with sqlite3.connect(path) as db:
            db.executemany(
                "INSERT INTO team (id, name, slug, created_at, updated_at) VALUES (?,?,?,?,?)",
                [(str(t[0]), t[1], t[2], sqlite_ts(now), sqlite_ts(now)) for t in teams],
            )
            db.executemany(
                "INSERT INTO domain (id, name, slug, created_at, updated_at) VALUES (?,?,?,?,?)",
                [(str(d[0]), d[1], d[2], sqlite_ts(now), sqlite_ts(now)) for d in domains],
            )
            db.executemany(
                "INSERT INTO system (id, name, slug, domain_id, owner_id, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?)",
                [
                    (
                        str(x[0]),
                        x[1],
                        x[2],
                        x[3] and str(x[3]),
                        str(x[4]),
                        sqlite_ts(now),
                        sqlite_ts(now),
                    )
                    for x in systems
                ],
            )
            db.executemany(
                f"INSERT INTO component ({COMPONENT_COLS}) VALUES (?,?,?,?,'label:app',NULL,0,?,?,?)",
                [
                    (
                        str(c[0]),
                        c[1],
                        str(c[2]),
                        c[3],
                        sqlite_ts(now),
                        sqlite_ts(now),
                        placed.get(c[0]) and str(placed[c[0]]),
                    )
                    for c in components
                ],
            )
            db.executemany(
                f"INSERT INTO cost_record ({', '.join(RECORD_COLS)}) VALUES ({','.join('?' * 14)})",
                [(str(r[0]), r[1].isoformat(), *r[2:13], sqlite_ts(r[13])) for r in records],
            )
            daily, unmapped = coverage_rows(records)
            db.executemany(
                f"INSERT INTO coverage_daily ({', '.join(COVERAGE_COLS)}) VALUES ({','.join('?' * 8)})",
                [(*r[:2], r[2].isoformat(), *r[3:]) for r in daily],
            )
            db.executemany(
                f"INSERT INTO unmapped_cost ({', '.join(UNMAPPED_COLS)}) VALUES ({','.join('?' * 13)})",
                [(*r[:3], r[3].isoformat(), *r[4:]) for r in unmapped],
            )
            db.execute("ANALYZE")
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "team",
            records=[(*t, now, now) for t in teams],
            columns=["id", "name", "slug", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "domain",
            records=[(*d, now, now) for d in domains],
            columns=["id", "name", "slug", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "system",
            records=[(*x, now, now) for x in systems],
            columns=["id", "name", "slug", "domain_id", "owner_id", "created_at", "updated_at"],
        )
        await conn.copy_records_to_table(
            "component",
            records=[
                (c[0], c[1], c[2], c[3], "label:app", None, 0.0, now, now, placed.get(c[0]))
                for c in components
            ],
            columns=[c.strip() for c in COMPONENT_COLS.split(",")],
        )
        await conn.copy_records_to_table("cost_record", records=records, columns=RECORD_COLS)
        daily, unmapped = coverage_rows(records)
        await conn.copy_records_to_table("coverage_daily", records=daily, columns=COVERAGE_COLS)
        await conn.copy_records_to_table("unmapped_cost", records=unmapped, columns=UNMAPPED_COLS)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def fresh_database(kind: str, name: str) -> str:
    if kind == "sqlite":
        RESULTS.mkdir(exist_ok=True)
        path = RESULTS / f"{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
        return f"sqlite://{path}"
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"postgres://postgres@127.0.0.1:5432/{name}"


# -- references: the database floor -------------------------------------------------------------


def inline_days(sql: str, args: list[Any], kind: str) -> tuple[str, list[Any]]:
    """The floor's day parameters written as literals, as the app writes day bounds
    (`SqlParams.day`: PostgreSQL plans the statement with its range and keeps the plan), the
    other parameters renumbered in order."""
    kept = [i for i, a in enumerate(args) if type(a) is not date]
    number = {old: new for new, old in enumerate(kept, start=1)}

    def marker(match: re.Match[str]) -> str:
        index = int(match.group(1)) - 1
        if index in number:
            return f"${number[index]}"
        day = args[index].isoformat()
        return f"DATE '{day}'" if kind == "postgres" else f"'{day}'"

    return re.sub(r"\$(\d+)", marker, sql), [args[i] for i in kept]


async def floor(url: str, queries: dict[str, tuple[str, list[Any]]], n: int) -> dict[str, float]:
    """p50 of one hand-written SQL query per answer, through the same driver as the app."""
    result = {}
    kind = "sqlite" if url.startswith("sqlite://") else "postgres"
    queries = {name: inline_days(sql, args, kind) for name, (sql, args) in queries.items()}
    if url.startswith("sqlite://"):
        import aiosqlite

        async with aiosqlite.connect(url.removeprefix("sqlite://")) as db:
            for name, (sql, args) in queries.items():
                samples = []
                for _ in range(n):
                    started = time.perf_counter()
                    async with db.execute(
                        re.sub(r"\$(\d+)", r"?\1", sql),
                        [str(a) if isinstance(a, uuid.UUID | date) else a for a in args],
                    ) as cursor:
                        await cursor.fetchall()
                    samples.append(time.perf_counter() - started)
                result[name] = statistics.median(samples) * 1000
        return result
    import asyncpg

    from finops_gql.db.setup import SERVER_SETTINGS

    # The app's session settings: the same driver, configured the same way.
    conn = await asyncpg.connect(url, server_settings=SERVER_SETTINGS)
    try:
        for name, (sql, args) in queries.items():
            samples = []
            for _ in range(n):
                started = time.perf_counter()
                await conn.fetch(sql, *args)
                samples.append(time.perf_counter() - started)
            result[name] = statistics.median(samples) * 1000
    finally:
        await conn.close()
    return result


async def count_filtered(url: str) -> int:
    """The filtered scenario's totalCount, counted by hand-written SQL."""
    sql = f"SELECT COUNT(*) FROM component c WHERE {FILTERED_WHERE}"
    if url.startswith("sqlite://"):
        import aiosqlite

        async with (
            aiosqlite.connect(url.removeprefix("sqlite://")) as db,
            db.execute(sql) as cursor,
        ):
            row = await cursor.fetchone()
            assert row is not None
            return int(row[0])
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql))
    finally:
        await conn.close()


# -- servers ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


async def wait_http(url: str, seconds: float = 30) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds / 0.05)):  # 30 s: a loaded machine starts a server slowly
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def _hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """The process's peak RSS; with uvicorn workers, the largest worker's (each is one app)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    workers = [int(c) for c in children.read_text().split()] if children.exists() else []
    return max([_hwm_mb(pid), *(_hwm_mb(w) for w in workers)])


# -- in-process checks: SQL statements per GraphQL page, REST/GraphQL agreement ------------------


async def count_page_queries(url: str, secret: str, sizes: list[int]) -> dict[int, int]:
    import logging

    import httpx

    from finops_gql.app import create_app
    from finops_gql.auth import mint_token
    from finops_gql.config import Settings
    from finops_gql.services import open_services

    statements: list[str] = []

    class Counter(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            statements.append(record.getMessage())

    logger = logging.getLogger("tortoise.db_client")
    logger.setLevel(logging.DEBUG)
    handler = Counter()
    logger.addHandler(handler)
    settings = Settings(
        database_url=url,
        jwt_secret=secret,
        opencost_url="http://127.0.0.1:9",
        rate_limit_points_per_minute=0,
    )
    counts = {}
    try:
        async with open_services(settings) as services:
            app = create_app(settings, services)
            token = mint_token(settings, "bench", [], timedelta(hours=1))
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://b",
                headers={"Authorization": f"Bearer {token}"},
            ) as http:
                for size in sizes:
                    statements.clear()
                    response = await http.post(
                        "/graphql", json={"query": PAGE_QUERY, "variables": {"first": size}}
                    )
                    assert "errors" not in response.json(), response.text
                    # SQL statements only, not driver chatter such as "Created connection",
                    # nor the answer cache's data version read (once per request, logged on
                    # PostgreSQL's lane, read inline on SQLite).
                    counts[size] = sum(
                        s.lstrip().upper().startswith("SELECT") and "data_version" not in s
                        for s in statements
                    )
    finally:
        logger.removeHandler(handler)
    return counts


PAGE_QUERY = "query Page($first: Int!) { components(first: $first) { nodes { id name budgetUsd cost30d team { id name } } pageInfo { endCursor hasNextPage } } }"
# A filtered and sorted page (issue 9): name search + within budget, by 30-day cost, with totalCount.
FILTERED_QUERY = 'query Filtered($first: Int!) { components(first: $first, orderBy: COST_30D_DESC, search: "7", overBudget: false) { totalCount nodes { id name budgetUsd cost30d } pageInfo { endCursor hasNextPage } } }'
FILTERED_WHERE = "LOWER(c.name) LIKE '%7%' AND (c.budget_usd IS NULL OR c.cost_30d <= c.budget_usd)"
TEAM_QUERY = "query Team($id: ID!) { team(id: $id) { name costSummary { totalCost components(limit: 1000) { componentId totalCost } } } }"
# The cost explorer: a chart's series, its points and change (the range engine, costs/explorer.py).
SERIES_FIELDS = "total change { previousTotal ratio } points { start complete totalCost }"
COMPONENT_COST_QUERY = f"query ComponentCost($id: ID!) {{ component(id: $id) {{ cost(range: {{preset: LAST_90_DAYS}}, granularity: DAY) {{ {SERIES_FIELDS} }} }} }}"
TEAM_COST_QUERY = f"query TeamCost($id: ID!) {{ team(id: $id) {{ cost(range: {{preset: LAST_90_DAYS}}, granularity: WEEK) {{ {SERIES_FIELDS} }} }} }}"
PLATFORM_COST_QUERY = f"query PlatformCost {{ platformCost(range: {{preset: LAST_90_DAYS}}, granularity: DAY) {{ {SERIES_FIELDS} }} }}"
# The breakdown table of a dashboard (issue 9): every component's 30-day cost by team, by system.
BREAKDOWN_FIELDS = "total totalCount nodes { key label total share change { previousTotal ratio } }"
TEAM_BREAKDOWN_QUERY = f"query ByTeam {{ costBreakdown(range: {{preset: LAST_30_DAYS}}, groupBy: TEAM) {{ {BREAKDOWN_FIELDS} }} }}"
SYSTEM_BREAKDOWN_QUERY = f"query BySystem {{ costBreakdown(range: {{preset: LAST_30_DAYS}}, groupBy: SYSTEM) {{ {BREAKDOWN_FIELDS} }} }}"
# The platform page's coverage (issue 9): the cluster's cost beside the catalog's, and the
# largest unmapped keys with their share of it.
COVERAGE_QUERY = "query Coverage { platformCost(range: {preset: LAST_30_DAYS}) { total coverage { catalogCost clusterCost unmappedCost unallocatedCost idleCost unmountedCost ratio reportedDays } unmappedKeys(first: 20) { aggregate key total share } } }"
# Teams by 30-day cost (the team.cost_30d rollup and its index), a page of 50 with its total.
TEAMS_BY_COST_QUERY = "query TeamsByCost { teams(first: 50, orderBy: COST_30D_DESC) { totalCount nodes { id slug cost30d } pageInfo { endCursor hasNextPage } } }"
SERIES_COLUMNS = explorer.COLUMNS


def series_floors(big_team: Any, a_component: Any) -> dict[str, tuple[str, list[Any]]]:
    """The database floor of each series: one hand-written statement over the range and the
    one before it (90 + 90 days), as the engine asks: a component's records, a team's and the
    platform's daily totals (the pre-aggregates the sync keeps)."""
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=179)
    columns = ", ".join(SERIES_COLUMNS)
    return {
        "graphql_component_cost": (
            f"SELECT component_id, day, {columns} FROM cost_record WHERE day >= $2 AND day <= $3 "
            "AND component_id = $1",
            [a_component, first, last],
        ),
        "graphql_team_cost": (
            f"SELECT team_id, day, {columns} FROM team_daily_cost WHERE day >= $2 AND day <= $3 "
            "AND team_id = $1",
            [big_team, first, last],
        ),
        "graphql_platform_cost": (
            f"SELECT day, {columns} FROM platform_daily_cost WHERE day >= $1 AND day <= $2",
            [first, last],
        ),
    }


def coverage_floor() -> dict[str, tuple[str, list[Any]]]:
    """The floor of the coverage scenario: its largest part, the 20 largest unmapped keys of
    30 days (one aggregate, so no view to choose), in one statement."""
    last = datetime.now(UTC).date() - timedelta(days=1)
    return {
        "graphql_platform_coverage": (
            "SELECT aggregate, key, SUM(total_cost) AS total FROM unmapped_cost "
            "WHERE day >= $1 AND day <= $2 GROUP BY aggregate, key "
            "ORDER BY total DESC, aggregate, key LIMIT 20",
            [last - timedelta(days=29), last],
        )
    }


def breakdown_floors() -> dict[str, tuple[str, list[Any]]]:
    """The floor of a 30-day breakdown: each group's total over the range and the one before
    it, from the pre-aggregate, in one statement (team daily totals; system daily totals)."""
    last = datetime.now(UTC).date() - timedelta(days=1)
    start, first = last - timedelta(days=29), last - timedelta(days=59)
    sums = (
        "SUM(CASE WHEN day >= $1 THEN total_cost ELSE 0 END), "
        "SUM(CASE WHEN day < $1 THEN total_cost ELSE 0 END)"
    )
    return {
        f"graphql_breakdown_{name}": (
            f"SELECT {key}, {sums} FROM {table} WHERE day >= $2 AND day <= $3 GROUP BY {key}",
            [start, first, last],
        )
        for name, key, table in (
            ("team", "team_id", "team_daily_cost"),
            ("system", "system_id", "system_daily_cost"),
        )
    }


# -- the sync -----------------------------------------------------------------------------------


async def bench_sync(
    kind: str,
    teams: list[Any],
    components: list[Any],
    smoke: bool,
    name: str = "finops_bench",
    sources: int = 1,
) -> dict[str, Any]:
    """The 30-day backfill, then a 1-day run, each in a process of its own (`sync-run`) so its
    peak RSS is the sync's alone, against the stand-in (also a process of its own, peak RSS
    read) serving the matching answer, encoded before the timer starts."""
    from finops_gql.db.setup import close_db, migrate

    url = await fresh_database(kind, f"{name}_sync_smoke" if smoke else f"{name}_sync")
    await migrate(url)
    await close_db()
    await load_data(url, teams, components, [])
    # One stand-in per source, each answering for its share of the components (i mod N).
    names = source_names(sources)
    key_files = []
    RESULTS.mkdir(exist_ok=True)  # a fresh clone on PostgreSQL made no SQLite file there first
    for n, source in enumerate(names):
        keys = RESULTS / f"keys-{source}.txt"
        keys.write_text("\n".join(c[1] for c in components[n::sources]) + "\n")
        key_files.append(keys)
    results: dict[str, Any] = {}
    now = datetime.now(UTC)
    for label, at, days in (("backfill_30d", now, 30), ("one_day", now + timedelta(days=1), 1)):
        ports = [free_port() for _ in names]
        fakes = [
            start(
                [
                    sys.executable,
                    "-m",
                    "finops_gql.dev.opencost_fake",
                    "--port",
                    str(port),
                    "--keys-file",
                    str(keys),
                    "--now",
                    at.isoformat(),
                    # The answer is encoded before the stand-in serves: the timer measures
                    # the sync, not the stand-in making 300 MB of JSON on the same cores.
                    "--pregenerate-days",
                    str(days),
                ],
                {},
            )
            for port, keys in zip(ports, key_files, strict=True)
        ]
        try:
            for port in ports:
                await wait_http(f"http://127.0.0.1:{port}/healthz", seconds=300)
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            spec = {
                "url": url,
                "opencost": urls[0],
                "sources": [] if sources == 1 else list(zip(names, urls, strict=True)),
                "at": at.isoformat(),
            }
            results[label] = run_sync_process(spec)
            results[label]["standin_peak_rss_mb"] = max(peak_rss_mb(f.pid) for f in fakes)
        finally:
            for fake in fakes:
                fake.terminate()
                fake.wait()
    return results


def run_sync_process(spec: dict[str, Any]) -> dict[str, Any]:
    return run_subcommand("sync-run", spec)


async def sync_run(spec: dict[str, Any]) -> dict[str, Any]:
    """One sync in this process: its time, the part of it that is the alert evaluation run
    after every sync (after_run), and this process's peak RSS."""
    from finops_gql.config import Settings
    from finops_gql.services import open_services

    at = datetime.fromisoformat(spec["at"])
    settings = Settings(
        database_url=spec["url"],
        opencost_url=spec["opencost"],
        opencost_sources=tuple((name, url) for name, url in spec.get("sources", [])),
        opencost_timeout_s=600,
        jwt_secret="x" * 32,
    )
    async with open_services(settings, publish_budgets=False) as services:
        services.costs.clock = lambda: at
        evaluate = services.sync.after_run
        after_run = 0.0

        async def timed() -> None:
            nonlocal after_run
            started = time.perf_counter()
            if evaluate is not None:
                await evaluate()
            after_run = time.perf_counter() - started

        services.sync.after_run = timed
        started = time.perf_counter()
        run = await services.sync.run("bench")
        elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "alert_evaluation_seconds": after_run,
        "sync_seconds": elapsed - after_run,
        "opencost_requests": run.opencost_requests,
        "days": run.days,
        "records": run.records,
        "components": run.components,
        "peak_rss_mb": peak_rss_mb(os.getpid()),
    }


# -- the peer race (issue 15): PostGraphile 4 over the same PostgreSQL database -----------------
#
# A team that only wants a GraphQL read API over these tables would reach for PostGraphile, which
# builds its schema from the database's and answers a query with one SQL statement that builds the
# JSON inside PostgreSQL. The race: the same page of 50 components (name, budget, 30-day cost, team
# slug) from each server, one server process each (our uvicorn process, PostGraphile's node
# process), with the same client and settings. PostGraphile is installed with npm into an ignored
# folder: it is never a dependency of the package or of its tests.

PEERS = ("postgraphile",)
PEER_DIR = ROOT / ".bench" / "peer"
POSTGRAPHILE_PACKAGES = ("postgraphile@4", "@graphile-contrib/pg-simplify-inflector@6")
# Ours: the race's rows and nothing more (no id, no pageInfo: the peer's query asks for neither).
RACE_QUERY = (
    "query Race { components(first: 50) { nodes { name budgetUsd cost30d team { slug } } } }"
)
# PostGraphile's inflection of the same tables (simplify-inflector): table `component` is
# `components`, column cost_30d is `cost30D`, the team_id foreign key is `team`. Checked by
# introspection before the race (postgraphile_fields).
POSTGRAPHILE_FIELDS = ("name", "budgetUsd", "cost30D", "team")
POSTGRAPHILE_QUERY = "query Race { components(first: 50, orderBy: NAME_ASC) { nodes { name budgetUsd cost30D team { slug } } } }"


def peer_skip_reason(peer: str | None, db: str, which: Any = shutil.which) -> str | None:
    """Why the peer race cannot run here (None: it can)."""
    if peer is None:
        return None
    if db != "postgres":
        return f"--peer {peer} races over PostgreSQL only (PostGraphile reads a PostgreSQL schema): add --db postgres"
    missing = [tool for tool in ("node", "npm") if which(tool) is None]
    if missing:
        return f"--peer {peer} needs Node.js: {' and '.join(missing)} not found on PATH"
    return None


def install_postgraphile(folder: Path = PEER_DIR) -> Path:
    """PostGraphile's CLI, installed with npm into `folder` (kept between runs, git-ignored)."""
    cli = folder / "node_modules" / "postgraphile" / "cli.js"
    plugin = folder / "node_modules" / "@graphile-contrib" / "pg-simplify-inflector"
    if cli.is_file() and plugin.is_dir():
        return cli
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "package.json"
    if not manifest.exists():  # npm installs here, not into a package.json above
        manifest.write_text('{"private": true, "description": "scripts/bench.py --peer"}\n')
    print(f"installing {' '.join(POSTGRAPHILE_PACKAGES)} into {folder}", file=sys.stderr)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *POSTGRAPHILE_PACKAGES],
        cwd=folder,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return cli


def start_postgraphile(cli: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    """One node process, production mode, no query log, no GraphiQL: PostGraphile at its fastest."""
    return subprocess.Popen(
        [
            "node",
            str(cli),
            "--connection",
            url,
            "--schema",
            "public",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--append-plugins",
            "@graphile-contrib/pg-simplify-inflector",
            "--disable-query-log",
            "--disable-graphiql",
        ],
        cwd=cli.parent.parent.parent,  # the install folder: the plugin resolves from there
        env={**os.environ, "NODE_ENV": "production"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def graphql_post(url: str, query: str, headers: dict[str, str] | None = None) -> Any:
    import aiohttp

    async with (
        aiohttp.ClientSession(headers=headers or {}) as session,
        session.post(url, json={"query": query}) as response,
    ):
        return await response.json()


async def wait_graphql(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until the server answers a query (PostGraphile introspects the database first)."""
    import aiohttp

    for _ in range(600):
        if process.poll() is not None:
            stderr = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(
                f"the peer server exited with {process.returncode}: {stderr[-2000:]}"
            )
        try:
            answer = await graphql_post(url, "{ __typename }")
            if answer.get("data"):
                return
        except (aiohttp.ClientError, ValueError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer a query")


async def postgraphile_fields(url: str) -> None:
    """The race's field names, checked against the peer's own schema, not assumed."""
    answer = await graphql_post(
        url,
        '{ component: __type(name: "Component") { fields { name } } '
        'query: __type(name: "Query") { fields { name args { name } } } }',
    )
    component = {f["name"] for f in answer["data"]["component"]["fields"]}
    query = {f["name"]: {a["name"] for a in f["args"]} for f in answer["data"]["query"]["fields"]}
    missing = [f"Component.{name}" for name in POSTGRAPHILE_FIELDS if name not in component]
    if not {"first", "orderBy"} <= query.get("components", set()):
        missing.append("Query.components(first, orderBy)")
    if missing:
        raise RuntimeError(
            f"PostGraphile's schema lacks {', '.join(missing)}: its inflection changed, update "
            f"POSTGRAPHILE_QUERY (Component has {sorted(component)})"
        )


def race_rows(ours: Any, peer: Any) -> list[tuple[str, str | None, float | None, str]]:
    """(name, budget, 30-day cost, team slug) of each answer's nodes, for the agreement check."""
    ours_nodes = ours["data"]["components"]["nodes"]
    peer_nodes = peer["data"]["components"]["nodes"]
    return [(n["name"], n["budgetUsd"], n["cost30d"], n["team"]["slug"]) for n in ours_nodes] + [
        (n["name"], n["budgetUsd"], n["cost30D"], n["team"]["slug"]) for n in peer_nodes
    ]


def answers_agree(ours: Any, peer: Any) -> bool:
    """Same components in the same order, same budgets and team slugs, costs to the cent."""
    rows = race_rows(ours, peer)
    half = len(rows) // 2
    mine, theirs = rows[:half], rows[half:]
    if len(mine) != len(theirs) or not mine:
        return False
    for a, b in zip(mine, theirs, strict=True):
        same_cost = a[2] is not None and b[2] is not None and abs(a[2] - b[2]) < 0.005
        if a[0] != b[0] or a[1] != b[1] or a[3] != b[3] or not same_cost:
            return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(pid: int, spec: dict[str, Any]) -> dict[str, Any]:
    """run_load, plus the server process's CPU milliseconds per request: on a loaded machine
    latency measures the scheduler too, CPU per request much less so. A server that has the
    database build its answer (PostGraphile) spends part of its work in PostgreSQL's processes,
    which this does not count."""
    before = cpu_seconds(pid)
    result = run_load(spec)
    sent = spec["warmup"] + spec["requests"] + spec["throughput_requests"]
    return {**result, "cpu_ms_per_request": (cpu_seconds(pid) - before) * 1000 / sent}


async def race_peer(
    peer: str,
    url: str,
    base: str,
    auth: dict[str, str],
    common: dict[str, Any],
    rounds: int,
    ours_pid: int,
    cached_base: str | None = None,
) -> dict[str, Any]:
    """Our race query and the peer's, alternately in the same run (`rounds` times each, median);
    with `cached_base` (a server with the answer cache on), our repeated page too."""
    cli = install_postgraphile()
    port = free_port()
    server = start_postgraphile(cli, url, port)
    peer_url = f"http://127.0.0.1:{port}/graphql"
    try:
        await wait_graphql(peer_url, server)
        await postgraphile_fields(peer_url)
        ours_answer = await graphql_post(f"{base}/graphql", RACE_QUERY, auth)
        peer_answer = await graphql_post(peer_url, POSTGRAPHILE_QUERY)
        ours_spec = {
            **common,
            "method": "POST",
            "url": f"{base}/graphql",
            "body": {"query": RACE_QUERY},
            "headers": auth,
        }
        peer_spec = {
            **common,
            "method": "POST",
            "url": peer_url,
            "body": {"query": POSTGRAPHILE_QUERY},
        }
        ours_runs, peer_runs, hit_runs = [], [], []
        for _ in range(rounds):
            ours_runs.append(with_cpu(ours_pid, ours_spec))
            peer_runs.append(with_cpu(server.pid, peer_spec))
            if cached_base is not None:
                hit_runs.append(run_load({**ours_spec, "url": f"{cached_base}/graphql"}))
        rss = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait()
    ours_row, peer_row = median_run(ours_runs), median_run(peer_runs)
    hit = {}
    if hit_runs:
        hit_row = median_run(hit_runs)
        hit = {
            "graphql_race50_hit": hit_row,
            "peer_over_hit_p50": peer_row["p50_ms"] / hit_row["p50_ms"],
        }
    return {
        **hit,
        "peer": peer,
        "rounds": rounds,
        "server_processes": {"finops_gql": 1, peer: 1},
        "agree": answers_agree(ours_answer, peer_answer),
        "peer_peak_rss_mb": rss,
        "graphql_race50": ours_row,
        f"{peer}_page50": peer_row,
        "p50_ratio": ours_row["p50_ms"] / peer_row["p50_ms"],
        "rps_ratio": ours_row["rps"] / peer_row["rps"],
        "cpu_ratio": ours_row["cpu_ms_per_request"] / peer_row["cpu_ms_per_request"],
    }


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median over the rounds (errors summed)."""
    row = {key: statistics.median(r[key] for r in runs) for key in runs[0] if key != "errors"}
    row["errors"] = sum(r["errors"] for r in runs)
    return row


def race_lines(race: dict[str, Any]) -> list[str]:
    peer = race["peer"]
    ours, theirs = race["graphql_race50"], race[f"{peer}_page50"]
    return [
        f"peer race, same run, {race['rounds']} round(s), one server process each "
        f"(finops_gql: one uvicorn process; {peer}: one node process), answers agree: {race['agree']}",
        f"  finops_gql   components(first: 50): p50 {ours['p50_ms']:.2f} ms, {ours['rps']:.0f} requests/s at 32 connections, "
        f"server CPU {ours['cpu_ms_per_request']:.2f} ms/request",
        f"  {peer} components(first: 50, orderBy: NAME_ASC): p50 {theirs['p50_ms']:.2f} ms, {theirs['rps']:.0f} requests/s, "
        f"server CPU {theirs['cpu_ms_per_request']:.2f} ms/request (not counting PostgreSQL's)",
        f"  finops_gql / {peer}: p50 {race['p50_ratio']:.2f}x (below 1: we answer sooner), "
        f"throughput {race['rps_ratio']:.2f}x (above 1: we serve more), "
        f"server CPU per request {race['cpu_ratio']:.2f}x",
        *(
            [
                f"  finops_gql repeated page (answer cache hit): p50 {race['graphql_race50_hit']['p50_ms']:.2f} ms, "
                f"{race['graphql_race50_hit']['rps']:.0f} requests/s; {peer} p50 / ours: "
                f"{race['peer_over_hit_p50']:.1f}x (target >= 5)"
            ]
            if "graphql_race50_hit" in race
            else []
        ),
    ]


# Scenarios measured again on the server with the answer cache on, as `<name>_hit`.
HIT_SCENARIOS = ("graphql_page50", "graphql_team_cost")

# -- main -------------------------------------------------------------------------------------------


def scale_of(args: argparse.Namespace) -> Scale:
    if args.smoke:
        return SMOKE
    return Scale(
        args.teams,
        args.components,
        args.days,
        min(500, args.components // 2),
        args.requests,
        args.throughput_requests,
        30,
    )


@dataclass
class Prepared:
    url: str
    teams: list[Any]
    components: list[Any]
    secret: str
    load_seconds: float
    rollup_seconds: float
    daily_totals_seconds: float


async def prepare(kind: str, name: str, scale: Scale, sources: int = 1) -> Prepared:
    """A fresh database with the generated catalog and history, rollups and daily totals kept."""
    from finops_gql.db.setup import close_db, migrate

    print(
        f"generating {scale.teams} teams, {scale.components} components, {scale.days} days on {kind}",
        file=sys.stderr,
    )
    url = await fresh_database(kind, name)
    await migrate(url)
    await close_db()
    teams, components = generate(scale)
    rollups = catalog_rollups(teams, components)
    end = datetime.now(UTC).date() - timedelta(days=1)
    synced = datetime.now(UTC).replace(microsecond=0)
    started = time.perf_counter()
    await load_data(
        url, teams, components, record_rows(components, scale.days, end, synced, sources), rollups
    )
    load_seconds = time.perf_counter() - started

    # The rollup the sync keeps (one UPDATE over all components), timed.
    from finops_gql.config import Settings
    from finops_gql.services import open_services

    secret = secrets.token_urlsafe(48)
    async with open_services(Settings(database_url=url, jwt_secret=secret)) as services:
        started = time.perf_counter()
        await services.costs.refresh_rollups()
        rollup_seconds = time.perf_counter() - started
        # The explorer's team and platform daily totals, which the sync writes with its records
        # (the data above was loaded behind its back).
        from finops_gql.costs.explorer import refresh_daily_totals

        started = time.perf_counter()
        await refresh_daily_totals()
        daily_totals_seconds = time.perf_counter() - started
        # Planner statistics of the pre-aggregates just filled (the load's ANALYZE saw them
        # empty), as PostgreSQL's autovacuum would gather them.
        from finops_gql.db.setup import connection

        await connection().execute_script("ANALYZE")
    return Prepared(
        url, teams, components, secret, load_seconds, rollup_seconds, daily_totals_seconds
    )


def start_server(
    url: str,
    secret: str,
    port: int,
    workers: int = 1,
    answer_cache_mb: int = 0,
    sources: int = 1,
) -> subprocess.Popen[bytes]:
    """`finops-gql serve`: `workers` uvicorn processes, production settings; the answer cache off
    unless `answer_cache_mb` says otherwise (the miss rows measure execution); `sources` OpenCost
    sources named (nothing listens on the discard port: the reads measured never ask OpenCost)."""
    where = {"OPENCOST_URL": "http://127.0.0.1:9"}
    if sources > 1:
        where = {
            "OPENCOST_SOURCES": ",".join(f"{n}=http://127.0.0.1:9" for n in source_names(sources))
        }
    env = {
        "GRAPHQL_ANSWER_CACHE_MB": str(answer_cache_mb),
        "DATABASE_URL": url,
        "JWT_SECRET": secret,
        **where,
        "LOG_LEVEL": "INFO",
        # The load comes from one token: measure the server, not that principal's budget.
        "RATE_LIMIT_POINTS_PER_MINUTE": "0",
    }
    command = ["-m", "finops_gql.cli", "serve", "--port", str(port), "--workers", str(workers)]
    return start([sys.executable, *command], env)


def common_load(scale: Scale) -> dict[str, Any]:
    return {
        "warmup": scale.warmup,
        "requests": scale.requests,
        "throughput_requests": scale.throughput_requests,
        "concurrency": 32,
    }


def bench_token(secret: str) -> dict[str, str]:
    from finops_gql.auth import mint_token
    from finops_gql.config import Settings

    token = mint_token(Settings(jwt_secret=secret), "bench", [], timedelta(hours=2))
    return {"Authorization": f"Bearer {token}"}


PEER_DATABASE = "finops_bench_peer"


async def reused(name: str) -> Prepared:
    """The database a previous --peer-only run built, as it is (--reuse)."""
    import asyncpg

    url = f"postgres://postgres@127.0.0.1:5432/{name}"
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        raise SystemExit(f"--reuse: no database {name} yet: run once without --reuse") from None
    try:
        count = int(await conn.fetchval("SELECT COUNT(*) FROM component"))
    finally:
        await conn.close()
    print(f"reusing {name}: {count} components", file=sys.stderr)
    return Prepared(url, [], [], secrets.token_urlsafe(48), 0.0, 0.0, 0.0)


def run_header(args: argparse.Namespace, scale: Scale) -> dict[str, Any]:
    """The first keys of a narrowed run's JSON (--peer-only, --sync-only): when, where, how big."""
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": args.sources,
        "db": args.db,
        "scale": scale.__dict__,
    }


async def peer_only(args: argparse.Namespace) -> dict[str, Any]:
    """Only the race: our page of 50 and the peer's on the same data, nothing else measured."""
    scale = scale_of(args)
    if args.reuse:
        data = await reused(f"{args.db_name}_peer")
    else:
        data = await prepare(args.db, f"{args.db_name}_peer", scale)
    port, cached_port = free_port(), free_port()
    server = start_server(data.url, data.secret, port)
    cached = start_server(data.url, data.secret, cached_port, answer_cache_mb=64)
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await wait_http(f"http://127.0.0.1:{cached_port}/healthz")
        base = f"http://127.0.0.1:{port}"
        race = await race_peer(
            args.peer,
            data.url,
            base,
            bench_token(data.secret),
            common_load(scale),
            args.peer_rounds,
            server.pid,
            f"http://127.0.0.1:{cached_port}",
        )
        rss = peak_rss_mb(server.pid)
    finally:
        for process in (server, cached):
            process.terminate()
            process.wait()
    return {
        **run_header(args, scale),
        "race": race,
        "server_peak_rss_mb": rss,
    }


async def sync_only(args: argparse.Namespace) -> dict[str, Any]:
    """Only the sync's measurements (the backfill and the 1-day run), on the generated catalog
    without its read scenarios: what work on the sync compares."""
    scale = scale_of(args)
    teams, components = generate(scale)
    sync = await bench_sync(args.db, teams, components, args.smoke, args.db_name, args.sources)
    return {
        **run_header(args, scale),
        "sync": sync,
    }


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    if args.peer_only:
        return await peer_only(args)
    if args.sync_only:
        return await sync_only(args)
    scale = scale_of(args)
    data = await prepare(
        args.db, f"{args.db_name}_smoke" if args.smoke else args.db_name, scale, args.sources
    )
    url, teams, components, secret = data.url, data.teams, data.components, data.secret
    page_queries = await count_page_queries(url, secret, [10, 50, 100])

    big_team, a_component = teams[0][0], components[0][0]
    floors = await floor(
        url,
        {
            "rest_top10": (
                "SELECT id, cost_30d, cost_synced_at, budget_usd FROM component ORDER BY cost_30d DESC, name LIMIT 10",
                [],
            ),
            "rest_team_summary": (
                "SELECT id, cost_30d FROM component WHERE team_id = $1 ORDER BY cost_30d DESC, name",
                [big_team],
            ),
            "rest_history": (
                # One row per day over every cluster, as the service reads it.
                "SELECT component_id, day, MAX(currency), MAX(synced_at), SUM(cpu_cost), "
                "SUM(ram_cost), SUM(pv_cost), SUM(network_cost), SUM(gpu_cost), "
                "SUM(load_balancer_cost), SUM(shared_cost), SUM(external_cost), SUM(total_cost) "
                "FROM cost_record WHERE component_id = $1 GROUP BY component_id, day "
                "ORDER BY component_id DESC, day DESC LIMIT 30",
                [a_component],
            ),
            "graphql_page50": (
                "SELECT c.id, c.name, c.budget_usd, c.cost_30d, t.id, t.name FROM component c JOIN team t ON t.id = c.team_id ORDER BY c.name, c.id LIMIT 50",
                [],
            ),
            "graphql_team": (
                "SELECT id, cost_30d FROM component WHERE team_id = $1 ORDER BY cost_30d DESC, name",
                [big_team],
            ),
            **series_floors(big_team, a_component),
            **breakdown_floors(),
            **coverage_floor(),
            "graphql_teams_by_cost": (
                "SELECT id, slug, cost_30d, (SELECT COUNT(*) FROM team) AS total FROM team "
                "ORDER BY cost_30d DESC, slug LIMIT 51",
                [],
            ),
            # the page and its total in one statement (an uncorrelated subquery, counted once;
            # COUNT(*) OVER () would materialise every match before the LIMIT)
            "graphql_filtered50": (
                f"SELECT c.id, c.name, c.budget_usd, c.cost_30d, (SELECT COUNT(*) FROM component c WHERE {FILTERED_WHERE}) AS total FROM component c WHERE {FILTERED_WHERE} ORDER BY c.cost_30d DESC, c.name, c.id LIMIT 50",
                [],
            ),
        },
        scale.requests,
    )

    port, ceiling_port, cached_port = free_port(), free_port(), free_port()
    workers = args.workers
    server = start_server(url, secret, port, workers, sources=args.sources)
    cached = start_server(
        url, secret, cached_port, workers, answer_cache_mb=64, sources=args.sources
    )
    ceiling = start([sys.executable, __file__, "ceiling", str(ceiling_port), str(workers)], {})
    # The race: one process each side (PostGraphile is one node process), with and without cache.
    race_servers: list[subprocess.Popen[bytes]] = []
    race = None
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await wait_http(f"http://127.0.0.1:{cached_port}/healthz")
        await wait_http(f"http://127.0.0.1:{ceiling_port}/constant")
        base = f"http://127.0.0.1:{port}"
        cached_base = f"http://127.0.0.1:{cached_port}"
        auth = bench_token(secret)
        common = common_load(scale)
        scenarios = {
            "rest_top10": {"method": "GET", "url": f"{base}/api/v1/cost/summary?limit=10"},
            "rest_top50": {"method": "GET", "url": f"{base}/api/v1/cost/summary?limit=50"},
            "rest_team_summary": {
                "method": "GET",
                "url": f"{base}/api/v1/cost/teams/{big_team}/summary",
            },
            "rest_history": {
                "method": "GET",
                "url": f"{base}/api/v1/cost/components/{a_component}/history",
            },
            "graphql_page50": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": PAGE_QUERY, "variables": {"first": 50}},
            },
            "graphql_team": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": TEAM_QUERY, "variables": {"id": str(big_team)}},
            },
            "graphql_component_cost": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": COMPONENT_COST_QUERY, "variables": {"id": str(a_component)}},
            },
            "graphql_team_cost": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": TEAM_COST_QUERY, "variables": {"id": str(big_team)}},
            },
            "graphql_platform_cost": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": PLATFORM_COST_QUERY},
            },
            "graphql_filtered50": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": FILTERED_QUERY, "variables": {"first": 50}},
            },
            "graphql_breakdown_team": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": TEAM_BREAKDOWN_QUERY},
            },
            "graphql_breakdown_system": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": SYSTEM_BREAKDOWN_QUERY},
            },
            "graphql_teams_by_cost": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": TEAMS_BY_COST_QUERY},
            },
            "graphql_platform_coverage": {
                "method": "POST",
                "url": f"{base}/graphql",
                "body": {"query": COVERAGE_QUERY},
            },
        }
        # Answer cache hits: the same requests, repeated, on the server with the cache on.
        for name in HIT_SCENARIOS:
            spec = scenarios[name]
            scenarios[f"{name}_hit"] = {**spec, "url": spec["url"].replace(base, cached_base)}
        measured = {
            name: run_load({**common, **spec, "headers": auth}) for name, spec in scenarios.items()
        }
        measured["ceiling"] = run_load(
            {**common, "method": "GET", "url": f"http://127.0.0.1:{ceiling_port}/constant"}
        )

        import httpx

        async with httpx.AsyncClient(base_url=base, headers=auth) as http:
            rest_team = (await http.get(f"/api/v1/cost/teams/{big_team}/summary")).json()
            gql_team = (await http.post("/graphql", json=scenarios["graphql_team"]["body"])).json()
            filtered = (
                await http.post("/graphql", json=scenarios["graphql_filtered50"]["body"])
            ).json()
            covered = (
                await http.post("/graphql", json=scenarios["graphql_platform_coverage"]["body"])
            ).json()["data"]["platformCost"]
            by_team, by_system = [
                (await http.post("/graphql", json=scenarios[name]["body"])).json()
                for name in ("graphql_breakdown_team", "graphql_breakdown_system")
            ]
        if args.peer is not None and args.peer_skip is None:
            race_port, race_cached_port = free_port(), free_port()
            race_servers += [
                start_server(url, secret, race_port),
                start_server(url, secret, race_cached_port, answer_cache_mb=64),
            ]
            for race_url in (race_port, race_cached_port):
                await wait_http(f"http://127.0.0.1:{race_url}/healthz")
            race = await race_peer(
                args.peer,
                url,
                f"http://127.0.0.1:{race_port}",
                auth,
                common,
                args.peer_rounds,
                race_servers[0].pid,
                f"http://127.0.0.1:{race_cached_port}",
            )
            for name in ("graphql_race50", "graphql_race50_hit", f"{args.peer}_page50"):
                measured[name] = race[name]
        rss = peak_rss_mb(server.pid)
    finally:
        for process in (server, cached, ceiling, *race_servers):
            process.terminate()
            process.wait()

    sync = await bench_sync(args.db, teams, components, args.smoke, args.db_name, args.sources)
    gql_total = gql_team["data"]["team"]["costSummary"]["totalCost"]
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "sources": args.sources,
        "db": args.db,
        "workers": workers,
        "scale": scale.__dict__,
        "load_seconds": data.load_seconds,
        "rollup_refresh_seconds": data.rollup_seconds,
        "daily_totals_refresh_seconds": data.daily_totals_seconds,
        "floor_p50_ms": floors,
        "measured": measured,
        "graphql_sql_statements_by_page_size": page_queries,
        "rest_graphql_team_total": [rest_team["totalCost"], gql_total],
        "filtered_total_count": [
            filtered["data"]["components"]["totalCount"],
            await count_filtered(url),
        ],
        "breakdown_totals_team_system": [
            by_team["data"]["costBreakdown"]["total"],
            by_system["data"]["costBreakdown"]["total"],
        ],
        "coverage_catalog_total_keys": [
            covered["coverage"]["catalogCost"],
            covered["total"],
            len(covered["unmappedKeys"]),
        ],
        "server_peak_rss_mb": rss,
        "sync": sync,
        "race": race,
        "peer_skipped": args.peer_skip,
    }


def peer_table(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"finops_gql against a peer, {result['db']}, {result['scale']['components']} components, "
            f"{result['scale']['components'] * result['scale']['days']} records, "
            f"{result.get('sources', 1)} OpenCost source(s), {result['when']}",
            "",
            *race_lines(result["race"]),
        ]
    )


def sync_lines(sync: dict[str, Any]) -> list[str]:
    return [
        f"sync {what}: {run['seconds']:.2f} s (sync {run['sync_seconds']:.2f} s + alert "
        f"evaluation {run['alert_evaluation_seconds']:.2f} s), {run['opencost_requests']} "
        f"OpenCost requests, {run['records']} records, peak RSS {run['peak_rss_mb']:.0f} MB "
        f"(stand-in {run['standin_peak_rss_mb']:.0f} MB)"
        for what, run in (
            ("30-day backfill", sync["backfill_30d"]),
            ("1-day run", sync["one_day"]),
        )
    ]


def sync_table(result: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"finops_gql sync, {result['db']}, {result['scale']['components']} components, "
            f"{result.get('sources', 1)} OpenCost source(s), {result['when']}",
            "",
            *sync_lines(result["sync"]),
        ]
    )


def table(result: dict[str, Any]) -> str:
    if "race" not in result:
        return sync_table(result)
    if "measured" not in result:
        return peer_table(result)
    m, f = result["measured"], result["floor_p50_ms"]
    ceiling = m["ceiling"]
    lines = [
        f"finops_gql benchmark, {result['db']}, {result['scale']['components']} components, "
        f"{result['scale']['components'] * result['scale']['days']} records, "
        f"{result.get('sources', 1)} OpenCost source(s), {result['when']}",
        "",
        f"| {'scenario':<24} | p50 ms | p95 ms | p99 ms | floor p50 | x floor | rps c=32 | x ceiling | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in m.items():
        fl = f.get(name)
        floor_text = f"{fl:.3f}" if fl is not None else "-"
        ratio_text = f"{row['p50_ms'] / fl:.1f}" if fl else "-"
        lines.append(
            f"| {name:<24} | {row['p50_ms']:6.2f} | {row['p95_ms']:6.2f} | {row['p99_ms']:6.2f} | "
            f"{floor_text:>9} | {ratio_text:>7} | {row['rps']:8.0f} | "
            f"{row['rps'] / ceiling['rps']:9.2f} | {row['errors']:6d} |"
        )
    sync = result["sync"]
    hit = m["graphql_page50_hit"]
    lines += [
        "",
        f"worker processes (server and ceiling alike): {result.get('workers', 1)}",
        f"answer cache hit, page of 50: p50 {hit['p50_ms'] / ceiling['p50_ms']:.2f}x the ceiling's (target <= 1.5)",
        f"REST /summary at 32 connections: {m['rest_top10']['rps'] / ceiling['rps']:.2f} of the ceiling's requests/s (target >= 0.5)",
        f"GraphQL page50 p50 / REST top50 p50: {m['graphql_page50']['p50_ms'] / m['rest_top50']['p50_ms']:.2f}x",
        f"SQL statements per GraphQL page (size: count): {result['graphql_sql_statements_by_page_size']}",
        f"REST vs GraphQL team total: {result['rest_graphql_team_total']}",
        f"filtered page totalCount, GraphQL vs SQL: {result['filtered_total_count']}",
        f"30-day breakdown total by team vs by system: {result['breakdown_totals_team_system']}",
        f"coverage catalogCost vs platform total, unmapped keys listed: {result['coverage_catalog_total_keys']}",
        f"rollup refresh (all components): {result['rollup_refresh_seconds']:.2f} s; data load {result['load_seconds']:.1f} s",
        f"team, team x system and platform daily totals, all {result['scale']['days']} days: {result['daily_totals_refresh_seconds']:.2f} s",
        *sync_lines(sync),
        f"server peak RSS: {result['server_peak_rss_mb']:.0f} MB",
    ]
    if result.get("race"):
        lines += race_lines(result["race"])
    elif result.get("peer_skipped"):
        lines.append(f"peer race skipped: {result['peer_skipped']}")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        print(json.dumps(asyncio.run(load(json.loads(sys.argv[2])))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "sync-run":
        print(json.dumps(asyncio.run(sync_run(json.loads(sys.argv[2])))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "ceiling":
        import uvicorn

        workers = int(sys.argv[3]) if len(sys.argv) > 3 else 1
        options: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": int(sys.argv[2]),
            "log_config": None,
            "access_log": False,
        }
        if workers == 1:
            uvicorn.run(ceiling_app(), **options)
        else:  # the same worker processes as the server measured beside it
            app_dir = str(Path(__file__).parent)
            uvicorn.run(
                "bench:ceiling_app", factory=True, workers=workers, app_dir=app_dir, **options
            )
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--teams", type=int, default=DEFAULT.teams)
    parser.add_argument(
        "--components",
        type=counts,
        default=[DEFAULT.components],
        help="components, or a comma-separated list (1000,10000,100000): one full run per scale, "
        "then the scale curve (one row per scale)",
    )
    parser.add_argument("--days", type=int, default=DEFAULT.days)
    parser.add_argument(
        "--requests", type=int, default=DEFAULT.requests, help="sequential requests per scenario"
    )
    parser.add_argument("--throughput-requests", type=int, default=DEFAULT.throughput_requests)
    parser.add_argument("--smoke", action="store_true", help="tiny scale, for CI")
    parser.add_argument(
        "--sources",
        type=int,
        default=1,
        help="OpenCost sources (clusters) the same components are spread over (component i in "
        "source i mod N): records, stand-ins for the sync and OPENCOST_SOURCES; default 1 "
        "(OPENCOST_URL alone)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="uvicorn worker processes of the measured server and of the ceiling alike "
        "(default: the usable cores, like `finops-gql serve` on PostgreSQL; 1 with --smoke); "
        "the peer race always runs one",
    )
    parser.add_argument(
        "--db-name",
        default="finops_bench",
        help="database (PostgreSQL) or file (SQLite) name; NAME_sync is the sync's; default "
        "finops_bench (use another when several benchmarks share one server)",
    )
    parser.add_argument(
        "--peer",
        choices=PEERS,
        help="also race a peer server on the same PostgreSQL data (installs it with npm into "
        f"{PEER_DIR.relative_to(ROOT)}/; needs node and npm)",
    )
    parser.add_argument(
        "--peer-only",
        action="store_true",
        help="with --peer: measure only the race (our page of 50 and the peer's), no other scenario",
    )
    parser.add_argument(
        "--peer-rounds",
        type=int,
        default=1,
        help="alternate ours and the peer's this many times and report the medians",
    )
    parser.add_argument(
        "--sync-only",
        action="store_true",
        help="measure only the sync (the 30-day backfill and the 1-day run), no read scenario",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help=f"with --peer-only: race on the database the last run built ({PEER_DATABASE}; "
        "NAME_peer with --db-name NAME)",
    )
    args = parser.parse_args()
    if args.workers is None:
        from finops_gql.cli import default_workers

        # --smoke checks consistency, not speed: one process each keeps CI light.
        args.workers = 1 if args.smoke else default_workers()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.reuse and not args.peer_only:
        parser.error("--reuse needs --peer-only")
    if args.sync_only and args.peer_only:
        parser.error("--sync-only and --peer-only exclude each other")
    if args.peer_only and args.peer is None:
        parser.error("--peer-only needs --peer")
    if args.peer_rounds < 1:
        parser.error("--peer-rounds must be at least 1")
    if not 1 <= args.sources <= 50:
        parser.error("--sources must be between 1 and 50")
    args.peer_skip = peer_skip_reason(args.peer, args.db)
    if args.peer_skip is not None:
        print(f"peer race skipped: {args.peer_skip}", file=sys.stderr)
        if args.peer_only:
            print(f"peer race skipped: {args.peer_skip}")
            return
    scales = args.components
    results = []
    for components in scales:
        args.components = components
        result = asyncio.run(bench(args))
        RESULTS.mkdir(exist_ok=True)
        out = (
            RESULTS
            / f"bench-{args.db}-{'peer' if args.peer_only else 'sync' if args.sync_only else 'smoke' if args.smoke else 'full'}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
        )
        out.write_text(json.dumps(result, indent=2, default=str))
        print(table(result))
        print(f"\nJSON: {out.relative_to(ROOT)}")
        results.append(result)
    if len(results) > 1 and not args.sync_only:
        print()
        print(curve(results))


def counts(text: str) -> list[int]:
    """--components: one count or a comma-separated list of them."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a list of numbers: {text!r}") from None
    if not values or min(values) < 2:
        raise argparse.ArgumentTypeError("each scale needs at least 2 components")
    return values


# The reads whose answer does not grow with the catalog (one component, one team of at most 500,
# a page of 50): they must stay flat. The platform-wide aggregates are reported beside them.
FLAT_READS = ("rest_top10", "rest_team_summary", "rest_history", "graphql_page50")
PLATFORM_READS = ("graphql_platform_cost", "graphql_breakdown_team")


def curve(results: list[dict[str, Any]]) -> str:
    """One row per scale: read p50s, the backfill and peak RSS of server, sync and stand-in."""
    names = [*FLAT_READS, *PLATFORM_READS]
    lines = [
        f"scale curve, {results[0]['db']}, {results[0]['scale']['days']} days of history "
        "(p50 ms at concurrency 1; backfill = sync + alert evaluation)",
        "",
        "| components | "
        + " | ".join(names)
        + " | backfill 30 d s | sync s | alerts s | us/record | RSS server | RSS sync | RSS stand-in |",
        "|---" * (len(names) + 8) + "|",
    ]
    for result in results:
        m = result["measured"]
        backfill = result["sync"]["backfill_30d"]
        per_record = backfill["seconds"] / max(1, backfill["records"]) * 1e6
        lines.append(
            f"| {result['scale']['components']} | "
            + " | ".join(f"{m[name]['p50_ms']:.2f}" for name in names)
            + f" | {backfill['seconds']:.1f} | {backfill['sync_seconds']:.1f} | "
            f"{backfill['alert_evaluation_seconds']:.1f} | {per_record:.0f} | "
            f"{result['server_peak_rss_mb']:.0f} MB | {backfill['peak_rss_mb']:.0f} MB | "
            f"{backfill['standin_peak_rss_mb']:.0f} MB |"
        )
    first, last = results[0], results[-1]
    flat = [last["measured"][n]["p50_ms"] / first["measured"][n]["p50_ms"] for n in FLAT_READS]
    lines += [
        "",
        f"reads {first['scale']['components']} -> {last['scale']['components']}: "
        + ", ".join(f"{n} x{r:.2f}" for n, r in zip(FLAT_READS, flat, strict=True))
        + f" (flat means <= x1.5; worst x{max(flat):.2f})",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
