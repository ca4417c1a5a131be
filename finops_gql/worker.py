"""The arq worker: runs the cost sync on COST_SYNC_CRON (UTC) and on demand (triggerCostSync).

Jobs are plain async functions taking arq's `ctx`, which carries the Services built in on_startup.
Every schedule and every manual trigger share one job id, so runs never overlap.
"""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from arq import cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.typing import WorkerCoroutine

from finops_gql.alerts.webhook import deliver
from finops_gql.config import Settings
from finops_gql.costs.sync import SyncAlreadyRunning
from finops_gql.cron import parse_cron
from finops_gql.services import (
    QUEUE_NAME,
    SYNC_JOB_ID,
    SYNC_JOB_NAME,
    WEBHOOK_JOB_NAME,
    Services,
    open_services,
)

log = logging.getLogger(__name__)

SYNC_TIMEOUT_S = 3600
# How often the worker looks for ended snoozes (a snoozed alert opens again at most this late).
SNOOZE_CHECK_MINUTES = 5


async def cost_sync_job(ctx: dict[str, Any], trigger: str = "cron") -> dict[str, Any]:
    services: Services = ctx["services"]
    try:
        run = await services.sync.run(trigger)
    except SyncAlreadyRunning as exc:
        log.info("cost sync skipped: %s", exc)
        return {"status": "skipped", "reason": str(exc)}
    return {
        "status": run.status,
        "syncRunId": run.id,
        "days": run.days,
        "records": run.records,
        "opencostRequests": run.opencost_requests,
        "failedAggregates": [f["aggregate"] for f in run.failed_aggregates or []],
    }


async def alert_webhook_job(ctx: dict[str, Any], alert_id: int) -> dict[str, Any]:
    """Deliver one alert to ALERT_WEBHOOK_URL (queued by the alert evaluation)."""
    services: Services = ctx["services"]
    webhook = services.webhook_settings()
    if webhook is None:
        return {"status": "skipped", "reason": "ALERT_WEBHOOK_URL is not set"}
    status = await deliver(services.session, webhook, alert_id, clock=services.costs.clock)
    return {"alertId": alert_id, "status": status or "nothing to deliver"}


async def cost_sync_cron(ctx: dict[str, Any]) -> dict[str, Any]:
    return await cost_sync_job(ctx, "cron")


async def snooze_check_cron(ctx: dict[str, Any]) -> dict[str, Any]:
    """Every SNOOZE_CHECK_MINUTES: alerts whose snooze ended open again (or resolve) now."""
    services: Services = ctx["services"]
    result = await services.alerts.wake_snoozed()
    if result is None:
        return {"status": "nothing ended"}
    return {"status": "evaluated", "changed": len(result.changed), "raised": len(result.raised)}


def _opt(values: frozenset[int] | None) -> set[int] | None:
    return set(values) if values is not None else None


def cron_jobs(expression: str) -> list[CronJob]:
    """arq cron jobs for a 5-field cron expression; raises CronError naming the bad field."""
    schedules = parse_cron(expression)
    coroutine: WorkerCoroutine = cost_sync_cron
    return [
        cron(
            coroutine,
            name=f"cron:cost_sync:{i}",
            job_id=SYNC_JOB_ID,
            timeout=SYNC_TIMEOUT_S,
            keep_result=0,
            max_tries=1,
            month=_opt(schedule.month),
            day=_opt(schedule.day),
            weekday=_opt(schedule.weekday),
            hour=_opt(schedule.hour),
            minute=_opt(schedule.minute),
        )
        for i, schedule in enumerate(schedules)
    ]


def worker_settings(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for arq.Worker (also used by tests with burst=True)."""
    contexts: dict[int, Any] = {}

    async def on_startup(ctx: dict[str, Any]) -> None:
        manager = open_services(settings)
        ctx["services"] = await manager.__aenter__()
        contexts[id(ctx)] = manager

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        manager = contexts.pop(id(ctx), None)
        if manager is not None:
            await manager.__aexit__(None, None, None)

    return {
        "functions": [
            func(
                cost_sync_job,
                name=SYNC_JOB_NAME,
                timeout=SYNC_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
            func(
                alert_webhook_job,
                name=WEBHOOK_JOB_NAME,
                # The delivery's own deadline bounds it; this only stops a stuck job.
                timeout=settings.alert_webhook_max_s + settings.alert_webhook_timeout_s + 30,
                keep_result=0,
                max_tries=1,
            ),
        ],
        "cron_jobs": [
            *cron_jobs(settings.cost_sync_cron),
            cron(
                snooze_check_cron,
                name="cron:snooze_check",
                minute=set(range(0, 60, SNOOZE_CHECK_MINUTES)),
                timeout=SYNC_TIMEOUT_S,
                keep_result=0,
                max_tries=1,
            ),
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": QUEUE_NAME,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "timezone": UTC,  # COST_SYNC_CRON is UTC whatever the host says
        "handle_signals": True,
    }
