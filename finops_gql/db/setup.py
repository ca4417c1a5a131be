"""Database wiring shared by the app, the worker and the CLI."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from tortoise import Tortoise, connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.migrations.api.migrate import migrate as tortoise_migrate

MODELS_MODULE = "finops_gql.db.models"
MIGRATIONS_MODULE = "finops_gql.db.migrations"


def tortoise_config(database_url: str) -> dict[str, Any]:
    return {
        "connections": {"default": database_url},
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


async def init_db(database_url: str) -> None:
    # Global fallback: uvicorn runs the lifespan and each request in different tasks, and
    # Tortoise's context is a contextvar that a request task would not inherit otherwise.
    await Tortoise.init(config=tortoise_config(database_url), _enable_global_fallback=True)


async def close_db() -> None:
    await Tortoise.close_connections()


async def migrate(database_url: str) -> list[str]:
    """Apply every pending migration (idempotent); returns the names applied, in order."""
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
