"""Process-wide resources and services, built once by the app lifespan, the worker or the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from finops_gql.alerts.anomalies import AnomalySettings
from finops_gql.alerts.conditions import (
    AnomalySource,
    BudgetSource,
    SyncFailedSource,
    budget_signals,
)
from finops_gql.alerts.service import AlertService
from finops_gql.alerts.webhook import WebhookSettings
from finops_gql.catalog.service import CatalogService
from finops_gql.config import Settings
from finops_gql.costs.budgets import BudgetService
from finops_gql.costs.service import CostService
from finops_gql.costs.sync import SyncService
from finops_gql.db.setup import close_db, init_db, migrate
from finops_gql.errors import QueueUnavailable
from finops_gql.eventhub import EventHub
from finops_gql.events import on_wire
from finops_gql.opencost.client import OpenCostClient
from finops_gql.ratelimit import RateLimiter

QUEUE_NAME = "finops_gql"
SYNC_JOB_ID = "finops_gql:cost-sync"
SYNC_JOB_NAME = "cost_sync_job"
WEBHOOK_JOB_NAME = "alert_webhook_job"
WEBHOOK_JOB_PREFIX = "finops_gql:alert-webhook:"


@dataclass
class Services:
    settings: Settings
    session: aiohttp.ClientSession
    # The first OpenCost source's client (the only one with OPENCOST_URL); every source's
    # client, by name, is costs.sources.
    opencost: OpenCostClient
    costs: CostService
    catalog: CatalogService
    budgets: BudgetService
    sync: SyncService
    # The relay of Redis events to GraphQL subscriptions; connects only once started (the API's
    # lifespan, or a first subscription), so the worker and the CLI never open it.
    events: EventHub
    alerts: AlertService
    # The per-principal request budget (RATE_LIMIT_POINTS_PER_MINUTE); None when disabled.
    ratelimit: RateLimiter | None = None
    _arq: Any = field(default=None, repr=False)
    _arq_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def arq(self) -> Any:
        """The arq pool (also a Redis client), created on first use: Redis is only needed for
        queueing syncs and budget events, never to serve reads."""
        async with self._arq_lock:  # concurrent first callers must share one pool
            if self._arq is None:
                self._arq = await self._create_arq_pool()
        return self._arq

    async def _create_arq_pool(self) -> Any:
        from arq import create_pool
        from arq.connections import RedisSettings

        redis_settings = RedisSettings.from_dsn(self.settings.redis_url)
        # Fail fast: a request must not hang through arq's reconnect loop.
        redis_settings.conn_retries = 0
        redis_settings.conn_timeout = 2
        try:
            return await create_pool(redis_settings, default_queue_name=QUEUE_NAME)
        except (OSError, RedisError) as exc:
            where = f"{redis_settings.host}:{redis_settings.port}"  # never the password
            raise QueueUnavailable(f"cannot reach Redis at {where}: {type(exc).__name__}") from None

    async def enqueue_sync(self) -> tuple[str, str]:
        """Queue a sync under the fixed job id, so cron and manual triggers never overlap."""
        pool = await self.arq()
        try:
            job = await pool.enqueue_job(SYNC_JOB_NAME, "manual", _job_id=SYNC_JOB_ID)
        except (OSError, RedisError) as exc:
            raise QueueUnavailable(
                f"cannot queue the sync on Redis: {type(exc).__name__}"
            ) from None
        if job is None:
            return SYNC_JOB_ID, "already_queued"
        return str(job.job_id), "queued"

    async def enqueue_webhooks(self, alert_ids: Sequence[int]) -> None:
        """Queue one delivery job per alert; the job id makes a re-queue of a queued or running
        delivery a no-op (the evaluation re-queues every pending one)."""
        pool = await self.arq()
        for alert_id in alert_ids:
            await pool.enqueue_job(
                WEBHOOK_JOB_NAME, alert_id, _job_id=f"{WEBHOOK_JOB_PREFIX}{alert_id}"
            )

    def webhook_settings(self) -> WebhookSettings | None:
        s = self.settings
        if s.alert_webhook_url is None:
            return None
        return WebhookSettings(
            url=s.alert_webhook_url,
            timeout_s=s.alert_webhook_timeout_s,
            max_attempts=s.alert_webhook_max_attempts,
            backoff_s=s.alert_webhook_backoff_s,
            max_seconds=s.alert_webhook_max_s,
        )

    async def publish(self, channel: str, message: str) -> object:
        """Publish on a logical channel (events.py), under this deployment's REDIS_CHANNEL_PREFIX."""
        pool = await self.arq()
        return await pool.publish(on_wire(channel, self.settings.redis_channel_prefix), message)

    async def aclose(self) -> None:
        await self.events.aclose()
        if self.ratelimit is not None:
            await self.ratelimit.aclose()
        if self._arq is not None:
            await self._arq.aclose()
        await self.session.close()


