"""The cost sync: persist one record per component per complete UTC day, then refresh rollups.

One /allocation request per distinct aggregate (step=1d over the whole range), whatever the number
of components; one transaction for the whole write, so a failed run changes nothing and the next
run fills the gap. Used by the CLI (`finops-gql sync`) and the arq worker alike.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from finops_gql.costs.service import CostService, check_limit
from finops_gql.costs.windows import day_window, days_to_sync, last_complete_day, money
from finops_gql.db.models import Component, CostRecord, SyncRun
from finops_gql.db.setup import placeholders, sql_value

log = logging.getLogger(__name__)

BUDGET_CHANNEL = "finops_gql:budget_exceeded"
# A run still marked running after this long was killed; it no longer blocks new runs.
STALE_RUN = timedelta(hours=1)
# Rows per executemany call. (Measured: multi-row VALUES statements were slower on PostgreSQL
# through Tortoise, 13 s against 8 s for 300,000 rows, and no faster on SQLite.)
BATCH_SIZE = 2000
RECORD_FIELDS = [
    "cpu_cost",
    "ram_cost",
    "pv_cost",
    "network_cost",
    "gpu_cost",
    "load_balancer_cost",
    "shared_cost",
    "external_cost",
    "total_cost",
    "currency",
    "synced_at",
]

# Upsert on (component, day): running twice never double-counts. Same text on SQLite (>= 3.24) and
# PostgreSQL, but for the parameter markers.
RECORD_COLUMNS = ["component_id", "day", *RECORD_FIELDS]
_UPSERT = (
    f"INSERT INTO cost_record ({', '.join(RECORD_COLUMNS)}) VALUES ({{marks}}) "  # noqa: S608 (constants)
    "ON CONFLICT (component_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RECORD_FIELDS)
)


Publisher = Callable[[str, str], Awaitable[object]]


class SyncAlreadyRunning(Exception):
    """Another run holds the sync; this one did nothing."""


@dataclass(frozen=True)
class BudgetBreach:
    component_id: str
    name: str
    cost_30d: float
    budget_usd: float


class SyncService:
    def __init__(
        self,
        costs: CostService,
        *,
        retention_days: int = 400,
        publish: Publisher | None = None,
    ) -> None:
        self.costs = costs
        self.retention_days = retention_days
        self.publish = publish
        self._lock = asyncio.Lock()

    async def latest_runs(self, limit: int = 10) -> list[SyncRun]:
        check_limit(limit, 100)
        return await SyncRun.all().order_by("-started_at", "-id").limit(limit)

    async def run(self, trigger: str = "cli", backfill_days: int | None = None) -> SyncRun:
        """Run one sync now. Raises SyncAlreadyRunning if another run is in progress."""
        if self._lock.locked():
            raise SyncAlreadyRunning("a sync is already running in this process")
        async with self._lock:
            now = self.costs.clock()
            await SyncRun.filter(status="running", started_at__lt=now - STALE_RUN).update(
                status="failed", finished_at=now, error="abandoned (worker stopped mid-run)"
            )
            try:
                # Atomic across processes: a partial unique index allows one running row.
                run = await SyncRun.create(started_at=now, status="running", trigger=trigger)
            except IntegrityError:
                raise SyncAlreadyRunning("another sync run is in progress") from None
            try:
                await self._sync(run, now, backfill_days)
            except Exception as exc:
                run.status = "failed"
                run.error = f"{type(exc).__name__}: {exc}"[:2000]
                run.finished_at = self.costs.clock()
                await run.save()
                log.warning("cost sync %s failed: %s", run.id, run.error)
                raise
            run.status = "succeeded"
            run.finished_at = self.costs.clock()
            await run.save()
            log.info(
                "cost sync %s: %s days, %s components, %s records, %s OpenCost requests",
                run.id,
                run.days,
                run.components,
                run.records,
                run.opencost_requests,
            )
        await self._report_budgets()
        return run

    async def _last_synced_day(self) -> date | None:
        last = (
            await SyncRun.filter(status="succeeded", last_day__isnull=False)
            .order_by("-last_day")
            .first()
        )
        return last.last_day if last is not None else None

    async def _sync(self, run: SyncRun, now: datetime, backfill_days: int | None) -> None:
        if backfill_days is not None:
            end = last_complete_day(now)
            span: tuple[date, date] | None = (end - timedelta(days=backfill_days - 1), end)
        else:
            span = days_to_sync(await self._last_synced_day(), now)
        components = await Component.all().only("id", "name", "opencost_aggregate", "opencost_key")
        by_aggregate: dict[str, dict[str, list[Component]]] = defaultdict(lambda: defaultdict(list))
        for c in components:
            by_aggregate[c.opencost_aggregate][c.selector_key].append(c)

        # Keyed by (component, day): one row each even if OpenCost repeats a step.
        records: dict[tuple[object, object], list[Any]] = {}
        written: set[str] = set()
        if span is not None:
            run.first_day, run.last_day = span
            run.days = (span[1] - span[0]).days + 1
            window = day_window(*span)
            # One request per aggregate, all of them concurrently: OpenCost's cost does not grow
            # with the catalog.
            answers = await asyncio.gather(
                *(
                    self.costs.opencost.allocation(
                        window=window, aggregate=aggregate, step="1d", cached=False, bulk=True
                    )
                    for aggregate in by_aggregate
                )
            )
            run.opencost_requests = len(answers)
            synced_at = sql_value(self.costs.clock())
            currency = self.costs.currency
            ids = {c.id: sql_value(c.id) for c in components}
            for aggregate, steps in zip(by_aggregate, answers, strict=True):
                keyed = by_aggregate[aggregate]
                for step in steps:
                    for key, a in step.items():
                        day = a.start.date()
                        if not span[0] <= day <= span[1]:
                            continue
                        day_value = sql_value(day)
                        for component in keyed.get(key, ()):
                            # Plain rows, not models: a 30-day backfill of 10,000 components
                            # is 300,000 rows, and model objects cost more than the database.
                            records[(ids[component.id], day_value)] = [
                                ids[component.id],
                                day_value,
                                a.cpu_cost,
                                a.ram_cost,
                                a.pv_cost,
                                a.network_cost,
                                a.gpu_cost,
                                a.load_balancer_cost,
                                a.shared_cost,
                                a.external_cost,
                                a.total_cost,
                                currency,
                                synced_at,
                            ]
                            written.add(str(component.id))
        run.records = len(records)
        run.components = len(written)

        cutoff = last_complete_day(now) - timedelta(days=self.retention_days)
        rows = list(records.values())
        upsert = _UPSERT.format(marks=", ".join(placeholders(len(RECORD_COLUMNS))))
        async with in_transaction() as db:
            for i in range(0, len(rows), BATCH_SIZE):
                await db.execute_many(upsert, rows[i : i + BATCH_SIZE])
            await CostRecord.filter(day__lt=cutoff).delete()
            await self.costs.refresh_rollups()

    async def budget_breaches(self) -> list[BudgetBreach]:
        over = await Component.filter(
            budget_usd__isnull=False, cost_30d__gt=F("budget_usd")
        ).order_by("name")
        return [
            BudgetBreach(str(c.id), c.name, money(c.cost_30d), float(c.budget_usd or 0))
            for c in over
        ]

    async def _report_budgets(self) -> None:
        for breach in await self.budget_breaches():
            log.warning(
                "budget exceeded: component=%s id=%s cost_30d=%.2f budget_usd=%.2f",
                breach.name,
                breach.component_id,
                breach.cost_30d,
                breach.budget_usd,
            )
            if self.publish is not None:
                payload = {
                    "componentId": breach.component_id,
                    "name": breach.name,
                    "cost30d": breach.cost_30d,
                    "budgetUsd": breach.budget_usd,
                    "currency": self.costs.currency,
                }
                try:
                    await self.publish(BUDGET_CHANNEL, json.dumps(payload))
                except Exception as exc:  # alerts are best-effort; the run's data is committed
                    log.warning("could not publish budget event for %s: %s", breach.name, exc)
