"""Per-request context (request id, access log, HTTP metrics), GraphQL metrics, /metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid
from http import HTTPStatus
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.types import ExecutionContext

from finops_gql.jsonjs import dumps
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
from finops_gql.rest.errors import JSON_MEDIA_TYPE

log = logging.getLogger("finops_gql.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
OPERATION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# The method is client-chosen too (h11 accepts any token): label the standard ones only.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Label of GraphQL operations past the bound, or whose document did not validate.
OTHER = "other"
DEFAULT_MAX_OPERATIONS = 100


class OperationLabels:
    """The GraphQL operation names /metrics may carry: the first `limit` distinct names of
    documents that validated, in the order they were seen; anything else is `other`.

    Operation names are chosen by clients, and each label value is a time series kept for the
    life of the process: unbounded, 20,000 names made the exposition 47 MB and its rendering
    blocked the server for seconds. Process-wide, like the registry it guards.
    """

    def __init__(self) -> None:
        self.seen: set[str] = set()

    def label(self, name: str | None, *, valid: bool, limit: int) -> str:
        if not valid:
            return OTHER
        if name is None:
            return "anonymous"
        if not OPERATION_RE.match(name):
            return OTHER
        if name in self.seen:
            return name
        if len(self.seen) >= limit:
            return OTHER
        self.seen.add(name)
        return name


OPERATION_LABELS = OperationLabels()


def _error_body(path: str) -> tuple[bytes, bytes]:
    """The trace-free 500 answer: GraphQL-shaped on /graphql, NestJS-shaped elsewhere."""
    if path == "/graphql":
        body = {
            "data": None,
            "errors": [
                {"message": "internal error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
            ],
        }
        return dumps(body), b"application/json"
    nest = {"statusCode": 500, "message": "Internal server error", "error": HTTPStatus(500).phrase}
    return dumps(nest), JSON_MEDIA_TYPE.encode()


class RequestContextMiddleware:
    """Request id (from X-Request-ID when sane, else new), access log line, HTTP metrics, and the
    one place an unhandled exception becomes a 500: logged once, with the request id, and
    answered without internals but with X-Request-ID. It is not re-raised, so neither Starlette's
    ServerErrorMiddleware nor the server logs the same traceback again."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value  # the last one, as a dict of the headers would keep
        rid = incoming.decode("latin-1")
        if not REQUEST_ID_RE.match(rid):
            rid = uuid.uuid4().hex
        rid_header = (b"x-request-id", rid.encode())
        token = request_id.set(rid)
        status = 500
        started_response = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status = message["status"]
                started_response = True
                message["headers"] = [*message.get("headers", ()), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            status = 500
            log.exception(
                "unhandled error on %s %s",
                scope["method"],
                scope["path"],
                extra={"requestId": rid},
            )
            if not started_response:
                body, content_type = _error_body(scope["path"])
                await send_with_id(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", content_type),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send_with_id({"type": "http.response.body", "body": body})
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            # Label by route template, never by raw path: ids would explode the cardinality.
            label = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else OTHER
            requests, seconds = _http_metrics(label, method, status)
            requests.inc()
            seconds.observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                    extra={
                        "status": status,
                        "durationMs": round(elapsed * 1000, 2),
                        "route": label,
                    },
                )
            request_id.reset(token)


# The labelled children of the HTTP metrics, by (route, method, status): `labels()` takes a lock
# and builds a key on every call. Bounded like the labels themselves (route templates, the
# standard methods, the statuses the app answers with).
_HTTP_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _http_metrics(label: str, method: str, status: int) -> tuple[Any, Any]:
    found = _HTTP_CHILDREN.get((label, method, status))
    if found is None:
        found = (
            HTTP_REQUESTS.labels(label, method, str(status)),
            HTTP_SECONDS.labels(label, method),
        )
        _HTTP_CHILDREN[(label, method, status)] = found
    return found


def observe_operation(execution: ExecutionContext, seconds: float) -> None:
    """GRAPHQL_SECONDS for one operation (OperationGuard.on_operation), labelled by its name and
    kind: only documents that parsed and validated name a real operation; the others are
    labelled `other` whatever name they claim."""
    valid = execution.graphql_document is not None and not execution.pre_execution_errors
    try:
        kind = execution.operation_type.value if valid else "unknown"
    except Exception:  # e.g. several operations and no operationName
        kind, valid = "unknown", False
    services = getattr(execution.context, "services", None)
    limit = getattr(getattr(services, "settings", None), "metrics_max_operations", None)
    name = OPERATION_LABELS.label(
        execution.operation_name,
        valid=valid,
        limit=DEFAULT_MAX_OPERATIONS if limit is None else limit,
    )
    GRAPHQL_SECONDS.labels(name, kind).observe(seconds)


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
