"""Typed settings, read from the environment once and passed in; nothing reads env at import time."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

DEFAULT_DATABASE_URL = "sqlite://finops_gql.sqlite3"
# HS256 needs at least as many key bytes as the hash output (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32
# Bounds on the sync's own fan-out and retries (each OpenCost request may take seconds).
MAX_SYNC_CONCURRENCY = 64
MAX_SYNC_RETRIES = 10


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
    "SYNC_CONCURRENCY",
    "SYNC_RETRIES",
    "SYNC_RETRY_BACKOFF_SECONDS",
    "SYNC_HEARTBEAT_SECONDS",
    "SYNC_LEASE_SECONDS",
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
    sync_concurrency: int = 4
    sync_retries: int = 3
    sync_retry_backoff_s: float = 1.0
    sync_heartbeat_s: float = 15.0
    sync_lease_s: float = 60.0

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
            **_sync_settings(env),
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


def _sync_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """SYNC_*: the sync's fan-out, retries and lease, checked against each other."""
    concurrency = _int(env, "SYNC_CONCURRENCY", 4, minimum=1)
    if concurrency > MAX_SYNC_CONCURRENCY:
        raise ConfigError(f"SYNC_CONCURRENCY must be <= {MAX_SYNC_CONCURRENCY}, got {concurrency}")
    retries = _int(env, "SYNC_RETRIES", 3)
    if retries > MAX_SYNC_RETRIES:
        raise ConfigError(f"SYNC_RETRIES must be <= {MAX_SYNC_RETRIES}, got {retries}")
    backoff = _float(env, "SYNC_RETRY_BACKOFF_SECONDS", 1.0)
    heartbeat = _float(env, "SYNC_HEARTBEAT_SECONDS", 15.0)
    lease = _float(env, "SYNC_LEASE_SECONDS", 60.0)
    for name, value in (
        ("SYNC_RETRY_BACKOFF_SECONDS", backoff),
        ("SYNC_HEARTBEAT_SECONDS", heartbeat),
        ("SYNC_LEASE_SECONDS", lease),
    ):
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {value}")
    if heartbeat <= 0:
        raise ConfigError(f"SYNC_HEARTBEAT_SECONDS must be > 0, got {heartbeat}")
    if lease < 2 * heartbeat:
        # One late heartbeat must not cost a live run its lease.
        raise ConfigError(
            f"SYNC_LEASE_SECONDS ({lease}) must be at least twice "
            f"SYNC_HEARTBEAT_SECONDS ({heartbeat})"
        )
    return {
        "sync_concurrency": concurrency,
        "sync_retries": retries,
        "sync_retry_backoff_s": backoff,
        "sync_heartbeat_s": heartbeat,
        "sync_lease_s": lease,
    }
