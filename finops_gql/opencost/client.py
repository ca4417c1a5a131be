"""HTTP client for OpenCost's /allocation and /healthz, on one shared aiohttp session.

Faults upstream are bounded here, once for every caller (REST, GraphQL, the sync, /readyz):
- at most `max_concurrency` requests to OpenCost at a time, whoever asks;
- answers read incrementally and refused past a size bound (live and sync bounds differ);
- the URL style (UI `/model/` prefix or API root) probed once per process, not per request;
- public error reasons that never echo what OpenCost sent; the detail goes to the log, which
  carries the request id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from finops_gql.config import redact_url
from finops_gql.metrics import OPENCOST_ERRORS, OPENCOST_SECONDS
from finops_gql.opencost.errors import OpenCostUnavailable
from finops_gql.opencost.parse import (
    NOT_JSON,
    Allocation,
    parse_allocation_response,
    stream_allocation_steps,
)

log = logging.getLogger(__name__)


class LiveReads:
    """Whether some work read OpenCost's live answers (figures or health): the GraphQL answer
    cache never keeps such an answer (answercache.py). Set in LIVE_READS by the caller before the
    work starts; tasks the work spawns share the same object."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = False


LIVE_READS: ContextVar[LiveReads | None] = ContextVar("opencost_live_reads", default=None)


def _read_live() -> None:
    reads = LIVE_READS.get()
    if reads is not None:
        reads.seen = True


# OpenCost's UI (port 9090) proxies the API under /model/; the API port (9003) serves it at the root.
UI_API_PREFIX = "/model"
HEALTH_TIMEOUT_S = 5.0
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_MAX_RESPONSE_MB = 50
# The sync's step=1d answers are legitimately large: about 1 KB per component per day, so 293 MB
# for 10,000 components x 30 days and 880 MB for the 90-day catch-up. The sync parses them as they
# arrive (its memory does not grow with the answer); bounded still, so a runaway answer cannot
# keep the worker reading.
DEFAULT_SYNC_MAX_RESPONSE_MB = 4096
MB = 1024 * 1024
READ_CHUNK = 256 * 1024
# Of an error answer, only this much is read (and logged): enough for OpenCost's message.
ERROR_BODY_BYTES = 2048


