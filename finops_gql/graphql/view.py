"""The Strawberry ASGI view: typed context per request, and error codes clients can branch on."""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import Any

import orjson
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from finops_gql.auth import Principal
from finops_gql.errors import Conflict, InvalidInput, NotFound, QueueUnavailable
from finops_gql.graphql.context import Context, Loaders
from finops_gql.graphql.ide import graphiql_page
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


STATIC_PREFIX = "/graphql/static/"
STATIC_DIR = Path(__file__).parent.parent / "static" / "graphiql"
CDN = "https://unpkg.com/"


def offline_ide_html(html: str) -> str:
    """Strawberry's GraphiQL page with its CDN assets served from the app itself.

    The vendored files are byte-identical to the pinned ones (scripts/vendor-graphiql checks), so
    the page's integrity attributes still hold.
    """
    for url in set(re.findall(r'https://unpkg\.com/[^"]+', html)):
        if not (STATIC_DIR / url.removeprefix(CDN)).is_file():
            raise RuntimeError(f"GraphiQL asset {url} is not vendored: run scripts/vendor-graphiql")
    return html.replace(CDN, STATIC_PREFIX)


def _from_loopback(request: Request) -> bool:
    try:
        return request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class GraphQLView(GraphQL[Context, None]):
    def __init__(self, *args: Any, dev_token: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offline = offline_ide_html(self.graphql_ide_html) if self.graphql_ide else ""
        self._ide_html = graphiql_page(offline) if offline else ""
        self._dev_ide_html = graphiql_page(offline, dev_token) if offline and dev_token else None

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> Response:
        # The development page (with a token) only to this machine, even on a loopback-only
        # server: behind a local reverse proxy the client is the forwarded address.
        if self._dev_ide_html is not None and _from_loopback(request):
            return HTMLResponse(self._dev_ide_html, headers={"Cache-Control": "no-store"})
        return HTMLResponse(self._ide_html)

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
