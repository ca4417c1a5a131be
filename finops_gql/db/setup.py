"""Database wiring shared by the app, the worker and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime
from functools import cache, partial
from typing import Any, TypeVar

import asyncpg
from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.fields import DatetimeField
from tortoise.migrations.api.migrate import migrate as tortoise_migrate
from tortoise.migrations.executor import MigrationExecutor
from tortoise.models import Model

from finops_gql.config import redact_url

MODELS_MODULE = "finops_gql.db.models"
MIGRATIONS_MODULE = "finops_gql.db.migrations"


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]
    """A PostgreSQL connection given back to the pool without asyncpg's reset statement.

    asyncpg runs `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on every
    release, and Tortoise releases after every statement, before the caller gets its rows: a
    second round trip per statement. This app leaves none of that state on a connection (no
    advisory locks, LISTEN, cursors outside a transaction, or session SET; its settings are the
    connection's startup parameters, which RESET ALL keeps anyway), and asyncpg still rolls back a
    transaction left open before the connection is reused.
    """

    def get_reset_query(self) -> str:
        return ""


# Session settings of every PostgreSQL connection (startup parameters, so no round trip): none
# beyond PostgreSQL's defaults now. Plans: asyncpg prepares every statement, and after five runs
# PostgreSQL may reuse a generic plan, costed without the parameters' values. A day range
# `day >= $1 AND day <= $2` then counts as 0.5 % of the rows, and the breakdowns' GROUP BY over
# 12,000-36,000 daily rows was planned as a sort and a group aggregate, about twice the CPU of the
# hash aggregate the real range gets. So day bounds are literals on PostgreSQL
# (`SqlParams.day`): such a statement is planned with its range, and its plan kept. Until then
# every connection planned every execution (plan_cache_mode=force_custom_plan), which cost more
# than running most of the short reads (a 500-component team summary: about 85 us of its 520),
# and PostgreSQL then planned cost_record's foreign key check (a saved query run for each row
# written) again for each of the sync's 300,000 rows: its COPY took 7.6-8.2 s, 2.9-3.1 s with
# the plan kept (tests/test_sync_write.py checks the COPY runs with plans kept).
SERVER_SETTINGS: dict[str, str] = {}


def _connection_config(database_url: str) -> str | dict[str, Any]:
    expanded = expand_db_url(database_url)
    if expanded["engine"] != "tortoise.backends.asyncpg":
        return database_url
    # Tortoise's asyncpg client, with short statements on connections beside the pool.
    expanded["engine"] = "finops_gql.db.pglane"
    credentials = expanded["credentials"]
    credentials["connection_class"] = PooledConnection
    credentials["server_settings"] = {
        **(credentials.get("server_settings") or {}),
        **SERVER_SETTINGS,
    }
    return expanded


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": _connection_config(database_url)},
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "migrations": MIGRATIONS_MODULE,
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


DEFAULT_CONNECT_TIMEOUT_S = 10.0
SQLITE_OPEN_RETRY_S = 0.05


class DatabaseUnavailable(Exception):
    """The database DATABASE_URL names cannot be opened. The message names the variable and the
    URL without its password, on one line: the CLI prints it as is."""


def _reason(exc: BaseException) -> str:
    # Tortoise wraps driver errors ("Can't establish connection"): the driver's cause says why.
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def _open_sqlite(database_url: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Open the file before aiosqlite's thread is involved (when it fails to open a file it may
    still call back into an event loop that asyncio.run has closed: "Event loop is closed" in a
    thread), and put it in WAL mode, Tortoise's, here: a new file's first switch to WAL needs
    the file alone, and a second process switching at the same moment (the server and the
    worker started together on a fresh file) got "database is locked" at once, not after the
    busy timeout. Retried until `timeout_s`; once the file is in WAL mode the switch is a no-op."""
    path = expand_db_url(database_url)["credentials"]["file_path"]
    deadline = time.monotonic() + timeout_s
    while True:
        opened = sqlite3.connect(path, timeout=timeout_s)
        try:
            opened.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        finally:
            opened.close()
        time.sleep(SQLITE_OPEN_RETRY_S)


async def init_db(database_url: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
    """Open the database and prove it answers, or raise DatabaseUnavailable.

    The probe matters: Tortoise connects lazily, and when SQLite cannot open its file (a missing
    folder) Tortoise's connection lock is never released, so the next statement waits forever.
    """
    opened = False
    try:
        async with asyncio.timeout(timeout_s):
            if database_url.startswith("sqlite:"):
                await asyncio.to_thread(_open_sqlite, database_url, timeout_s)
            # Global fallback: uvicorn runs the lifespan and each request in different tasks,
            # and Tortoise's context is a contextvar a request task would not inherit otherwise.
            opened = True
            await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)
            await connection().execute_query("SELECT 1")
    except Exception as exc:
        if opened:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await close_db()
        where = f"DATABASE_URL={redact_url(database_url)}"
        if isinstance(exc, TimeoutError):
            raise DatabaseUnavailable(
                f"cannot open the database at {where}: no answer within {timeout_s:g} s "
                "(DATABASE_CONNECT_TIMEOUT_SECONDS)"
            ) from None
        raise DatabaseUnavailable(f"cannot open the database at {where}: {_reason(exc)}") from None


async def pending_migrations(database_url: str) -> list[str]:
    """Names of the migrations not yet applied to the open database (read-only)."""
    apps = tortoise_config(database_url)["apps"]
    plan = await MigrationExecutor(connection(), apps).plan()
    return [step.migration.name for step in plan if not step.backward]


async def check_database(
    database_url: str,
    timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    *,
    migrated: bool = False,
) -> None:
    """Open and close: lets a command fail clearly before it starts its work. With `migrated`,
    an unmigrated database is refused too (its first query would be a traceback)."""
    await init_db(database_url, timeout_s)
    try:
        pending = await pending_migrations(database_url) if migrated else []
    finally:
        await close_db()
    if pending:
        raise DatabaseUnavailable(
            f"the database at DATABASE_URL={redact_url(database_url)} lacks {len(pending)} "
            f"migration(s) ({pending[-1]} is the latest): run `finops-gql migrate` first, "
            "or set MIGRATE_ON_START"
        )


async def close_db() -> None:
    from finops_gql.db import inline  # it reads through connection()

    inline.close()
    await Tortoise.close_connections()


async def migrate(database_url: str, timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S) -> list[str]:
    """Apply every pending migration (idempotent); returns the names applied, in order."""
    await check_database(database_url, timeout_s)
    applied: list[str] = []

    def progress(event: str, app_label: str, name: str) -> None:
        if event == "apply_done":
            applied.append(name)

    await tortoise_migrate(config=tortoise_config(database_url), progress=progress)
    return applied


def connection() -> BaseDBAsyncClient:
    client: BaseDBAsyncClient = connections.get("default")
    return client


def dialect() -> str:
    return str(connection().capabilities.dialect)


def placeholders(count: int, start: int = 1) -> list[str]:
    """Positional parameter markers for raw SQL in the current dialect."""
    if dialect() == "postgres":
        return [f"${i}" for i in range(start, start + count)]
    return ["?"] * count


class SqlParams:
    """Raw-SQL parameters in the current dialect: `p(value)` appends and returns its marker, so
    markers are generated in the order they appear in the text."""

    def __init__(self) -> None:
        self.values: list[object] = []
        self.postgres = dialect() == "postgres"
        # Case-insensitive LIKE: SQLite's LIKE already is (for ASCII letters, like its LOWER);
        # PostgreSQL's ILIKE folds all of Unicode. No LOWER() call per row on either.
        self.ilike = "ILIKE" if self.postgres else "LIKE"

    def __call__(self, value: object) -> str:
        self.values.append(sql_value(value))
        return f"${len(self.values)}" if self.postgres else "?"

    def day(self, value: date) -> str:
        """A day bound (`t.day >= {p.day(first)}`): on PostgreSQL a literal, so the statement is
        planned with the range it reads, however often it runs (see SERVER_SETTINGS); on SQLite
        a parameter like any other. Only a `date` (its ISO text is digits and dashes)."""
        if type(value) is not date:
            raise TypeError(f"a day bound must be a date, not {type(value).__name__}")
        if self.postgres:
            return f"DATE '{value.isoformat()}'"
        return self(value)


def sql_value(value: object) -> object:
    """A raw-SQL parameter as the current driver wants it: asyncpg takes native dates and UUIDs,
    while Tortoise keeps them as ISO text on SQLite."""
    if dialect() == "postgres":
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


M = TypeVar("M", bound=Model)
# (column, attribute, converter, whether None skips the converter)
Step = tuple[str, str, Callable[[Any], Any] | None, bool]


@cache
def _row_plan(model: type[Model], keys: tuple[str, ...]) -> tuple[Step, ...]:
    """Tortoise's own conversion of each column a partial row carries (what _init_from_db does
    for a row that lacks some of the model's columns), worked out once per model and columns."""
    meta = model._meta
    native = {k for k, _, _ in meta.db_native_fields}
    default = {k for k, _, _ in meta.db_default_fields}
    plan: list[Step] = []
    for key in keys:
        if key not in meta.fields_map:
            continue
        field = meta.fields_map[key]
        name = meta.fields_db_projection_reverse.get(key, key)
        if key in native:
            plan.append((key, name, None, True))
        elif key in default:
            plan.append((key, name, field.field_type, True))
        elif isinstance(field, DatetimeField):
            plan.append((key, name, partial(_datetime, field.to_python_value), False))
        else:
            plan.append((key, name, field.to_python_value, False))
    return tuple(plan)


def _datetime(to_python: Callable[[Any], Any], value: Any) -> Any:
    """Tortoise's DatetimeField conversion, with an ISO-8601 string (SQLite's storage) parsed by
    datetime.fromisoformat (C) rather than the iso8601 package (Python: half the cost of a
    component row); Tortoise still applies its time zone handling to the parsed value, and a
    string fromisoformat refuses goes to Tortoise as it is."""
    if type(value) is str:
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value)
    return to_python(value)


def partial_from_db(model: type[M], row: Mapping[str, Any]) -> M:
    """`model._init_from_db(**row)` for a row of some of the model's columns (a read path's
    SELECT list; other keys are ignored): the same instance, without re-deriving the
    conversions for every row, its attributes written in one `__dict__` update."""
    instance = model.__new__(model)
    values: dict[str, Any] = {
        "_partial": True,
        "_saved_in_db": True,
        "_custom_generated_pk": _custom_generated_pk(model),
        "_await_when_save": {},
    }
    for key, name, converter, none_as_is in _row_plan(model, tuple(row)):
        value = row[key]
        if converter is not None and not (none_as_is and value is None):
            value = converter(value)
        values[name] = value
    instance.__dict__.update(values)
    return instance


@cache
def _custom_generated_pk(model: type[Model]) -> bool:
    meta = model._meta
    return meta.db_pk_column not in meta.generated_db_fields
