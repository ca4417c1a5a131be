"""Typed settings, read from the environment once and passed in; nothing reads env at import time."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite://finops_gql.sqlite3"
# HS256 needs at least as many key bytes as the hash output (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32


# Every variable Settings.from_env reads (the README documents each; a test checks).
ENV_VARS = (
    "DATABASE_URL",
    "OPENCOST_URL",
    "OPENCOST_TIMEOUT_SECONDS",
    "OPENCOST_CACHE_SECONDS",
    "COST_SYNC_CRON",
    "REDIS_URL",
    "JWT_SECRET",
    "JWT_JWKS_URL",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_ROLES_CLAIM",
    "COST_CURRENCY",
    "COST_RETENTION_DAYS",
    "MIGRATE_ON_START",
    "GRAPHIQL_DISABLED",
    "GRAPHIQL_DEV_TOKEN_FILE",
)


class ConfigError(ValueError):
    """A setting is missing, malformed or unsafe; the message names the variable."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    opencost_url: str = "http://localhost:9090"
    opencost_timeout_s: float = 30.0
    opencost_cache_ttl_s: float = 30.0
    cost_sync_cron: str = "0 3 * * *"
    redis_url: str = "redis://localhost:6379"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_roles_claim: str = "roles"
    cost_currency: str = "USD"
    cost_retention_days: int = 400
    migrate_on_start: bool = False
    graphiql: bool = True
    graphiql_dev_token_file: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        currency = env.get("COST_CURRENCY", "").strip().upper() or "USD"
        if len(currency) != 3 or not currency.isalpha():
            raise ConfigError(f"COST_CURRENCY must be a 3-letter ISO code, got {currency!r}")
        return cls(
            database_url=_opt(env, "DATABASE_URL") or DEFAULT_DATABASE_URL,
            opencost_url=(_opt(env, "OPENCOST_URL") or "http://localhost:9090").rstrip("/"),
            opencost_timeout_s=_float(env, "OPENCOST_TIMEOUT_SECONDS", 30.0),
            opencost_cache_ttl_s=_float(env, "OPENCOST_CACHE_SECONDS", 30.0),
            cost_sync_cron=_opt(env, "COST_SYNC_CRON") or "0 3 * * *",
            redis_url=_opt(env, "REDIS_URL") or "redis://localhost:6379",
            jwt_secret=_opt(env, "JWT_SECRET"),
            jwt_jwks_url=_opt(env, "JWT_JWKS_URL"),
            jwt_audience=_opt(env, "JWT_AUDIENCE"),
            jwt_issuer=_opt(env, "JWT_ISSUER"),
            jwt_roles_claim=_opt(env, "JWT_ROLES_CLAIM") or "roles",
            cost_currency=currency,
            cost_retention_days=_int(env, "COST_RETENTION_DAYS", 400, minimum=31),
            migrate_on_start=_bool(env, "MIGRATE_ON_START"),
            graphiql=not _bool(env, "GRAPHIQL_DISABLED"),
            graphiql_dev_token_file=_opt(env, "GRAPHIQL_DEV_TOKEN_FILE"),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    def check_auth(self) -> None:
        """Refuse to serve without a usable JWT configuration."""
        if self.jwt_secret is None and self.jwt_jwks_url is None:
            raise ConfigError(
                "set JWT_SECRET (HS256, at least 32 bytes) or JWT_JWKS_URL (RS256/ES256); "
                "every route but the health checks needs a token"
            )
        if self.jwt_secret is not None and len(self.jwt_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"JWT_SECRET is too short: HS256 needs at least {MIN_SECRET_BYTES} bytes "
                "(try: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
            )

    def check_serve_host(self, host: str) -> None:
        """Refuse GRAPHIQL_DEV_TOKEN_FILE unless the server listens on loopback only.

        The GraphiQL page is served without authentication (it must load before the user has a
        token), so a token embedded in it is handed to anyone who can reach the port.
        """
        if self.graphiql_dev_token_file is not None and not is_loopback(host):
            raise ConfigError(
                f"GRAPHIQL_DEV_TOKEN_FILE puts a token in the GraphiQL page, which is served "
                f"without authentication: it is for local development only, and --host must be "
                f"a loopback address (127.0.0.1, ::1 or localhost), got {host!r}"
            )

    def graphiql_dev_token(self) -> str | None:
        """The token GraphiQL opens with (GRAPHIQL_DEV_TOKEN_FILE), or None when not configured."""
        if self.graphiql_dev_token_file is None or not self.graphiql:
            return None
        try:
            token = Path(self.graphiql_dev_token_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"GRAPHIQL_DEV_TOKEN_FILE={self.graphiql_dev_token_file!r} cannot be read: "
                f"{exc.strerror or exc}"
            ) from None
        # A JWT is three base64url parts: anything else (blank, several lines) is the wrong file.
        if not token or not all(c.isascii() and c.isprintable() and not c.isspace() for c in token):
            raise ConfigError(
                f"GRAPHIQL_DEV_TOKEN_FILE={self.graphiql_dev_token_file!r} does not hold a token "
                "(expected one line, as written by: finops-gql token --sub developer --role admin)"
            )
        return token


def is_loopback(host: str) -> bool:
    """True for a host that only this machine can reach: localhost or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or "" (every interface)
