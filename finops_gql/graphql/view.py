"""The Strawberry ASGI view: typed context per request, and error codes clients can branch on."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from finops_gql.auth import Principal
from finops_gql.errors import Conflict, InvalidInput, NotFound, QueueUnavailable
from finops_gql.graphql.context import Context, Loaders
from finops_gql.opencost.errors import OpenCostUnavailable

log = logging.getLogger(__name__)

ANONYMOUS = Principal("anonymous", frozenset())

CODES: list[tuple[type[Exception], str]] = [
    (OpenCostUnavailable, "OPENCOST_UNAVAILABLE"),
    (NotFound, "NOT_FOUND"),
    (InvalidInput, "BAD_USER_INPUT"),
    (Conflict, "CONFLICT"),
    (QueueUnavailable, "QUEUE_UNAVAILABLE"),
]


def _formatted(error: GraphQLError) -> dict[str, Any]:
    original = error.original_error
    body: dict[str, Any] = dict(error.formatted)
    extensions = dict(body.get("extensions") or {})
    if original is None:
        extensions.setdefault("code", "GRAPHQL_VALIDATION_FAILED")
    else:
        for kind, code in CODES:
            if isinstance(original, kind):
                extensions["code"] = code
                break
        else:
            if "code" not in extensions:
                # A bug, not the client's fault: log it whole, answer without internals.
                log.error("unexpected error in %s", error.path, exc_info=original)
                body["message"] = "internal error"
                extensions["code"] = "INTERNAL_SERVER_ERROR"
    body["extensions"] = extensions
    return body


class GraphQLView(GraphQL[Context, None]):
    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> Context:
        services = request.app.state.services
        return Context(
            services=services,
            # Only the GraphiQL page (which executes nothing) gets through unauthenticated.
            principal=request.scope.get("state", {}).get("principal") or ANONYMOUS,
            loaders=Loaders(services),
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [_formatted(e) for e in result.errors]
        if result.extensions:
            response["extensions"] = result.extensions
        return response
