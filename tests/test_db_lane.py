"""PostgreSQL's lane (db/pglane.py): statements outside transactions on a few connections kept
beside asyncpg's pool. What it lends, what it keeps, what it drops, and that transactions and
errors behave as through the pool."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from tortoise.exceptions import OperationalError
from tortoise.transactions import in_transaction

from finops_gql.db import dataversion, inline
from finops_gql.db.models import Team
from finops_gql.db.pglane import LANE_SIZE, Lane, LaneClient, LaneLease
from finops_gql.db.setup import PooledConnection, connection, dialect, tortoise_config

pytestmark = pytest.mark.usefixtures("services")


def test_postgres_urls_name_the_lane_engine() -> None:
    config = tortoise_config("postgres://u:p@127.0.0.1:5432/db")["connections"]["default"]
    assert config["engine"] == "finops_gql.db.pglane"


@pytest.fixture
def lane() -> Lane:
    if dialect() != "postgres":
        pytest.skip("PostgreSQL's lane only")
    client = connection()
    assert isinstance(client, LaneClient)
    assert client.lane is not None
    return client.lane


def _pool_free(client: Any) -> int:
    pool = client._pool
    return int(pool.get_size() - len([h for h in pool._holders if h._in_use is not None]))


async def test_reads_outside_a_transaction_take_a_lane_connection(lane: Lane) -> None:
    client: Any = connection()
    before = _pool_free(client)
    rows = await inline.fetch_rows("SELECT 1 AS one", [])
    assert [tuple(r) for r in rows] == [(1,)]
    assert await client.execute_query_dict("SELECT 2 AS two") == [{"two": 2}]
    assert await Team.all().count() == 0  # the ORM's statements too
    assert lane.opened >= 1
    assert len(lane.idle) == lane.opened
    assert all(isinstance(conn, PooledConnection) for conn in lane.idle)
    assert _pool_free(client) == before  # the pool lent nothing


async def test_lane_connections_have_the_pools_settings(lane: Lane) -> None:
    client: Any = connection()
    async with client.acquire_connection() as conn:
        assert conn in lane.idle or lane.opened > len(lane.idle)
        assert isinstance(conn, PooledConnection)
        assert await conn.fetchval("SHOW plan_cache_mode") == "auto"


async def test_a_server_error_is_tortoises_and_keeps_the_connection(lane: Lane) -> None:
    await inline.fetch_rows("SELECT 1", [])
    kept = list(lane.idle)
    with pytest.raises(OperationalError, match="no_such_table"):
        await inline.fetch_rows("SELECT * FROM no_such_table", [])
    with pytest.raises(OperationalError):
        await connection().execute_query_dict("SELECT * FROM no_such_table")
    assert lane.idle == kept  # the server answered: the connection is fine
    assert [tuple(r) for r in await inline.fetch_rows("SELECT 3", [])] == [(3,)]


async def test_a_cancelled_statement_drops_its_connection(lane: Lane) -> None:
    await inline.fetch_rows("SELECT 1", [])
    opened = lane.opened
    task = asyncio.create_task(inline.fetch_rows("SELECT pg_sleep(5)", []))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Mid-statement, the connection's state is unknown: terminated, not kept.
    assert lane.opened == opened - 1
    assert all(not conn.is_closed() for conn in lane.idle)
    assert [tuple(r) for r in await inline.fetch_rows("SELECT 4", [])] == [(4,)]


async def test_a_broken_connection_is_dropped_and_replaced(lane: Lane) -> None:
    client: Any = connection()
    await inline.fetch_rows("SELECT 1", [])
    victim = lane.idle[-1]  # the next one lent
    async with client._pool.acquire() as other:
        await other.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
    await asyncio.sleep(0.1)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
        await inline.fetch_rows("SELECT 1", [])
    assert victim.is_closed()
    assert victim not in lane.idle
    assert [tuple(r) for r in await inline.fetch_rows("SELECT 5", [])] == [(5,)]
    assert await dataversion.read() >= 0


async def test_when_the_lane_is_busy_statements_take_the_pool(lane: Lane) -> None:
    client: Any = connection()
    statements = [inline.fetch_rows("SELECT pg_sleep(1.5), 1", []) for _ in range(LANE_SIZE + 2)]
    running = asyncio.gather(*statements)
    await asyncio.sleep(0.75)  # all started, none done, on a loaded machine too
    assert lane.opened == LANE_SIZE
    assert not lane.idle
    lent_by_pool = client._pool.get_size() - _pool_free(client)
    assert lent_by_pool >= 2  # the rest went to the pool, without waiting for the lane
    assert len(await running) == LANE_SIZE + 2
    assert len(lane.idle) == LANE_SIZE


async def test_a_transaction_reads_its_own_writes_on_its_own_connection(lane: Lane) -> None:
    outside: Any = connection()
    async with in_transaction() as tx:
        await tx.execute_query(
            "INSERT INTO team (id, name, slug, created_at, updated_at) "
            "VALUES (gen_random_uuid(), 'Lane', 'lane', now(), now())"
        )
        inside = await inline.fetch_rows("SELECT slug FROM team", [])
        assert [r[0] for r in inside] == ["lane"]
        # The lane sees only what is committed.
        assert list(await outside.fetch_rows("SELECT slug FROM team", [])) == []
    assert [r[0] for r in await inline.fetch_rows("SELECT slug FROM team", [])] == ["lane"]


class FakeConn:
    """What the lane asks of a connection."""

    def __init__(self) -> None:
        self.closed = self.terminated = False

    async def close(self) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.terminated = True

    def is_closed(self) -> bool:
        return self.closed or self.terminated

    def is_in_transaction(self) -> bool:
        return False


class FakePool:
    async def _get_new_connection(self) -> FakeConn:
        return FakeConn()


async def test_close_closes_the_idle_and_refuses_new_ones() -> None:
    made = Lane(FakePool(), size=2)
    first, second = await made.checkout(), await made.checkout()
    assert await made.checkout() is None  # full: the caller uses the pool
    made.checkin(first, healthy=True)
    await made.close()
    assert first.closed
    assert made.idle == []
    made.checkin(second, healthy=True)  # lent during the close: terminated on its way back
    assert second.terminated
    assert made.opened == 0
    assert await made.checkout() is None


async def test_a_lease_returns_to_the_lane_it_came_from() -> None:
    """A client closed (and connected again) while a statement ran: the connection goes back to
    its own, closed lane, which terminates it, never into the new one."""

    class FakeClient:
        lane: Lane | None = Lane(FakePool())
        _pool_init_lock = asyncio.Lock()

    client = FakeClient()
    lease = LaneLease(client)  # type: ignore[arg-type]
    conn = await lease.__aenter__()
    old = client.lane
    assert old is not None
    await old.close()
    client.lane = Lane(FakePool())  # connected again
    await lease.__aexit__(None, None, None)
    assert conn.terminated
    assert old.opened == 0
    assert (client.lane.opened, client.lane.idle) == (0, [])


async def test_a_connection_that_cannot_be_opened_sends_the_statement_to_the_pool() -> None:
    class DownPool:
        async def _get_new_connection(self) -> Any:
            raise OSError("connection refused")

    down = Lane(DownPool())
    assert await down.checkout() is None
    assert down.opened == 0
