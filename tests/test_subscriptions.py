"""GraphQL subscriptions (graphql-transport-ws) through a real uvicorn server, with a real
WebSocket client (the `websockets` package), events over a real Redis (REDIS_URL_TEST) published
by a real arq worker or by a separate Redis client, and Redis outages simulated by a TCP proxy.

Redis pub/sub channels are shared by every database of a Redis server: other test runs may
publish on the same channels, so each test waits for the event it caused (by id), not for "the
next message".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from finops_gql.app import create_app
from finops_gql.auth import mint_token
from finops_gql.config import Settings
from finops_gql.db.models import SyncRun
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.events import ALERTS_CHANNEL, BUDGET_CHANNEL, SYNC_FINISHED_CHANNEL, on_wire
from finops_gql.httpserver import uvicorn_options
from finops_gql.services import Services
from tests.conftest import REDIS_URL, TEST_SECRET, make_component, make_team, need, token, wire
from tests.proc import free_port
from tests.proc import serving as serving_process

PROTOCOL = Subprotocol("graphql-transport-ws")
ALERT_FIELDS = "event alertId kind status teamId componentId title raisedAt"
SYNC_FIELDS = (
    "syncRunId status trigger startedAt finishedAt days components records opencostRequests "
    "failedAggregateCount error"
)
WAIT_S = 10.0


# -- a real server and a real client -------------------------------------------------------------


@pytest.fixture
async def redis_url(settings: Settings) -> str:
    return need(REDIS_URL, "REDIS_URL_TEST")


@contextlib.asynccontextmanager
async def serving(settings: Settings, services: Services) -> AsyncIterator[str]:
    """The app under uvicorn (the options `finops-gql serve` uses) on a free port, in this
    process and event loop, sharing the test's services; yields the ws:// URL of /graphql."""
    services.settings = settings
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, services),
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"ws://127.0.0.1:{port}/graphql"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        await services.events.aclose()


