"""Typed settings, read from the environment once and passed in; nothing reads env at import time."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from finops_gql.validation import BUDGET_MAX_USD

DEFAULT_DATABASE_URL = "sqlite://finops_gql.sqlite3"
# HS256 needs at least as many key bytes as the hash output (RFC 7518 §3.2).
MIN_SECRET_BYTES = 32
# Bounds on the sync's own fan-out and retries (each OpenCost request may take seconds).
MAX_SYNC_CONCURRENCY = 64
MAX_SYNC_RETRIES = 10
CHANNEL_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


# Every variable Settings.from_env reads (the README documents each; a test checks).
ENV_VARS = (
    "DATABASE_URL",
    "OPENCOST_URL",
    "OPENCOST_SOURCES",
    "OPENCOST_TIMEOUT_SECONDS",
    "OPENCOST_CACHE_SECONDS",
    "COST_SYNC_CRON",
    "REDIS_URL",
    "REDIS_CHANNEL_PREFIX",
    "JWT_SECRET",
    "JWT_JWKS_URL",
    "JWT_AUDIENCE",
    "JWT_ISSUER",
    "JWT_ROLES_CLAIM",
    "JWT_TEAMS_CLAIM",
    "AUTHZ_MODE",
    "COST_CURRENCY",
    "COST_RETENTION_DAYS",
    "MIGRATE_ON_START",
    "GRAPHIQL_DISABLED",
    "GRAPHQL_MAX_COST",
    "GRAPHQL_TIMEOUT_SECONDS",
    "GRAPHQL_MAX_BODY_BYTES",
    "GRAPHQL_MAX_TOKENS",
    "GRAPHQL_MAX_FIELDS",
    "GRAPHQL_CACHE_SIZE",
    "GRAPHQL_ANSWER_CACHE_MB",
    "GRAPHQL_CACHE_MAX_DOCUMENT_BYTES",
    "GRAPHQL_MAX_DOCUMENT_BYTES",
    "JWT_JWKS_CACHE_SECONDS",
    "JWT_JWKS_MIN_REFRESH_SECONDS",
    "JWT_JWKS_TIMEOUT_SECONDS",
    "JWT_JWKS_MAX_BYTES",
    "BUDGET_MAX_USD",
    "OPENCOST_MAX_CONCURRENCY",
    "OPENCOST_MAX_RESPONSE_MB",
    "OPENCOST_SYNC_MAX_RESPONSE_MB",
    "CATALOG_MAX_BYTES",
    "SYNC_CONCURRENCY",
    "SYNC_RETRIES",
    "SYNC_RETRY_BACKOFF_SECONDS",
    "SYNC_HEARTBEAT_SECONDS",
    "SYNC_LEASE_SECONDS",
    "METRICS_MAX_OPERATIONS",
    "READY_CACHE_SECONDS",
    "DATABASE_CONNECT_TIMEOUT_SECONDS",
    "HTTP_MAX_HEADER_BYTES",
    "HTTP_LIMIT_CONCURRENCY",
    "GRAPHIQL_DEV_TOKEN_FILE",
    "GRAPHQL_WS_MAX_CONNECTIONS",
    "GRAPHQL_WS_MAX_SUBSCRIPTIONS",
    "GRAPHQL_WS_QUEUE_SIZE",
    "GRAPHQL_WS_INIT_TIMEOUT_SECONDS",
    "ANOMALY_WINDOW_DAYS",
    "ANOMALY_CHECK_DAYS",
    "ANOMALY_MIN_HISTORY_DAYS",
    "ANOMALY_MIN_SCORE",
    "ANOMALY_MIN_COST",
    "ANOMALY_MIN_CHANGE",
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_TIMEOUT_SECONDS",
    "ALERT_WEBHOOK_MAX_ATTEMPTS",
    "ALERT_WEBHOOK_BACKOFF_SECONDS",
    "ALERT_WEBHOOK_MAX_SECONDS",
    "RATE_LIMIT_POINTS_PER_MINUTE",
    "RATE_LIMIT_TIMEOUT_SECONDS",
)


# AUTHZ_MODE: open (every principal sees everything) or team (finops_gql/access.py).
AUTHZ_OPEN = "open"
AUTHZ_TEAM = "team"
AUTHZ_MODES = (AUTHZ_OPEN, AUTHZ_TEAM)


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


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _opt(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _bool(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _authz_mode(env: Mapping[str, str]) -> str:
    mode = (_opt(env, "AUTHZ_MODE") or AUTHZ_OPEN).lower()
    if mode not in AUTHZ_MODES:
        raise ConfigError(f"AUTHZ_MODE must be {' or '.join(AUTHZ_MODES)}, got {mode!r}")
    return mode


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


# OPENCOST_SOURCES: `name=url[,name=url...]`. A name is a cluster's name in every figure and
# filter (cost_record.cluster, the CLUSTER dimension): short, lower-case, URL- and label-safe.
DEFAULT_SOURCE = "default"
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SOURCES_FORMAT = "name=url[,name=url...], e.g. prod-eu=http://opencost.eu:9003"
# Each source is asked once per aggregate per sync and per live window: a bound on the fan-out
# (and on GraphQL's Availability.sources, which the query cost needs).
MAX_SOURCES = 50


def _source_url(name: str, url: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a non-numeric or out-of-range port)
    except ValueError as exc:
        raise ConfigError(f"OPENCOST_SOURCES: the URL of {name!r} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"OPENCOST_SOURCES: the URL of {name!r} must be http:// or https:// with a host, "
            f"got {redact_url(url)}"
        )
    return url.rstrip("/")


def parse_sources(raw: str) -> tuple[tuple[str, str], ...]:
    """OPENCOST_SOURCES as ((name, url), ...) in the order given; refused whole when any entry
    is empty, unnamed, badly named, repeated or not an http(s) URL with a host."""
    sources: list[tuple[str, str]] = []
    entries = raw.split(",")
    if len(entries) > MAX_SOURCES:
        raise ConfigError(f"OPENCOST_SOURCES: at most {MAX_SOURCES} sources, got {len(entries)}")
    for position, entry in enumerate(entries, start=1):
        entry = entry.strip()
        if not entry:
            raise ConfigError(
                f"OPENCOST_SOURCES: entry {position} is empty (expected {SOURCES_FORMAT})"
            )
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not url:
            raise ConfigError(
                f"OPENCOST_SOURCES: entry {position} is not name=url (expected {SOURCES_FORMAT})"
            )
        if not SOURCE_NAME.fullmatch(name):
            raise ConfigError(
                f"OPENCOST_SOURCES: source name {name[:70]!r} must be 1-63 characters of a-z, 0-9 "
                "and -, starting with a letter or digit"
            )
        if any(name == known for known, _ in sources):
            raise ConfigError(f"OPENCOST_SOURCES: source name {name!r} is given twice")
        sources.append((name, _source_url(name, url)))
    return tuple(sources)


def _opencost_sources(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    raw = _opt(env, "OPENCOST_SOURCES")
    if raw is None:
        return ()
    if _opt(env, "OPENCOST_URL") is not None:
        raise ConfigError(
            "set OPENCOST_URL (one source, named default) or OPENCOST_SOURCES (several), not both"
        )
    return parse_sources(raw)


def _channel_prefix(env: Mapping[str, str]) -> str:
    prefix = _opt(env, "REDIS_CHANNEL_PREFIX") or "finops_gql"
    if not CHANNEL_PREFIX.fullmatch(prefix):
        raise ConfigError(
            f"REDIS_CHANNEL_PREFIX must be 1-64 letters, digits, '_', '-' or '.', got {prefix!r}"
        )
    return prefix


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    opencost_url: str = "http://localhost:9090"
    # OPENCOST_SOURCES parsed; empty: OPENCOST_URL is the one source, named `default`.
    opencost_sources: tuple[tuple[str, str], ...] = ()
    opencost_timeout_s: float = 30.0
    opencost_cache_ttl_s: float = 30.0
    cost_sync_cron: str = "0 3 * * *"
    redis_url: str = "redis://localhost:6379"
    # Pub/sub ignores Redis's database number: deployments sharing one Redis server need their own.
    redis_channel_prefix: str = "finops_gql"
    jwt_secret: str | None = field(default=None, repr=False)
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_roles_claim: str = "roles"
    jwt_teams_claim: str = "groups"
    authz_mode: str = AUTHZ_OPEN
    cost_currency: str = "USD"
    cost_retention_days: int = 400
    migrate_on_start: bool = False
    graphiql: bool = True
    graphql_max_cost: int = 50_000
    graphql_timeout_s: float = 10.0
    graphql_max_body_bytes: int = 1024 * 1024
    graphql_max_tokens: int = 5000
    graphql_max_fields: int = 200
    graphql_cache_size: int = 256
    # In-process cache of whole GraphQL answers (answercache.py), in MB of answer JSON; 0: off.
    graphql_answer_cache_mb: int = 64
    graphql_cache_max_document_bytes: int = 16 * 1024
    graphql_max_document_bytes: int = 128 * 1024
    jwt_jwks_cache_s: float = 300.0
    jwt_jwks_min_refresh_s: float = 30.0
    jwt_jwks_timeout_s: float = 5.0
    jwt_jwks_max_bytes: int = 256 * 1024
    budget_max_usd: float = BUDGET_MAX_USD
    opencost_max_concurrency: int = 4
    opencost_max_response_mb: int = 50
    opencost_sync_max_response_mb: int = 4096
    catalog_max_bytes: int = 1_048_576
    sync_concurrency: int = 4
    sync_retries: int = 3
    sync_retry_backoff_s: float = 1.0
    sync_heartbeat_s: float = 15.0
    sync_lease_s: float = 60.0
    metrics_max_operations: int = 100
    ready_cache_s: float = 5.0
    database_connect_timeout_s: float = 10.0
    http_max_header_bytes: int = 65536
    http_limit_concurrency: int = 1000
    graphiql_dev_token_file: str | None = None
    # GraphQL subscriptions (graphql-transport-ws): open sockets per process, operations per
    # socket, events waiting per subscription before it is dropped, and the time a new socket
    # has to send connection_init.
    graphql_ws_max_connections: int = 500
    graphql_ws_max_subscriptions: int = 10
    graphql_ws_queue_size: int = 100
    graphql_ws_init_timeout_s: float = 10.0
    anomaly_window_days: int = 28
    anomaly_check_days: int = 3
    anomaly_min_history_days: int = 14
    anomaly_min_score: float = 3.5
    anomaly_min_cost: float = 5.0
    anomaly_min_change: float = 0.3
    alert_webhook_url: str | None = None
    alert_webhook_timeout_s: float = 5.0
    alert_webhook_max_attempts: int = 5
    alert_webhook_backoff_s: float = 1.0
    alert_webhook_max_s: float = 60.0
    rate_limit_points_per_minute: int = 5000
    rate_limit_timeout_s: float = 0.1
    # The budget's period: a minute in production (no variable sets it); tests shorten it to see
    # the budget come back without waiting.
    rate_limit_period_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        currency = env.get("COST_CURRENCY", "").strip().upper() or "USD"
        if len(currency) != 3 or not currency.isalpha():
            raise ConfigError(f"COST_CURRENCY must be a 3-letter ISO code, got {currency!r}")
        return cls(
            database_url=_database_url(_opt(env, "DATABASE_URL") or DEFAULT_DATABASE_URL),
            opencost_url=(_opt(env, "OPENCOST_URL") or "http://localhost:9090").rstrip("/"),
            opencost_sources=_opencost_sources(env),
            opencost_timeout_s=_float(env, "OPENCOST_TIMEOUT_SECONDS", 30.0),
            opencost_cache_ttl_s=_float(env, "OPENCOST_CACHE_SECONDS", 30.0),
            cost_sync_cron=_opt(env, "COST_SYNC_CRON") or "0 3 * * *",
            redis_url=_redis_url(_opt(env, "REDIS_URL") or "redis://localhost:6379"),
            redis_channel_prefix=_channel_prefix(env),
            jwt_secret=_opt(env, "JWT_SECRET"),
            jwt_jwks_url=_opt(env, "JWT_JWKS_URL"),
            jwt_audience=_opt(env, "JWT_AUDIENCE"),
            jwt_issuer=_opt(env, "JWT_ISSUER"),
            jwt_roles_claim=_opt(env, "JWT_ROLES_CLAIM") or "roles",
            jwt_teams_claim=_opt(env, "JWT_TEAMS_CLAIM") or "groups",
            authz_mode=_authz_mode(env),
            cost_currency=currency,
            cost_retention_days=_int(env, "COST_RETENTION_DAYS", 400, minimum=31),
            migrate_on_start=_bool(env, "MIGRATE_ON_START"),
            graphiql=not _bool(env, "GRAPHIQL_DISABLED"),
            graphql_max_cost=_int(env, "GRAPHQL_MAX_COST", 50_000, minimum=1),
            graphql_timeout_s=_positive(env, "GRAPHQL_TIMEOUT_SECONDS", 10.0),
            graphql_max_body_bytes=_int(env, "GRAPHQL_MAX_BODY_BYTES", 1024 * 1024, minimum=1024),
            graphql_max_tokens=_int(env, "GRAPHQL_MAX_TOKENS", 5000, minimum=100),
            graphql_max_fields=_int(env, "GRAPHQL_MAX_FIELDS", 200, minimum=10),
            graphql_cache_size=_int(env, "GRAPHQL_CACHE_SIZE", 256),
            graphql_answer_cache_mb=_int(env, "GRAPHQL_ANSWER_CACHE_MB", 64),
            graphql_cache_max_document_bytes=_int(
                env, "GRAPHQL_CACHE_MAX_DOCUMENT_BYTES", 16 * 1024
            ),
            graphql_max_document_bytes=_int(
                env, "GRAPHQL_MAX_DOCUMENT_BYTES", 128 * 1024, minimum=1024
            ),
            jwt_jwks_cache_s=_float(env, "JWT_JWKS_CACHE_SECONDS", 300.0),
            jwt_jwks_min_refresh_s=_float(env, "JWT_JWKS_MIN_REFRESH_SECONDS", 30.0),
            jwt_jwks_timeout_s=_float(env, "JWT_JWKS_TIMEOUT_SECONDS", 5.0),
            jwt_jwks_max_bytes=_int(env, "JWT_JWKS_MAX_BYTES", 256 * 1024, minimum=1024),
            budget_max_usd=_float(env, "BUDGET_MAX_USD", BUDGET_MAX_USD),
            opencost_max_concurrency=_int(env, "OPENCOST_MAX_CONCURRENCY", 4, minimum=1),
            opencost_max_response_mb=_int(env, "OPENCOST_MAX_RESPONSE_MB", 50, minimum=1),
            opencost_sync_max_response_mb=_int(
                env, "OPENCOST_SYNC_MAX_RESPONSE_MB", 4096, minimum=1
            ),
            catalog_max_bytes=_int(env, "CATALOG_MAX_BYTES", 1_048_576, minimum=1),
            **_sync_settings(env),
            metrics_max_operations=_int(env, "METRICS_MAX_OPERATIONS", 100),
            ready_cache_s=_float(env, "READY_CACHE_SECONDS", 5.0),
            database_connect_timeout_s=_float(env, "DATABASE_CONNECT_TIMEOUT_SECONDS", 10.0),
            http_max_header_bytes=_int(env, "HTTP_MAX_HEADER_BYTES", 65536, minimum=1024),
            http_limit_concurrency=_int(env, "HTTP_LIMIT_CONCURRENCY", 1000, minimum=1),
            graphiql_dev_token_file=_opt(env, "GRAPHIQL_DEV_TOKEN_FILE"),
            graphql_ws_max_connections=_int(env, "GRAPHQL_WS_MAX_CONNECTIONS", 500),
            graphql_ws_max_subscriptions=_int(env, "GRAPHQL_WS_MAX_SUBSCRIPTIONS", 10, minimum=1),
            graphql_ws_queue_size=_int(env, "GRAPHQL_WS_QUEUE_SIZE", 100, minimum=1),
            graphql_ws_init_timeout_s=_positive(env, "GRAPHQL_WS_INIT_TIMEOUT_SECONDS", 10.0),
            **_alert_settings(env),
            rate_limit_points_per_minute=_int(env, "RATE_LIMIT_POINTS_PER_MINUTE", 5000),
            rate_limit_timeout_s=_rate_limit_timeout(env),
        )

    def sources(self) -> tuple[tuple[str, str], ...]:
        """The OpenCost sources as (name, url): OPENCOST_SOURCES, or OPENCOST_URL as `default`."""
        return self.opencost_sources or ((DEFAULT_SOURCE, self.opencost_url),)

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
        if self.jwt_jwks_url is not None:
            self._check_jwks()

    def _check_jwks(self) -> None:
        # A shared identity provider signs tokens for other services with the same keys: without
        # an audience check, any of those tokens would be accepted here.
        if self.jwt_audience is None:
            raise ConfigError(
                "JWT_AUDIENCE is required when JWT_JWKS_URL is set: an identity provider's keys "
                "also sign tokens meant for other services"
            )
        if self.jwt_jwks_timeout_s <= 0:
            raise ConfigError(
                f"JWT_JWKS_TIMEOUT_SECONDS must be > 0, got {self.jwt_jwks_timeout_s}"
            )
        if self.jwt_jwks_cache_s <= 0:
            raise ConfigError(f"JWT_JWKS_CACHE_SECONDS must be > 0, got {self.jwt_jwks_cache_s}")
        if self.jwt_jwks_min_refresh_s > self.jwt_jwks_cache_s / 2:
            raise ConfigError(
                f"JWT_JWKS_MIN_REFRESH_SECONDS ({self.jwt_jwks_min_refresh_s}) must be at most "
                f"half of JWT_JWKS_CACHE_SECONDS ({self.jwt_jwks_cache_s}): keys are refreshed "
                "halfway through their lifetime"
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


# Redis answers in well under a millisecond: a longer bound only adds latency when it is sick.
MAX_RATE_LIMIT_TIMEOUT_S = 5.0


def _rate_limit_timeout(env: Mapping[str, str]) -> float:
    value = _positive(env, "RATE_LIMIT_TIMEOUT_SECONDS", 0.1)
    if not value <= MAX_RATE_LIMIT_TIMEOUT_S:  # also refuses nan and inf
        raise ConfigError(
            f"RATE_LIMIT_TIMEOUT_SECONDS must be at most {MAX_RATE_LIMIT_TIMEOUT_S:g}, got {value}"
        )
    return value


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


MAX_ANOMALY_WINDOW_DAYS = 90
MAX_ANOMALY_CHECK_DAYS = 30
MAX_WEBHOOK_ATTEMPTS = 20
MAX_WEBHOOK_SECONDS = 3600.0


def _webhook_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a non-numeric or out-of-range port)
    except ValueError as exc:
        raise ConfigError(f"ALERT_WEBHOOK_URL is malformed: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        # Not echoed whole: a webhook URL is a secret (Slack's carries the token in its path).
        raise ConfigError(
            f"ALERT_WEBHOOK_URL must be an http:// or https:// URL with a host, got a "
            f"{parts.scheme or 'scheme-less'} URL"
        )
    return url


def _alert_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """ANOMALY_* and ALERT_WEBHOOK_*: anomaly detection's thresholds and the webhook's bounds."""
    window = _int(env, "ANOMALY_WINDOW_DAYS", 28, minimum=7)
    if window > MAX_ANOMALY_WINDOW_DAYS:
        raise ConfigError(f"ANOMALY_WINDOW_DAYS must be <= {MAX_ANOMALY_WINDOW_DAYS}, got {window}")
    check = _int(env, "ANOMALY_CHECK_DAYS", 3, minimum=1)
    if check > MAX_ANOMALY_CHECK_DAYS:
        raise ConfigError(f"ANOMALY_CHECK_DAYS must be <= {MAX_ANOMALY_CHECK_DAYS}, got {check}")
    history = _int(env, "ANOMALY_MIN_HISTORY_DAYS", 14, minimum=3)
    if history > window:
        raise ConfigError(
            f"ANOMALY_MIN_HISTORY_DAYS ({history}) must be at most ANOMALY_WINDOW_DAYS ({window})"
        )
    attempts = _int(env, "ALERT_WEBHOOK_MAX_ATTEMPTS", 5, minimum=1)
    if attempts > MAX_WEBHOOK_ATTEMPTS:
        raise ConfigError(
            f"ALERT_WEBHOOK_MAX_ATTEMPTS must be <= {MAX_WEBHOOK_ATTEMPTS}, got {attempts}"
        )
    total = _positive(env, "ALERT_WEBHOOK_MAX_SECONDS", 60.0)
    if total > MAX_WEBHOOK_SECONDS:
        raise ConfigError(
            f"ALERT_WEBHOOK_MAX_SECONDS must be <= {MAX_WEBHOOK_SECONDS:g}, got {total:g}"
        )
    values = {
        "anomaly_min_score": _positive(env, "ANOMALY_MIN_SCORE", 3.5),
        "anomaly_min_cost": _float(env, "ANOMALY_MIN_COST", 5.0),
        "anomaly_min_change": _float(env, "ANOMALY_MIN_CHANGE", 0.3),
        "alert_webhook_timeout_s": _positive(env, "ALERT_WEBHOOK_TIMEOUT_SECONDS", 5.0),
        "alert_webhook_backoff_s": _float(env, "ALERT_WEBHOOK_BACKOFF_SECONDS", 1.0),
    }
    names = {
        "anomaly_min_score": "ANOMALY_MIN_SCORE",
        "anomaly_min_cost": "ANOMALY_MIN_COST",
        "anomaly_min_change": "ANOMALY_MIN_CHANGE",
        "alert_webhook_timeout_s": "ALERT_WEBHOOK_TIMEOUT_SECONDS",
        "alert_webhook_backoff_s": "ALERT_WEBHOOK_BACKOFF_SECONDS",
    }
    for key, value in values.items():
        if not math.isfinite(value):
            raise ConfigError(f"{names[key]} must be a finite number, got {value}")
    return {
        **values,
        "anomaly_window_days": window,
        "anomaly_check_days": check,
        "anomaly_min_history_days": history,
        "alert_webhook_url": _webhook_url(_opt(env, "ALERT_WEBHOOK_URL")),
        "alert_webhook_max_attempts": attempts,
        "alert_webhook_max_s": total,
    }


def is_loopback(host: str) -> bool:
    """True for a host that only this machine can reach: localhost or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere, or "" (every interface)
