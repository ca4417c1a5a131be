"""A local OpenCost stand-in for development, tests and the benchmark. Never imported by production code.

It answers /allocation and /healthz in OpenCost's real response shape (the fields of the captured
responses in tests/fixtures), with deterministic daily costs per key, either at the root (the API
port, 9003) or under /model/ (the UI port, 9090). It also counts requests and can be told to fail.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiohttp import web

DAY = timedelta(days=1)


def daily_total(key: str, day: date) -> float:
    """Deterministic, realistic daily cost of one app: 1 to 4 USD, with a weekly wobble."""
    base = 1.0 + (zlib.crc32(key.encode()) % 300) / 100
    return base * (1 + 0.08 * math.sin(day.toordinal() * 2 * math.pi / 7))


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def parse_window(window: str, now: datetime) -> tuple[datetime, datetime]:
    """The subset of OpenCost's window syntax the gateway uses, plus today/yesterday."""
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if window == "today":
        return today, now
    if window == "yesterday":
        return today - DAY, today
    if window.endswith("d") and window[:-1].isdigit():
        return now - int(window[:-1]) * DAY, now
    if window.endswith("h") and window[:-1].isdigit():
        return now - timedelta(hours=int(window[:-1])), now
    if "," in window:
        start, end = window.split(",", 1)
        s, e = _parse_time(start), _parse_time(end)
        if e <= s:
            raise ValueError("window end before start")
        return s, e
    raise ValueError(f"invalid window {window!r}")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _allocation(
    name: str, start: datetime, end: datetime, total: float, iso: tuple[str, str] | None = None
) -> dict[str, Any]:
    """One allocation with the field set of a real OpenCost answer."""
    cpu, ram, pv, net = (round(total * f, 5) for f in (0.55, 0.30, 0.10, 0.05))
    minutes = (end - start).total_seconds() / 60
    # Copy a template and set what varies: the benchmark asks for 300,000 of these at once.
    allocation = dict(_TEMPLATE)
    start_text, end_text = iso or (_iso(start), _iso(end))
    window = {"start": start_text, "end": end_text}
    allocation.update(
        name=name,
        window=window,
        start=window["start"],
        end=window["end"],
        minutes=minutes,
        cpuCoreHours=round(minutes / 60 * 0.1, 5),
        cpuCost=cpu,
        networkCost=net,
        pvCost=pv,
        ramCost=ram,
        totalCost=round(cpu + ram + pv + net, 5),
    )
    return allocation


def _template() -> dict[str, Any]:
    return {
        "name": "",
        "properties": {"cluster": "cluster-one", "node": "node-a", "namespace": "default"},
        "window": {"start": "", "end": ""},
        "start": "",
        "end": "",
        "minutes": 0.0,
        "cpuCores": 0.1,
        "cpuCoreRequestAverage": 0.1,
        "cpuCoreUsageAverage": 0.05,
        "cpuCoreHours": 0.0,
        "cpuCost": 0.0,
        "cpuCostAdjustment": 0,
        "cpuEfficiency": 0.5,
        "gpuCount": 0,
        "gpuHours": 0,
        "gpuCost": 0,
        "gpuCostAdjustment": 0,
        "networkTransferBytes": 0,
        "networkReceiveBytes": 0,
        "networkCost": 0.0,
        "networkCrossZoneCost": 0,
        "networkCrossRegionCost": 0,
        "networkInternetCost": 0,
        "networkCostAdjustment": 0,
        "loadBalancerCost": 0,
        "loadBalancerCostAdjustment": 0,
        "pvBytes": 0,
        "pvByteHours": 0,
        "pvCost": 0.0,
        "pvs": None,
        "pvCostAdjustment": 0,
        "ramBytes": 0,
        "ramByteRequestAverage": 0,
        "ramByteUsageAverage": 0,
        "ramByteHours": 0,
        "ramCost": 0.0,
        "ramCostAdjustment": 0,
        "ramEfficiency": 0.5,
        "sharedCost": 0,
        "externalCost": 0,
        "totalCost": 0.0,
        "totalEfficiency": 0.5,
        "rawAllocationOnly": None,
    }


_TEMPLATE = _template()
# The parameters of the sync's request (costs/sync.py: SyncService._fetch) that shape a step.
SYNC_PARAMS = {"aggregate": "label:app", "includeIdle": "true", "shareIdle": "false"}


