"""Hardening of JWT/JWKS authentication (issue 13): keys expire, a stuck identity provider costs
each request at most one bounded fetch and answers 503, claims have their JSON types, and an
audience is required with a shared identity provider's keys.

Every identity provider here is a real aiohttp server on loopback (tests.conftest.served); time is
a fake clock where the rule is about time, so no test waits for a TTL to pass.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from finops_gql.app import create_app
from finops_gql.auth import AuthError, AuthUnavailable, TokenVerifier
from finops_gql.config import ConfigError, Settings
from tests.conftest import TEST_SECRET, served
from tests.proc import cli

AUDIENCE = "finops"
# Short enough to keep the suite quick, long enough for a loaded CI machine to do the rest.
DEADLINE_S = 2.0


class IdP:
    """A JWKS endpoint whose keys and behaviour the test changes while it runs."""

    def __init__(self) -> None:
        self.private: dict[str, rsa.RSAPrivateKey] = {}
        self.published: list[str] = []
        self.mode = "ok"  # ok | hang | drip | gate | error | not-json | no-keys | big | big-chunked
        self.fetches = 0
        self.release = asyncio.Event()  # ends hanging/dripping/gated answers (and the test)
        self.requested = asyncio.Event()  # set by every fetch
        self.url = ""

    def add_key(self, kid: str) -> None:
        self.private[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published.append(kid)

    def token(self, kid: str, **extra: Any) -> str:
        claims = {
            "sub": "alice",
            "aud": AUDIENCE,
            "exp": datetime.now(UTC) + timedelta(minutes=5),
            "roles": ["admin"],
            **extra,
        }
        return jwt.encode(claims, self.private[kid], "RS256", headers={"kid": kid})

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private[kid].public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.fetches += 1
        self.requested.set()
        if self.mode == "hang":
            await self.release.wait()
        if self.mode == "gate":
            await self.release.wait()
            return web.json_response(self.jwks())
        if self.mode == "drip":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"keys": [')
            while not self.release.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.5)
            return response
        if self.mode == "error":
            return web.json_response({"error": "internal http://10.0.0.7:9090/"}, status=500)
        if self.mode == "not-json":
            return web.Response(text="<html>login</html>", content_type="text/html")
        if self.mode == "no-keys":
            broken = {"kty": "RSA", "kid": "k1", "n": "!!!", "e": "AQAB"}
            symmetric = {"kty": "oct", "kid": "x", "k": "c2VjcmV0"}
            return web.json_response({"keys": [broken, symmetric, "junk"]})
        if self.mode == "big":
            return web.json_response({**self.jwks(), "pad": "x" * 4096})
        if self.mode == "big-chunked":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(8):
                await response.write(b" " * 1024)
            await response.write(json.dumps(self.jwks()).encode())
            return response
        return web.json_response(self.jwks())


@pytest.fixture
async def idp() -> AsyncIterator[IdP]:
    provider = IdP()
    provider.add_key("k1")
    app = web.Application()
    app.router.add_get("/jwks.json", provider.handle)
    async with served(app) as url:
        provider.url = url + "/jwks.json"
        try:
            yield provider
        finally:
            provider.release.set()  # let a hanging handler finish so the server closes at once


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def jwks_settings(url: str, **changes: Any) -> Settings:
    return Settings(jwt_jwks_url=url, jwt_audience=AUDIENCE).with_(**changes)


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def verifier(idp: IdP, clock: Clock) -> AsyncIterator[TokenVerifier]:
    # Defaults: keys live 300 s, one refresh per 30 s for unknown kids.
    made = TokenVerifier(jwks_settings(idp.url, jwt_jwks_timeout_s=DEADLINE_S), clock=clock)
    try:
        yield made
    finally:
        await made.aclose()


# -- keys expire ----------------------------------------------------------------------------------


async def test_removed_key_is_untrusted_once_its_ttl_ends(
    idp: IdP, clock: Clock, verifier: TokenVerifier
) -> None:
    old = idp.token("k1")
    assert (await verifier.verify(old)).subject == "alice"
    idp.add_key("k2")
    idp.published = ["k2"]  # rotation: k1 is withdrawn (e.g. it leaked)
    clock.now += 299
    # Within the documented lifetime the cached key still counts, without asking the IdP again.
    assert (await verifier.verify(old)).subject == "alice"
    assert idp.fetches == 1
    clock.now += 1
    with pytest.raises(AuthError, match="no signing key with kid 'k1'"):
        await verifier.verify(old)
    assert idp.fetches == 2
    assert (await verifier.verify(idp.token("k2"))).subject == "alice"
    assert idp.fetches == 2


async def test_unknown_kid_refreshes_at_most_once_per_interval(
    idp: IdP, clock: Clock, verifier: TokenVerifier
) -> None:
    await verifier.verify(idp.token("k1"))
    assert idp.fetches == 1
    forged = jwt.encode(
        {"sub": "x", "aud": AUDIENCE, "exp": time.time() + 60},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "RS256",
        headers={"kid": "random"},
    )
    # Within JWT_JWKS_MIN_REFRESH_SECONDS of the last fetch, an unknown kid costs the IdP nothing.
    clock.now += 29
    with pytest.raises(AuthError, match="no signing key with kid 'random'"):
        await verifier.verify(forged)
    assert idp.fetches == 1
    # Later, the first unknown kid may be a fresh rotation: one refresh, shared by 20
    # concurrent requests; the next ones within the interval cost nothing again.
    clock.now += 1
    results = await asyncio.gather(
        *(verifier.verify(forged) for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, AuthError) for r in results), results
    assert idp.fetches == 2
    clock.now += 29
    with pytest.raises(AuthError, match="no signing key with kid 'random'"):
        await verifier.verify(forged)
    assert idp.fetches == 2
    # A real rotation: the IdP publishes k2 and signs with it; picked up on the next interval.
    idp.add_key("k2")
    clock.now += 1
    assert (await verifier.verify(idp.token("k2"))).subject == "alice"
    assert idp.fetches == 3


async def test_waiting_requests_share_one_fetch_and_a_cancelled_one_does_not_stop_it(
    idp: IdP, verifier: TokenVerifier
) -> None:
    idp.mode = "gate"
    first = asyncio.create_task(verifier.verify(idp.token("k1")))
    second = asyncio.create_task(verifier.verify(idp.token("k1")))
    await asyncio.wait_for(idp.requested.wait(), timeout=10)
    first.cancel()  # its client went away
    idp.release.set()
    assert (await second).subject == "alice"
    assert first.cancelled()
    assert idp.fetches == 1


# -- a stuck identity provider --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hang", "drip"])
async def test_stuck_jwks_answers_503_to_concurrent_requests_within_the_deadline(
    idp: IdP, mode: str
) -> None:
    """Before: PyJWKClient fetched in a thread, one request at a time, with a per-read timeout:
    4 requests got 401 after 10, 20, 30 and 40 s; a JWKS dripping a byte every 0.5 s was never
    answered (no request came back within 200 s)."""
    idp.mode = mode
    app = create_app(jwks_settings(idp.url, jwt_jwks_timeout_s=DEADLINE_S))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    token = idp.token("k1")
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", timeout=60
    ) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        query = {"query": "{ __typename }"}
        started = time.monotonic()
        responses = await asyncio.gather(
            client.get("/api/v1/cost/summary"),
            client.get("/api/v1/cost/available"),
            client.post("/graphql", json=query),
            client.post("/graphql", json=query),
        )
        elapsed = time.monotonic() - started
    # Concurrent, not serialised: all four together in less than two deadlines.
    assert elapsed < 2 * DEADLINE_S, elapsed
    assert idp.fetches == 1
    for response in responses:
        assert response.status_code == 503, response.text
        assert int(response.headers["retry-after"]) >= 1
        assert "www-authenticate" not in response.headers
    reason = f"no complete answer within JWT_JWKS_TIMEOUT_SECONDS={DEADLINE_S:g}"
    for rest in responses[:2]:
        body = rest.json()
        assert body["statusCode"] == 503
        assert body["error"] == "Service Unavailable"
        assert "cannot fetch the signing keys from JWT_JWKS_URL" in body["message"]
        assert reason in body["message"]
        assert "127.0.0.1" not in body["message"]
    for graphql in responses[2:]:
        error = graphql.json()["errors"][0]
        assert error["extensions"]["code"] == "AUTH_UNAVAILABLE"
        assert reason in error["message"]


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("error", "HTTP 500"),
        ("not-json", "answer is not JSON"),
        ("no-keys", "no usable signing key"),
        ("big", "answer larger than JWT_JWKS_MAX_BYTES=1024"),
        ("big-chunked", "answer larger than JWT_JWKS_MAX_BYTES=1024"),
    ],
)
async def test_unusable_jwks_is_unavailable_with_a_reason(
    idp: IdP, clock: Clock, mode: str, reason: str
) -> None:
    idp.mode = mode
    verifier = TokenVerifier(jwks_settings(idp.url, jwt_jwks_max_bytes=1024), clock=clock)
    with pytest.raises(AuthUnavailable) as raised:
        await verifier.verify(idp.token("k1"))
    assert reason in str(raised.value)
    assert "10.0.0.7" not in str(raised.value)  # the IdP's body is logged at most, never echoed
    # Until the next allowed refresh, requests are answered at once, without a fetch.
    assert raised.value.retry_after_s == pytest.approx(30)
    clock.now += 10
    with pytest.raises(AuthUnavailable):
        await verifier.verify(idp.token("k1"))
    assert idp.fetches == 1
    # The IdP recovers: the next interval picks its keys up.
    idp.mode = "ok"
    clock.now += 20
    assert (await verifier.verify(idp.token("k1"))).subject == "alice"
    assert idp.fetches == 2


async def test_cached_keys_keep_working_while_refreshes_fail_until_they_expire(
    idp: IdP, clock: Clock, verifier: TokenVerifier
) -> None:
    token = idp.token("k1")
    await verifier.verify(token)
    assert verifier.jwks is not None
    idp.mode = "error"
    clock.now += 150  # the background refresh, halfway through the lifetime, fails
    await verifier.jwks.refresh()
    assert idp.fetches == 2
    clock.now += 149
    assert (await verifier.verify(token)).subject == "alice"
    # An unknown kid while the IdP fails may be a real rotation: our fault, so 503, not 401.
    idp.add_key("k2")
    with pytest.raises(AuthUnavailable):
        await verifier.verify(idp.token("k2"))
    clock.now += 1  # 300 s after the last good fetch: the keys are gone
    with pytest.raises(AuthUnavailable, match="HTTP 500"):
        await verifier.verify(token)
    assert idp.fetches == 3


async def test_lifespan_refreshes_in_the_background_and_stops_cleanly(idp: IdP) -> None:
    """Real time here: the refresher runs from the app's lifespan, halfway through a 4 s TTL."""
    app = create_app(
        jwks_settings(
            idp.url,
            jwt_jwks_cache_s=4,
            jwt_jwks_min_refresh_s=0.5,
            jwt_jwks_timeout_s=30,
        )
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)

    async def until(fetches: int) -> None:
        for _ in range(400):
            if idp.fetches >= fetches:
                return
            await asyncio.sleep(0.025)
        raise AssertionError(f"{idp.fetches} fetches, expected {fetches}")

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://gateway") as client,
    ):
        await until(1)  # fetched at start, before any request
        idp.add_key("k2")
        await until(2)  # the refresher picked up the rotation, no request asked for it
        idp.mode = "hang"
        await until(3)  # the next refresh hangs (30 s deadline) ...
        response = await client.get(
            "/api/v1/openapi.json", headers={"Authorization": f"Bearer {idp.token('k2')}"}
        )
        # ... and requests are served from the cache meanwhile, off that fetch's path.
        assert response.status_code == 200, response.text
        assert idp.fetches == 3
    # Shutdown cancelled the hanging fetch and the refresher: nothing is left pending.
    pending = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("jwks")]
    assert pending == []


