"""PostgreSQL connections go back to the pool without asyncpg's reset statement (a round trip per
statement), and a transaction left open is still rolled back before the connection is reused."""

from __future__ import annotations

from typing import Any

import pytest

from finops_gql.db.setup import PooledConnection, connection, dialect, tortoise_config
from finops_gql.services import Services


def test_only_asyncpg_connections_change_class() -> None:
    config = tortoise_config("postgres://u:p@127.0.0.1:5432/db")["connections"]["default"]
    assert config["engine"] == "tortoise.backends.asyncpg"
    assert config["credentials"]["connection_class"] is PooledConnection
    assert config["credentials"]["database"] == "db"
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