class _TimedOut(OpenCostUnavailable):
    """No answer in time: unlike a refused connection, the route may well exist."""


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
        health_timeout_s: float | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_response_mb: int = DEFAULT_MAX_RESPONSE_MB,
        sync_max_response_mb: int = DEFAULT_SYNC_MAX_RESPONSE_MB,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        # A streamed answer is read as fast as the sync parses it: the timeout bounds each wait
        # for OpenCost (its first byte, every read after), not the whole answer.
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=timeout_s, sock_read=timeout_s
        )
        # /allocation over 30 days may take seconds; a health check that slow is itself an answer.
        health_s = min(
            timeout_s, HEALTH_TIMEOUT_S if health_timeout_s is None else health_timeout_s
        )
        self._health_timeout = aiohttp.ClientTimeout(total=health_s)
        self._cache_ttl = cache_ttl_s
        # One semaphore per client, i.e. per OpenCost source: every request takes a slot.
        self._slots = asyncio.Semaphore(max_concurrency)
        self.max_concurrency = max_concurrency
        self._live_limit = ("OPENCOST_MAX_RESPONSE_MB", max_response_mb)
        self._sync_limit = ("OPENCOST_SYNC_MAX_RESPONSE_MB", sync_max_response_mb)
        # A URL that already ends in /model is the API root as given: never probed.
        self._fixed_root = self._base.endswith(UI_API_PREFIX)
        self._api_root: str | None = self._base if self._fixed_root else None
        self._discovery = asyncio.Lock()
        self._cache: dict[
            tuple[tuple[str, str], ...], tuple[float, list[dict[str, Allocation]]]
        ] = {}
        self._inflight: dict[
            tuple[tuple[str, str], ...], asyncio.Future[list[dict[str, Allocation]]]
        ] = {}
        self.requests_made = 0  # HTTP requests to /allocation, for SyncRun and the benchmark
        self.probes_made = 0  # /healthz requests made to find the API root

    # -- one HTTP request ---------------------------------------------------------------------

    def _failure(
        self,
        endpoint: str,
        reason: str,
        detail: str | None = None,
        *,
        counted: bool = False,
        transient: bool = False,
        kind: type[OpenCostUnavailable] = OpenCostUnavailable,
    ) -> OpenCostUnavailable:
        """The error to raise: a generic reason for clients, the detail for the log only (the
        log line carries the request id)."""
        if not counted:  # HTTP error statuses were counted when they arrived
            OPENCOST_ERRORS.labels(endpoint).inc()
        log.warning("OpenCost %s failed: %s (%s)", endpoint, reason, detail or "no detail")
        return kind(reason, detail, transient=transient)

    def _transport_failure(
        self, endpoint: str, url: str, exc: BaseException, timeout_s: float | None
    ) -> OpenCostUnavailable:
        """A timeout or a connection error as the (transient: retried) failure callers see."""
        if isinstance(exc, TimeoutError):
            reason = f"OpenCost timed out after {timeout_s:g}s"
            return self._failure(endpoint, reason, redact_url(url), transient=True, kind=_TimedOut)
        detail = f"{redact_url(url)}: {exc!r}"
        return self._failure(endpoint, "OpenCost is unreachable", detail, transient=True)

    def _status_failure(self, status: int | None, body: bytes | bytearray) -> OpenCostUnavailable:
        """An `allocation` answer other than 200 (counted when it arrived); 5xx is transient."""
        detail = bytes(body[:200]).decode("utf-8", "replace").strip()
        return self._failure(
            "allocation",
            f"OpenCost answered HTTP {status}",
            detail,
            counted=True,
            transient=status is not None and status >= 500,
        )

    async def _get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        health: bool = False,
        limit: tuple[str, int] | None = None,
    ) -> tuple[int, bytes | bytearray]:
        """GET under a concurrency slot. Success bodies are read up to `limit` (name, MB);
        error bodies only up to ERROR_BODY_BYTES, health bodies not at all."""
        endpoint = url.rsplit("/", 1)[-1]
        timeout = self._health_timeout if health else self._timeout
        try:
            if health:
                # A health check answers quickly or not at all: waiting for a slot counts too.
                async with asyncio.timeout(timeout.total):
                    async with self._slots:
                        return await self._send(url, params, endpoint, timeout, None)
            async with self._slots:
                return await self._send(url, params, endpoint, timeout, limit)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._transport_failure(endpoint, url, exc, timeout.total) from None

    async def _send(
        self,
        url: str,
        params: Mapping[str, str] | None,
        endpoint: str,
        client_timeout: aiohttp.ClientTimeout,
        limit: tuple[str, int] | None,
    ) -> tuple[int, bytes | bytearray]:
        started = time.perf_counter()
        try:
            async with self._session.get(url, params=params, timeout=client_timeout) as response:
                status = response.status
                if limit is None:
                    body: bytes | bytearray = b""
                elif status >= 400:
                    body = await _read_prefix(response, ERROR_BODY_BYTES)
                else:
                    body = await self._read_bounded(response, endpoint, *limit)
        finally:
            OPENCOST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        if status >= 400:
            OPENCOST_ERRORS.labels(endpoint).inc()
        return status, body

    async def _read_bounded(
        self, response: aiohttp.ClientResponse, endpoint: str, name: str, mb: int
    ) -> bytearray:
        """The whole body, read through _bounded_chunks (the same bound and refusals)."""
        body = bytearray()
        async for chunk in self._bounded_chunks(response, endpoint, name, mb):
            body += chunk
        return body

    # -- where the API lives ------------------------------------------------------------------

    async def api_root(self) -> str:
        """Where the API lives under OPENCOST_URL, found once per process so users need not guess.

        Tries the UI's proxy first (`/model/healthz`), then the root. Probed again only when
        /allocation answers 404 under the chosen root (see `_fetch_allocation`), never because a health
        check failed: a slow or failing /healthz must not fail requests /allocation would answer.
        """
        if self._api_root is not None:
            return self._api_root
        root, _ = await self._discover(None)
        return root

    async def _discover(self, stale: str | None) -> tuple[str, Health | None]:
        """Probe for the API root; concurrent callers share one probe. `stale` is the root a
        caller saw fail: if another caller replaced it meanwhile, that answer is used as is.

        Returns the root and, when this call probed it, that root's health as seen by the probe.
        """
        async with self._discovery:
            if self._api_root is not None and self._api_root != stale:
                return self._api_root, None
            statuses = []
            for candidate in (self._base + UI_API_PREFIX, self._base):
                self.probes_made += 1
                try:
                    status, _ = await self._get(candidate + "/healthz", health=True)
                except _TimedOut as exc:
                    # A missing route answers 404 at once; one that is slow exists. (Otherwise
                    # no answer at all: nothing learnt, the next call probes again.)
                    health = Health(False, exc.reason)
                else:
                    if status != 200 and status < 500:
                        statuses.append(f"HTTP {status} from {redact_url(candidate)}/healthz")
                        continue
                    # 5xx: found, but unwell; live calls may still be answered.
                    health = Health(True) if status == 200 else _unhealthy(status)
                self._api_root = candidate
                log.info("OpenCost API found at %s", redact_url(candidate))
                return candidate, health
            self._api_root = None
            raise self._failure(
                "healthz",
                "OpenCost API not found under OPENCOST_URL",
                "; ".join(statuses),
                counted=True,
            )

    async def health(self) -> Health:
        """Is OpenCost answering? A failure here never forgets the discovered API root."""
        _read_live()
        try:
            root = self._api_root
            if root is None:
                root, probed = await self._discover(None)
                if probed is not None:
                    return probed
            status, _ = await self._get(root + "/healthz", health=True)
        except OpenCostUnavailable as exc:
            return Health(False, exc.reason)
        if status != 200:
            return _unhealthy(status)
        return Health(True)

    # -- /allocation --------------------------------------------------------------------------

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
        bulk: bool = False,
        synthetic: bool = False,
    ) -> list[dict[str, Allocation]]:
        """GET /allocation; one list entry per step, keyed by the normalized selector key.

        Concurrent identical calls share one HTTP request, and with `cached` a result is reused for
        `cache_ttl_s` seconds, so a burst of page views costs OpenCost one query. `bulk` (the
        sync's multi-day answers) reads up to OPENCOST_SYNC_MAX_RESPONSE_MB instead of
        OPENCOST_MAX_RESPONSE_MB. `synthetic` keeps OpenCost's `__idle__`, `__unallocated__`
        and `__unmounted__` entries (parse.SYNTHETIC_KEYS), which are dropped otherwise.
        """
        _read_live()
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
        # The parsed answer differs with `synthetic`: part of the cache key, never sent.
        key = tuple(sorted([*params.items(), ("~synthetic", str(synthetic))]))

        if cached:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        pending = self._inflight.get(key)
        if pending is None:
            # The fetch runs in its own task: a caller that is cancelled (its GraphQL operation hit
            # the deadline) must not cancel the answer other callers are waiting for.
            pending = asyncio.ensure_future(
                self._fetch_and_cache(params, aggregate, key, cached, bulk, synthetic)
            )
            self._inflight[key] = pending
            pending.add_done_callback(lambda done: self._fetched(key, done))
        return await asyncio.shield(pending)

    async def allocation_steps(
        self,
        *,
        window: str,
        aggregate: str,
        step: str,
        share_idle: bool,
        include_idle: bool,
        synthetic: bool = True,
    ) -> AsyncGenerator[dict[str, Allocation]]:
        """The sync's GET /allocation: the answer parsed as it arrives, one step at a time, so
        memory does not grow with its size (parse.stream_allocation_steps). One HTTP request
        (one more if the API root moved, as `allocation`), never cached or shared. Errors are
        `allocation`'s, and may come after steps were yielded (a truncated answer): callers keep
        the steps aside until the iteration ends, and close it (contextlib.aclosing) if they
        stop early. Answers are bounded by OPENCOST_SYNC_MAX_RESPONSE_MB."""
        params = {
            "window": window,
            "aggregate": aggregate,
            "step": step,
            "shareIdle": "true" if share_idle else "false",
            "includeIdle": "true" if include_idle else "false",
        }
        root = await self.api_root()
        while True:
            url = root + "/allocation"
            self.requests_made += 1
            status: int | None = None
            started = time.perf_counter()
            try:
                async with (
                    self._slots,
                    self._session.get(url, params=params, timeout=self._stream_timeout) as response,
                ):
                    status = response.status
                    if status == 200:
                        chunks = self._bounded_chunks(response, "allocation", *self._sync_limit)
                        async for parsed in stream_allocation_steps(
                            chunks, aggregate, synthetic=synthetic
                        ):
                            yield parsed
                        return
                    body = await _read_prefix(response, ERROR_BODY_BYTES)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise self._transport_failure("allocation", url, exc, self._timeout.total) from None
            except OpenCostUnavailable as exc:
                if exc.reason.startswith("OpenCost answer exceeds"):
                    raise  # counted and logged where the bound was hit
                raise self._failure("allocation", exc.reason, exc.detail) from None
            finally:
                OPENCOST_SECONDS.labels("allocation").observe(time.perf_counter() - started)
            OPENCOST_ERRORS.labels("allocation").inc()
            if status == 404 and not self._fixed_root:
                # As `allocation`: the root may be wrong; probe again, retry once if it moved.
                new_root, _ = await self._discover(root)
                if new_root != root:
                    root = new_root
                    continue
            raise self._status_failure(status, body)

    async def _bounded_chunks(
        self, response: aiohttp.ClientResponse, endpoint: str, name: str, mb: int
    ) -> AsyncIterator[bytes]:
        """The body chunk by chunk; past the bound, drop the connection and refuse."""
        bound = mb * MB
        declared = response.content_length
        if declared is not None and declared > bound:
            response.close()
            raise self._failure(
                endpoint, f"OpenCost answer exceeds {name}={mb}", f"Content-Length {declared}"
            )
        read = 0
        async for chunk in response.content.iter_chunked(READ_CHUNK):
            read += len(chunk)
            if read > bound:
                response.close()  # the rest is never read: the connection goes, not the memory
                raise self._failure(
                    endpoint, f"OpenCost answer exceeds {name}={mb}", f"over {read} bytes"
                )
            yield chunk

    def _fetched(
        self, key: tuple[tuple[str, str], ...], done: asyncio.Future[list[dict[str, Allocation]]]
    ) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every caller may have gone

    async def _fetch_and_cache(
        self,
        params: Mapping[str, str],
        aggregate: str,
        key: tuple[tuple[str, str], ...],
        cached: bool,
        bulk: bool,
        synthetic: bool,
    ) -> list[dict[str, Allocation]]:
        limit = self._sync_limit if bulk else self._live_limit
        result = await self._fetch_allocation(params, aggregate, limit, synthetic)
        if cached and self._cache_ttl > 0:
            self._cache[key] = (time.monotonic() + self._cache_ttl, result)
        return result

    async def _fetch_allocation(
        self,
        params: Mapping[str, str],
        aggregate: str,
        limit: tuple[str, int],
        synthetic: bool = False,
    ) -> list[dict[str, Allocation]]:
        root = await self.api_root()
        self.requests_made += 1
        status, body = await self._get(root + "/allocation", params, limit=limit)
        if status == 404 and not self._fixed_root:
            # The chosen root may be wrong (probed while OpenCost was down or slow, or OpenCost
            # moved): probe again, and retry once if that found another root.
            new_root, _ = await self._discover(root)
            if new_root != root:
                self.requests_made += 1
                status, body = await self._get(new_root + "/allocation", params, limit=limit)
        if status != 200:
            raise self._status_failure(status, body)
        try:
            decoded: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            detail = bytes(body[:200]).decode("utf-8", "replace").strip()
            raise self._failure("allocation", NOT_JSON, detail) from None
        del body  # the parsed answer can be large enough without the raw bytes beside it
        try:
            return parse_allocation_response(decoded, aggregate, synthetic=synthetic)
        except OpenCostUnavailable as exc:
            raise self._failure("allocation", exc.reason, exc.detail) from None


def _unhealthy(status: int) -> Health:
    return Health(False, f"OpenCost is unhealthy: HTTP {status}")


async def _read_prefix(response: aiohttp.ClientResponse, size: int) -> bytes:
    """At most `size` bytes of the body; the rest is dropped with the connection."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(size):
        body += chunk
        if len(body) >= size:
            response.close()
            break
    return bytes(body[:size])
