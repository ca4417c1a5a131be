"""The per-principal request budget, kept in Redis so that every API replica draws on the same one.

REST and GraphQL share it: a REST call costs 1 point, a GraphQL operation its computed cost
(graphql/cost.py), charged before anything runs. The budget is RATE_LIMIT_POINTS_PER_MINUTE
points (0 disables the limiter).

The algorithm is GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp): each
point moves the principal's "theoretical arrival time" (TAT) `period / budget` later, and a charge
is refused when it would move the TAT more than one period past now. So a whole budget can be spent
at once, then points come back continuously (5,000 a minute: one every 12 ms), with no window edge
where twice the budget passes. The check and the update are one Lua script (EVALSHA: one round
trip, atomic across replicas), on Redis' own clock so that replicas' clocks do not matter. The key
holds one number and expires when the bucket is full again, so idle principals cost no memory.

Redis down or slow: the request goes through unlimited (fail open), the call is bounded by
RATE_LIMIT_TIMEOUT_SECONDS, a warning is logged at most once a minute and
finops_gql_rate_limit_fail_open_total counts every request let through unchecked. After a failure,
Redis is left alone for a second, so an outage adds no latency to every request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from finops_gql.config import Settings
from finops_gql.jsonjs import js_date
from finops_gql.metrics import RATE_LIMIT_FAIL_OPEN, RATE_LIMITED_REQUESTS
from finops_gql.rest.errors import error_response

log = logging.getLogger(__name__)

RATE_LIMITED = "RATE_LIMITED"
KEY_PREFIX = "finops_gql:rate:"
# After Redis failed, requests skip it this long (fail open at once) before it is tried again.
BACKOFF_S = 1.0
# At most one "Redis unavailable" warning per this many seconds, however many requests fail.
WARN_EVERY_S = 60.0
# Redis connections one process's limiter holds at most.
MAX_CONNECTIONS = 32
# The path charged by the GraphQL extension (by its computed cost) rather than by the middleware.
GRAPHQL_PATH = "/graphql"

# KEYS[1]: the principal's key. ARGV: budget (points), period (microseconds), cost (points).
# Returns {allowed (1/0), points left now, microseconds until this cost fits (0 when allowed),
# when the full budget is back (Redis time, microseconds since the epoch)}.
GCRA = """
local budget = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local interval = period / budget
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + cost * interval
if new_tat - now > period then
  local left = math.floor((period - (tat - now)) / interval + 1e-9)
  return {0, left, math.ceil(new_tat - period - now), math.ceil(tat)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
  math.ceil((new_tat - now) / 1000) + 1)
return {1, math.floor((period - (new_tat - now)) / interval + 1e-9), 0, math.ceil(new_tat)}
"""


def budget_key(subject: str) -> str:
    """The principal's Redis key: a hash of its JWT `sub`, so key names have a fixed length and
    no client-chosen text (and a subject is not readable from a Redis dump)."""
    return KEY_PREFIX + hashlib.sha256(subject.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class RateDecision:
    """Redis' answer to one charge."""

    allowed: bool
    charged: int  # the points this request was charged (or would have been, when refused)
    budget: int  # points per period
    remaining: int  # points left now, after this charge when it was allowed
    retry_after_s: float  # 0 when allowed: how long until this charge fits
    reset_at: datetime  # when the whole budget is available again

    @property
    def retry_after_header(self) -> str:
        """Retry-After, whole seconds (at least 1: a client must not retry at once)."""
        return str(max(1, math.ceil(self.retry_after_s)))

    @property
    def reset_epoch(self) -> int:
        return math.ceil(self.reset_at.timestamp())

    def message(self) -> str:
        return (
            f"rate limit exceeded: this request costs {self.charged} points and "
            f"{self.remaining} of the budget of {self.budget} points per minute "
            f"(RATE_LIMIT_POINTS_PER_MINUTE) are left; retry in {self.retry_after_header} s"
        )

    def as_cost_extension(self) -> dict[str, object]:
        """What GraphQL answers add to `extensions.cost`."""
        return {"remaining": self.remaining, "resetAt": js_date(self.reset_at)}

    def headers(self) -> list[tuple[bytes, bytes]]:
        """GitHub's rate limit headers, on every REST answer the limiter decided."""
        found = [
            (b"x-ratelimit-limit", str(self.budget).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset_epoch).encode()),
        ]
        if not self.allowed:
            found.append((b"retry-after", self.retry_after_header.encode()))
        return found