def anomaly_settings(settings: Settings) -> AnomalySettings:
    return AnomalySettings(
        window_days=settings.anomaly_window_days,
        check_days=settings.anomaly_check_days,
        min_history_days=settings.anomaly_min_history_days,
        min_score=settings.anomaly_min_score,
        min_cost=settings.anomaly_min_cost,
        min_change=settings.anomaly_min_change,
    )


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, *, publish_budgets: bool = True
) -> AsyncIterator[Services]:
    """Open the database and ONE aiohttp session, build the services, close both on exit."""
    if settings.migrate_on_start:
        await migrate(settings.database_url, settings.database_connect_timeout_s)
        await close_db()
    await init_db(settings.database_url, settings.database_connect_timeout_s)
    session = aiohttp.ClientSession(headers={"User-Agent": "finops_gql"})
    try:
        # One client per source: each finds its own URL style and keeps its own live cache
        # and concurrency slots; all share the session and the OPENCOST_* bounds.
        sources = {
            name: OpenCostClient(
                session,
                url,
                timeout_s=settings.opencost_timeout_s,
                cache_ttl_s=settings.opencost_cache_ttl_s,
                max_concurrency=settings.opencost_max_concurrency,
                max_response_mb=settings.opencost_max_response_mb,
                sync_max_response_mb=settings.opencost_sync_max_response_mb,
            )
            for name, url in settings.sources()
        }
        opencost = next(iter(sources.values()))
        costs = CostService(
            opencost,
            sources=sources,
            list_sources=bool(settings.opencost_sources),
            currency=settings.cost_currency,
            retention_days=settings.cost_retention_days,
        )
        budgets = BudgetService(
            currency=settings.cost_currency,
            budget_max=settings.budget_max_usd,
            clock=lambda: costs.clock(),
        )
        alerts = AlertService(
            [
                BudgetSource(budget_signals(budgets)),
                AnomalySource(anomaly_settings(settings), settings.cost_currency),
                SyncFailedSource(),
            ],
            clock=lambda: costs.clock(),  # follows the cost service's clock (tests move it)
            webhook=settings.alert_webhook_url is not None,
        )
        services = Services(
            settings=settings,
            session=session,
            opencost=opencost,
            costs=costs,
            catalog=CatalogService(
                budget_max_usd=settings.budget_max_usd, currency=settings.cost_currency
            ),
            budgets=budgets,
            sync=SyncService(
                costs,
                retention_days=settings.cost_retention_days,
                concurrency=settings.sync_concurrency,
                retries=settings.sync_retries,
                retry_backoff_s=settings.sync_retry_backoff_s,
                heartbeat_s=settings.sync_heartbeat_s,
                lease_s=settings.sync_lease_s,
            ),
            events=EventHub(
                settings.redis_url,
                queue_size=settings.graphql_ws_queue_size,
                channel_prefix=settings.redis_channel_prefix,
            ),
            alerts=alerts,
            ratelimit=RateLimiter.from_settings(settings),
        )
        # Every sync run (succeeded, partial or failed) is followed by an alert evaluation.
        services.sync.after_run = alerts.evaluate_quietly
        alerts.enqueue_webhooks = services.enqueue_webhooks
        if publish_budgets:
            services.sync.publish = services.publish
            alerts.publish = services.publish
        try:
            yield services
        finally:
            await services.aclose()
    finally:
        if not session.closed:
            await session.close()
        await close_db()
