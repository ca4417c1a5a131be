"""JWT authentication: HS256 with a strong secret, RS256/ES256 from a JWKS, nothing else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from finops_gql.auth import AuthError, AuthUnavailable, TokenVerifier, mint_token, parse_ttl
from finops_gql.config import ConfigError, Settings
from tests.conftest import TEST_SECRET, served, token

SETTINGS = Settings(jwt_secret=TEST_SECRET)
AUDIENCE = "finops"


def jwks_settings(url: str) -> Settings:
    return Settings(jwt_jwks_url=url, jwt_audience=AUDIENCE)


def claims(**extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"sub": "alice", "exp": now + timedelta(minutes=5), "roles": ["admin"], **extra}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(), "JWT_SECRET"),
        (Settings(jwt_secret="short"), "too short"),
        (Settings(jwt_secret="x" * 31), "too short"),
    ],
)
def test_refuses_missing_or_weak_configuration(settings: Settings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TokenVerifier(settings)


async def test_hs256_roundtrip_with_roles() -> None:
    verifier = TokenVerifier(SETTINGS)
    principal = await verifier.verify(token(SETTINGS, "admin"))
    assert principal.subject == "tester"
    assert principal.is_admin
    viewer = await verifier.verify(token(SETTINGS))
    assert not viewer.is_admin


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: jwt.encode(
                claims(exp=datetime.now(UTC) - timedelta(seconds=5)), TEST_SECRET, "HS256"
            ),
            "expired",
        ),
        (lambda: jwt.encode({"sub": "alice"}, TEST_SECRET, "HS256"), "exp"),
        (
            lambda: jwt.encode(claims(), "another-secret-that-is-also-long-enough!!", "HS256"),
            "invalid",
        ),
        (lambda: jwt.encode(claims(), TEST_SECRET * 2, "HS512"), "not accepted"),
        (lambda: jwt.encode(claims(), None, "none"), "not accepted"),
        (lambda: "not.a.jwt", "malformed"),
    ],
)
async def test_rejects_bad_tokens(make: Any, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        await TokenVerifier(SETTINGS).verify(make())


async def test_audience_and_issuer_checked() -> None:
    settings = Settings(jwt_secret=TEST_SECRET, jwt_audience="finops", jwt_issuer="https://idp")
    verifier = TokenVerifier(settings)
    good = mint_token(settings, "bob", [], timedelta(minutes=1))
    assert (await verifier.verify(good)).subject == "bob"
    with pytest.raises(AuthError):
        await verifier.verify(
            jwt.encode(claims(aud="other", iss="https://idp"), TEST_SECRET, "HS256")
        )
    with pytest.raises(AuthError):
        await verifier.verify(
            jwt.encode(claims(aud="finops", iss="https://evil"), TEST_SECRET, "HS256")
        )


async def test_custom_roles_claim() -> None:
    settings = Settings(jwt_secret=TEST_SECRET, jwt_roles_claim="groups")
    principal = await TokenVerifier(settings).verify(
        jwt.encode(claims(groups="viewer admin", roles=[]), TEST_SECRET, "HS256")
    )
    assert principal.is_admin


async def test_teams_claim_and_expiry() -> None:
    settings = Settings(jwt_secret=TEST_SECRET)
    verifier = TokenVerifier(settings)
    principal = await verifier.verify(
        jwt.encode(claims(groups=["payments", "search"]), TEST_SECRET, "HS256")
    )
    assert principal.teams == {"payments", "search"}
    assert principal.expires_at is not None
    assert principal.expires_at > datetime.now(UTC)
    custom = Settings(jwt_secret=TEST_SECRET, jwt_teams_claim="teams")
    principal = await TokenVerifier(custom).verify(
        jwt.encode(claims(teams="payments, search", groups=["x"]), TEST_SECRET, "HS256")
    )
    assert principal.teams == {"payments", "search"}
    minted = await verifier.verify(
        mint_token(settings, "dev", [], timedelta(hours=1), teams=["payments"])
    )
    assert minted.teams == {"payments"}
    assert (await verifier.verify(mint_token(settings, "dev", [], timedelta(hours=1)))).teams == (
        frozenset()
    )


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [("30m", timedelta(minutes=30)), ("1h", timedelta(hours=1)), ("7d", timedelta(days=7))],
)
def test_parse_ttl(ttl: str, expected: timedelta) -> None:
    assert parse_ttl(ttl) == expected


@pytest.mark.parametrize("ttl", ["0h", "1w", "h", "-1h", ""])
def test_parse_ttl_rejects(ttl: str) -> None:
    with pytest.raises(ValueError, match="ttl"):
        parse_ttl(ttl)


# -- JWKS (RS256 / ES256) ---------------------------------------------------------------------------


@pytest.fixture
async def jwks() -> AsyncIterator[tuple[str, Any, Any]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(ec_key.public_key()))
    rsa_jwk.update(kid="rsa-1", use="sig")
    ec_jwk.update(kid="ec-1", use="sig")

    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [rsa_jwk, ec_jwk]})

    app = web.Application()
    app.router.add_get("/jwks.json", keys)
    async with served(app) as url:
        yield url + "/jwks.json", rsa_key, ec_key


async def test_jwks_rs256_and_es256(jwks: tuple[str, Any, Any]) -> None:
    url, rsa_key, ec_key = jwks
    verifier = TokenVerifier(jwks_settings(url))
    rs = jwt.encode(claims(aud=AUDIENCE), rsa_key, "RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(claims(aud=AUDIENCE), ec_key, "ES256", headers={"kid": "ec-1"})
    assert (await verifier.verify(rs)).subject == "alice"
    assert (await verifier.verify(es)).is_admin


async def test_jwks_rejects_hs256_and_key_type_confusion(jwks: tuple[str, Any, Any]) -> None:
    url, rsa_key, _ = jwks
    verifier = TokenVerifier(jwks_settings(url))
    # The classic confusion: an HMAC token that hopes to be checked with the RSA key. With only
    # JWKS configured, HS256 is not an accepted algorithm at all.
    forged = jwt.encode(claims(), TEST_SECRET, "HS256", headers={"kid": "rsa-1"})
    with pytest.raises(AuthError, match="not accepted"):
        await verifier.verify(forged)
    # An RS256 header pointing at the EC key must not verify with it.
    mismatched = jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "ec-1"})
    with pytest.raises(AuthError, match="does not match"):
        await verifier.verify(mismatched)
    unknown_kid = jwt.encode(claims(), rsa_key, "RS256", headers={"kid": "nope"})
    with pytest.raises(AuthError, match="signing key"):
        await verifier.verify(unknown_kid)


async def test_jwks_unreachable_is_unavailable_not_500() -> None:
    # A server-side fault: 503 (AuthUnavailable), neither the client's 401 nor a 500.
    verifier = TokenVerifier(jwks_settings("http://127.0.0.1:9/jwks.json"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthUnavailable, match="signing keys"):
        await verifier.verify(jwt.encode(claims(), key, "RS256", headers={"kid": "x"}))


def test_mint_needs_secret() -> None:
    with pytest.raises(AuthError, match="JWT_SECRET"):
        mint_token(jwks_settings("http://idp/jwks"), "x", [], timedelta(hours=1))


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("services")
@pytest.mark.parametrize(
    "path",
    ["/api/v1/cost/summary", "/api/v1/cost/available", "/api/v1/openapi.json"],
)
async def test_rest_routes_need_a_token(client: httpx.AsyncClient, path: str) -> None:
    for header in (None, "Bearer", "Basic abc", "Bearer garbage"):
        headers = {"Authorization": header} if header else {}
        client.headers.pop("Authorization", None)
        response = await client.get(path, headers=headers)
        assert response.status_code == 401, (header, response.text)
        body = response.json()
        assert body["statusCode"] == 401
        assert body["error"] == "Unauthorized"
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.usefixtures("services")
async def test_expired_token_is_401_with_message(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    expired = jwt.encode(claims(exp=datetime.now(UTC) - timedelta(minutes=1)), TEST_SECRET, "HS256")
    response = await client.get(
        "/api/v1/cost/summary", headers={"Authorization": f"Bearer {expired}"}
    )
    assert response.status_code == 401
    assert response.json()["message"] == "token expired"


@pytest.mark.usefixtures("services")
async def test_graphql_needs_a_token(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    response = await client.post("/graphql", json={"query": "{ topComponents { totalCost } }"})
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # a GET carrying a query is not the IDE page: it needs a token too
    response = await client.get(
        "/graphql",
        params={"query": "{ topComponents { totalCost } }"},
        headers={"Accept": "text/html"},
    )
    assert response.status_code == 401


@pytest.mark.usefixtures("services")
async def test_health_checks_are_public(client: httpx.AsyncClient) -> None:
    client.headers.pop("Authorization")
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"]["database"] == "ok"


async def test_websockets_are_refused_before_any_route() -> None:
    from finops_gql.middleware import AuthMiddleware

    reached: list[object] = []
    sent: list[dict[str, object]] = []

    async def app(scope: object, receive: object, send: object) -> None:
        reached.append(scope)

    async def receive() -> dict[str, object]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    middleware = AuthMiddleware(app, TokenVerifier(SETTINGS))  # type: ignore[arg-type]
    await middleware({"type": "websocket", "path": "/graphql", "headers": []}, receive, send)
    assert reached == []
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_a_secret_signed_token_is_verified_once_until_it_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [datetime.now(UTC).timestamp()]
    verifier = TokenVerifier(SETTINGS, wall_clock=lambda: now[0])
    minted = mint_token(SETTINGS, "alice", ["admin"], timedelta(minutes=5), teams=["payments"])
    first = await verifier.verify(minted)

    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("verified again")

    monkeypatch.setattr(jwt, "decode", never)
    monkeypatch.setattr(jwt, "get_unverified_header", never)
    assert await verifier.verify(minted) is first
    assert (first.subject, first.roles, first.teams) == ("alice", {"admin"}, {"payments"})
    # Past its exp (PyJWT's rule: exp <= now is expired), refused without being decoded again.
    assert first.expires_at is not None
    now[0] = first.expires_at.timestamp()
    with pytest.raises(AuthError, match="token expired"):
        await verifier.verify(minted)
    with pytest.raises(AssertionError, match="verified again"):
        await verifier.verify(minted)  # forgotten: the full checks run (and refuse it)


async def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    verifier = TokenVerifier(SETTINGS)
    minted = mint_token(SETTINGS, "alice", [], timedelta(minutes=5))
    await verifier.verify(minted)
    header, payload, signature = minted.split(".")
    forged_claims = json.loads(jwt.utils.base64url_decode(payload)) | {"roles": ["admin"]}
    forged = ".".join(
        [header, jwt.utils.base64url_encode(json.dumps(forged_claims).encode()).decode(), signature]
    )
    with pytest.raises(AuthError, match="invalid token"):
        await verifier.verify(forged)
