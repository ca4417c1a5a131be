"""The data version: one number that every write able to change an answer increments.

The GraphQL answer cache (answercache.py) keys its entries by it, so a write makes every answer
cached before it unreachable, in every API replica at once.

Why the database, not Redis: the version moves in the writer's own transaction, so it commits
with the data it describes, or not at all. No window where the data changed and the version did
not (a Redis INCR after the commit can be lost to a crash or a Redis blip between the two, and
the replicas would then serve stale answers until the next write); the writers that run without
Redis (`finops-gql sync` and `catalog import` from the CLI) bump it like the others; and a reader
needs nothing beyond the database it reads the answer from. The read is one primary-key lookup of
a one-row table.

Rules for a writer (tests/test_answercache.py checks every Mutation field, the sync and the
catalog import):
- call `bump()` inside the write's transaction, as its last statement where the transaction is
  long (the sync's): PostgreSQL holds the row's lock from the UPDATE to the commit, and other
  writers wait for it;
- without a transaction, call it after the write, never before: an answer computed between the
  write and the bump is stored under the old version, which the bump then retires; a bump before
  the write would let an answer of the old data be stored under the new version.
"""

from __future__ import annotations

import sqlite3

from tortoise.backends.base.client import BaseDBAsyncClient

from finops_gql.db import inline
from finops_gql.db.setup import connection

# An upsert: a database whose row went missing (emptied tables) starts again from 1.
BUMP_SQL = (
    'INSERT INTO "data_version" ("id", "version") VALUES (1, 1) '
    'ON CONFLICT ("id") DO UPDATE SET "version" = "data_version"."version" + 1'
)
READ_SQL = 'SELECT "version" FROM "data_version" WHERE "id" = 1'


async def bump(db: BaseDBAsyncClient | None = None) -> None:
    """Increment the version, in the current transaction (Tortoise's in_transaction makes it the
    default connection) or in `db`."""
    await (db or connection()).execute_query(BUMP_SQL)


async def read() -> int:
    """The current version: outside a transaction, committed writes only (each statement sees
    what was committed). On SQLite a primary-key read of a one-row table in the loop's thread
    on the file's read-only connection (db/inline.py), a few microseconds, kept out of
    `fetch_rows`'s layers since every request of the answer cache makes it; otherwise, or when
    SQLite is busy, a short read through `fetch_rows` (on PostgreSQL: the lane)."""
    filename = inline.sqlite_file(connection())
    if filename is not None:
        try:
            row = inline.reader(filename).execute(READ_SQL).fetchone()
            return int(row[0]) if row else 0
        except sqlite3.Error:
            pass  # busy, or the file moved: the driver's own way below
    rows = await inline.fetch_rows(READ_SQL, [])
    return int(rows[0][0]) if rows else 0