class Client:
    """A graphql-transport-ws client, message by message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: dict[str, list[dict[str, Any]]] = {}

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def receive(self, within: float = WAIT_S) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), within)
        assert isinstance(frame, str), "graphql-transport-ws messages are text frames"
        message: dict[str, Any] = json.loads(frame)
        return message

    async def init(self, authorization: str | None) -> dict[str, Any]:
        payload = {} if authorization is None else {"Authorization": authorization}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        payload = {"query": query, "variables": variables or {}}
        await self.send({"id": id, "type": "subscribe", "payload": payload})

    async def next_for(self, id: str, within: float = WAIT_S) -> dict[str, Any]:
        """The next message of operation `id` (pings answered, other operations' kept)."""
        async with asyncio.timeout(within):
            while not self.pending.get(id):
                message = await self.receive(within)
                if message.get("type") == "ping":
                    await self.send({"type": "pong"})
                else:
                    self.pending.setdefault(str(message.get("id")), []).append(message)
            return self.pending[id].pop(0)

    async def closed(self, within: float = WAIT_S) -> tuple[int | None, str | None]:
        """Read until the server closes; its close code and reason."""
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(within):
                while True:
                    await self.ws.recv()
        assert self.ws.close_code is not None, "the server did not close the socket"
        return self.ws.close_code, self.ws.close_reason


@contextlib.asynccontextmanager
async def client(
    url: str, authorization: str | None = None, **options: Any
) -> AsyncIterator[Client]:
    async with connect(url, subprotocols=[PROTOCOL], **options) as ws:
        yield Client(ws)


@contextlib.asynccontextmanager
async def authed(url: str, settings: Settings, **options: Any) -> AsyncIterator[Client]:
    async with client(url, **options) as c:
        assert (await c.init(f"Bearer {token(settings)}")) == {"type": "connection_ack"}
        yield c


async def until(condition: Any, what: str, within: float = WAIT_S) -> None:
    for _ in range(int(within / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    assert condition(), what


async def subscribed(services: Services, count: int) -> None:
    """The relay listens on Redis and holds `count` subscribers (the protocol has no
    "subscribed" acknowledgement; an event published before this would be missed)."""
    events = services.events
    await until(
        lambda: events.connected and events.subscriber_count() == count,
        f"{count} subscribers on a connected relay",
    )


def alert(
    event: str = "raised", team_id: object = None, component_id: object = None, **extra: Any
) -> dict[str, Any]:
    """An alerts-channel message in the shape events.py documents."""
    body = {
        "id": str(uuid.uuid4()),
        "kind": "BUDGET_THRESHOLD",
        "status": "OPEN",
        "teamId": str(team_id) if team_id else None,
        "componentId": str(component_id) if component_id else None,
        "title": "checkout is at 82% of its budget",
        "raisedAt": "2026-05-02T03:00:12+00:00",
        **extra,
    }
    return {"event": event, "alert": body}


@contextlib.asynccontextmanager
async def publisher(url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.from_url(url)
    try:
        yield redis
    finally:
        await redis.aclose()


# -- events end to end ---------------------------------------------------------------------------


async def test_cost_sync_finished_from_a_real_worker(
    settings: Settings, services: Services, redis_url: str, fake: FakeOpenCost
) -> None:
    from tests.test_worker import run_worker

    settings = settings.with_(redis_url=redis_url)
    team = await make_team()
    await make_component(team, "checkout")
    await make_component(team, "search")
    async with serving(settings, services) as url, authed(url, settings) as c:
        await c.subscribe("sync", f"subscription {{ costSyncFinished {{ {SYNC_FIELDS} }} }}")
        await subscribed(services, 1)
        await services.enqueue_sync()
        await run_worker(settings)  # a real arq worker, in burst mode, over real Redis
        run = await SyncRun.get()
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await c.next_for("sync")
                assert message["type"] == "next", message
                event = message["payload"]["data"]["costSyncFinished"]
                if event["syncRunId"] == str(run.id):
                    break
    assert event == {
        "syncRunId": str(run.id),
        "status": "succeeded",
        "trigger": "manual",
        "startedAt": event["startedAt"],
        "finishedAt": event["finishedAt"],
        "days": 30,
        "components": 2,
        "records": 60,
        "opencostRequests": 1,
        "failedAggregateCount": 0,
        "error": None,
    }
    assert datetime.fromisoformat(event["finishedAt"]) >= datetime.fromisoformat(event["startedAt"])
    assert run.finished_at is not None
    # the DateTime scalar writes milliseconds
    assert abs(datetime.fromisoformat(event["finishedAt"]) - run.finished_at) < timedelta(
        milliseconds=1
    )


async def test_alert_raised_by_a_real_worker_reaches_a_subscriber(
    settings: Settings, services: Services, redis_url: str, fake: FakeOpenCost
) -> None:
    """End to end: a real arq worker syncs, its alert evaluation raises a budget alert and
    publishes it on Redis, and the subscriber of the component's team receives it."""
    from tests.test_worker import run_worker

    settings = settings.with_(redis_url=redis_url)
    team = await make_team()
    checkout = await make_component(team, "checkout")
    budgets = services.budgets
    await budgets.set_component_budget(checkout.id, budgets.spec(0.01, thresholds=[1.0]))
    async with serving(settings, services) as url, authed(url, settings) as c:
        await c.subscribe(
            "alerts",
            "subscription Raised($team: ID!) { alertRaised(teamId: $team) { "
            f"{ALERT_FIELDS} }} }}",
            {"team": str(team.id)},
        )
        await subscribed(services, 1)
        await services.enqueue_sync()
        await run_worker(settings)  # a real arq worker: sync, then the alert evaluation
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await c.next_for("alerts")
                assert message["type"] == "next", message
                event = message["payload"]["data"]["alertRaised"]
                if event["componentId"] == str(checkout.id):
                    break
    assert (event["event"], event["kind"], event["status"]) == (
        "RAISED",
        "BUDGET_THRESHOLD",
        "OPEN",
    )
    assert event["teamId"] == str(team.id)


async def test_alert_events_from_redis_are_filtered_by_team_and_its_sub_teams(
    settings: Settings, services: Services, redis_url: str
) -> None:
    settings = settings.with_(redis_url=redis_url)
    payments = await make_team("payments")
    fraud = await make_team("fraud")
    fraud.parent_id = payments.id
    await fraud.save()
    search = await make_team("search")
    checkout = await make_component(payments, "checkout")
    raised = f"subscription($team: ID) {{ alertRaised(teamId: $team) {{ {ALERT_FIELDS} }} }}"
    changed = f"subscription {{ alertChanged {{ {ALERT_FIELDS} }} }}"
    async with (
        serving(settings, services) as url,
        authed(url, settings) as c,
        publisher(redis_url) as redis,
    ):
        await c.subscribe("payments", raised, {"team": str(payments.id)})
        await c.subscribe("search", raised, {"team": str(search.id)})
        await c.subscribe("all", raised)
        await c.subscribe("changed", changed)
        await subscribed(services, 4)

        # a malformed message is skipped by the relay, not delivered half-read
        await redis.publish(
            wire(ALERTS_CHANNEL), json.dumps({"event": "raised", "alert": {"id": 1}})
        )
        await redis.publish(wire(ALERTS_CHANNEL), b"not json")
        sub_team = alert(team_id=fraud.id, component_id=checkout.id)
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(sub_team))
        other = alert(team_id=search.id)
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(other))
        platform = alert(team_id=None, kind="SYNC_FAILED")
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(platform))
        acked = alert("changed", team_id=payments.id, status="ACKNOWLEDGED")
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(acked))

        async def ids(operation: str, count: int) -> list[str]:
            found = []
            while len(found) < count:
                message = await c.next_for(operation)
                assert message["type"] == "next", message
                found.append(message["payload"]["data"][_root(operation)]["alertId"])
            return found

        mine = {sub_team["alert"]["id"], other["alert"]["id"], platform["alert"]["id"]}
        everything = [i for i in await ids("all", 3) if i in mine]
        assert everything == [
            sub_team["alert"]["id"],
            other["alert"]["id"],
            platform["alert"]["id"],
        ]
        # payments sees its sub-team's alert, and not search's nor the platform-wide one
        assert await ids("payments", 1) == [sub_team["alert"]["id"]]
        assert await ids("search", 1) == [other["alert"]["id"]]
        message = await c.next_for("changed")
        assert message["payload"]["data"]["alertChanged"] == {
            "event": "CHANGED",
            "alertId": acked["alert"]["id"],
            "kind": "BUDGET_THRESHOLD",
            "status": "ACKNOWLEDGED",
            "teamId": str(payments.id),
            "componentId": None,
            "title": "checkout is at 82% of its budget",
            "raisedAt": "2026-05-02T03:00:12.000Z",  # the DateTime scalar's form
        }
        # nothing more arrived for payments: the other team's and the platform alert were not
        # sent to it (a marker published last proves the earlier ones were filtered, not late)
        marker = alert(team_id=payments.id)
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(marker))
        assert await ids("payments", 1) == [marker["alert"]["id"]]


