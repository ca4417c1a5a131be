"""Budgets of components and teams: checks, writes, and where each stands against its period.

A budget belongs to one component or one team (a team's covers its components and its sub-teams',
catalog/tree.py). Its period is ROLLING_30_DAYS, the 30 complete UTC days before today (the
meaning of `budgetUsd` and `cost30d`), or MONTHLY, the current UTC calendar month. Spent money is
read from the explorer's persisted daily data (explorer.daily_totals: cost_record for components,
the team daily totals for teams), over the period's complete days; the forecast of the days still
to come is costs/forecast.py's.

The budget table is the source of budgets; Component.budget_usd is its mirror for the API's
`budgetUsd` / `overBudget` and the legacy REST `budgetUsd`: the amount of the component's
ROLLING_30_DAYS budget, null when it has none or a MONTHLY one. Every write here updates both in
one transaction.

Status, most severe first: OVER (spent > amount, strictly, like overBudget), FORECAST_OVER (spent
plus the forecast of the rest of the period > amount), WARNING (a threshold below 1.0 crossed:
spent > threshold x amount), OK.
"""

from __future__ import annotations

import calendar
import enum
import math
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from finops_gql.catalog import tree
from finops_gql.costs import explorer
from finops_gql.costs import forecast as forecasting
from finops_gql.costs.windows import ROLLUP_DAYS, money
from finops_gql.db import dataversion
from finops_gql.db.models import Budget, Component, Team
from finops_gql.errors import Conflict, InvalidInput, NotFound
from finops_gql.validation import BUDGET_MAX_USD, check_money, shown


class Period(enum.Enum):
    ROLLING_30_DAYS = "ROLLING_30_DAYS"
    MONTHLY = "MONTHLY"


class State(enum.Enum):
    OK = "OK"
    WARNING = "WARNING"
    FORECAST_OVER = "FORECAST_OVER"
    OVER = "OVER"


DEFAULT_THRESHOLDS = (0.5, 0.8, 1.0)
MAX_THRESHOLDS = 10
MAX_THRESHOLD = 10.0
# The catalog annotation's spelling of each period.
PERIOD_NAMES = {"rolling-30-days": Period.ROLLING_30_DAYS, "monthly": Period.MONTHLY}


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    amount: float
    currency: str
    period: Period
    thresholds: tuple[float, ...]

    @classmethod
    def of(cls, row: Budget) -> BudgetSpec:
        return cls(row.amount, row.currency, Period(row.period), tuple(row.thresholds))


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where one budget stands on `today`; exactly one of component_id and team_id is set."""

    component_id: uuid.UUID | None
    team_id: uuid.UUID | None
    budget: BudgetSpec
    period_start: date
    period_end: date
    spent: float
    remaining: float  # amount - spent; negative when over
    ratio: float | None  # spent / amount; None for a budget of 0
    forecast_spend: float
    forecast_ratio: float | None
    forecast_method: forecasting.Method
    state: State
    crossed_thresholds: tuple[float, ...]


# -- checks ---------------------------------------------------------------------------------------


def check_thresholds(values: Iterable[object] | None) -> tuple[float, ...]:
    """Ratios of the amount: finite, > 0, <= MAX_THRESHOLD, ascending without repeats, at most
    MAX_THRESHOLDS. None gives the defaults; an empty list is refused (no warning at all would
    be a budget that never speaks: remove the budget instead)."""
    if values is None:
        return DEFAULT_THRESHOLDS
    found = list(values)
    if not found or len(found) > MAX_THRESHOLDS:
        raise InvalidInput(f"thresholds must be 1 to {MAX_THRESHOLDS} ratios, got {len(found)}")
    checked: list[float] = []
    for value in found:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"thresholds must be numbers, got {shown(value)}")
        if not math.isfinite(value) or not 0 < value <= MAX_THRESHOLD:
            raise InvalidInput(
                f"thresholds must be finite ratios > 0 and <= {MAX_THRESHOLD:g}, got {value}"
            )
        if checked and value <= checked[-1]:
            raise InvalidInput(
                f"thresholds must be in ascending order without repeats, got {value} after "
                f"{checked[-1]}"
            )
        checked.append(float(value))
    return tuple(checked)


def check_currency(currency: str | None, cost_currency: str) -> str:
    """Budgets are compared with costs as stored, without conversion: their currency must be the
    cost data's (COST_CURRENCY)."""
    if currency is None:
        return cost_currency
    if not isinstance(currency, str) or currency.strip().upper() != cost_currency:
        raise InvalidInput(
            f"currency {shown(currency)} is not the currency of the cost data, {cost_currency} "
            "(COST_CURRENCY); budgets are compared with costs without conversion"
        )
    return cost_currency


def parse_period(text: str) -> Period:
    """The annotation's period: rolling-30-days or monthly (the enum names are accepted too)."""
    found = PERIOD_NAMES.get(text.strip().lower()) or Period.__members__.get(text.strip().upper())
    if found is None:
        raise InvalidInput(
            f"period must be one of {', '.join(PERIOD_NAMES)} (or "
            f"{', '.join(Period.__members__)}), got {shown(text)}"
        )
    return found


