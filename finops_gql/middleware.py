"""ASGI middleware: authentication for every route but the health checks."""

from __future__ import annotations

import math

from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from finops_gql.auth import AuthError, AuthUnavailable, TokenVerifier
from finops_gql.graphql.view import STATIC_PREFIX
from finops_gql.jsonjs import dumps
from finops_gql.rest.errors import error_response

GRAPHQL_PATH = "/graphql"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# GraphiQL's own JS and CSS (vendored open-source files, no data) load before any token exists.
PUBLIC_PREFIX = STATIC_PREFIX


def _is_graphiql_page(scope: Scope, headers: Headers) -> bool:
    # The IDE page itself holds no data; its queries are POSTs and carry the token. Same test as
    # Strawberry's should_render_graphql_ide, so a GET with ?query= is never let through.
    return (
        scope["method"] == "GET"
        and "query" not in QueryParams(scope["query_string"])
        and "text/html" in headers.get("accept", "")
    )


def _is_subscription_socket(scope: Scope) -> bool:
    return scope.get("path") == GRAPHQL_PATH and GRAPHQL_TRANSPORT_WS_PROTOCOL in scope.get(
        "subprotocols", ()
    )


class AuthMiddleware:
    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if _is_subscription_socket(scope):
                # Authenticated by the view on connection_init (graphql/live.py): browsers
                # cannot set headers on a WebSocket, so the token comes in the first message.
                await self.app(scope, receive, send)
            else:
                # Closed before the handshake completes: the client gets HTTP 403. No other
                # route takes websockets, and none may slip past authentication if one does.
                await send({"type": "websocket.close", "code": 1008})
            return
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        is_graphql = scope["path"] == GRAPHQL_PATH
        if is_graphql and _is_graphiql_page(scope, headers):
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.verifier.verify_header(headers.get("authorization"))
        except AuthError as exc:
            await _refuse(scope, receive, send, 401, str(exc), "UNAUTHENTICATED", is_graphql)
            return
        except AuthUnavailable as exc:
            # The identity provider's keys cannot be fetched: our fault, not the client's token.
            retry = [(b"retry-after", str(math.ceil(exc.retry_after_s)).encode())]
            await _refuse(
                scope, receive, send, 503, str(exc), "AUTH_UNAVAILABLE", is_graphql, retry
            )
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


async def _refuse(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    code: str,
    is_graphql: bool,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = list(extra_headers or [])
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="finops_gql"'))
    if is_graphql:
        body = {"data": None, "errors": [{"message": message, "extensions": {"code": code}}]}
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *headers],
            }
        )
        await send({"type": "http.response.body", "body": dumps(body)})
        return
    response = error_response(status, message)
    for name, value in headers:
        response.headers.setdefault(name.decode(), value.decode())
    await response(scope, receive, send)