@dataclass
class FakeOpenCost:
    keys: list[str]
    ui: bool = False  # serve under /model/ like the UI port instead of at the root
    legacy_keys: bool = False  # `app=<value>` keys, as OpenCost < 1.100 answers
    fail: str | None = None  # "500", "garbage", "timeout" ... for error paths
    now: datetime | None = None
    requests: list[dict[str, str]] = field(default_factory=list)
    # With fail="hang", /allocation waits for this event, then answers normally.
    release: asyncio.Event = field(default_factory=asyncio.Event)
    healthz_delay: float = 0.0  # seconds before /healthz answers (a slow health endpoint)
    allocation_delay: float = 0.0  # seconds before /allocation answers (so requests overlap)
    # Counted on every request, routed or not (a probe of /model/healthz on the API port too).
    healthz_probes: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    # OpenCost's own entries, per step: `__unallocated__` always (workloads without the label),
    # `__idle__` only with includeIdle=true (OpenCost's default is false), shared into the keys by
    # their cost instead with shareIdle=true; `__unmounted__` when there are unmounted volumes.
    idle_cost: float = 5.0
    unallocated_cost: float = 0.5
    unmounted_cost: float = 0.0
    # Steps encoded ahead of time (pregenerate), by what shapes a step: its bounds, aggregate,
    # includeIdle and shareIdle. Only pregenerate fills it: tests that change the other fields
    # between requests never read a stale step.
    encoded: dict[tuple[str, ...], bytes] = field(default_factory=dict)

    def clock(self) -> datetime:
        return self.now or datetime.now(UTC)

    def _key(self, aggregate: str, value: str) -> str:
        if self.legacy_keys and aggregate.startswith("label:"):
            return f"{aggregate.removeprefix('label:')}={value}"
        return value

    def _cost(self, key: str, start: datetime, end: datetime) -> float:
        total = 0.0
        day = datetime(start.year, start.month, start.day, tzinfo=UTC)
        while day < end:
            overlap = (min(end, day + DAY) - max(start, day)).total_seconds()
            if overlap > 0:
                total += daily_total(key, day.date()) * overlap / 86400
            day += DAY
        return total

    def allocations(self, params: dict[str, str]) -> list[dict[str, Any]]:
        return list(self.steps(params))

    def _bounds(self, params: dict[str, str]) -> list[tuple[datetime, datetime]]:
        start, end = parse_window(params["window"], self.clock())
        if params.get("step") and params.get("accumulate", "false") != "true":
            if params["step"] != "1d":
                raise ValueError("only step=1d is simulated")
            bounds = []
            s = start
            while s < end:
                bounds.append((s, min(s + DAY, end)))
                s += DAY
            return bounds
        return [(start, end)]

    def steps(self, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The answer's steps, one at a time (a 30-day answer for 100,000 keys is 3 GB)."""
        for s, e in self._bounds(params):
            yield self._step(params, s, e)

    def _step(self, params: dict[str, str], s: datetime, e: datetime) -> dict[str, Any]:
        aggregate = params.get("aggregate", "namespace")
        step: dict[str, Any] = {}
        iso = (_iso(s), _iso(e))
        for value in self.keys:
            name = self._key(aggregate, value)
            step[name] = _allocation(name, s, e, self._cost(value, s, e), iso)
        self._synthetic(step, params, s, e, iso)
        return step

    @staticmethod
    def _shape(params: dict[str, str], s: datetime, e: datetime) -> tuple[str, ...]:
        return (
            _iso(s),
            _iso(e),
            params.get("aggregate", "namespace"),
            params.get("includeIdle", "false"),
            params.get("shareIdle", "false"),
        )

    def encoded_steps(self, params: dict[str, str]) -> Iterator[bytes]:
        """The answer's steps as JSON, those pregenerated as they were encoded then."""
        for s, e in self._bounds(params):
            found = self.encoded.get(self._shape(params, s, e))
            yield found if found is not None else orjson.dumps(self._step(params, s, e))

    def pregenerate(self, days: int, params: dict[str, str]) -> None:
        """Encode ahead the daily steps of the `days` complete days before now, as a sync
        asks for them with `params` (the benchmark: its timer then measures the sync reading
        the answer, not this stand-in making it)."""
        now = self.clock()
        today = datetime(now.year, now.month, now.day, tzinfo=UTC)
        for n in range(days, 0, -1):
            s = today - n * DAY
            self.encoded[self._shape(params, s, s + DAY)] = orjson.dumps(
                self._step(params, s, s + DAY)
            )

    def _synthetic(
        self,
        step: dict[str, Any],
        params: dict[str, str],
        start: datetime,
        end: datetime,
        iso: tuple[str, str],
    ) -> None:
        """OpenCost's synthetic entries, as its allocation handler adds them (see the fields)."""
        if params.get("includeIdle") == "true" and self.idle_cost:
            if params.get("shareIdle") == "true":
                weight = sum(a["totalCost"] for a in step.values())
                for a in step.values():
                    share = round(self.idle_cost * a["totalCost"] / weight, 5) if weight else 0.0
                    a["cpuCost"] = round(a["cpuCost"] + share, 5)
                    a["totalCost"] = round(a["totalCost"] + share, 5)
            else:
                step["__idle__"] = _allocation("__idle__", start, end, self.idle_cost, iso)
        if self.unallocated_cost:
            step["__unallocated__"] = _allocation(
                "__unallocated__", start, end, self.unallocated_cost, iso
            )
        if self.unmounted_cost:
            step["__unmounted__"] = _allocation(
                "__unmounted__", start, end, self.unmounted_cost, iso
            )

    def app(self) -> web.Application:
        @web.middleware
        async def count(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            if request.path.endswith("/healthz"):
                self.healthz_probes += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                return await handler(request)
            finally:
                self.in_flight -= 1

        app = web.Application(middlewares=[count])
        prefix = "/model" if self.ui else ""

        async def healthz(request: web.Request) -> web.Response:
            if self.healthz_delay:
                await asyncio.sleep(self.healthz_delay)
            if self.fail == "down":
                return web.Response(status=503, text="unhealthy")
            return web.Response(text="OK")

        async def allocation(request: web.Request) -> web.StreamResponse:
            params = dict(request.query)
            self.requests.append(params)
            if self.fail == "hang":
                await self.release.wait()
            if self.allocation_delay:
                await asyncio.sleep(self.allocation_delay)
            if self.fail == "500":
                return web.json_response(
                    {"code": 500, "message": "Error: query failed"}, status=500
                )
            if self.fail == "garbage":
                return web.Response(text="<html>not json</html>", content_type="text/html")
            if self.fail == "after_first" and len(self.requests) > 1:
                return web.json_response({"code": 500, "message": "Error: boom"}, status=500)
            try:
                steps = self.encoded_steps(params)
                first = next(steps, None)
            except (KeyError, ValueError) as exc:
                return web.Response(status=400, text=f"Bad Request: {exc}")
            # Sent step by step, as a large real answer arrives: the same bytes as one
            # orjson.dumps of the whole answer, without holding it.
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"code":200,"status":"success","data":[')
            if first is not None:
                await response.write(first)
                for step in steps:
                    await response.write(b",")
                    await response.write(step)
            await response.write(b"]}")
            await response.write_eof()
            return response

        async def not_allowed(request: web.Request) -> web.Response:
            return web.Response(status=405)

        app.router.add_get(prefix + "/healthz", healthz, allow_head=False)
        app.router.add_route("HEAD", prefix + "/healthz", not_allowed)
        app.router.add_get(prefix + "/allocation", allocation, allow_head=False)
        app.router.add_get(prefix + "/allocation/compute", allocation, allow_head=False)
        return app


def keys_from_catalog(paths: Iterable[str]) -> list[str]:
    """The OpenCost keys of every component in Backstage catalog files."""
    from finops_gql.catalog.backstage import parse_catalog

    keys: list[str] = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            _, components, _ = parse_catalog(handle.read(), path)
        keys.extend(c.key or c.name for c in components)
    return keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local OpenCost stand-in")
    parser.add_argument(
        "catalog", nargs="*", help="Backstage catalog files whose components to cost"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9003)
    parser.add_argument("--ui", action="store_true", help="serve under /model/ like port 9090")
    parser.add_argument("--keys-file", help="also cost these keys (one per line)")
    parser.add_argument("--now", help="pretend it is this UTC time (ISO 8601)")
    parser.add_argument(
        "--pregenerate-days",
        type=int,
        default=0,
        help="encode the daily steps of the last N complete days, as the sync asks for them "
        "(aggregate label:app, idle included, not shared), before serving: the benchmark "
        "then times the sync, not this stand-in",
    )
    args = parser.parse_args(argv)
    keys = keys_from_catalog(args.catalog)
    if args.keys_file:
        with open(args.keys_file, encoding="utf-8") as handle:
            keys.extend(line.strip() for line in handle if line.strip())
    now = datetime.fromisoformat(args.now).astimezone(UTC) if args.now else None
    fake = FakeOpenCost(keys, ui=args.ui, now=now)
    fake.pregenerate(args.pregenerate_days, SYNC_PARAMS)
    web.run_app(fake.app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