# -- claims ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["9999999999", "0", True, None, [1], float("inf")])
async def test_time_claims_must_be_numeric_dates(claim: str, value: object) -> None:
    """Before: {"exp": "9999999999"} was accepted (PyJWT runs int() on it)."""
    settings = Settings(jwt_secret=TEST_SECRET)
    claims = {"sub": "alice", "exp": time.time() + 60, claim: value}
    token = jwt.encode(claims, TEST_SECRET, "HS256")
    with pytest.raises(AuthError) as raised:
        await TokenVerifier(settings).verify(token)
    assert str(raised.value) == f"invalid token: {claim} must be a NumericDate"


async def test_numeric_dates_may_be_floats() -> None:
    now = time.time()
    claims = {"sub": "alice", "exp": now + 60.5, "nbf": now - 1.5, "iat": now - 1.5}
    token = jwt.encode(claims, TEST_SECRET, "HS256")
    assert (await TokenVerifier(Settings(jwt_secret=TEST_SECRET)).verify(token)).subject == "alice"


async def test_string_exp_is_401_over_http(idp: IdP) -> None:
    app = create_app(jwks_settings(idp.url))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    token = idp.token("k1", exp="9999999999")
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get(
            "/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 401
    assert response.json()["message"] == "invalid token: exp must be a NumericDate"


# -- audience -------------------------------------------------------------------------------------


def test_jwks_needs_an_audience() -> None:
    with pytest.raises(ConfigError, match=r"JWT_AUDIENCE is required when JWT_JWKS_URL is set"):
        TokenVerifier(Settings(jwt_jwks_url="http://idp/jwks"))


async def test_serve_with_jwks_and_no_audience_exits_2(tmp_path: Path) -> None:
    env = {
        "DATABASE_URL": f"sqlite://{tmp_path / 'x.sqlite3'}",
        "JWT_SECRET": "",
        "JWT_JWKS_URL": "http://127.0.0.1:9/jwks.json",
        "JWT_AUDIENCE": "",
        "LOG_LEVEL": "WARNING",
    }
    code, _, err = await cli("serve", "--port", "1", env=env)
    assert code == 2
    assert "JWT_AUDIENCE" in err
    assert "JWT_JWKS_URL" in err
    assert "Traceback" not in err


async def test_jwks_token_for_another_service_is_refused(idp: IdP, verifier: TokenVerifier) -> None:
    with pytest.raises(AuthError, match="invalid token: Audience doesn't match"):
        await verifier.verify(idp.token("k1", aud="billing"))
    with pytest.raises(AuthError, match='invalid token: Token is missing the "aud" claim'):
        await verifier.verify(idp.token("k1", aud=None))


async def test_without_audience_an_aud_claim_is_not_checked() -> None:
    # Documented: only possible with JWT_SECRET, whose tokens this service alone can sign.
    token = jwt.encode({"sub": "a", "aud": "anything", "exp": time.time() + 60}, TEST_SECRET)
    assert (await TokenVerifier(Settings(jwt_secret=TEST_SECRET)).verify(token)).subject == "a"


# -- configuration --------------------------------------------------------------------------------


def test_jwks_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "JWT_JWKS_CACHE_SECONDS": "600",
            "JWT_JWKS_MIN_REFRESH_SECONDS": "10",
            "JWT_JWKS_TIMEOUT_SECONDS": "2.5",
            "JWT_JWKS_MAX_BYTES": "65536",
        }
    )
    assert (settings.jwt_jwks_cache_s, settings.jwt_jwks_min_refresh_s) == (600, 10)
    assert (settings.jwt_jwks_timeout_s, settings.jwt_jwks_max_bytes) == (2.5, 65536)
    defaults = Settings.from_env({})
    assert (defaults.jwt_jwks_cache_s, defaults.jwt_jwks_min_refresh_s) == (300, 30)
    assert (defaults.jwt_jwks_timeout_s, defaults.jwt_jwks_max_bytes) == (5, 256 * 1024)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"jwt_jwks_timeout_s": 0}, "JWT_JWKS_TIMEOUT_SECONDS must be > 0"),
        ({"jwt_jwks_cache_s": 0}, "JWT_JWKS_CACHE_SECONDS must be > 0"),
        ({"jwt_jwks_min_refresh_s": 151}, "JWT_JWKS_MIN_REFRESH_SECONDS"),
    ],
)
def test_bad_jwks_limits_are_refused(changes: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenVerifier(jwks_settings("http://idp/jwks", **changes))


def test_jwks_max_bytes_has_a_floor() -> None:
    with pytest.raises(ConfigError, match="JWT_JWKS_MAX_BYTES must be >= 1024"):
        Settings.from_env({"JWT_JWKS_MAX_BYTES": "10"})
