"""PostgreSQL statements outside transactions on a few connections kept beside asyncpg's pool.

A statement through Tortoise's asyncpg client borrows a pool connection and gives it back:
asyncpg's `acquire` waits on an asyncio.Queue and `release` shields a new task, and Tortoise's
`execute_query` adds its own layers: measured in one process (min of 7 x 1,000, the benchmark's
data), a top-10 read took 178 us through `pool.fetch`, 134 us on the lane and 112 us on a
connection held throughout. Most requests make one to three short reads.

The lane keeps up to LANE_SIZE connections of its own, made like the pool's (asyncpg's
`_get_new_connection`: the same parameters, `server_settings` and connection class), and lends
them without any of that: a free one is popped from a list and pushed back after the statement.
When all are lent, the statement borrows from the pool as before, never waits for the lane. A
connection goes back only when the statement ended normally or with an error the server sent (the
connection is fine: the statement ran in autocommit); otherwise (cancelled, I/O error, left in a
transaction) it is terminated and a new one is made on demand.

Transactions are not affected: Tortoise's `in_transaction` takes its connection from the pool and
its statements run on it (`TransactionWrapper` has its own `acquire_connection`). Each API
process may hold the pool's `maxsize` connections, plus LANE_SIZE lane connections.

This module is also the Tortoise engine of PostgreSQL URLs (db.setup.tortoise_config): Tortoise
reads `client_class` from the module an engine names.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import asyncpg
from tortoise.backends.asyncpg.client import AsyncpgDBClient
from tortoise.backends.base.client import PoolConnectionWrapper

# Lane connections per process (per Tortoise client): the reads of requests in flight at once
# beyond this take pool connections, as they all did before.
LANE_SIZE = 4
CLOSE_TIMEOUT_S = 5.0

_LOG = logging.getLogger("tortoise.db_client")  # Tortoise's own statement log


class Lane:
    """The idle lane connections of one pool; `opened` counts the idle and the lent."""

    def __init__(self, pool: Any, size: int = LANE_SIZE) -> None:
        self.pool = pool
        self.size = size
        self.idle: list[Any] = []
        self.opened = 0
        self.closed = False

    async def checkout(self) -> Any | None:
        """An idle connection, a new one while fewer than `size` exist, else None (use the
        pool). A connection that cannot be opened gives None too: the pool then answers, or
        raises its own error."""
        if self.idle:
            return self.idle.pop()
        if self.closed or self.opened >= self.size:
            return None
        self.opened += 1
        try:
            conn = await self.pool._get_new_connection()
        except Exception:
            self.opened -= 1
            return None
        except BaseException:
            self.opened -= 1
            raise
        if self.closed:  # closed while this one was being opened
            self.opened -= 1
            conn.terminate()
            return None
        return conn

    def checkin(self, conn: Any, healthy: bool) -> None:
        if healthy and not self.closed and not conn.is_closed() and not conn.is_in_transaction():
            self.idle.append(conn)
            return
        self.opened -= 1
        conn.terminate()

    async def close(self) -> None:
        """Close the idle connections; a lent one is terminated when it comes back."""
        self.closed = True
        while self.idle:
            conn = self.idle.pop()
            self.opened -= 1
            try:
                await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
            except Exception:
                conn.terminate()


def _healthy(exc: BaseException | None) -> bool:
    # An error the server answered with leaves the connection ready for the next statement.
    return exc is None or isinstance(exc, asyncpg.PostgresError)


class LaneLease:
    """`async with client.acquire_connection() as conn`: a lane connection, else the pool's."""

    __slots__ = ("client", "conn", "lane", "pooled")

    def __init__(self, client: LaneClient) -> None:
        self.client = client
        self.conn: Any = None
        self.lane: Lane | None = None
        self.pooled: PoolConnectionWrapper[Any] | None = None

    async def __aenter__(self) -> Any:
        lane = self.client.lane
        conn = await lane.checkout() if lane is not None else None
        if conn is None:
            self.pooled = PoolConnectionWrapper(self.client, self.client._pool_init_lock)
            return await self.pooled.__aenter__()
        self.conn, self.lane = conn, lane
        return conn

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.pooled is not None:
            await self.pooled.__aexit__(exc_type, exc, tb)
            return
        assert self.lane is not None
        # Back to the lane it came from: one closed meanwhile (the client closed, and perhaps
        # connected again with a new lane) terminates it.
        self.lane.checkin(self.conn, _healthy(exc))


class LaneClient(AsyncpgDBClient):
    """Tortoise's asyncpg client, with statements outside transactions on the lane."""

    lane: Lane | None = None

    async def create_connection(self, with_db: bool) -> None:
        await super().create_connection(with_db)
        self.lane = Lane(self._pool)

    async def _close(self) -> None:
        lane, self.lane = self.lane, None
        if lane is not None:
            await lane.close()
        await super()._close()

    def acquire_connection(self) -> Any:
        if self.lane is None:  # not connected yet: Tortoise's wrapper connects
            return super().acquire_connection()
        return LaneLease(self)

    async def fetch_rows(self, sql: str, values: Sequence[Any]) -> list[Any]:
        """The rows of a read, as asyncpg's records, without Tortoise's `execute_query` layers
        (its statement-kind test and the row count parsing), with its exceptions."""
        if _LOG.isEnabledFor(logging.DEBUG):
            _LOG.debug("%s: %s", sql, values)
        lane = self.lane
        if lane is not None and lane.idle:  # the common case, without a lease's coroutines
            conn = lane.idle.pop()
            try:
                rows: list[Any] = await conn.fetch(sql, *values)
            except BaseException as exc:
                await self._give_back(lane, conn, exc)
                raise
            lane.checkin(conn, True)
            return rows
        found: list[Any] = await self._translate_exceptions(_fetch, sql, values)  # type: ignore[assignment]
        return found

    async def _give_back(self, lane: Lane, conn: Any, exc: BaseException) -> None:
        """After a failed statement: the connection back (or dropped), and a server's error
        raised as Tortoise raises it (its own translation, on the same exception)."""
        lane.checkin(conn, _healthy(exc))
        if isinstance(exc, asyncpg.PostgresError):
            await self._translate_exceptions(_reraise, exc)


async def _reraise(client: LaneClient, exc: BaseException) -> None:
    raise exc


async def _fetch(client: LaneClient, sql: str, values: Sequence[Any]) -> list[Any]:
    async with client.acquire_connection() as conn:
        rows: list[Any] = await conn.fetch(sql, *values)
        return rows


# Tortoise's engine protocol: the module an engine string names provides its client class.
client_class = LaneClient
