"""Prometheus metrics, in a registry of our own (no import-time side effects elsewhere)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
HTTP_REQUESTS = Counter(
    "finops_gql_http_requests_total",
    "HTTP requests",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "finops_gql_http_request_seconds",
    "HTTP request latency",
    ["route", "method"],
    registry=REGISTRY,
)
GRAPHQL_SECONDS = Histogram(
    "finops_gql_graphql_operation_seconds",
    "GraphQL operation latency",
    ["operation", "type"],
    registry=REGISTRY,
)
OPENCOST_SECONDS = Histogram(
    "finops_gql_opencost_request_seconds",
    "OpenCost request latency",
    ["endpoint"],
    registry=REGISTRY,
)
OPENCOST_ERRORS = Counter(
    "finops_gql_opencost_errors_total",
    "OpenCost requests that failed",
    ["endpoint"],
    registry=REGISTRY,
)
SYNC_STATUS = Gauge(
    "finops_gql_sync_last_success",
    "1 if the latest finished sync succeeded, else 0",
    registry=REGISTRY,
)
SYNC_DURATION = Gauge(
    "finops_gql_sync_last_duration_seconds",
    "Duration of the latest finished sync",
    registry=REGISTRY,
)
SYNC_FINISHED = Gauge(
    "finops_gql_sync_last_finished_timestamp_seconds",
    "When the latest sync finished (unix time)",
    registry=REGISTRY,
)
SYNC_RUNNING = Gauge(
    "finops_gql_sync_running",
    "Sync runs in progress holding a live lease (0 or 1)",
    registry=REGISTRY,
)
SYNC_RUNNING_STALE = Gauge(
    "finops_gql_sync_running_stale",
    "Sync runs still marked running whose heartbeat expired (a killed process; the next run "
    "abandons them)",
    registry=REGISTRY,
)
SYNC_ABANDONED = Gauge(
    "finops_gql_sync_abandoned_runs",
    "Sync runs ever abandoned because their heartbeat was lost",
    registry=REGISTRY,
)
SYNC_FAILED_AGGREGATES = Gauge(
    "finops_gql_sync_last_failed_aggregates",
    "Aggregates that failed in the latest finished sync (partial or failed)",
    registry=REGISTRY,
)
WS_CONNECTIONS = Gauge(
    "finops_gql_ws_connections",
    "Open GraphQL WebSocket connections (graphql-transport-ws) in this process",
    registry=REGISTRY,
)
SUBSCRIBERS = Gauge(
    "finops_gql_subscriptions",
    "Active GraphQL subscriptions fed by this process's event relay",
    registry=REGISTRY,
)
SUBSCRIBERS_DROPPED = Counter(
    "finops_gql_subscriptions_dropped_total",
    "Subscriptions dropped because their client read events slower than they arrived",
    registry=REGISTRY,
)
EVENT_RELAY_CONNECTED = Gauge(
    "finops_gql_event_relay_connected",
    "1 while the process's event relay is subscribed on Redis, else 0",
    registry=REGISTRY,
)
RATE_LIMITED_REQUESTS = Counter(
    "finops_gql_rate_limited_total",
    "Requests refused because the principal's budget (RATE_LIMIT_POINTS_PER_MINUTE) was spent",
    ["api"],
    registry=REGISTRY,
)
RATE_LIMIT_FAIL_OPEN = Counter(
    "finops_gql_rate_limit_fail_open_total",
    "Requests let through without a budget check: Redis failed or timed out (unavailable), or "
    "failed within the last second and was not asked (backoff)",
    ["reason"],
    registry=REGISTRY,
)
ANSWER_CACHE = Counter(
    "finops_gql_answer_cache_requests_total",
    "GraphQL POST requests by what the answer cache did: hit (served from it), miss (executed, "
    "kept if cacheable), bypass (not a cacheable query, or the data version was unreadable)",
    ["result"],
    registry=REGISTRY,
)
ANSWER_CACHE_BYTES = Gauge(
    "finops_gql_answer_cache_bytes",
    "Bytes of answers the answer cache of this process holds (GRAPHQL_ANSWER_CACHE_MB bounds it)",
    registry=REGISTRY,
)