def _root(operation: str) -> str:
    return "alertChanged" if operation == "changed" else "alertRaised"


async def test_completing_a_subscription_unsubscribes_it(
    settings: Settings, services: Services, redis_url: str
) -> None:
    settings = settings.with_(redis_url=redis_url)
    async with serving(settings, services) as url, authed(url, settings) as c:
        await c.subscribe("a", "subscription { costSyncFinished { status } }")
        await c.subscribe("b", "subscription { alertRaised { alertId } }")
        await subscribed(services, 2)
        await c.send({"id": "a", "type": "complete"})
        await until(lambda: services.events.subscriber_count() == 1, "one subscriber left")
    await until(lambda: services.events.subscriber_count() == 0, "no subscriber left")


# -- authentication ------------------------------------------------------------------------------


def _expired(settings: Settings) -> str:
    return mint_token(
        settings, "tester", [], timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "connection_init payload needs"),
        ("Bearer not-a-token", "malformed token"),
        ("Basic dXNlcjpwYXNz", "Authorization header must be: Bearer <JWT>"),
        ("expired", "token expired"),
        ("other-secret", "invalid token"),
    ],
)
async def test_connection_init_without_a_valid_token_is_closed_with_4401(
    settings: Settings, services: Services, authorization: str | None, reason: str
) -> None:
    if authorization == "expired":
        authorization = f"Bearer {_expired(settings)}"
    elif authorization == "other-secret":
        other = settings.with_(jwt_secret="another-secret-that-is-long-enough-for-hs256-0")
        authorization = f"Bearer {token(other)}"
    async with serving(settings, services) as url, client(url) as c:
        payload = {} if authorization is None else {"Authorization": authorization}
        await c.send({"type": "connection_init", "payload": payload})
        code, text = await c.closed()
    assert code == 4401
    assert reason in (text or "")


