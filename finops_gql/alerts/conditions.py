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
from finops_gql.costs import explorer
from finops_gql.costs.explorer import TOTAL, Subject
from finops_gql.costs.windows import last_complete_day, money
from finops_gql.db.models import Component, SyncRun

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
    """One budget's state, as the budget source needs it: what the budgets' service will give
    (budget_statuses(today)); `main_budget_signals` derives it from Component.budget_usd."""

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


# The run rate behind main_budget_signals' forecast: the mean of the newest days.
RUN_RATE_DAYS = 7
ROLLING_DAYS = 30


def main_budget_signals(currency: str) -> BudgetSignals:
    """Budgets as main has them: Component.budget_usd against the rolling 30-day cost (the
    sync's BudgetBreach, threshold 1.0), forecast as the last 7 days' mean daily cost x 30. The
    budgets' service replaces this with budget_statuses(today)."""

    async def signals(today: date) -> list[BudgetSignal]:
        budgeted = (
            await Component.filter(budget_usd__isnull=False)
            .order_by("id")
            .values_list("id", "name", "team_id", "budget_usd", "cost_30d")
        )
        first = today - timedelta(days=RUN_RATE_DAYS - 1)
        found = []
        for start in range(0, len(budgeted), BATCH_COMPONENTS):
            chunk = budgeted[start : start + BATCH_COMPONENTS]
            ids = [uuid.UUID(str(row[0])) for row in chunk]
            recent = await explorer.daily_sums(Subject.COMPONENT, ids, first, today)
            for (_, name, team_id, budget, spent), cid in zip(chunk, ids, strict=True):
                days = recent.get(str(cid), {})
                rate = sum(row[TOTAL] for row in days.values()) / RUN_RATE_DAYS
                found.append(
                    BudgetSignal(
                        subject=component_subject(cid),
                        name=str(name),
                        period="rolling-30d",
                        amount=float(budget),
                        spent=float(spent),
                        crossed=(1.0,) if float(spent) > float(budget) else (),
                        forecast_spend=rate * ROLLING_DAYS if days else None,
                        currency=currency,
                        team_id=uuid.UUID(str(team_id)),
                        component_id=cid,
                    )
                )
        return found

    return signals
