"""GraphQL subscriptions over WebSockets (graphql-transport-ws): the connection, its
authentication on connection_init, and the `Subscription` root fed by the event relay.

The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) as served here:
- the socket must ask for the `graphql-transport-ws` subprotocol on /graphql (middleware.py);
- its first message is `connection_init` with payload {"Authorization": "Bearer <JWT>"}, within
  GRAPHQL_WS_INIT_TIMEOUT_SECONDS (else 4408);
- a missing, malformed, expired or untrusted token closes the socket with 4401 Unauthorized, and
  so does the token's expiry (`exp`) while the socket is open: the client needs a new token, and
  graphql-ws clients do not retry 4401 on their own (they retry 4403 Forbidden, which would only
  loop on the same expired token);
- signing keys that cannot be fetched (JWT_JWKS_URL down) close with 1013 Try Again Later, which
  clients retry with backoff; so do GRAPHQL_WS_MAX_CONNECTIONS and a dropped slow subscriber;
- only subscriptions run over the socket (queries and mutations go over HTTP, under the per-
  operation deadline); GRAPHQL_WS_MAX_SUBSCRIPTIONS at a time per socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar, cast

import strawberry
from graphql import GraphQLError, GraphQLFormattedError
from starlette.websockets import WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    SubscribeMessage,
)

from finops_gql.costs.service import parse_uuid
from finops_gql.errors import NotFound
from finops_gql.eventhub import Subscriber, SubscriberDropped
from finops_gql.events import (
    ALERTS_CHANNEL,
    SYNC_FINISHED_CHANNEL,
    AlertMessage,
    SyncFinishedMessage,
)
from finops_gql.graphql.context import Context
from finops_gql.graphql.formatting import formatted
from finops_gql.graphql.types import CtxInfo

log = logging.getLogger(__name__)

UNAUTHORIZED = 4401
TRY_AGAIN_LATER = 1013
# RFC 6455: a close frame's reason is at most 123 bytes of UTF-8.
MAX_REASON_BYTES = 123


def close_reason(text: str) -> str:
    encoded = text.encode()
    if len(encoded) <= MAX_REASON_BYTES:
        return text
    return encoded[: MAX_REASON_BYTES - 3].decode(errors="ignore") + "..."


class Refused(Exception):
    """connection_init refused with a close code of ours (Strawberry's ConnectionRejectionError
    always closes with 4403)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = close_reason(reason)


class Connection:
    """One open socket: closes it on the token's expiry, or at once when a subscriber overflows."""

    def __init__(self, websocket: AsyncWebSocketAdapter) -> None:
        self.websocket = websocket
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    def close_soon(self, code: int, reason: str) -> None:
        """Close from any task; the operations end as the handler sees the socket close."""
        if self.closing:
            return
        self.closing = True
        self._spawn(self.websocket.close(code, close_reason(reason)))

    def expire_at(self, when: datetime | None) -> None:
        if when is not None:
            self._spawn(self._expire(when))

    async def _expire(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))
        log.info("closing a subscription socket: its token expired")
        self.close_soon(UNAUTHORIZED, "token expired")

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            if task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