async def test_subscribe_before_connection_init_is_closed_with_4401(
    settings: Settings, services: Services
) -> None:
    async with serving(settings, services) as url, client(url) as c:
        await c.subscribe("1", "subscription { costSyncFinished { status } }")
        assert (await c.closed())[0] == 4401


async def test_the_token_expiry_ends_an_open_subscription(
    settings: Settings, services: Services, redis_url: str
) -> None:
    settings = settings.with_(redis_url=redis_url)
    short = mint_token(settings, "tester", [], timedelta(seconds=2))
    async with serving(settings, services) as url, client(url) as c:
        # the header name in any case, as some clients lowercase it
        await c.send({"type": "connection_init", "payload": {"authorization": f"Bearer {short}"}})
        assert await c.receive() == {"type": "connection_ack"}
        await c.subscribe("1", "subscription { alertRaised { alertId } }")
        await subscribed(services, 1)
        started = asyncio.get_running_loop().time()
        code, reason = await c.closed(within=10)
        elapsed = asyncio.get_running_loop().time() - started
    assert (code, reason) == (4401, "token expired")
    assert elapsed < 4
    await until(lambda: services.events.subscriber_count() == 0, "the subscriber is gone")


async def test_no_connection_init_within_the_timeout_is_closed_with_4408(
    settings: Settings, services: Services
) -> None:
    settings = settings.with_(graphql_ws_init_timeout_s=0.3)
    async with serving(settings, services) as url, client(url) as c:
        assert (await c.closed())[0] == 4408


@pytest.mark.parametrize(
    ("path", "subprotocols"),
    [
        ("/graphql", None),  # no subprotocol
        (
            "/graphql",
            [Subprotocol("graphql-ws")],
        ),  # the deprecated subscriptions-transport-ws protocol
        ("/api/v1/cost/summary", [PROTOCOL]),
        ("/healthz", [PROTOCOL]),
        ("/graphql/static/graphiql@3.8.3/graphiql.min.js", [PROTOCOL]),
    ],
)
async def test_any_other_websocket_is_refused_at_the_handshake(
    settings: Settings, services: Services, path: str, subprotocols: list[Subprotocol] | None
) -> None:
    async with serving(settings, services) as url:
        target = url.removesuffix("/graphql") + path
        with pytest.raises(InvalidStatus) as refused:
            async with connect(target, subprotocols=subprotocols):
                pass
    assert refused.value.response.status_code == 403


async def test_a_subscription_over_http_is_an_error_not_a_crash(
    settings: Settings, services: Services
) -> None:
    async with serving(settings, services) as url:
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.post(
                "/graphql",
                json={"query": "subscription { costSyncFinished { status } }"},
                headers={"Authorization": f"Bearer {token(settings)}"},
            )
    assert response.status_code in (200, 400), response.text
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] != "INTERNAL_SERVER_ERROR", body


# -- limits --------------------------------------------------------------------------------------


async def _first_error(
    url: str, settings: Settings, query: str, **variables: Any
) -> dict[str, Any]:
    async with authed(url, settings) as c:
        await c.subscribe("1", query, variables)
        message = await c.next_for("1")
    assert message["type"] == "error", message
    error: dict[str, Any] = message["payload"][0]
    return error


