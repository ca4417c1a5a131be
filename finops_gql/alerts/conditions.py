"""What can be true now: the alert kinds and the condition sources the evaluator asks.

A source answers one question, "which conditions of my kinds hold now?", as a list of
Conditions (kind, subject, period, what to show). It is authoritative for its kinds: an
unresolved alert of those kinds whose condition it no longer reports has cleared and is resolved
(alerts/service.py). A source that fails is skipped for that evaluation, and its alerts are left
as they are: an error never resolves anything.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from finops_gql.alerts.anomalies import AnomalySettings, find_anomalies
from finops_gql.costs.budgets import BudgetService, Period
from finops_gql.costs.windows import last_complete_day, money
from finops_gql.db.models import Component, SyncRun, Team

BATCH_COMPONENTS = 500


class AlertKind(enum.Enum):
    BUDGET_THRESHOLD = "BUDGET_THRESHOLD"
    BUDGET_FORECAST = "BUDGET_FORECAST"
    COST_ANOMALY = "COST_ANOMALY"
    SYNC_FAILED = "SYNC_FAILED"


class AlertStatus(enum.Enum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    SNOOZED = "SNOOZED"
    RESOLVED = "RESOLVED"


Key = tuple[str, str, str]  # (kind, subject, period)


@dataclass(frozen=True)
class Condition:
    kind: AlertKind
    subject: str
    period: str
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    team_id: uuid.UUID | None = None
    component_id: uuid.UUID | None = None

    @property
    def key(self) -> Key:
        return (self.kind.value, self.subject, self.period)


class ConditionSource(Protocol):
    """Conditions of `kinds` that hold at `now`."""

    kinds: frozenset[AlertKind]

    async def conditions(self, now: datetime) -> Sequence[Condition]: ...


def component_subject(component_id: uuid.UUID) -> str:
    return f"component:{component_id}"


def team_subject(team_id: uuid.UUID) -> str:
    return f"team:{team_id}"


class AnomalySource:
    """COST_ANOMALY: one condition per component and anomalous day among the newest
    `check_days` complete days; an anomaly's alert clears once its day leaves that window (or
    a backfill revises the day's cost back to normal)."""

    kinds = frozenset({AlertKind.COST_ANOMALY})

    def __init__(self, settings: AnomalySettings, currency: str) -> None:
        self.settings = settings
        self.currency = currency

    async def conditions(self, now: datetime) -> list[Condition]:
        found = await find_anomalies(last_complete_day(now), self.settings)
        conditions = []
        for f in found:
            a = f.anomaly
            direction = "up" if a.change >= 0 else "down"
            title = (
                f"Cost anomaly: {f.name} spent {money(a.actual):.2f} {self.currency} on "
                f"{a.day.isoformat()}, expected {money(a.expected):.2f} ({direction} "
                f"{abs(a.change):.2f}, score {a.score:.1f}; mostly {a.resource})"
            )
            conditions.append(
                Condition(
                    AlertKind.COST_ANOMALY,
                    component_subject(f.component_id),
                    a.day.isoformat(),
                    title,
                    {**a.as_details(), "currency": self.currency, "component": f.name},
                    team_id=f.team_id,
                    component_id=f.component_id,
                )
            )
        return conditions


class SyncFailedSource:
    """SYNC_FAILED: the latest finished sync run failed (nothing written) or was partial (some
    aggregates failed); the next succeeded run clears it."""

    kinds = frozenset({AlertKind.SYNC_FAILED})

    def __init__(self, source: str = "default") -> None:
        self.source = source

    async def conditions(self, now: datetime) -> list[Condition]:
        latest = (
            await SyncRun.filter(finished_at__isnull=False).order_by("-finished_at", "-id").first()
        )
        if latest is None or latest.status not in ("failed", "partial"):
            return []
        failed = [f.get("aggregate") for f in latest.failed_aggregates or []]
        return [
            Condition(
                AlertKind.SYNC_FAILED,
                f"sync:{self.source}",
                "latest",
                f"Cost sync {latest.status}: {(latest.error or 'no error recorded')[:300]}",
                {
                    "syncRunId": latest.id,
                    "status": latest.status,
                    "error": latest.error,
                    "failedAggregates": failed[:20],
                    "finishedAt": latest.finished_at.isoformat() if latest.finished_at else None,
                },
            )
        ]


