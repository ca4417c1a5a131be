"""JWT verification -> Principal. The only module that imports the JWT library (PyJWT).

PyJWT rather than python-jose: jose 3.5.0 carries open advisories (HMAC with a DER/PEM public key
as secret, empty HMAC keys) and is unmaintained. Algorithms are pinned per key type: HS256 only with
JWT_SECRET, RS256/ES256 only with keys from JWT_JWKS_URL; `alg: none` is never accepted.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from finops_gql.config import Settings

HMAC_ALGORITHMS = ["HS256"]
JWKS_ALGORITHMS = {"RS256": "RSA", "ES256": "EC"}
ADMIN_ROLE = "admin"
TTL_RE = re.compile(r"^(\d+)([smhd])$")


class AuthError(Exception):
    """Missing, malformed, expired or untrusted credentials (401)."""


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        settings.check_auth()
        self._secret = settings.jwt_secret
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._roles_claim = settings.jwt_roles_claim
        self._jwks = (
            jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=300, timeout=10)
            if settings.jwt_jwks_url
            else None
        )

    async def verify_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing Authorization header (expected: Bearer <JWT>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization header must be: Bearer <JWT>")
        return await self.verify(token.strip())

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        key: Any
        if alg in HMAC_ALGORITHMS and self._secret is not None:
            key, algorithms = self._secret, HMAC_ALGORITHMS
        elif alg in JWKS_ALGORITHMS and self._jwks is not None:
            key = await self._jwks_key(token, str(alg))
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
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return Principal(str(claims["sub"]), _roles(claims.get(self._roles_claim)))

    async def _jwks_key(self, token: str, alg: str) -> Any:
        assert self._jwks is not None
        try:
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise AuthError("cannot fetch the signing keys from JWT_JWKS_URL") from None
        except jwt.PyJWKClientError as exc:
            raise AuthError(f"no usable signing key: {exc}") from None
        except jwt.InvalidTokenError:
            raise AuthError("malformed token") from None
        # Pin the key type to the algorithm so an RSA key can never verify an EC token or vice versa.
        if signing_key.key_type != JWKS_ALGORITHMS[alg]:
            raise AuthError(f"signing key type {signing_key.key_type} does not match {alg}")
        return signing_key.key


def _roles(raw: object) -> frozenset[str]:
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
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
