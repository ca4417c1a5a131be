"""JWT verification -> Principal. The only module that imports the JWT library (PyJWT).

PyJWT rather than python-jose: jose 3.5.0 carries open advisories (HMAC with a DER/PEM public key
as secret, empty HMAC keys) and is unmaintained. Algorithms are pinned per key type: HS256 only with
JWT_SECRET, RS256/ES256 only with keys from JWT_JWKS_URL; `alg: none` is never accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt

from finops_gql.config import Settings

log = logging.getLogger(__name__)

HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
ADMIN_ROLE = "admin"
# Reads everything whatever AUTHZ_MODE says (admin reads and mutates everything).
VIEWER_ROLE = "viewer"
TTL_RE = re.compile(r"^(\d+)([smhd])$")
# RFC 7519 §2: seconds since the epoch, a JSON number. PyJWT would take "1700000000" too.
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


class AuthError(Exception):
    """Missing, malformed, expired or untrusted credentials (401)."""


class AuthUnavailable(Exception):
    """The signing keys cannot be fetched: a server-side fault (503), not the client's."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    # Team slugs from the JWT_TEAMS_CLAIM claim (Backstage Group names, IdP groups): what the
    # principal is a member of, for team-scoped access and alert actions.
    teams: frozenset[str] = frozenset()
    # The token's `exp`: a long-lived connection (a subscription) ends there. None only for
    # principals made in code (tests, the CLI), never for a verified token (exp is required).
    expires_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class _JwksFetchError(Exception):
    """Why one fetch failed, worded for the client (no host, no upstream body)."""


