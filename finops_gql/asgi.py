"""The app factory each uvicorn worker process calls (`finops-gql serve --workers N`, N > 1).

Every worker builds its own app from the environment the parent validated: its own lifespan, so
its own database pool, aiohttp session, rate limiter and subscription event relay, and its own
answer cache; nothing is shared between processes except what lives in the database and Redis.
"""

from __future__ import annotations

from starlette.applications import Starlette

from finops_gql.app import create_app
from finops_gql.config import Settings
from finops_gql.httpserver import settle_heap
from finops_gql.logs import configure_logging


def app() -> Starlette:
    configure_logging()  # a spawned process starts without the parent's logging setup
    built = create_app(Settings.from_env())
    settle_heap()
    return built
