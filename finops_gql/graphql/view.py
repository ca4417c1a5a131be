"""The Strawberry ASGI view: typed context per request, and error codes clients can branch on."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from finops_gql.access import scope_for, scope_key
from finops_gql.answercache import Answer, AnswerCache, Key, bypassed
from finops_gql.auth import AuthError, AuthUnavailable, Principal, TokenVerifier
from finops_gql.config import Settings, is_loopback
from finops_gql.db import dataversion
from finops_gql.graphql.context import Context, Loaders
from finops_gql.graphql.cost import Cost
from finops_gql.graphql.documents import DocumentGuard, variables_key
from finops_gql.graphql.formatting import formatted
from finops_gql.graphql.ide import graphiql_page
from finops_gql.graphql.lean import execute_query
from finops_gql.graphql.limits import rate_limited, timed_out
from finops_gql.graphql.live import (
    TRY_AGAIN_LATER,
    UNAUTHORIZED,
    Refused,
    TextWebSocketAdapter,
    TransportWSHandler,
)
from finops_gql.jsonjs import dumps
from finops_gql.metrics import RATE_LIMITED_REQUESTS, WS_CONNECTIONS
from finops_gql.opencost.client import LIVE_READS, LiveReads

log = logging.getLogger(__name__)

ANONYMOUS = Principal("anonymous", frozenset())

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


# Codes of the answers given before any GraphQL runs (the body is not a usable request).
HTTP_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "REQUEST_TOO_LARGE",
}
JSON_MAX_DEPTH = 1024  # orjson's fixed bound: deeper documents raise instead of recursing
# The request scope's slot for the answer cache's key of a miss, stored after execution.
PENDING_ANSWER = "finops_gql.answer"


class RequestTooLarge(Exception):
    pass


def http_error(status: int, message: str, **extensions: object) -> Response:
    """An HTTP-level refusal in the GraphQL error shape, so clients parse one kind of body."""
    code = HTTP_CODES.get(status, "BAD_REQUEST")
    error = {"message": message, "extensions": {"code": code, **extensions}}
    body = {"data": None, "errors": [error]}
    return Response(dumps(body), status_code=status, media_type="application/json")


def _request_data(body: dict[str, Any]) -> GraphQLRequestData:
    """A JSON body's operation, checked as Strawberry's parse_http_body checks it."""
    query, variables, extensions = body.get("query"), body.get("variables"), body.get("extensions")
    for name, value, kind in (
        ("query", query, "a string"),
        ("variables", variables, "an object"),
        ("extensions", extensions, "an object"),
    ):
        if value is not None and not isinstance(value, str if name == "query" else dict):
            raise HTTPException(
                400, f"The GraphQL operation's `{name}` must be {kind} or null, if provided."
            )
    return GraphQLRequestData(
        query=query,
        variables=variables,
        operation_name=body.get("operationName"),
        extensions=extensions,
        protocol="http",
    )


def _too_large(limit: int) -> Response:
    return http_error(
        413,
        f"Request body is larger than GRAPHQL_MAX_BODY_BYTES={limit} bytes",
        limit="GRAPHQL_MAX_BODY_BYTES",
        value=limit,
    )


def _bounded(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive (chunked bodies have no Content-Length to check)."""
    received = 0

    async def bounded_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise RequestTooLarge
        return message

    return bounded_receive


