"""Rows of a short read, on SQLite in the event loop's own thread.

aiosqlite runs every statement on its own thread: the hop there and back costs about 70 us of
CPU, four times a top-10 read itself (about 18 us in SQLite's C code), and a REST request pays it
on every read. Like the data version (db/dataversion.py), a read-only connection per database
file reads in the loop's thread instead. Tortoise opens SQLite in WAL mode, where a reader never
waits for a writer; `timeout=0` makes the rare exception (a checkpoint, a recovery) raise
SQLITE_BUSY at once, and the read then goes through the driver.

Only for reads that are short (indexed, bounded: the loop does nothing else meanwhile) and
outside a transaction (only the transaction's own connection sees its uncommitted writes; inside
one, the driver reads). PostgreSQL reads through the driver (asyncpg is asynchronous already),
on the connections db/pglane.py keeps beside the pool, without Tortoise's `execute_query` layers.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient

from finops_gql.db.pglane import LaneClient
from finops_gql.db.setup import connection

_READERS: dict[str, sqlite3.Connection] = {}
_LOG = logging.getLogger("tortoise.db_client")  # Tortoise's own statement log


def reader(filename: str) -> sqlite3.Connection:
    """The read-only connection of a SQLite file (db/dataversion.py reads through it too)."""
    found = _READERS.get(filename)
    if found is None:
        uri = Path(filename).absolute().as_uri() + "?mode=ro"
        found = sqlite3.connect(uri, uri=True, timeout=0, isolation_level=None)
        _READERS[filename] = found
    return found


def sqlite_file(client: Any) -> str | None:
    """The SQLite file `client` reads, when a read may go inline: a file (not `:memory:`), and
    outside a transaction; else None."""
    filename = getattr(client, "filename", None)
    inline = isinstance(filename, str) and filename != ":memory:"
    return filename if inline and not isinstance(client, TransactionalDBClient) else None


async def fetch_rows(sql: str, values: list[Any], *, named: bool = False) -> Sequence[Any]:
    """The rows of `sql` (markers of the current dialect, db.setup.SqlParams), with the driver's
    values: each indexable by column position, and by name too when `named` (sqlite3.Row costs
    about 0.14 us a row more than a tuple; the drivers' own rows always are)."""
    client: Any = connection()
    filename = sqlite_file(client)
    if filename is not None:
        if _LOG.isEnabledFor(logging.DEBUG):  # as the driver's client logs every statement
            _LOG.debug("%s: %s", sql, values)
        try:
            cursor = reader(filename).cursor()
            if named:
                cursor.row_factory = sqlite3.Row
            return cursor.execute(sql, values).fetchall()
        except sqlite3.Error:
            pass  # busy, or the file moved: the driver's own way below
    if isinstance(client, LaneClient):  # PostgreSQL, outside any transaction
        return await client.fetch_rows(sql, values)
    rows: Sequence[Any] = (await client.execute_query(sql, values))[1]
    return rows


def close() -> None:
    """Close the readers (db.setup.close_db): the next database may be another file."""
    while _READERS:
        _, reader = _READERS.popitem()
        reader.close()