def parse_thresholds(text: str) -> tuple[float, ...]:
    """The annotation's thresholds: comma-separated ratios, e.g. "0.5,0.8,1.0"."""
    parts = [p.strip() for p in text.split(",")]
    values: list[float] = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            raise InvalidInput(
                f"thresholds must be comma-separated numbers such as 0.5,0.8,1.0, got {shown(text)}"
            ) from None
    return check_thresholds(values)


def check_spec(
    amount: float,
    currency: str | None,
    period: Period,
    thresholds: Iterable[object] | None,
    *,
    cost_currency: str,
    budget_max: float = BUDGET_MAX_USD,
) -> BudgetSpec:
    checked = check_money(amount, "amount", budget_max, "BUDGET_MAX_USD")
    assert checked is not None  # amount is required
    if not isinstance(period, Period):
        raise InvalidInput(f"period must be one of {', '.join(Period.__members__)}")
    return BudgetSpec(
        checked, check_currency(currency, cost_currency), period, check_thresholds(thresholds)
    )


# -- writes (callers may hold a transaction; these join it) --------------------------------------


async def write_component_budget(component_id: uuid.UUID, spec: BudgetSpec | None) -> None:
    """Set (or with None remove) a component's budget and its budget_usd mirror."""
    if spec is None:
        await Budget.filter(component_id=component_id).delete()
        mirror = None
    else:
        await _upsert(spec, component_id=component_id)
        mirror = spec.amount if spec.period is Period.ROLLING_30_DAYS else None
    await Component.filter(id=component_id).update(budget_usd=mirror)


async def write_team_budget(team_id: uuid.UUID, spec: BudgetSpec | None) -> None:
    if spec is None:
        await Budget.filter(team_id=team_id).delete()
    else:
        await _upsert(spec, team_id=team_id)


async def _upsert(spec: BudgetSpec, **subject: uuid.UUID) -> None:
    values: dict[str, Any] = {
        **subject,
        "amount": spec.amount,
        "currency": spec.currency,
        "period": spec.period.value,
        "thresholds": list(spec.thresholds),
    }
    updated = await Budget.filter(**subject).update(**values)
    if not updated:
        await Budget.create(**values)


async def kept_thresholds(component_id: uuid.UUID) -> tuple[float, ...] | None:
    """The thresholds of a component's budget, kept when only its 30-day amount is set."""
    row = await Budget.filter(component_id=component_id).only("id", "thresholds").first()
    return tuple(row.thresholds) if row is not None else None


# -- periods and statuses (pure) ------------------------------------------------------------------


def period_days(period: Period, today: date) -> tuple[date, date, date]:
    """(start, end, forecast end) of a period on `today` (UTC). Spent counts start..yesterday
    (complete days); the forecast covers today..forecast end.

    ROLLING_30_DAYS: the 30 complete days before today, and the next 30 days from today (the
    rolling figure once they are complete). MONTHLY: the calendar month holding today, both."""
    if period is Period.ROLLING_30_DAYS:
        end = today - timedelta(days=1)
        return end - timedelta(days=ROLLUP_DAYS - 1), end, today + timedelta(days=ROLLUP_DAYS - 1)
    last = calendar.monthrange(today.year, today.month)[1]
    end = today.replace(day=last)
    return today.replace(day=1), end, end