class RateLimiter:
    """GCRA budgets in Redis; `charge` answers None when the request was not checked (Redis
    unavailable), and never raises for Redis' sake."""

    def __init__(
        self,
        redis_url: str,
        points: int,
        *,
        period_s: float = 60.0,
        timeout_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if points <= 0:
            raise ValueError("a rate limiter needs a budget of at least 1 point")
        self.points = points
        self.period_us = round(period_s * 1_000_000)
        self.timeout_s = timeout_s
        self._clock = clock
        # Bounded: a burst of requests queues for a few connections (each call takes well under a
        # millisecond) instead of opening one connection per request in flight. The queue is this
        # semaphore, outside the RATE_LIMIT_TIMEOUT_SECONDS bound: waiting for our own turn is
        # congestion, not a Redis failure, and must not switch the limiter off. (Were the wait
        # inside the bound, a burst of concurrent requests would time out, fail open and
        # skip Redis for a second: anyone could buy unlimited requests with a burst.)
        self._turns = asyncio.Semaphore(max_connections)
        pool = BlockingConnectionPool.from_url(
            redis_url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the bound on the request path
        )
        self._redis = Redis.from_pool(pool)
        self._script = self._redis.register_script(GCRA)
        self._skip_until = -math.inf
        self._warned_at = -math.inf
        self._unchecked = 0  # requests let through since the last warning
        self._failing = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter | None:
        """The app's limiter, or None when RATE_LIMIT_POINTS_PER_MINUTE is 0."""
        if settings.rate_limit_points_per_minute == 0:
            return None
        return cls(
            settings.redis_url,
            settings.rate_limit_points_per_minute,
            period_s=settings.rate_limit_period_s,
            timeout_s=settings.rate_limit_timeout_s,
        )

    def cost_of(self, requested: int) -> int:
        """What an operation is charged: at least 1, and at most the whole budget (an operation
        costing more than the budget runs when the bucket is full, and empties it)."""
        return max(1, min(requested, self.points))

    async def charge(self, subject: str, requested: int) -> RateDecision | None:
        cost = self.cost_of(requested)
        if self._clock() < self._skip_until:
            self._fail_open("backoff", None)
            return None
        async with self._turns:
            if self._clock() < self._skip_until:  # Redis failed while this request queued
                self._fail_open("backoff", None)
                return None
            try:
                async with asyncio.timeout(self.timeout_s):
                    allowed, remaining, retry_us, reset_us = await self._script(
                        keys=[budget_key(subject)], args=[self.points, self.period_us, cost]
                    )
            except (RedisError, OSError, TimeoutError) as exc:
                self._skip_until = self._clock() + BACKOFF_S
                self._fail_open("unavailable", exc)
                return None
        if self._failing:
            self._failing = False
            log.info("rate limit: Redis answers again; budgets are enforced")
        decision = RateDecision(
            allowed=bool(allowed),
            charged=cost,
            budget=self.points,
            remaining=max(0, int(remaining)),
            retry_after_s=int(retry_us) / 1_000_000,
            reset_at=datetime.fromtimestamp(int(reset_us) / 1_000_000, UTC),
        )
        if not decision.allowed:
            log.info("rate limited: %d points asked, %d left", cost, decision.remaining)
        return decision

    def _fail_open(self, reason: str, exc: BaseException | None) -> None:
        RATE_LIMIT_FAIL_OPEN.labels(reason).inc()
        self._unchecked += 1
        self._failing = True
        now = self._clock()
        if exc is None or now - self._warned_at < WARN_EVERY_S:
            return
        log.warning(
            "rate limit: Redis unavailable (%s); requests go through unlimited "
            "(%d unchecked since the last warning)",
            type(exc).__name__,
            self._unchecked,
            extra={"unchecked": self._unchecked},
        )
        self._warned_at = now
        self._unchecked = 0

    async def aclose(self) -> None:
        await self._redis.aclose()


class RateLimitMiddleware:
    """Charges every authenticated REST request 1 point; /graphql is charged by the OperationGuard
    extension (by the operation's cost), and routes without a principal (health checks, /metrics,
    the GraphiQL page and its assets) are never charged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("state", {}).get("principal") if scope["type"] == "http" else None
        services = getattr(scope["app"].state, "services", None) if principal else None
        limiter: RateLimiter | None = getattr(services, "ratelimit", None)
        if principal is None or limiter is None or scope["path"] == GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return
        decision = await limiter.charge(principal.subject, 1)
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            RATE_LIMITED_REQUESTS.labels("rest").inc()
            response = error_response(429, decision.message())
            response.raw_headers.extend(decision.headers())
            await response(scope, receive, send)
            return
        headers = decision.headers()

        async def send_with_budget(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *headers]
            await send(message)

        await self.app(scope, receive, send_with_budget)