async def test_subscription_documents_obey_the_http_limits(
    settings: Settings, services: Services
) -> None:
    settings = settings.with_(graphql_max_document_bytes=1024, graphql_max_fields=30)
    async with serving(settings, services) as url:
        padding = "#" + "x" * 1100 + "\n"
        big = await _first_error(url, settings, padding + "subscription { alertRaised { kind } }")
        assert big["extensions"]["code"] == "DOCUMENT_TOO_LARGE"
        assert big["extensions"]["limit"] == "GRAPHQL_MAX_DOCUMENT_BYTES"

        fields = " ".join(f"k{i}: kind" for i in range(35))
        wide = await _first_error(url, settings, f"subscription {{ alertRaised {{ {fields} }} }}")
        assert wide["extensions"]["limit"] == "GRAPHQL_MAX_FIELDS"

        aliases = " ".join(f"k{i}: kind" for i in range(21))  # MAX_ALIASES = 20
        many = await _first_error(url, settings, f"subscription {{ alertRaised {{ {aliases} }} }}")
        assert "aliases" in many["message"]

        invalid = await _first_error(url, settings, "subscription { alertRaised { nope } }")
        assert invalid["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"

        query = await _first_error(url, settings, "{ syncRuns { id } }")
        assert query["extensions"]["code"] == "BAD_REQUEST"
        assert "only subscriptions" in query["message"]

        bad_team = await _first_error(
            url, settings, 'subscription { alertRaised(teamId: "nope") { kind } }'
        )
        assert bad_team["extensions"]["code"] == "BAD_USER_INPUT"
        unknown = await _first_error(
            url, settings, f'subscription {{ alertRaised(teamId: "{uuid.uuid4()}") {{ kind }} }}'
        )
        assert unknown["extensions"]["code"] == "NOT_FOUND"
    assert services.events.subscriber_count() == 0


async def test_subscription_cost_is_checked_before_subscribing(
    settings: Settings, services: Services
) -> None:
    # An event costs 1 (one object per event); a limit of 0 shows the check runs at all.
    settings = settings.with_(graphql_max_cost=0)
    async with serving(settings, services) as url:
        error = await _first_error(url, settings, "subscription { costSyncFinished { status } }")
    assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert services.events.subscriber_count() == 0


async def test_subscriptions_per_connection_and_connections_per_process(
    settings: Settings, services: Services, redis_url: str
) -> None:
    settings = settings.with_(
        redis_url=redis_url, graphql_ws_max_subscriptions=2, graphql_ws_max_connections=1
    )
    async with serving(settings, services) as url, authed(url, settings) as c:
        await c.subscribe("1", "subscription { costSyncFinished { status } }")
        await c.subscribe("2", "subscription { alertRaised { kind } }")
        await c.subscribe("3", "subscription { alertChanged { kind } }")
        third = await c.next_for("3")
        assert third["type"] == "error"
        assert "limit" in third["payload"][0]["message"]
        await subscribed(services, 2)

        async with client(url) as second:
            code, reason = await second.closed()
        assert code == 1013
        assert "GRAPHQL_WS_MAX_CONNECTIONS=1" in (reason or "")


async def test_a_slow_consumer_is_dropped_and_the_server_carries_on(
    settings: Settings, services: Services, redis_url: str
) -> None:
    settings = settings.with_(redis_url=redis_url, graphql_ws_queue_size=4)
    query = "subscription { alertRaised { alertId kind status title } }"
    async with serving(settings, services) as url, publisher(redis_url) as redis:
        # A client that stops reading: a small receive buffer, so the server's writes back up
        # into its queue quickly instead of into megabytes of kernel buffers.
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((host, int(port)))
        async with authed(url, settings, sock=sock, max_queue=1) as slow:
            await slow.subscribe("1", query)
            await subscribed(services, 1)
            body = json.dumps(alert(title="x" * 200))
            sent = 0
            while services.events.subscriber_count() and sent < 20_000:
                async with redis.pipeline(transaction=False) as pipe:
                    for _ in range(200):
                        pipe.publish(wire(ALERTS_CHANNEL), body)
                    await pipe.execute()
                sent += 200
                await asyncio.sleep(0.01)
            await until(lambda: services.events.subscriber_count() == 0, "the slow one dropped")
            code, reason = await slow.closed(within=30)
        assert code == 1013
        assert "GRAPHQL_WS_QUEUE_SIZE" in (reason or "")

        # the server is fine: a new subscriber gets the next event
        async with authed(url, settings) as fresh:
            await fresh.subscribe("1", query)
            await subscribed(services, 1)
            marker = alert()
            await redis.publish(wire(ALERTS_CHANNEL), json.dumps(marker))
            while True:
                message = await fresh.next_for("1")
                if message["payload"]["data"]["alertRaised"]["alertId"] == marker["alert"]["id"]:
                    break


# -- Redis outages -------------------------------------------------------------------------------


class TcpProxy:
    """A TCP proxy to Redis that the test can cut (closing every connection and refusing new
    ones) and restore on the same port: a Redis restart, seen from the API."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()
        self.server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}


async def test_a_redis_outage_pauses_events_and_the_relay_reconnects(
    settings: Settings,
    services: Services,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    parts = httpx.URL(redis_url)
    proxy = TcpProxy((parts.host or "127.0.0.1", parts.port or 6379))
    await proxy.start()
    proxied = str(parts.copy_with(host="127.0.0.1", port=proxy.port))
    services.events.redis_url = proxied  # the relay of this process goes through the proxy
    services.events.backoff_s = 0.05
    services.events.max_backoff_s = 0.2
    settings = settings.with_(redis_url=proxied)
    query = "subscription { alertRaised { alertId } }"
    caplog.set_level(logging.WARNING, logger="finops_gql.eventhub")
    async with (
        serving(settings, services) as url,
        authed(url, settings) as c,
        publisher(redis_url) as redis,
    ):
        await c.subscribe("1", query)
        await subscribed(services, 1)
        assert services.events.connects == 1

        await proxy.cut()
        await until(lambda: not services.events.connected, "the relay noticed the outage")
        lost = alert()
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(lost))
        # the API serves meanwhile
        base = url.replace("ws://", "http://").removesuffix("/graphql")
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
        await asyncio.sleep(0.5)  # a few failed reconnections
        await proxy.start()
        await until(lambda: services.events.connected, "the relay reconnected")
        assert services.events.connects >= 2

        after = alert()
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(after))
        while True:
            message = await c.next_for("1")
            got = message["payload"]["data"]["alertRaised"]["alertId"]
            assert got != lost["alert"]["id"], "published while the relay was away"
            if got == after["alert"]["id"]:
                break
        await proxy.cut()
    warnings = [r.getMessage() for r in caplog.records if r.name == "finops_gql.eventhub"]
    assert any("dropped the connection" in w for w in warnings), warnings
    assert any("is unreachable" in w for w in warnings), warnings
    assert all("127.0.0.1" in w for w in warnings if "REDIS_URL" in w)


async def test_serve_starts_with_redis_unreachable_and_says_so(
    tmp_path: Path, opencost: tuple[FakeOpenCost, str]
) -> None:
    """The production path (`finops-gql serve`): Redis down at start is a warning, not a crash;
    sockets are served, their subscriptions just receive nothing."""
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'db.sqlite3'}",
        "OPENCOST_URL": opencost[1],
        "JWT_SECRET": TEST_SECRET,
        "REDIS_URL": "redis://127.0.0.1:1/0",
        "LOG_LEVEL": "WARNING",
    }
    settings = Settings(jwt_secret=TEST_SECRET)
    async with (
        serving_process(env, "--migrate") as served,
        httpx.AsyncClient(base_url=served.base, timeout=10) as http,
    ):
        async with authed(f"ws://127.0.0.1:{served.port}/graphql", settings) as c:
            await c.subscribe("1", "subscription { costSyncFinished { status } }")
            with pytest.raises(TimeoutError):
                await c.receive(within=1.5)
        assert (await http.get("/healthz")).status_code == 200
    expected = "event relay: Redis at REDIS_URL=redis://127.0.0.1:1/0 is unreachable"
    assert expected in served.stderr, served.stderr


# -- the sync's announcement ---------------------------------------------------------------------


async def test_every_sync_run_is_announced_failures_included(
    services: Services, redis_url: str, fake: FakeOpenCost, caplog: pytest.LogCaptureFixture
) -> None:
    services.settings = services.settings.with_(redis_url=redis_url)
    services.sync.publish = services.publish
    await make_component(await make_team(), "checkout")
    async with publisher(redis_url) as redis:
        pubsub = redis.pubsub()
        await pubsub.subscribe(wire(SYNC_FINISHED_CHANNEL))
        fake.fail = "500"
        with pytest.raises(Exception, match="500"):
            await services.sync.run("cli")
        failed = await SyncRun.get()
        async with asyncio.timeout(WAIT_S):
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message and json.loads(message["data"])["syncRunId"] == failed.id:
                    break
        await pubsub.aclose()
    event = json.loads(message["data"])
    assert event["status"] == "failed"
    assert event["failedAggregates"] == 1
    assert "500" in event["error"]

    # Redis refusing the publish costs the run nothing: logged, and the run is recorded
    async def broken(channel: str, message: str) -> object:
        raise ConnectionError("Redis went away")

    services.sync.publish = broken
    fake.fail = None
    caplog.set_level(logging.WARNING, logger="finops_gql.costs.sync")
    run = await services.sync.run("cli")
    assert run.status == "succeeded"
    assert any(
        f"could not publish the end of sync run {run.id}" in r.getMessage() for r in caplog.records
    )


# -- the relay and the settings, without a server ------------------------------------------------


async def test_the_relay_drops_only_the_subscriber_that_falls_behind() -> None:
    """Fan-out is per subscriber: a full queue drops its own subscriber (and calls its
    overflow callback), the others get every event; a filter spends no queue space."""
    from finops_gql.eventhub import EventHub, SubscriberDropped

    # Redis unreachable: the relay retries in the background; messages are dispatched by hand.
    hub = EventHub("redis://127.0.0.1:1/0", queue_size=3)
    overflowed: list[str] = []
    team = str(uuid.uuid4())
    slow = hub.subscribe(ALERTS_CHANNEL, on_overflow=lambda: overflowed.append("slow"))
    fast = hub.subscribe(ALERTS_CHANNEL, on_overflow=lambda: overflowed.append("fast"))
    other_team = hub.subscribe(
        ALERTS_CHANNEL,
        accepts=lambda m: m.team_id == team,
        on_overflow=lambda: overflowed.append("filtered"),
    )
    received = []
    for i in range(10):
        assert hub.dispatch(ALERTS_CHANNEL, json.dumps(alert(title=f"#{i}"))) == (i == 3)
        received.append((await fast.get()).title)  # the fast one keeps up
    assert received == [f"#{i}" for i in range(10)]
    assert overflowed == ["slow"]
    assert slow.dropped
    assert slow.queue.qsize() == 3
    with pytest.raises(SubscriberDropped):
        await slow.get()
    assert hub.subscriber_count() == 2
    assert other_team.queue.qsize() == 0
    hub.dispatch(ALERTS_CHANNEL, json.dumps(alert(team_id=team)))
    assert (await other_team.get()).team_id == team
    assert (await fast.get()).team_id == team
    # a message breaking the contract is skipped, not delivered half-read
    for bad in (b"[]", b"{", json.dumps({"event": "raised", "alert": {"id": "1"}})):
        assert hub.dispatch(ALERTS_CHANNEL, bad) == 0
    assert fast.queue.qsize() == 0
    fast.close()
    other_team.close()
    assert hub.subscriber_count() == 0
    await hub.aclose()


async def test_deployments_sharing_a_redis_server_hear_only_their_own_channels(
    services: Services, redis_url: str
) -> None:
    """Pub/sub ignores the database number: REDIS_CHANNEL_PREFIX keeps two deployments apart.
    What one publishes reaches its own relay, under its prefix; the other's relay hears nothing."""
    from finops_gql.eventhub import EventHub

    ours = services.settings.with_(redis_url=redis_url, redis_channel_prefix="prod")
    services.settings = ours
    prod = EventHub(redis_url, channel_prefix="prod")
    staging = EventHub(redis_url, channel_prefix="staging")
    heard_by_prod = prod.subscribe(ALERTS_CHANNEL)
    heard_by_staging = staging.subscribe(ALERTS_CHANNEL)
    raw = aioredis.from_url(redis_url)
    try:
        await until(lambda: prod.connected and staging.connected, "both relays listen")
        assert await raw.pubsub_numsub("prod:alerts", "staging:alerts") == [
            (b"prod:alerts", 1),
            (b"staging:alerts", 1),
        ]
        assert await services.publish(ALERTS_CHANNEL, json.dumps(alert(title="prod's"))) == 1
        assert (await asyncio.wait_for(heard_by_prod.get(), WAIT_S)).title == "prod's"
        await asyncio.sleep(0.2)  # time enough for a wrongly routed message to arrive
        assert heard_by_staging.queue.qsize() == 0
    finally:
        await raw.aclose()
        await prod.aclose()
        await staging.aclose()


@pytest.mark.parametrize("value", ["", "a b", "x" * 65, "finops/gql", "prod:eu"])
def test_a_bad_channel_prefix_is_refused_naming_the_variable(value: str) -> None:
    from finops_gql.config import ConfigError

    if value:
        with pytest.raises(ConfigError, match="REDIS_CHANNEL_PREFIX"):
            Settings.from_env({"REDIS_CHANNEL_PREFIX": value})
    else:  # empty means unset: the default, which keeps the documented channel names
        assert Settings.from_env({"REDIS_CHANNEL_PREFIX": value}).redis_channel_prefix == (
            "finops_gql"
        )
    assert on_wire(ALERTS_CHANNEL, "finops_gql") == "finops_gql:alerts" == ALERTS_CHANNEL
    assert on_wire(BUDGET_CHANNEL, "staging") == "staging:budget_exceeded"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GRAPHQL_WS_MAX_CONNECTIONS", "-1"),
        ("GRAPHQL_WS_MAX_SUBSCRIPTIONS", "0"),
        ("GRAPHQL_WS_QUEUE_SIZE", "lots"),
        ("GRAPHQL_WS_INIT_TIMEOUT_SECONDS", "0"),
    ],
)
def test_bad_subscription_settings_are_refused_naming_the_variable(name: str, value: str) -> None:
    from finops_gql.config import ConfigError

    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
    good = Settings.from_env({})
    assert (good.graphql_ws_max_connections, good.graphql_ws_queue_size) == (500, 100)


