"""Read-path database plumbing. PostgreSQL connections go back to the pool without asyncpg's reset statement (a round trip per
statement), and a transaction left open is still rolled back before the connection is reused; a read path's partial rows become the
same models Tortoise builds."""

from __future__ import annotations

from typing import Any

import pytest

from finops_gql.db.models import Component, Team
from finops_gql.db.setup import (
    PooledConnection,
    connection,
    dialect,
    partial_from_db,
    tortoise_config,
)
from finops_gql.services import Services


def test_only_asyncpg_connections_change_class() -> None:
    config = tortoise_config("postgres://u:p@127.0.0.1:5432/db")["connections"]["default"]
    assert config["engine"] == "finops_gql.db.pglane"  # Tortoise's asyncpg client, with the lane
    assert config["credentials"]["connection_class"] is PooledConnection
    assert config["credentials"]["database"] == "db"
    assert config["credentials"]["server_settings"] == {}
    sqlite = "sqlite:///tmp/x.sqlite3"
    assert tortoise_config(sqlite)["connections"]["default"] == sqlite


async def test_release_sends_no_reset_statement(services: Services) -> None:
    if dialect() != "postgres":
        pytest.skip("asyncpg's pool only")
    pool: Any = connection()._pool  # type: ignore[attr-defined]
    sent: list[str] = []
    raw = await pool.acquire()
    assert isinstance(raw, PooledConnection)
    raw.add_query_logger(lambda record: sent.append(record.query))
    try:
        assert await raw.fetchval("SELECT 1") == 1
    finally:
        await pool.release(raw)
    assert sent == ["SELECT 1"]  # and nothing on release


async def test_plans_are_kept_as_postgresql_does_by_default(services: Services) -> None:
    # Planning each execution (force_custom_plan) cost more than running most short reads. Day
    # bounds, which a generic plan misjudges, are literals instead (tests/test_explorer.py).
    if dialect() != "postgres":
        pytest.skip("PostgreSQL's plan cache only")
    pool: Any = connection()._pool  # type: ignore[attr-defined]
    async with pool.acquire() as first, pool.acquire() as second:
        for raw in (first, second):
            assert await raw.fetchval("SHOW plan_cache_mode") == "auto"
    found = await connection().execute_query_dict("SHOW plan_cache_mode")  # on the lane
    assert found == [{"plan_cache_mode": "auto"}]


async def test_a_transaction_left_open_is_rolled_back(services: Services) -> None:
    if dialect() != "postgres":
        pytest.skip("asyncpg's pool only")
    pool: Any = connection()._pool  # type: ignore[attr-defined]
    async with pool.acquire() as raw:
        await raw.execute("BEGIN")
        await raw.execute("CREATE TEMPORARY TABLE left_open (x int) ON COMMIT DROP")
        assert raw.is_in_transaction()
    async with pool.acquire() as again:
        assert not again.is_in_transaction()
        found = await again.fetchval("SELECT to_regclass('pg_temp.left_open') IS NOT NULL")
        assert found is False


async def test_partial_rows_build_the_models_tortoise_builds(services: Services) -> None:
    """partial_from_db is _init_from_db for a SELECT list: same attributes, same conversions."""
    team = await Team.create(name="Payments", slug="payments")
    await Component.create(name="checkout", team=team, budget_usd=12.5, cost_30d=3.25)
    columns = "id, name, team_id, budget_usd, opencost_aggregate, opencost_key, cost_30d, cost_synced_at, system_id"
    rows = await connection().execute_query_dict(f"SELECT {columns} FROM component")  # noqa: S608
    fast, tortoise = partial_from_db(Component, rows[0]), Component._init_from_db(**rows[0])
    assert fast.__dict__ == tortoise.__dict__
    assert fast._partial is True
    assert fast.budget_usd == 12.5
    team_rows = await connection().execute_query_dict("SELECT id, name, slug, parent_id FROM team")
    assert (
        partial_from_db(Team, team_rows[0]).__dict__ == Team._init_from_db(**team_rows[0]).__dict__
    )