class TextWebSocketAdapter(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are text frames: the view's JSON writer gives bytes, which
    Strawberry would send as binary frames (browsers' graphql-ws clients refuse those)."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(self.view.encode_json_string(message))
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler, with our close codes and the connection's
    timers."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.context.connection = Connection(self.websocket)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)
        except Refused as refused:
            log.info("refused a subscription socket: %s", refused.reason)
            await self.websocket.close(refused.code, refused.reason)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        """The document limits (size, tokens, fields) first, through the app's DocumentGuard:
        Strawberry's stream does not turn an error raised while parsing into an `error` message.
        The parsed document is cached there, so the operation does not parse it again."""
        payload = message.get("payload")
        query = payload.get("query") if isinstance(payload, dict) else None
        guard = self.context.documents
        if (
            self.connection_acknowledged
            and isinstance(query, str)
            and guard is not None
            and message.get("id") not in self.operations
        ):
            try:
                guard.parse(query)
            except GraphQLError as error:
                refusal: ErrorMessage = {
                    "id": message["id"],
                    "type": "error",
                    "payload": [cast("GraphQLFormattedError", formatted(error))],
                }
                await self.send_message(refusal)
                return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        connection = self.context.connection
        if connection is not None:
            await connection.aclose()
        await super().shutdown()


# -- the events, as GraphQL types ----------------------------------------------------------------


@strawberry.enum(description="What happened to the alert.")
class AlertEventType(Enum):
    RAISED = "raised"
    CHANGED = "changed"


@strawberry.type(
    description="An alert raised or changed, as its publisher announced it (the payload of the "
    "alerts channel, see finops_gql/events.py). Query the alert by id for the rest."
)
class AlertNotice:
    # Not the alert's history entry (AlertEvent): what the alerts channel announced.
    event: AlertEventType
    alert_id: strawberry.ID
    kind: str = strawberry.field(
        description="BUDGET_THRESHOLD, BUDGET_FORECAST, COST_ANOMALY or SYNC_FAILED."
    )
    status: str = strawberry.field(description="OPEN, ACKNOWLEDGED, SNOOZED or RESOLVED.")
    team_id: strawberry.ID | None = strawberry.field(
        description="The owning team; null for a platform-wide alert (SYNC_FAILED)."
    )
    component_id: strawberry.ID | None
    title: str | None
    raised_at: datetime | None

    @classmethod
    def of(cls, m: AlertMessage) -> AlertNotice:
        return cls(
            event=AlertEventType(m.event),
            alert_id=strawberry.ID(m.id),
            kind=m.kind,
            status=m.status,
            team_id=strawberry.ID(m.team_id) if m.team_id else None,
            component_id=strawberry.ID(m.component_id) if m.component_id else None,
            title=m.title,
            raised_at=m.raised_at,
        )


@strawberry.type(description="A cost sync run ended (syncRuns has the same run, in full).")
class SyncFinishedEvent:
    sync_run_id: strawberry.ID
    status: str = strawberry.field(description="succeeded, partial or failed.")
    trigger: str = strawberry.field(description="cron, manual or cli.")
    started_at: datetime
    finished_at: datetime | None
    days: int
    components: int
    records: int
    opencost_requests: int
    failed_aggregate_count: int
    error: str | None

    @classmethod
    def of(cls, m: SyncFinishedMessage) -> SyncFinishedEvent:
        # The same fields as the message, the run id as an ID (like SyncRun.id).
        return cls(**{**dataclasses.asdict(m), "sync_run_id": strawberry.ID(str(m.sync_run_id))})


# -- the resolvers -------------------------------------------------------------------------------

E = TypeVar("E")
T = TypeVar("T")


async def _relay(
    subscribe: Callable[[], Subscriber], convert: Callable[[E], T]
) -> AsyncIterator[T]:
    # Registered on the first pull, not before: a generator closed before it ever ran skips its
    # `finally`, and would leave its subscriber in the relay.
    subscriber = subscribe()
    try:
        while True:
            try:
                message = await subscriber.get()
            except SubscriberDropped:
                return  # its connection is being closed (Connection.close_soon)
            yield convert(message)
    finally:
        subscriber.close()


def _subscribe(
    info: CtxInfo, channel: str, accepts: Callable[[Any], bool] | None = None
) -> Subscriber:
    context = info.context
    connection = context.connection

    def overflowed() -> None:
        if connection is not None:
            connection.close_soon(
                TRY_AGAIN_LATER,
                "events arrived faster than this client read them (GRAPHQL_WS_QUEUE_SIZE)",
            )

    return context.services.events.subscribe(channel, accepts, overflowed)


async def _team_ids(info: CtxInfo, team_id: strawberry.ID | None) -> frozenset[str] | None:
    """The team and its sub-teams, as of subscribing (None: every team)."""
    if team_id is None:
        return None
    tid = parse_uuid(str(team_id), "teamId")
    if not info.context.scope.can_see_team(tid):
        raise NotFound("team", tid)  # like a missing team (access.py)
    settings = info.context.services.settings
    # The subscription's setup is bounded like any operation; waiting for events is not.
    async with asyncio.timeout(settings.graphql_timeout_s):
        subtree = (await info.context.services.catalog.team_subtrees([tid]))[tid]
    if not subtree:
        raise NotFound("team", tid)
    return frozenset(str(t) for t in subtree)


async def _alerts(
    info: CtxInfo, event: str, team_id: strawberry.ID | None
) -> AsyncIterator[AlertNotice]:
    teams = await _team_ids(info, team_id)
    # The principal's scope (AUTHZ_MODE, resolved on connection_init) applies to every event:
    # an alert of an invisible team, or a platform-wide one for a scoped principal, is not sent.
    scope = info.context.scope

    def accepts(m: AlertMessage) -> bool:
        return (
            m.event == event
            and (teams is None or m.team_id in teams)
            and scope.can_see_team(m.team_id)
        )

    return _relay(lambda: _subscribe(info, ALERTS_CHANNEL, accepts), AlertNotice.of)


TEAM_FILTER = (
    "Only alerts of this team and its sub-teams (as they are when the subscription starts); "
    "omitted: every alert the principal may see, platform-wide ones included for those who see "
    "everything (AUTHZ_MODE)."
)


def _alert_subscription(event: str, description: str) -> Any:
    """alertRaised and alertChanged: one resolver each, the same filter."""

    async def resolve(
        info: CtxInfo,
        team_id: Annotated[
            strawberry.ID | None, strawberry.argument(description=TEAM_FILTER)
        ] = None,
    ) -> AsyncIterator[AlertNotice]:
        return await _alerts(info, event, team_id)

    return strawberry.subscription(resolver=resolve, description=description)


@strawberry.type
class Subscription:
    alert_raised: AlertNotice = _alert_subscription("raised", "Each new alert, as it is raised.")
    alert_changed: AlertNotice = _alert_subscription(
        "changed", "Each alert status change (acknowledged, snoozed, reopened, resolved)."
    )

    @strawberry.subscription(description="The end of each cost sync run, whatever its outcome.")
    async def cost_sync_finished(self, info: CtxInfo) -> AsyncIterator[SyncFinishedEvent]:
        # Sync runs are platform operations, seen only by principals that see everything (as
        # in syncRuns, which is empty for the others): a scoped principal gets no event.
        everything = info.context.scope.everything
        return _relay(
            lambda: _subscribe(info, SYNC_FINISHED_CHANNEL, None if everything else _nothing),
            SyncFinishedEvent.of,
        )


def _nothing(event: object) -> bool:
    return False
