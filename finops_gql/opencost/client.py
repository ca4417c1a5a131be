"""HTTP client for OpenCost's /allocation and /healthz, on one shared aiohttp session."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from finops_gql.metrics import OPENCOST_ERRORS, OPENCOST_SECONDS
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.opencost.parse import Allocation, parse_allocation_response

log = logging.getLogger(__name__)

# OpenCost's UI (port 9090) proxies the API under /model/; the API port (9003) serves it at the root.
UI_API_PREFIX = "/model"
HEALTH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Health:
    available: bool
    reason: str | None = None


class OpenCostClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        cache_ttl_s: float = 30.0,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # /allocation over 30 days may take seconds; a health check that slow is itself an answer.
        self._health_timeout = aiohttp.ClientTimeout(total=min(timeout_s, HEALTH_TIMEOUT_S))
        self._cache_ttl = cache_ttl_s
        self._api_root: str | None = None
        self._cache: dict[
            tuple[tuple[str, str], ...], tuple[float, list[dict[str, Allocation]]]
        ] = {}
        self._inflight: dict[
            tuple[tuple[str, str], ...], asyncio.Future[list[dict[str, Allocation]]]
        ] = {}
        self.requests_made = 0  # HTTP requests to /allocation, for SyncRun and the benchmark

    async def _get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        health: bool = False,
    ) -> tuple[int, bytes]:
        timeout = self._health_timeout if health else self._timeout
        endpoint = url.rsplit("/", 1)[-1]
        started = time.perf_counter()
        try:
            async with self._session.get(url, params=params, timeout=timeout) as response:
                body = await response.read()
        except TimeoutError:
            OPENCOST_ERRORS.labels(endpoint).inc()
            raise OpenCostUnavailable(
                f"OpenCost timed out after {timeout.total}s", transient=True
            ) from None
        except aiohttp.ClientError as exc:
            OPENCOST_ERRORS.labels(endpoint).inc()
            raise OpenCostUnavailable(f"OpenCost is unreachable: {exc}", transient=True) from None
        finally:
            OPENCOST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        if response.status >= 400:
            OPENCOST_ERRORS.labels(endpoint).inc()
        return response.status, body

    async def api_root(self) -> str:
        """Find where the API lives under OPENCOST_URL, once, so users need not guess.

        Tries the UI's proxy first (`/model/healthz`), then the root. A URL that already ends in
        /model is taken as the API root.
        """
        if self._api_root is not None:
            return self._api_root
        if self._base.endswith(UI_API_PREFIX):
            self._api_root = self._base
            return self._api_root
        last = "no answer"
        for candidate in (self._base + UI_API_PREFIX, self._base):
            status, _ = await self._get(candidate + "/healthz", health=True)
            if status == 200:
                self._api_root = candidate
                log.info("OpenCost API found at %s", candidate)
                return candidate
            if status >= 500:  # found, but unwell: say so rather than "not found"
                raise OpenCostUnavailable(
                    f"OpenCost is unhealthy: HTTP {status} from {candidate}/healthz",
                    transient=True,
                )
            last = f"HTTP {status} from {candidate}/healthz"
        raise OpenCostUnavailable(f"OpenCost API not found under {self._base} ({last})")

    async def health(self) -> Health:
        try:
            await self.api_root()
            root = self._api_root or self._base
            status, _ = await self._get(root + "/healthz", health=True)
        except OpenCostUnavailable as exc:
            self._api_root = None
            return Health(False, str(exc))
        if status != 200:
            return Health(False, f"OpenCost health check answered HTTP {status}")
        return Health(True)

    async def allocation(
        self,
        *,
        window: str,
        aggregate: str,
        step: str | None = None,
        accumulate: bool | None = None,
        share_idle: bool | None = None,
        idle_by_node: bool | None = None,
        include_idle: bool | None = None,
        cached: bool = True,
    ) -> list[dict[str, Allocation]]:
        """GET /allocation; one list entry per step, keyed by the normalized selector key.

        Concurrent identical calls share one HTTP request, and with `cached` a result is reused for
        `cache_ttl_s` seconds, so a burst of page views costs OpenCost one query.
        """
        params: dict[str, str] = {"window": window, "aggregate": aggregate}
        if step is not None:
            params["step"] = step
        for name, flag in (
            ("accumulate", accumulate),
            ("shareIdle", share_idle),
            ("idleByNode", idle_by_node),
            ("includeIdle", include_idle),
        ):
            if flag is not None:
                params[name] = "true" if flag else "false"
        key = tuple(sorted(params.items()))

        if cached:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)

        future: asyncio.Future[list[dict[str, Allocation]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._inflight[key] = future
        try:
            result = await self._fetch_allocation(params, aggregate)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        else:
            future.set_result(result)
            if cached and self._cache_ttl > 0:
                self._cache[key] = (time.monotonic() + self._cache_ttl, result)
            return result
        finally:
            del self._inflight[key]

    async def _fetch_allocation(
        self, params: Mapping[str, str], aggregate: str
    ) -> list[dict[str, Allocation]]:
        root = await self.api_root()
        self.requests_made += 1
        status, body = await self._get(root + "/allocation", params)
        if status != 200:
            detail = body[:200].decode("utf-8", "replace").strip()
            raise OpenCostUnavailable(
                f"OpenCost answered HTTP {status}: {detail}", transient=status >= 500
            )
        try:
            decoded: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise OpenCostUnavailable("OpenCost answered with a body that is not JSON") from None
        return parse_allocation_response(decoded, aggregate)
