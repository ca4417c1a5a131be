"""Typed settings, read from the environment once and passed in; nothing reads env at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit, urlunsplit

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
    "METRICS_MAX_OPERATIONS",
    "READY_CACHE_SECONDS",
    "DATABASE_CONNECT_TIMEOUT_SECONDS",
    "HTTP_MAX_HEADER_BYTES",
    "HTTP_LIMIT_CONCURRENCY",
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


DATABASE_SCHEMES = ("sqlite", "postgres")


def redact_url(url: str) -> str:
    """The URL with its password replaced, for messages and logs."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<malformed>"
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _database_url(url: str) -> str:
    """Refuse what can never be opened before anything tries: the driver errors are tracebacks."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "postgres":
            parts.port  # noqa: B018 (raises on a non-numeric or out-of-range port)
    except ValueError as exc:
        # Not echoed: a URL that does not parse cannot be trusted to hide its password.
        raise ConfigError(f"DATABASE_URL is malformed: {exc}") from None
    if parts.scheme not in DATABASE_SCHEMES or "://" not in url:
        raise ConfigError(
            f"DATABASE_URL must be sqlite://PATH or postgres://user:pass@host:5432/db, "
            f"got {redact_url(url)}"
        )
    if parts.scheme == "postgres" and not (parts.hostname and parts.path.strip("/")):
        raise ConfigError(f"DATABASE_URL needs a host and a database name: {redact_url(url)}")
    return url


def _redis_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a non-numeric or out-of-range port)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL is malformed: {exc}") from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must be redis://host:6379/0, got {redact_url(url)}")
    return url


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
    metrics_max_operations: int = 100
    ready_cache_s: float = 5.0
    database_connect_timeout_s: float = 10.0
    http_max_header_bytes: int = 65536
    http_limit_concurrency: int = 1000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        currency = env.get("COST_CURRENCY", "").strip().upper() or "USD"
        if len(currency) != 3 or not currency.isalpha():
            raise ConfigError(f"COST_CURRENCY must be a 3-letter ISO code, got {currency!r}")
        return cls(
            database_url=_database_url(_opt(env, "DATABASE_URL") or DEFAULT_DATABASE_URL),
            opencost_url=(_opt(env, "OPENCOST_URL") or "http://localhost:9090").rstrip("/"),
            opencost_timeout_s=_float(env, "OPENCOST_TIMEOUT_SECONDS", 30.0),
            opencost_cache_ttl_s=_float(env, "OPENCOST_CACHE_SECONDS", 30.0),
            cost_sync_cron=_opt(env, "COST_SYNC_CRON") or "0 3 * * *",
            redis_url=_redis_url(_opt(env, "REDIS_URL") or "redis://localhost:6379"),
            jwt_secret=_opt(env, "JWT_SECRET"),
            jwt_jwks_url=_opt(env, "JWT_JWKS_URL"),
            jwt_audience=_opt(env, "JWT_AUDIENCE"),
            jwt_issuer=_opt(env, "JWT_ISSUER"),
            jwt_roles_claim=_opt(env, "JWT_ROLES_CLAIM") or "roles",
            cost_currency=currency,
            cost_retention_days=_int(env, "COST_RETENTION_DAYS", 400, minimum=31),
            migrate_on_start=_bool(env, "MIGRATE_ON_START"),
            graphiql=not _bool(env, "GRAPHIQL_DISABLED"),
            metrics_max_operations=_int(env, "METRICS_MAX_OPERATIONS", 100),
            ready_cache_s=_float(env, "READY_CACHE_SECONDS", 5.0),
            database_connect_timeout_s=_float(env, "DATABASE_CONNECT_TIMEOUT_SECONDS", 10.0),
            http_max_header_bytes=_int(env, "HTTP_MAX_HEADER_BYTES", 65536, minimum=1024),
            http_limit_concurrency=_int(env, "HTTP_LIMIT_CONCURRENCY", 1000, minimum=1),
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