async def test_events_follow_the_principals_scope_in_team_mode(
    settings: Settings, services: Services, redis_url: str
) -> None:
    """AUTHZ_MODE=team: a member of payments gets its team's (and sub-teams') alerts only, no
    platform-wide one and no sync run (platform operations), and another team is NOT_FOUND."""
    settings = settings.with_(redis_url=redis_url, authz_mode="team")
    payments = await make_team("payments")
    fraud = await make_team("fraud")
    fraud.parent_id = payments.id
    await fraud.save()
    search = await make_team("search")
    member = mint_token(settings, "alice", [], timedelta(hours=1), teams=["payments"])
    async with (
        serving(settings, services) as url,
        client(url) as c,
        publisher(redis_url) as redis,
    ):
        assert (await c.init(f"Bearer {member}")) == {"type": "connection_ack"}
        await c.subscribe("alerts", f"subscription {{ alertRaised {{ {ALERT_FIELDS} }} }}")
        await c.subscribe("sync", f"subscription {{ costSyncFinished {{ {SYNC_FIELDS} }} }}")
        other = f'subscription {{ alertRaised(teamId: "{search.id}") {{ alertId }} }}'
        await c.subscribe("other", other)
        refused = await c.next_for("other")
        assert refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "NOT_FOUND"
        await subscribed(services, 2)

        sync = {
            "syncRunId": 7,
            "status": "succeeded",
            "trigger": "cron",
            "startedAt": "2026-05-02T03:00:00+00:00",
            "finishedAt": "2026-05-02T03:00:12+00:00",
            "days": 1,
            "components": 3,
            "records": 3,
            "opencostRequests": 1,
            "failedAggregates": 0,
            "error": None,
        }
        await redis.publish(wire(SYNC_FINISHED_CHANNEL), json.dumps(sync))
        for hidden in (alert(team_id=search.id), alert(team_id=None, kind="SYNC_FAILED")):
            await redis.publish(wire(ALERTS_CHANNEL), json.dumps(hidden))
        visible = alert(team_id=fraud.id)
        await redis.publish(wire(ALERTS_CHANNEL), json.dumps(visible))
        message = await c.next_for("alerts")
        # the first alert it gets is its sub-team's: the two before it were not sent
        assert message["payload"]["data"]["alertRaised"]["alertId"] == visible["alert"]["id"]
        with pytest.raises(TimeoutError):  # and no sync run, sent before it, ever comes
            await c.next_for("sync", within=0.5)


async def test_a_subscription_is_charged_to_the_principals_budget_when_it_starts(
    settings: Settings, services: Services, redis_url: str
) -> None:
    from finops_gql.ratelimit import RateLimiter

    settings = settings.with_(redis_url=redis_url, rate_limit_points_per_minute=2)
    services.ratelimit = RateLimiter.from_settings(settings)
    bearer = mint_token(settings, f"rate-{uuid.uuid4()}", [], timedelta(hours=1))
    query = "subscription { costSyncFinished { status } }"  # costs 1
    try:
        async with serving(settings, services) as url, client(url) as c:
            assert (await c.init(f"Bearer {bearer}")) == {"type": "connection_ack"}
            await c.subscribe("1", query)
            await c.subscribe("2", query)
            await subscribed(services, 2)
            await c.subscribe("3", query)
            third = await c.next_for("3")
    finally:
        assert services.ratelimit is not None
        await services.ratelimit.aclose()
        services.ratelimit = None
    assert third["type"] == "error"
    assert third["payload"][0]["extensions"]["code"] == "RATE_LIMITED"