class JwksKeys:
    """The signing keys of JWT_JWKS_URL, cached with a lifetime and fetched off the request path.

    - A successful fetch replaces the whole key set; its keys expire `ttl_s` later, so a key
      removed from the JWKS is trusted at most that long after the last fetch that listed it.
    - `start()` (the app's lifespan) runs a refresher that fetches halfway through the lifetime.
      If that fetch fails, the cached keys keep working until they expire (stale-while-error:
      the second half of the lifetime), and the fetch is retried every `min_refresh_s`.
    - Requests wait only when no valid key is cached, or for an unknown `kid` (a rotation):
      they then share the one fetch in flight (single flight), bounded by `timeout_s` in total,
      and at most one such fetch starts per `min_refresh_s`.
    - Without `start()` (CLI, tests) the same rules apply, fetches happen on the request path.
    Each fetch uses its own short-lived aiohttp session: nothing stays open between fetches
    (one per 150 s by default), and a stuck identity provider cannot hold OpenCost's connections.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float,
        min_refresh_s: float,
        timeout_s: float,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._ttl_s = ttl_s
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # clock time of the last successful fetch
        self._attempted_at = -math.inf  # clock time the last fetch started
        self._error: str | None = None  # why the last fetch failed; None when it succeeded
        self._inflight: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self.fetches = 0  # fetches started, for tests and logs

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_forever(), name="jwks-refresher")

    async def aclose(self) -> None:
        """Stop the refresher and any fetch in flight; nothing is left pending."""
        tasks = [t for t in (self._refresher, self._inflight) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._refresher = None
        self._inflight = None

    async def refresh(self) -> None:
        """Fetch now (or join the fetch in flight); a failure keeps the cached keys."""
        await self._join_fetch()

    async def _refresh_forever(self) -> None:
        while True:
            delay = self._next_refresh() - self._clock()
            if delay > 0:
                # Then re-read: a request may have fetched meanwhile (an unknown kid).
                await asyncio.sleep(delay)
                continue
            await self.refresh()

    def _next_refresh(self) -> float:
        halfway = -math.inf if self._fetched_at is None else self._fetched_at + self._ttl_s / 2
        return max(halfway, self._attempted_at + self._min_refresh_s)

    # -- lookup ------------------------------------------------------------------------------

    async def get(self, kid: str) -> jwt.PyJWK:
        fetched = False
        if not self._valid(self._clock()):
            fetched = await self._fetch_if_allowed()
            if not self._valid(self._clock()):
                raise self._unavailable()
        key = self._keys.get(kid)
        if key is None and not fetched and await self._fetch_if_allowed():
            key = self._keys.get(kid)  # a rotation: the new key may have been published since
        if key is not None:
            return key
        if self._error is not None:
            # The last fetch failed: the key may well exist; the fault is ours, not the client's.
            raise self._unavailable()
        raise AuthError(f"no signing key with kid {kid!r} in JWT_JWKS_URL")

    def _valid(self, now: float) -> bool:
        return self._fetched_at is not None and now < self._fetched_at + self._ttl_s

    async def _fetch_if_allowed(self) -> bool:
        """Join the fetch in flight, or start one unless one started within min_refresh_s."""
        if self._inflight is None and self._clock() < self._attempted_at + self._min_refresh_s:
            return False
        await self._join_fetch()
        return True

    async def _join_fetch(self) -> None:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch(), name="jwks-fetch")
        task = self._inflight
        # asyncio.wait, not await: a cancelled waiter (a client gone) must not cancel the fetch
        # that other requests share. The fetch itself is bounded by timeout_s.
        await asyncio.wait({task})

    def _unavailable(self) -> AuthUnavailable:
        reason = self._error or "no valid signing keys"
        retry = max(1.0, self._attempted_at + self._min_refresh_s - self._clock())
        return AuthUnavailable(
            f"authentication is temporarily unavailable: cannot fetch the signing keys from "
            f"JWT_JWKS_URL ({reason})",
            retry_after_s=retry,
        )

    # -- fetching ----------------------------------------------------------------------------

    async def _fetch(self) -> None:
        """One fetch; never raises (its result is the state it leaves), except when cancelled."""
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                keys = await self._download()
        except TimeoutError:
            self._failed(f"no complete answer within JWT_JWKS_TIMEOUT_SECONDS={self._timeout_s:g}")
        except _JwksFetchError as exc:
            self._failed(str(exc))
        except (aiohttp.ClientError, OSError) as exc:
            self._failed(f"connection failed: {type(exc).__name__}")
        except Exception as exc:  # the contract: a fetch leaves state, never an exception
            log.exception("jwks: unexpected error fetching from %s", self._host)
            self._failed(f"unexpected error: {type(exc).__name__}")
        else:
            self._keys = keys
            self._fetched_at = self._attempted_at
            self._error = None
            log.info("jwks: %d signing keys from %s", len(keys), self._host)
        finally:
            self._inflight = None

    def _failed(self, reason: str) -> None:
        self._error = reason
        cached = "keeping the cached keys" if self._valid(self._clock()) else "no valid keys"
        log.warning("jwks: fetch from %s failed: %s (%s)", self._host, reason, cached)

    @property
    def _host(self) -> str:
        return urlsplit(self.url).netloc

    async def _download(self) -> dict[str, jwt.PyJWK]:
        timeout = aiohttp.ClientTimeout(total=self._timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout, headers={"User-Agent": "finops_gql"}) as http,
            http.get(self.url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status != 200:
                raise _JwksFetchError(f"HTTP {response.status}")
            too_big = _JwksFetchError(f"answer larger than JWT_JWKS_MAX_BYTES={self._max_bytes}")
            if (response.content_length or 0) > self._max_bytes:
                raise too_big
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > self._max_bytes:
                    raise too_big
        return _parse_jwks(bytes(body))


def _parse_jwks(body: bytes) -> dict[str, jwt.PyJWK]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise _JwksFetchError("answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise _JwksFetchError("answer is not a JWK Set (no 'keys' list)")
    keys: dict[str, jwt.PyJWK] = {}
    for raw in document["keys"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("kid"), str):
            continue
        if raw.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(raw)
        except (jwt.PyJWTError, ValueError, TypeError):
            continue  # an algorithm or key type PyJWT cannot load, or a malformed key
        if key.key_type in JWKS_ALGORITHMS.values():  # never a symmetric ("oct") key
            keys[raw["kid"]] = key
    if not keys:
        raise _JwksFetchError("the JWK Set holds no usable signing key with a kid")
    return keys


# JWT_SECRET-signed tokens verified once and remembered until they expire, per process: a client
# sends the same token with every request, and its checks (three base64 decodes, two JSON parses,
# the HMAC, the claims) cost more than a cached answer does. Only for the secret, which cannot
# change while the process runs; a JWKS-signed token is verified every time, since its key may
# leave the JWK Set.
VERIFIED_MAX = 4096


class TokenVerifier:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        settings.check_auth()
        self._wall_clock = wall_clock
        # token -> (principal, exp): what verify() accepted, while `exp` is in the future.
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._secret = settings.jwt_secret
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._roles_claim = settings.jwt_roles_claim
        self._teams_claim = settings.jwt_teams_claim
        self.jwks = (
            JwksKeys(
                settings.jwt_jwks_url,
                ttl_s=settings.jwt_jwks_cache_s,
                min_refresh_s=settings.jwt_jwks_min_refresh_s,
                timeout_s=settings.jwt_jwks_timeout_s,
                max_bytes=settings.jwt_jwks_max_bytes,
                clock=clock,
            )
            if settings.jwt_jwks_url
            else None
        )

    async def start(self) -> None:
        """Fetch the signing keys in the background (the app's lifespan); optional."""
        if self.jwks is not None:
            await self.jwks.start()

    async def aclose(self) -> None:
        if self.jwks is not None:
            await self.jwks.aclose()

    async def verify_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing Authorization header (expected: Bearer <JWT>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization header must be: Bearer <JWT>")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Principal:
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, exp = remembered
            if self._wall_clock() < exp:  # PyJWT's rule: expired once exp <= now
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
            raise AuthError("token expired")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise AuthError("malformed token") from None
        _check_numeric_dates(unverified)
        alg = header.get("alg")
        key: Any
        if alg in HMAC_ALGORITHMS and self._secret is not None:
            key, algorithms = self._secret, HMAC_ALGORITHMS
        elif alg in JWKS_ALGORITHMS and self.jwks is not None:
            key = await self._jwks_key(header, str(alg))
            algorithms = [str(alg)]
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted here")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                # Without JWT_AUDIENCE (only allowed with JWT_SECRET) a token's `aud` is not
                # checked: the secret is this service's own. The README says so.
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        principal = Principal(
            str(claims["sub"]),
            _roles(claims.get(self._roles_claim)),
            teams=_roles(claims.get(self._teams_claim)),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
        if key is self._secret:
            self._verified[token] = (principal, float(claims["exp"]))
            if len(self._verified) > VERIFIED_MAX:
                self._verified.popitem(last=False)
        return principal

    async def _jwks_key(self, header: dict[str, Any], alg: str) -> Any:
        assert self.jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token header has no kid: cannot pick a key from JWT_JWKS_URL")
        signing_key = await self.jwks.get(kid)
        # Pin the key type to the algorithm so an RSA key can never verify an EC token or vice versa.
        if signing_key.key_type != JWKS_ALGORITHMS[alg]:
            raise AuthError(f"signing key type {signing_key.key_type} does not match {alg}")
        return signing_key.key


def _check_numeric_dates(claims: dict[str, Any]) -> None:
    for name in NUMERIC_DATE_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if not numeric or not math.isfinite(value):
            raise AuthError(f"invalid token: {name} must be a NumericDate")


def _roles(raw: object) -> frozenset[str]:
    """A list claim, or a space- or comma-separated string (roles and team claims alike)."""
    if isinstance(raw, str):
        return frozenset(raw.replace(",", " ").split())
    if isinstance(raw, list):
        return frozenset(str(r) for r in raw)
    return frozenset()


def parse_ttl(ttl: str) -> timedelta:
    match = TTL_RE.match(ttl.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"ttl must look like 30m, 1h or 7d, got {ttl!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return timedelta(**{unit: int(match.group(1))})


def mint_token(
    settings: Settings,
    subject: str,
    roles: list[str],
    ttl: timedelta,
    now: datetime | None = None,
    teams: list[str] | None = None,
) -> str:
    """An HS256 token for local use, signed with the configured JWT_SECRET."""
    settings.check_auth()
    if settings.jwt_secret is None:
        raise AuthError("minting needs JWT_SECRET; tokens for JWKS setups come from your IdP")
    now = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": now,
        "exp": now + ttl,
        settings.jwt_roles_claim: roles,
    }
    if teams:
        claims[settings.jwt_teams_claim] = teams
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
