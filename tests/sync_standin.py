"""An OpenCost stand-in for the sync's fault tests: real answer shape (FakeOpenCost's), served over
HTTP, with faults per aggregate, a gate that holds requests mid-flight, and counters."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from finops_gql.costs.service import CostService
from finops_gql.costs.sync import SyncService
from finops_gql.dev.opencost_fake import FakeOpenCost
from finops_gql.opencost.client import OpenCostClient
from finops_gql.services import Services
from tests.conftest import served


@dataclass
class StandIn:
    keys: list[str]
    now: datetime | None = None
    # aggregate -> how many of its requests fail before it answers (-1: every one)
    failures: dict[str, int] = field(default_factory=dict)
    fail_status: int = 500
    # More requests in flight than this are refused with 503, as an overloaded OpenCost does.
    capacity: int | None = None
    # Requests wait (at most hold_s) until this many have been in flight at once: the first wave
    # of a bounded fan-out reaches its bound deterministically.
    hold_until: int | None = None
    hold_s: float = 2.0
    # While set, requests wait until it opens (a hung OpenCost).
    gate: asyncio.Event | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    per_aggregate: Counter[str] = field(default_factory=Counter)
    inflight: int = 0
    max_inflight: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _more: asyncio.Condition = field(default_factory=asyncio.Condition)

    def app(self) -> web.Application:
        shape = FakeOpenCost(keys=self.keys)

        async def healthz(request: web.Request) -> web.Response:
            return web.Response(text="OK")

        async def allocation(request: web.Request) -> web.Response:
            params = dict(request.query)
            aggregate = params.get("aggregate", "")
            self.requests.append(params)
            self.per_aggregate[aggregate] += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            self.arrived.set()
            try:
                async with self._more:
                    self._more.notify_all()
                if self.capacity is not None and self.inflight > self.capacity:
                    return web.json_response({"code": 503, "message": "Error: busy"}, status=503)
                if self.hold_until is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.hold_s), self._more:
                            await self._more.wait_for(
                                lambda: self.max_inflight >= (self.hold_until or 0)
                            )
                if self.gate is not None:
                    await self.gate.wait()
                left = self.failures.get(aggregate, 0)
                if left != 0:
                    self.failures[aggregate] = left - 1 if left > 0 else left
                    return web.json_response(
                        {"code": self.fail_status, "message": f"Error: {aggregate} failed"},
                        status=self.fail_status,
                    )
                shape.now = self.now
                body = {"code": 200, "status": "success", "data": shape.allocations(params)}
                return web.Response(body=orjson.dumps(body), content_type="application/json")
            finally:
                self.inflight -= 1

        app = web.Application()
        app.router.add_get("/healthz", healthz, allow_head=False)
        app.router.add_get("/allocation", allocation, allow_head=False)
        return app

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        try:
            async with served(self.app()) as url:
                yield url
        finally:
            if self.gate is not None:
                self.gate.set()


def sync_service(
    services: Services, url: str, now: datetime | None = None, **options: Any
) -> SyncService:
    """A SyncService of its own (as another process would have) against `url`, on the test's
    database; `options` go to SyncService (concurrency, retries, lease_s ...)."""
    client = OpenCostClient(services.session, url, timeout_s=30, cache_ttl_s=0)
    costs = CostService(client, currency="USD")
    if now is not None:
        costs.clock = lambda: now
    options.setdefault("retry_backoff_s", 0.01)
    return SyncService(costs, **options)