def evaluate(
    spec: BudgetSpec,
    days: dict[date, float],
    today: date,
    *,
    component_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> BudgetStatus:
    """A budget's status from its subject's daily totals (explorer.daily_totals, covering at
    least forecast.HISTORY_DAYS days before today)."""
    start, end, forecast_end = period_days(spec.period, today)
    yesterday = today - timedelta(days=1)
    spent = sum(v for d, v in days.items() if start <= d <= yesterday)
    horizon = (forecast_end - today).days + 1
    ahead = forecasting.forecast(forecasting.observed(days, yesterday), yesterday, horizon)
    if spec.period is Period.MONTHLY:
        forecast_spend = spent + ahead.expected_total
    else:
        forecast_spend = ahead.expected_total
    # Compared and divided as shown (5 decimals), so float noise never changes a status and a
    # client dividing the figures gets the ratios.
    spent, forecast_spend, amount = money(spent), money(forecast_spend), spec.amount
    crossed = tuple(t for t in spec.thresholds if spent > t * amount)
    if spent > amount:
        state = State.OVER
    elif forecast_spend > amount:
        state = State.FORECAST_OVER
    elif any(t < 1.0 for t in crossed):
        state = State.WARNING
    else:
        state = State.OK
    return BudgetStatus(
        component_id=component_id,
        team_id=team_id,
        budget=spec,
        period_start=start,
        period_end=end,
        spent=spent,
        remaining=money(amount - spent),
        ratio=spent / amount if amount else None,
        forecast_spend=forecast_spend,
        forecast_ratio=forecast_spend / amount if amount else None,
        forecast_method=ahead.method,
        state=state,
        crossed_thresholds=crossed,
    )


def _raced() -> Conflict:
    return Conflict("a concurrent change set this budget (or deleted its subject) first: retry")


class BudgetService:
    """Budget writes for the admin mutations, and statuses in a fixed number of statements."""

    def __init__(
        self,
        *,
        currency: str = "USD",
        budget_max: float = BUDGET_MAX_USD,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.currency = currency
        self.budget_max = budget_max
        self.clock = clock

    def today(self) -> date:
        return self.clock().astimezone(UTC).date()

    def spec(
        self,
        amount: float,
        currency: str | None = None,
        period: Period = Period.ROLLING_30_DAYS,
        thresholds: Iterable[object] | None = None,
    ) -> BudgetSpec:
        return check_spec(
            amount,
            currency,
            period,
            thresholds,
            cost_currency=self.currency,
            budget_max=self.budget_max,
        )

    # -- writes ---------------------------------------------------------------------------------

    async def set_component_budget(self, component_id: uuid.UUID, spec: BudgetSpec) -> Component:
        try:
            async with in_transaction():
                if not await Component.filter(id=component_id).exists():
                    raise NotFound("component", component_id)
                await write_component_budget(component_id, spec)
                await dataversion.bump()
        except IntegrityError:
            raise _raced() from None
        return await Component.get(id=component_id)

    async def set_team_budget(self, team_id: uuid.UUID, spec: BudgetSpec) -> Team:
        try:
            async with in_transaction():
                team = await Team.get_or_none(id=team_id)
                if team is None:
                    raise NotFound("team", team_id)
                await write_team_budget(team_id, spec)
                await dataversion.bump()
        except IntegrityError:
            raise _raced() from None
        return team

    async def remove_budget(
        self, component_id: uuid.UUID | None = None, team_id: uuid.UUID | None = None
    ) -> bool:
        """Remove a component's or a team's budget: True if there was one."""
        if (component_id is None) == (team_id is None):
            raise InvalidInput("give exactly one of componentId or teamId")
        async with in_transaction():
            if component_id is not None:
                if not await Component.filter(id=component_id).exists():
                    raise NotFound("component", component_id)
                existed = await Budget.filter(component_id=component_id).exists()
                await write_component_budget(component_id, None)
            else:
                assert team_id is not None
                if not await Team.filter(id=team_id).exists():
                    raise NotFound("team", team_id)
                existed = await Budget.filter(team_id=team_id).exists()
                await write_team_budget(team_id, None)
            await dataversion.bump()
        return existed

    # -- statuses -------------------------------------------------------------------------------

    async def component_statuses(
        self, component_ids: Sequence[uuid.UUID], today: date | None = None
    ) -> dict[uuid.UUID, BudgetStatus | None]:
        """Each component's budget status (None without a budget): two statements."""
        found: dict[uuid.UUID, BudgetStatus | None] = dict.fromkeys(component_ids)
        if component_ids:
            rows = await Budget.filter(component_id__in=list(component_ids))
            for status in await _statuses(rows, today or self.today(), team=False):
                assert status.component_id is not None
                found[status.component_id] = status
        return found

    async def team_statuses(
        self, team_ids: Sequence[uuid.UUID], today: date | None = None
    ) -> dict[uuid.UUID, BudgetStatus | None]:
        """Each team's budget status, sub-teams' cost included: three statements."""
        found: dict[uuid.UUID, BudgetStatus | None] = dict.fromkeys(team_ids)
        if team_ids:
            rows = await Budget.filter(team_id__in=list(team_ids))
            for status in await _statuses(rows, today or self.today(), team=True):
                assert status.team_id is not None
                found[status.team_id] = status
        return found

    async def budget_statuses(self, today: date | None = None) -> list[BudgetStatus]:
        """Every budget's status (for the alert evaluator): four statements whatever the number
        of budgets. Component budgets first, then team budgets, each by subject id."""
        today = today or self.today()
        rows = await Budget.all()
        components = [r for r in rows if r.component_id is not None]
        teams = [r for r in rows if r.team_id is not None]
        found = await _statuses(components, today, team=False)
        found += await _statuses(teams, today, team=True)
        return found


async def _statuses(rows: list[Budget], today: date, *, team: bool) -> list[BudgetStatus]:
    """The statuses of component budgets (team=False) or team budgets (their sub-teams' cost
    included: one statement more), by subject id, with one read of the daily data."""
    if not rows:
        return []
    specs = {uuid.UUID(str(r.team_id if team else r.component_id)): BudgetSpec.of(r) for r in rows}
    ids = sorted(specs)
    first, last = forecasting.history_range(today)
    if team:
        scopes = await tree.team_subtrees(ids)
        days = await explorer.daily_totals(explorer.Subject.TEAM, scopes, first, last)
        return [evaluate(specs[t], days[t], today, team_id=t) for t in ids]
    days = await explorer.daily_totals(
        explorer.Subject.COMPONENT, {c: [c] for c in ids}, first, last
    )
    return [evaluate(specs[c], days[c], today, component_id=c) for c in ids]
