"""Per-request context (request id, access log, HTTP metrics), GraphQL metrics, /metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from finops_gql.logs import request_id
from finops_gql.metrics import (
    GRAPHQL_SECONDS,
    HTTP_REQUESTS,
    HTTP_SECONDS,
    REGISTRY,
    SYNC_ABANDONED,
    SYNC_DURATION,
    SYNC_FAILED_AGGREGATES,
    SYNC_FINISHED,
    SYNC_RUNNING,
    SYNC_RUNNING_STALE,
    SYNC_STATUS,
)

log = logging.getLogger("finops_gql.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
OPERATION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class RequestContextMiddleware:
    """Request id (from X-Request-ID when sane, else new), access log line, HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # Label by route template, never by raw path: ids would explode the cardinality.
            label = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(label, scope["method"], str(status)).inc()
            HTTP_SECONDS.labels(label, scope["method"]).observe(elapsed)
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={"status": status, "durationMs": round(elapsed * 1000, 2), "route": label},
            )
            request_id.reset(token)


class GraphQLMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        name = context.operation_name or "anonymous"
        if not OPERATION_RE.match(name):
            name = "invalid"
        try:
            kind = context.operation_type.value
        except Exception:  # an unparsable document has no operation type
            kind = "unknown"
        GRAPHQL_SECONDS.labels(name, kind).observe(time.perf_counter() - started)


async def metrics(request: Request) -> Response:
    """Prometheus exposition. Sync gauges come from the database at scrape time, so the API reports
    the worker's runs too."""
    state = await request.app.state.services.sync.state()
    SYNC_RUNNING.set(state.running)
    SYNC_RUNNING_STALE.set(state.stale)
    SYNC_ABANDONED.set(state.abandoned)
    latest = state.latest
    if latest is not None and latest.finished_at is not None:
        SYNC_STATUS.set(1 if latest.status == "succeeded" else 0)
        SYNC_DURATION.set((latest.finished_at - latest.started_at).total_seconds())
        SYNC_FINISHED.set(latest.finished_at.timestamp())
        SYNC_FAILED_AGGREGATES.set(len(latest.failed_aggregates or []))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
