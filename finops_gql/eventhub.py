"""The event relay: ONE Redis pub/sub connection per API process, fanned out to its subscriptions.

The worker (and any replica) publishes events on Redis (events.py); every API process runs one
relay that subscribes to the channels once and hands each message, parsed once, to the local
subscribers that want it. A thousand open subscriptions cost one Redis connection, not a thousand.

- Each subscriber has a bounded queue (GRAPHQL_WS_QUEUE_SIZE). A subscriber whose queue is full
  (its client reads slower than events arrive) is dropped: removed from the relay, and its
  `on_overflow` callback closes its connection. The server never buffers without bound.
- Redis unreachable or dropped: the relay logs a warning and reconnects with exponential backoff
  and jitter; the API keeps serving, subscriptions stay open and receive nothing meanwhile.
  Redis pub/sub keeps nothing for absent listeners: events published during the gap are lost
  (they are notifications; the data they announce is in the database).
- A message that does not follow its channel's contract is logged and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis

from finops_gql.config import redact_url
from finops_gql.events import DEFAULT_CHANNEL_PREFIX, PARSERS, BadEvent, on_wire
from finops_gql.metrics import EVENT_RELAY_CONNECTED, SUBSCRIBERS, SUBSCRIBERS_DROPPED

log = logging.getLogger(__name__)

Accepts = Callable[[Any], bool]
OnOverflow = Callable[[], None]
# How long one read waits before the loop checks the connection's health again.
READ_TIMEOUT_S = 1.0


class SubscriberDropped(Exception):
    """The subscriber's queue overflowed: it was removed from the relay."""


class Subscriber:
    """One subscription's bounded queue of parsed events from one channel."""

    def __init__(
        self,
        hub: EventHub,
        channel: str,
        queue_size: int,
        accepts: Accepts | None,
        on_overflow: OnOverflow | None,
    ) -> None:
        self.hub = hub
        self.channel = channel
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self.accepts = accepts
        self.on_overflow = on_overflow
        self.dropped = False

    def offer(self, event: Any) -> bool:
        """Queue the event if this subscriber wants it; False when the queue is full."""
        if self.accepts is not None and not self.accepts(event):
            return True
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    async def get(self) -> Any:
        if self.dropped:
            raise SubscriberDropped
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)


class EventHub:
    def __init__(
        self,
        redis_url: str,
        *,
        queue_size: int = 100,
        parsers: Mapping[str, Callable[[Mapping[str, Any]], object]] = PARSERS,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        channel_prefix: str = DEFAULT_CHANNEL_PREFIX,
    ) -> None:
        self.redis_url = redis_url
        self.queue_size = queue_size
        self.parsers = dict(parsers)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.connect_timeout_s = connect_timeout_s
        self._subscribers: dict[str, set[Subscriber]] = {c: set() for c in self.parsers}
        # The Redis channel of each logical one (REDIS_CHANNEL_PREFIX), and back.
        self._logical = {on_wire(c, channel_prefix): c for c in self.parsers}
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.connects = 0  # successful subscriptions to Redis, for tests and logs

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Run the relay in the background (idempotent). It never raises: see _run."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="event-relay")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    # -- subscribers -------------------------------------------------------------------------

    def subscribe(
        self,
        channel: str,
        accepts: Accepts | None = None,
        on_overflow: OnOverflow | None = None,
    ) -> Subscriber:
        if channel not in self._subscribers:
            raise ValueError(f"the relay does not listen to {channel}")
        self.start()  # an app run without its lifespan (embedded, tests) starts it here
        subscriber = Subscriber(self, channel, self.queue_size, accepts, on_overflow)
        self._subscribers[channel].add(subscriber)
        SUBSCRIBERS.inc()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscribers = self._subscribers.get(subscriber.channel, set())
        if subscriber in subscribers:
            subscribers.discard(subscriber)
            SUBSCRIBERS.dec()

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def dispatch(self, channel: str, data: bytes | str) -> int:
        """Parse one message and offer it to the channel's subscribers; how many were dropped."""
        parser = self.parsers.get(channel)
        if parser is None:
            return 0
        try:
            body = orjson.loads(data)
            if not isinstance(body, dict):
                raise BadEvent("the message is not a JSON object")
            event = parser(body)
        except (orjson.JSONDecodeError, BadEvent) as exc:
            log.warning("event relay: skipped a message on %s: %s", channel, exc)
            return 0
        dropped = 0
        for subscriber in list(self._subscribers[channel]):
            if not subscriber.offer(event):
                dropped += 1
                self._drop(subscriber)
        return dropped

    def _drop(self, subscriber: Subscriber) -> None:
        subscriber.dropped = True
        self.unsubscribe(subscriber)
        SUBSCRIBERS_DROPPED.inc()
        log.warning(
            "event relay: dropped a subscriber of %s: %d events waiting, its client reads "
            "slower than they arrive (GRAPHQL_WS_QUEUE_SIZE)",
            subscriber.channel,
            subscriber.queue.maxsize,
        )
        if subscriber.on_overflow is not None:
            subscriber.on_overflow()

    # -- the Redis side ----------------------------------------------------------------------

    def _set_connected(self, connected: bool) -> None:
        self.connected = connected
        EVENT_RELAY_CONNECTED.set(1 if connected else 0)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not crypto)

    async def _run(self) -> None:
        attempt = 0
        where = redact_url(self.redis_url)
        while True:
            try:
                await self._listen(where)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect, never end the relay
                connected_before = self.connected
                self._set_connected(False)
                attempt = 1 if connected_before else attempt + 1
                delay = self._backoff(attempt)
                log.warning(
                    "event relay: Redis at REDIS_URL=%s %s (%s: %s); subscriptions receive no "
                    "events until it is back; retrying in %.1fs",
                    where,
                    "dropped the connection" if connected_before else "is unreachable",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _listen(self, where: str) -> None:
        client = aioredis.Redis.from_url(
            self.redis_url,
            socket_connect_timeout=self.connect_timeout_s,
            socket_keepalive=True,
            # PING on the idle connection, so a half-open one is noticed (and reconnected).
            health_check_interval=15,
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(*self._logical)
            self.connects += 1
            self._set_connected(True)
            log.info("event relay: listening to %s on %s", ", ".join(self._logical), where)
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=READ_TIMEOUT_S
                )
                if message is not None and message.get("type") == "message":
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    self.dispatch(self._logical.get(channel, channel), message["data"])
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()