@dataclass(frozen=True)
class BudgetSignal:
    """One budget's state, as the budget source needs it (budget_signals derives it from the
    budgets' service)."""

    subject: str  # "component:<uuid>" or "team:<uuid>"
    name: str
    period: str  # "rolling-30d", or a calendar month "2026-11"
    amount: float
    spent: float
    crossed: tuple[float, ...]  # thresholds (ratios) the spend has crossed, ascending
    forecast_spend: float | None  # at the end of the period
    currency: str
    team_id: uuid.UUID | None = None
    component_id: uuid.UUID | None = None


BudgetSignals = Callable[[date], Awaitable[list[BudgetSignal]]]


class BudgetSource:
    """BUDGET_THRESHOLD (one condition per crossed threshold, so crossing 1.0 after 0.8 raises
    anew) and BUDGET_FORECAST (the period's forecast above the amount, not yet over it)."""

    kinds = frozenset({AlertKind.BUDGET_THRESHOLD, AlertKind.BUDGET_FORECAST})

    def __init__(self, signals: BudgetSignals) -> None:
        self.signals = signals

    async def conditions(self, now: datetime) -> list[Condition]:
        conditions = []
        for s in await self.signals(last_complete_day(now)):
            facts: dict[str, Any] = {
                "name": s.name,
                "period": s.period,
                "amount": money(s.amount),
                "spent": money(s.spent),
                "ratio": round(s.spent / s.amount, 4) if s.amount else None,
                "forecastSpend": money(s.forecast_spend) if s.forecast_spend is not None else None,
                "currency": s.currency,
            }
            for threshold in s.crossed:
                conditions.append(
                    Condition(
                        AlertKind.BUDGET_THRESHOLD,
                        s.subject,
                        f"{s.period}@{threshold:g}",
                        f"Budget: {s.name} spent {money(s.spent):.2f} of {s.amount:.2f} "
                        f"{s.currency} ({s.period}), past {threshold:.0%}",
                        {**facts, "threshold": threshold},
                        team_id=s.team_id,
                        component_id=s.component_id,
                    )
                )
            over = any(t >= 1.0 for t in s.crossed)
            if s.forecast_spend is not None and s.forecast_spend > s.amount and not over:
                conditions.append(
                    Condition(
                        AlertKind.BUDGET_FORECAST,
                        s.subject,
                        s.period,
                        f"Budget forecast: {s.name} is on course for {s.forecast_spend:.2f} of "
                        f"{s.amount:.2f} {s.currency} ({s.period})",
                        facts,
                        team_id=s.team_id,
                        component_id=s.component_id,
                    )
                )
        return conditions


def budget_signals(budgets: BudgetService) -> BudgetSignals:
    """Every budget's signal from the budgets' service (costs/budgets.py budget_statuses):
    component and team budgets, rolling and monthly, with their own thresholds and forecast.
    The evaluator's `day` is the last complete day, so the statuses are those of the day after
    (the period holding "today", spent up to `day`). Two statements more for the names."""

    async def signals(day: date) -> list[BudgetSignal]:
        statuses = await budgets.budget_statuses(day + timedelta(days=1))
        component_ids = [s.component_id for s in statuses if s.component_id is not None]
        team_ids = [s.team_id for s in statuses if s.team_id is not None]
        components = {
            uuid.UUID(str(cid)): (str(name), uuid.UUID(str(team)))
            for cid, name, team in await Component.filter(id__in=component_ids).values_list(
                "id", "name", "team_id"
            )
        }
        teams = {
            uuid.UUID(str(tid)): str(name)
            for tid, name in await Team.filter(id__in=team_ids).values_list("id", "name")
        }
        found = []
        for s in statuses:
            if s.component_id is not None:
                if s.component_id not in components:  # deleted since the statuses were read
                    continue
                name, owner = components[s.component_id]
                subject, team_id = component_subject(s.component_id), owner
            else:
                assert s.team_id is not None
                if s.team_id not in teams:
                    continue
                name, subject, team_id = teams[s.team_id], team_subject(s.team_id), s.team_id
            rolling = s.budget.period is Period.ROLLING_30_DAYS
            found.append(
                BudgetSignal(
                    subject=subject,
                    name=name,
                    period="rolling-30d" if rolling else s.period_start.strftime("%Y-%m"),
                    amount=s.budget.amount,
                    spent=s.spent,
                    crossed=s.crossed_thresholds,
                    forecast_spend=s.forecast_spend,
                    currency=s.budget.currency,
                    team_id=team_id,
                    component_id=s.component_id,
                )
            )
        return found

    return signals