def _json_kind(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _from_loopback(request: Request) -> bool:
    return request.client is not None and is_loopback(request.client.host)


def _authorization(params: dict[str, object] | None) -> str | None:
    """The Authorization value of a connection_init payload (key in any case), else None."""
    for key, value in (params or {}).items():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    return None


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = TextWebSocketAdapter

    def __init__(
        self,
        schema: BaseSchema,
        *,
        settings: Settings,
        verifier: TokenVerifier,
        documents: DocumentGuard | None = None,
        dev_token: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            schema,
            # Subscriptions over WebSockets with graphql-transport-ws only: not the deprecated
            # graphql-ws (subscriptions-transport-ws) protocol, nor multipart HTTP.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            connection_init_wait_timeout=timedelta(seconds=settings.graphql_ws_init_timeout_s),
            **kwargs,
        )
        self.settings = settings
        self.verifier = verifier
        self.max_subscriptions_per_connection = settings.graphql_ws_max_subscriptions
        self.ws_open = 0
        offline = offline_ide_html(self.graphql_ide_html) if self.graphql_ide else ""
        self._ide_html = graphiql_page(offline) if offline else ""
        self._dev_ide_html = graphiql_page(offline, dev_token) if offline and dev_token else None
        self.documents = documents if documents is not None else DocumentGuard(settings)
        mb = settings.graphql_answer_cache_mb
        self.answers = AnswerCache(mb, self.documents) if mb > 0 else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        limit = self.documents.max_body_bytes
        response: Response | None = None
        if scope["method"] == "POST":
            length = Headers(scope=scope).get("content-length")
            if length is not None and not (length.isascii() and length.isdigit()):
                response = http_error(400, "Content-Length must be a number of bytes")
            elif length is not None and int(length) > limit:
                response = _too_large(limit)  # refused before a byte of the body is read
            receive = _bounded(receive, limit)
        if response is None:
            request = Request(scope, receive)
            live = LIVE_READS.set(LiveReads())  # what this request reads of OpenCost live
            try:
                if self.answers is not None and scope["method"] == "POST":
                    response = await self._cached(request, self.answers)
                if response is None:
                    response = await self.run(request)
            except HTTPException as exc:
                response = http_error(exc.status_code, exc.reason)
            except RequestTooLarge:
                response = _too_large(limit)
            finally:
                LIVE_READS.reset(live)
        await response(scope, receive, send)

    async def _cached(self, request: Request, answers: AnswerCache) -> Response | None:
        """The answer from the cache (answercache.py), or None to execute; on a miss the key is
        left in the request's scope for execute_single to store the answer under."""
        principal = request.scope.get("state", {}).get("principal")
        content_type = request.headers.get("content-type", "").partition(";")[0].strip()
        if principal is None or content_type.lower() != "application/json":
            return None  # the normal path answers (or refuses) it
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return None
        if not isinstance(body, dict):
            return None
        query, name = body.get("query"), body.get("operationName")
        variables = variables_key(body.get("variables"))
        if not isinstance(query, str) or not isinstance(name, str | None) or variables is None:
            return None
        digest = answers.plan(query, name)
        if digest is None:
            bypassed()  # a mutation, a subscription, or a document the normal path refuses
            return None
        try:
            version = await dataversion.read()
        except Exception as exc:  # the database: executing will say what is wrong
            log.warning("answer cache bypassed: data version unreadable: %s", exc)
            bypassed()
            return None
        services = request.app.state.services
        day = services.costs.clock().astimezone(UTC).date().isoformat()
        key: Key = (version, day, scope_key(principal, self.settings), digest, name, variables)
        answer = answers.get(key)
        if answer is None:
            request.scope[PENDING_ANSWER] = key
            return None
        return await self._hit(services, principal, answer)

    async def _hit(self, services: Any, principal: Principal, answer: Answer) -> Response:
        """A cached answer, charged and reported like the operation it stands for."""
        cost = Cost(answer.cost, self.settings.graphql_max_cost)
        extension: dict[str, object] = {**cost.as_extension()}
        limiter = services.ratelimit
        decision = await limiter.charge(principal.subject, cost.requested) if limiter else None
        if decision is not None:
            extension |= decision.as_cost_extension()
            if not decision.allowed:
                RATE_LIMITED_REQUESTS.labels("graphql").inc()
                refused = {
                    "data": None,
                    "errors": [formatted(rate_limited(decision))],
                    "extensions": {"cost": extension},
                }
                return Response(
                    dumps(refused),
                    media_type="application/json",
                    headers={"Retry-After": decision.retry_after_header},
                )
        # The bytes the executed operation gives: {"data": ..., "extensions": {"cost": ...}}.
        content = b'{"data":' + answer.data + b',"extensions":' + dumps({"cost": extension})
        return Response(content + b"}", media_type="application/json")

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A graphql-transport-ws socket (middleware.py let only those through), counted against
        GRAPHQL_WS_MAX_CONNECTIONS."""
        limit = self.settings.graphql_ws_max_connections
        if self.ws_open >= limit:
            websocket = WebSocket(scope, receive, send)
            await websocket.accept(subprotocol=GRAPHQL_TRANSPORT_WS_PROTOCOL)
            reason = f"too many subscription sockets (GRAPHQL_WS_MAX_CONNECTIONS={limit})"
            log.warning("refused a subscription socket: %s", reason)
            await websocket.close(TRY_AGAIN_LATER, reason)
            return
        self.ws_open += 1
        WS_CONNECTIONS.inc()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.ws_open -= 1
            WS_CONNECTIONS.dec()

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """connection_init: the payload's Authorization is checked like the HTTP header, and
        the socket is closed when the token expires."""
        authorization = _authorization(context.connection_params)
        if authorization is None:
            raise Refused(
                UNAUTHORIZED, 'connection_init payload needs {"Authorization": "Bearer <JWT>"}'
            )
        try:
            principal = await self.verifier.verify_header(authorization)
        except AuthError as exc:
            raise Refused(UNAUTHORIZED, str(exc)) from None
        except AuthUnavailable as exc:
            raise Refused(TRY_AGAIN_LATER, str(exc)) from None
        context.principal = principal
        # The context was built before the token was known: its scope (AUTHZ_MODE) is this
        # principal's from now on, for every operation of the socket.
        context.loaders = Loaders(context.services, await scope_for(principal, self.settings))
        if context.connection is not None:
            context.connection.expire_at(principal.expires_at)
        acknowledged: UnsetType = UNSET  # a connection_ack without payload
        return acknowledged

    def parse_json(self, data: str | bytes) -> Any:
        """orjson bounds nesting (a body nested 1,000,000 deep is a 400, not a RecursionError),
        and every JSON value GraphQL-over-HTTP takes (body, variables, extensions) is an object."""
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            if "depth" in str(exc):
                message = f"JSON nests deeper than {JSON_MAX_DEPTH} levels"
            else:
                message = f"Unable to parse JSON: {exc}"
            raise HTTPException(400, message) from None
        if not isinstance(value, dict):
            raise HTTPException(400, f"Expected a JSON object, got {_json_kind(value)}")
        return value

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        content_type = (request.content_type or "").partition(";")[0].strip().lower()
        if (
            request.method == "POST"
            and content_type == "application/json"
            and not self._stream_transport_map
        ):
            # What nearly every request is, read without Strawberry's content-type parsing
            # (the email package) and stream-transport lookup: the same checks and messages.
            data: GraphQLRequestData | list[GraphQLRequestData] = _request_data(
                self.parse_json(await request.get_body())
            )
        else:
            data = await super().parse_http_body(request)
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item.operation_name, str | None):
                raise HTTPException(400, "operationName must be a string or null")
        return data

    def encode_json(self, data: object) -> bytes:
        return dumps(data)

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
        # Only the GraphiQL page (which executes nothing) gets through unauthenticated.
        principal = request.scope.get("state", {}).get("principal") or ANONYMOUS
        return Context(
            services=services,
            principal=principal,
            loaders=Loaders(services, await scope_for(principal, self.settings)),
            max_cost=self.settings.graphql_max_cost,
            documents=self.documents,
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            response["errors"] = [formatted(e) for e in result.errors]
        if result.extensions:
            response["extensions"] = result.extensions
        return response

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Run one operation under GRAPHQL_TIMEOUT_SECONDS and report its cost.

        The deadline cancels the operation's task at its next await (a DataLoader, the database,
        OpenCost); the event loop, and so every other request, keeps running meanwhile.
        """
        settings = self.settings
        deadline = asyncio.timeout(settings.graphql_timeout_s)
        try:
            async with deadline:
                allowed = OperationType.from_http(request_adapter.method)
                if request_adapter.method == "GET" and not self.allow_queries_via_get:
                    allowed = allowed - {OperationType.QUERY}
                # A valid query runs OperationGuard's steps directly (graphql/lean.py), the
                # rest Strawberry's way.
                lean = await execute_query(self.schema, context, request_data, allowed)
                if lean is not None:
                    result = lean
                else:
                    result = await super().execute_single(
                        request, request_adapter, sub_response, context, root_value, request_data
                    )
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning(
                "GraphQL operation %s stopped after %gs",
                request_data.operation_name or "anonymous",
                settings.graphql_timeout_s,
            )
            result = ExecutionResult(data=None, errors=[timed_out(settings.graphql_timeout_s)])
        # 0 when the document never reached execution (unparsable, invalid): nothing ran.
        cost = context.cost or Cost(0, settings.graphql_max_cost)
        extension: dict[str, object] = {**cost.as_extension()}
        if context.rate is not None:
            extension |= context.rate.as_cost_extension()
            if not context.rate.allowed:
                sub_response.headers["Retry-After"] = context.rate.retry_after_header
        result.extensions = {**(result.extensions or {}), "cost": extension}
        key = request.scope.get(PENDING_ANSWER)
        if key is not None and self.answers is not None:
            self._keep(key, result, context)
        return result

    def _keep(self, key: Key, result: ExecutionResult, context: Context) -> None:
        """Store a miss's answer unless it must not be served again (answercache.py)."""
        reads = LIVE_READS.get()
        if (
            result.errors
            or result.data is None
            or context.cost is None
            or context.connection is not None
            or reads is None
            or reads.seen
        ):
            return
        assert self.answers is not None
        self.answers.put(key, Answer(dumps(result.data), context.cost.requested))
