"""create_app(settings): the Starlette app with GraphQL, the legacy REST routes and health checks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from finops_gql.auth import TokenVerifier
from finops_gql.config import Settings
from finops_gql.db.setup import connection
from finops_gql.errors import Conflict, InvalidInput, NotFound
from finops_gql.graphql.documents import DocumentGuard
from finops_gql.graphql.schema import schema
from finops_gql.graphql.view import STATIC_DIR, STATIC_PREFIX, GraphQLView
from finops_gql.middleware import AuthMiddleware
from finops_gql.observability import RequestContextMiddleware, metrics
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.ratelimit import RateLimitMiddleware
from finops_gql.rest.errors import error_response
from finops_gql.rest.routes import routes as rest_routes
from finops_gql.services import Services, open_services

log = logging.getLogger(__name__)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


# Kubernetes' default probe timeout is 1 s: a slow dependency must show up as "unavailable" in
# the answer, not make the probe itself fail.
READY_CHECK_TIMEOUT_S = 0.8


async def _check(name: str, probe: Awaitable[object]) -> str:
    """`ok` or `unavailable`; the reason goes to the log only (the route is public)."""
    try:
        await asyncio.wait_for(probe, READY_CHECK_TIMEOUT_S)
    except TimeoutError:
        reason = f"no answer within {READY_CHECK_TIMEOUT_S} s"
    except OpenCostUnavailable as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"
    else:
        return "ok"
    log.warning("readiness: %s unavailable: %s", name, reason, extra={"check": name})
    return "unavailable"


async def _database_ok() -> None:
    await connection().execute_query("SELECT 1")


async def _opencost_ok(services: Services) -> None:
    health = await services.costs.availability()
    if not health.available:
        raise OpenCostUnavailable(health.reason or "OpenCost is unavailable")


async def _redis_ok(services: Services) -> None:
    await (await services.arq()).ping()


class Readiness:
    """The dependency checks, run at most once per `ttl_s` whatever the number of callers:
    /readyz is public, and each check costs OpenCost and Redis a request. Concurrent callers
    wait for the one check in flight and share its answer."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._lock = asyncio.Lock()
        self._checked_at = -math.inf
        self._checks: dict[str, str] = {}

    async def checks(self, services: Services) -> dict[str, str]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.ttl_s:
                database, opencost, redis = await asyncio.gather(
                    _check("database", _database_ok()),
                    _check("opencost", _opencost_ok(services)),
                    _check("redis", _redis_ok(services)),
                )
                self._checks = {"database": database, "opencost": opencost, "redis": redis}
                self._checked_at = time.monotonic()
            return self._checks


async def readyz(request: Request) -> Response:
    """Ready when the database answers; OpenCost and Redis are reported, not required."""
    readiness: Readiness = request.app.state.readiness
    checks = await readiness.checks(request.app.state.services)
    ready = checks["database"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(404, str(exc))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    return error_response(409, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    return error_response(503, f"OpenCost unavailable: {exc}")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        # NestJS's wording for unknown routes, which legacy clients may match on.
        return error_response(404, f"Cannot {request.method} {request.url.path}")
    response = error_response(exc.status_code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def create_app(settings: Settings, services: Services | None = None) -> Starlette:
    """Build the app. With `services` given (tests, embedding), the caller owns their lifetime."""
    verifier = TokenVerifier(settings)  # refuses missing or weak JWT configuration

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # JWKS keys are fetched in the background from here on; stopped before anything closes.
        await verifier.start()
        try:
            if services is not None:
                app.state.services = services
                services.events.start()
                yield
                return
            async with open_services(settings) as opened:
                app.state.services = opened
                # The event relay for subscriptions: connects (and retries) in the background,
                # so an unreachable Redis never stops the API from starting.
                opened.events.start()
                yield
        finally:
            await verifier.aclose()

    graphql = GraphQLView(
        schema,
        graphql_ide="graphiql" if settings.graphiql else None,
        settings=settings,
        verifier=verifier,
        documents=DocumentGuard(settings),
        dev_token=settings.graphiql_dev_token(),
    )
    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            # Before the REST routes: the busiest route is matched first.
            Route("/graphql", graphql, methods=["GET", "POST"]),
            *rest_routes,
            # Subscriptions (graphql-transport-ws); AuthMiddleware refuses any other socket.
            WebSocketRoute("/graphql", graphql),
            Mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="graphiql"),
        ],
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(AuthMiddleware, verifier=verifier),
            # After authentication: the budget is the principal's.
            Middleware(RateLimitMiddleware),
        ],
        exception_handlers={
            NotFound: _not_found,
            InvalidInput: _bad_request,
            Conflict: _conflict,
            OpenCostUnavailable: _unavailable,
            HTTPException: _http_error,
            # Any other exception: RequestContextMiddleware logs it once and answers the 500.
        },
        lifespan=lifespan,
    )
    app.state.readiness = Readiness(settings.ready_cache_s)
    if services is not None:
        app.state.services = services
    return app
