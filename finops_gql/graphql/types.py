"""GraphQL types: thin views over catalog models and the cost service's dataclasses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Self

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info
from strawberry.types.nodes import SelectedField, Selection

from finops_gql.alerts import service as alerting
from finops_gql.alerts.conditions import AlertKind, AlertStatus
from finops_gql.catalog import service as catalog
from finops_gql.config import DEFAULT_SOURCE
from finops_gql.costs import budgets
from finops_gql.costs import forecast as forecasting
from finops_gql.costs import service as cost
from finops_gql.costs.explorer import UNASSIGNED, Dimension
from finops_gql.costs.ranges import DayRange, Granularity, Preset
from finops_gql.costs.service import BREAKDOWN_DEFAULT, BREAKDOWN_MAX
from finops_gql.costs.windows import money
from finops_gql.db import models
from finops_gql.graphql import rows
from finops_gql.graphql.context import Context, SeriesKey, loaded
from finops_gql.graphql.execution import PRELOADED

CtxInfo = Info[Context, Any]

# strawberry.enum registers the service's enums in place: resolvers receive the service values.
ComponentOrder = catalog.ComponentOrder
TeamOrder = catalog.TeamOrder
strawberry.enum(
    catalog.ComponentOrder,
    name="ComponentOrder",
    description="Component list order; ties are broken by name, then id.",
)
strawberry.enum(catalog.TeamOrder, name="TeamOrder", description="Team list order.")
strawberry.enum(
    AlertKind,
    name="AlertKind",
    description="BUDGET_THRESHOLD (a budget threshold crossed), BUDGET_FORECAST (the period's "
    "forecast above the budget), COST_ANOMALY (a day's cost far from the component's own "
    "pattern), SYNC_FAILED (the latest cost sync failed or was partial).",
)
strawberry.enum(
    AlertStatus,
    name="AlertStatus",
    description="OPEN -> ACKNOWLEDGED | SNOOZED (until a time, then OPEN again if the condition "
    "still holds) -> RESOLVED (the condition cleared, or a person resolved it).",
)
SEARCH_DESCRIPTION = (
    f"Case-insensitive substring of the name (1..{catalog.SEARCH_MAX} characters; % and _ match "
    "themselves; an empty string filters nothing)."
)
OVER_BUDGET_DESCRIPTION = "true: only components over budget; false: only those not over it."
MIN_COST_DESCRIPTION = "Only components whose cost30d is at least this (finite, >= 0)."
Counter = Callable[[], Awaitable[int]]
ALERTS_DEFAULT = 50
ALERT_STATUS_DESCRIPTION = "Only alerts in this status."

# TeamCostSummary.components: a bounded list, so the query cost can count it (REST's team
# summary keeps listing every component).
SUMMARY_COMPONENTS_DEFAULT = 100
SUMMARY_COMPONENTS_MAX = 1000


@strawberry.type(description="Cost split by resource, in the window's currency.")
class CostBreakdown:
    cpu_cost: float
    memory_cost: float = strawberry.field(description="OpenCost ramCost.")
    pv_cost: float
    network_cost: float
    gpu_cost: float
    load_balancer_cost: float
    shared_cost: float
    external_cost: float
    total_cost: float = strawberry.field(description="OpenCost totalCost.")

    @classmethod
    def of(cls, b: cost.CostBreakdown) -> CostBreakdown:
        return cls(
            cpu_cost=b.cpu_cost,
            memory_cost=b.memory_cost,
            pv_cost=b.pv_cost,
            network_cost=b.network_cost,
            gpu_cost=b.gpu_cost,
            load_balancer_cost=b.load_balancer_cost,
            shared_cost=b.shared_cost,
            external_cost=b.external_cost,
            total_cost=b.total_cost,
        )


DateRangePreset = strawberry.enum(
    Preset,
    name="DateRangePreset",
    description="Ranges ending at the last complete UTC day (yesterday); LAST_MONTH is the "
    "calendar month before this one.",
)
strawberry.enum(
    Granularity,
    description="DAY, WEEK (ISO weeks, Monday to Sunday) or MONTH (calendar months).",
)


@strawberry.input(
    description="Whole UTC days: exactly one of `preset`, or both `from` and `to` (inclusive). "
    "Not reversed, not wholly in the future (an end past yesterday is cut there), at most "
    "COST_RETENTION_DAYS days (and at most 400)."
)
class DateRange:
    preset: Preset | None = None
    from_: date | None = strawberry.field(name="from", default=None)
    to: date | None = None

    def resolve(self, info: CtxInfo) -> DayRange:
        return info.context.services.costs.resolve_range(self.preset, self.from_, self.to)


@strawberry.type(description="One bucket of a series; every bucket of the range is present.")
class CostPoint:
    start: date
    end: date
    complete: bool = strawberry.field(
        description="False when the range cuts this bucket (a partial week or month)."
    )
    total_cost: float
    point: strawberry.Private[cost.CostPoint]

    @strawberry.field
    def breakdown(self) -> CostBreakdown:
        return CostBreakdown.of(self.point.breakdown)  # rounded only when asked for

    @classmethod
    def of(cls, p: cost.CostPoint) -> CostPoint:
        return cls(start=p.start, end=p.end, complete=p.complete, total_cost=p.total_cost, point=p)


@strawberry.type(description="Against the range of the same length just before this one.")
class CostChange:
    previous_total: float
    amount: float = strawberry.field(description="total - previousTotal.")
    ratio: float | None = strawberry.field(
        description="amount / previousTotal; null when the previous total is 0."
    )


@strawberry.type(description="Persisted cost over a range, bucketed by granularity.")
class CostSeries:
    start: date
    end: date
    granularity: Granularity
    total: float
    currency: str
    breakdown: CostBreakdown
    points: list[CostPoint] = strawberry.field(
        description="One per bucket, in time order, zeros included (at most 400)."
    )
    change: CostChange

    @classmethod
    def of(cls, s: cost.CostSeries) -> Self:
        return cls(
            start=s.start,
            end=s.end,
            granularity=s.granularity,
            total=s.total,
            currency=s.currency,
            breakdown=CostBreakdown.of(s.breakdown),
            points=[CostPoint.of(p) for p in s.points],
            change=_change(s.change),
        )


@strawberry.type(
    description="How much of the cluster's cost (as OpenCost reports it) the catalog explains. "
    "With several OpenCost aggregates, each day is read from the one whose components explain "
    "the most, so nothing is counted twice."
)
class CostCoverage:
    catalog_cost: float = strawberry.field(
        description="Every component's cost: platformCost's total."
    )
    cluster_cost: float = strawberry.field(
        description="Everything OpenCost reported: the catalog's keys, unmapped keys, "
        "unallocated, idle and unmounted (days synced before coverage existed: their catalog "
        "cost only)."
    )
    unmapped_cost: float = strawberry.field(
        description="Keys no component matches (see unmappedKeys): labels to fix or "
        "components to add."
    )
    unallocated_cost: float = strawberry.field(
        description="OpenCost __unallocated__: workloads without the aggregate's label."
    )
    idle_cost: float = strawberry.field(
        description="OpenCost __idle__: capacity paid for and used by no workload."
    )
    unmounted_cost: float = strawberry.field(
        description="OpenCost __unmounted__: volumes no pod mounts."
    )
    ratio: float | None = strawberry.field(
        description="catalogCost / clusterCost; null when clusterCost is 0."
    )
    reported_days: int = strawberry.field(
        description="Days of the range for which the sync kept OpenCost's cluster view."
    )
    currency: str

    @classmethod
    def of(cls, c: cost.CostCoverage) -> CostCoverage:
        return cls(
            catalog_cost=c.catalog_cost,
            cluster_cost=c.cluster_cost,
            unmapped_cost=c.unmapped_cost,
            unallocated_cost=c.unallocated_cost,
            idle_cost=c.idle_cost,
            unmounted_cost=c.unmounted_cost,
            ratio=c.ratio,
            reported_days=c.reported_days,
            currency=c.currency,
        )


@strawberry.type(description="An OpenCost key that no catalog component matches.")
class UnmappedKey:
    aggregate: str = strawberry.field(description="The OpenCost aggregate, e.g. label:app.")
    key: str = strawberry.field(description="The key, e.g. the app label's value.")
    total: float
    share: float | None = strawberry.field(
        description="total / the coverage's clusterCost; null when that is 0."
    )


@strawberry.type(description="The platform's series, with the cluster's cost beside it.")
class PlatformCostSeries(CostSeries):
    @strawberry.field(
        description="The catalog's cost beside the cluster's, over the range; null unless the "
        "principal sees every team (AUTHZ_MODE)."
    )
    async def coverage(self, info: CtxInfo) -> CostCoverage | None:
        costs = info.context.services.costs
        found = await costs.coverage(
            DayRange(self.start, self.end),
            info.context.scope,
            info.context.loaders.coverage_sums.load,
        )
        return None if found is None else CostCoverage.of(found)

    @strawberry.field(
        description="OpenCost keys no component matches over the range, largest first "
        f"(first: 1..{cost.UNMAPPED_KEYS_MAX}); null unless the principal sees every team."
    )
    async def unmapped_keys(
        self, info: CtxInfo, first: int = cost.UNMAPPED_KEYS_DEFAULT
    ) -> list[UnmappedKey] | None:
        costs = info.context.services.costs
        chosen = DayRange(self.start, self.end)
        found = await costs.unmapped_keys(
            chosen, first, info.context.scope, info.context.loaders.coverage_sums.load
        )
        if found is None:
            return None
        return [
            UnmappedKey(aggregate=k.aggregate, key=k.key, total=k.total, share=k.share)
            for k in found
        ]


# The `clusters` filter of the cost fields (explorer.Clusters once checked).
ClustersArg = Annotated[
    list[str] | None,
    strawberry.argument(
        description="Only these clusters' cost (OpenCost source names, 1..50); all when omitted."
    ),
]


strawberry.enum(
    Dimension,
    name="CostDimension",
    description="TEAM, COMPONENT, SYSTEM, DOMAIN, RESOURCE (cpu, memory, pv, network, gpu, "
    "loadBalancer, shared, external) or CLUSTER (the OpenCost source's name, key and label, "
    "entity null). SYSTEM and DOMAIN have one more group for the cost in no "
    f"system (no domain): key {UNASSIGNED!r}, label '(no system)' ('(no domain)'), entity null.",
)


def _change(c: cost.CostChange) -> CostChange:
    return CostChange(previous_total=c.previous_total, amount=c.amount, ratio=c.ratio)


@strawberry.type(description="One group of a breakdown.")
class CostGroup:
    key: str = strawberry.field(
        description=f"The team, component, system or domain id, {UNASSIGNED!r} (cost in no "
        "system / domain), the resource name or the cluster name."
    )
    label: str = strawberry.field(
        description="The team, component, system or domain name, '(no system)' / '(no domain)', "
        "or the resource."
    )
    total: float
    share: float | None = strawberry.field(
        description="total / the breakdown's total; null when that is 0."
    )
    change: CostChange
    dimension: strawberry.Private[Dimension]

    @strawberry.field(
        description="The group's Team, Component, System or Domain; null for a resource, a "
        "cluster, the unassigned group, and for one deleted since."
    )
    async def entity(self, info: CtxInfo) -> CostEntity | None:
        if self.dimension in (Dimension.RESOURCE, Dimension.CLUSTER) or self.key == UNASSIGNED:
            return None
        loaders = info.context.loaders
        entity_id = uuid.UUID(self.key)
        if self.dimension is Dimension.TEAM:
            team = await loaders.team.load(entity_id)
            return Team.of(team) if team is not None else None
        if self.dimension is Dimension.COMPONENT:
            component = await loaders.component.load(entity_id)
            return Component.of(component) if component is not None else None
        if self.dimension is Dimension.SYSTEM:
            system = await loaders.system.load(entity_id)
            return System.of(system) if system is not None else None
        domain = await loaders.domain.load(entity_id)
        return Domain.of(domain) if domain is not None else None


@strawberry.type(description="Cost over a range by group, largest first.")
class CostGroupConnection:
    start: date
    end: date
    group_by: Dimension
    total: float = strawberry.field(description="Of every group, not only those in nodes.")
    currency: str
    total_count: int = strawberry.field(
        description="How many groups had cost in the range or the one before."
    )
    nodes: list[CostGroup]

    @classmethod
    def of(cls, g: cost.CostGroups) -> CostGroupConnection:
        return cls(
            start=g.start,
            end=g.end,
            group_by=g.dimension,
            total=g.total,
            currency=g.currency,
            total_count=g.total_count,
            nodes=[
                CostGroup(
                    key=n.key,
                    label=n.label,
                    total=n.total,
                    share=n.share,
                    change=_change(n.change),
                    dimension=g.dimension,
                )
                for n in g.groups
            ],
        )


strawberry.enum(
    budgets.Period,
    name="BudgetPeriod",
    description="ROLLING_30_DAYS: the 30 complete UTC days before today (like cost30d); "
    "MONTHLY: the current UTC calendar month.",
)
strawberry.enum(
    budgets.State,
    name="BudgetState",
    description="Most severe first: OVER (spent > amount), FORECAST_OVER (the forecast for the "
    "period's end > amount), WARNING (a threshold below 1.0 crossed), OK.",
)
strawberry.enum(
    forecasting.Method,
    name="ForecastMethod",
    description="TREND_WEEKLY: least squares on a linear trend and day-of-week effects (14 days "
    "of history or more); MEAN: the fallback below 14 days, the mean of the days there are, "
    "flat; NO_DATA: no history, zeros.",
)


@strawberry.type(description="A component's or a team's budget.")
class Budget:
    amount: float
    currency: str
    period: budgets.Period
    thresholds: list[float] = strawberry.field(
        description="Ratios of the amount, ascending (default 0.5, 0.8, 1.0)."
    )

    @classmethod
    def of(cls, b: budgets.BudgetSpec) -> Budget:
        return cls(
            amount=b.amount, currency=b.currency, period=b.period, thresholds=list(b.thresholds)
        )


@strawberry.type(
    description="Where a budget stands today: money spent over the period's complete days, "
    "and the forecast for its end."
)
class BudgetStatus:
    budget: Budget
    period_start: date
    period_end: date = strawberry.field(
        description="ROLLING_30_DAYS: yesterday; MONTHLY: the month's last day."
    )
    spent: float = strawberry.field(description="Over periodStart..yesterday.")
    remaining: float = strawberry.field(description="amount - spent; negative when over.")
    ratio: float | None = strawberry.field(description="spent / amount; null for a 0 budget.")
    forecast_spend: float = strawberry.field(
        description="MONTHLY: spent + the forecast of the month's remaining days (today "
        "included); ROLLING_30_DAYS: the forecast of the next 30 days from today."
    )
    forecast_ratio: float | None
    forecast_method: forecasting.Method
    status: budgets.State
    crossed_thresholds: list[float] = strawberry.field(
        description="The thresholds t with spent > t x amount."
    )

    @classmethod
    def of(cls, s: budgets.BudgetStatus | None) -> BudgetStatus | None:
        if s is None:
            return None
        return cls(
            budget=Budget.of(s.budget),
            period_start=s.period_start,
            period_end=s.period_end,
            spent=s.spent,
            remaining=s.remaining,
            ratio=s.ratio,
            forecast_spend=s.forecast_spend,
            forecast_ratio=s.forecast_ratio,
            forecast_method=s.forecast_method,
            status=s.state,
            crossed_thresholds=list(s.crossed_thresholds),
        )


@strawberry.input(description="A budget to set; it replaces the subject's budget.")
class BudgetInput:
    amount: float = strawberry.field(description="Finite, >= 0, at most BUDGET_MAX_USD.")
    currency: str | None = strawberry.field(
        default=None, description="Must be the cost data's (COST_CURRENCY, the default)."
    )
    period: budgets.Period = budgets.Period.ROLLING_30_DAYS
    thresholds: list[float] | None = strawberry.field(
        default=None,
        description=f"Ratios of the amount: 1..{budgets.MAX_THRESHOLDS} of them, ascending, "
        f"each > 0 and <= {budgets.MAX_THRESHOLD:g} (default 0.5, 0.8, 1.0).",
    )

    def spec(self, info: CtxInfo) -> budgets.BudgetSpec:
        return info.context.services.budgets.spec(
            self.amount, self.currency, self.period, self.thresholds
        )


@strawberry.type(description="One forecast day.")
class ForecastPoint:
    day: date
    expected: float
    lower: float = strawberry.field(description="Lower bound of the interval (>= 0).")
    upper: float


@strawberry.type(
    description="Daily cost forecast from the persisted daily costs (at most the last 56 "
    "complete days), starting today."
)
class Forecast:
    method: forecasting.Method
    fallback: bool = strawberry.field(
        description="True when fewer than 14 days of history forced the MEAN or NO_DATA method."
    )
    interval: float = strawberry.field(description="Coverage of [lower, upper], e.g. 0.8.")
    history_days: int = strawberry.field(description="Days of history the forecast used.")
    points: list[ForecastPoint] = strawberry.field(
        description=f"One per day asked for (at most {forecasting.MAX_DAYS})."
    )

    @classmethod
    def of(cls, f: forecasting.Forecast) -> Forecast:
        return cls(
            method=f.method,
            fallback=f.fallback,
            interval=f.interval,
            history_days=f.history_days,
            points=[
                ForecastPoint(day=p.day, expected=p.expected, lower=p.lower, upper=p.upper)
                for p in f.points
            ],
        )


FORECAST_DAYS = f"Days to forecast from today, 1..{forecasting.MAX_DAYS}."


@strawberry.type(description="Live cost over a window, as OpenCost reports it now.")
class CostWindow:
    window: str = strawberry.field(description="OpenCost window label, e.g. 7d or 30d.")
    start: datetime
    end: datetime
    currency: str
    breakdown: CostBreakdown
    total_cost: float

    @classmethod
    def of(cls, w: cost.CostWindow | None) -> CostWindow | None:
        if w is None:
            return None
        return cls(
            window=w.window,
            start=w.start,
            end=w.end,
            currency=w.currency,
            breakdown=CostBreakdown.of(w.breakdown),
            total_cost=w.breakdown.total_cost,
        )


@strawberry.type(
    description="Live cost of a component; a window is null when OpenCost has no data."
)
class ActualCost:
    seven_day: CostWindow | None
    thirty_day: CostWindow | None


@strawberry.type(description="One persisted day of a component's cost.")
class CostRecord:
    day: date
    currency: str
    synced_at: datetime
    breakdown: CostBreakdown
    total_cost: float

    @classmethod
    def of(cls, r: cost.DailyCost) -> CostRecord:
        return cls(
            day=r.day,
            currency=r.currency,
            synced_at=r.synced_at,
            breakdown=CostBreakdown.of(r.breakdown),
            total_cost=r.breakdown.total_cost,
        )


@strawberry.type(description="A component's 30-day cost from persisted daily records.")
class ComponentCost:
    total_cost: float
    currency: str
    synced_at: datetime | None
    budget_usd: float | None
    component_id: strawberry.ID
    window: str = "30d"

    @strawberry.field
    async def component(self, info: CtxInfo) -> Component | None:
        found = await info.context.loaders.component.load(uuid.UUID(self.component_id))
        return Component.of(found) if found is not None else None

    @classmethod
    def of(cls, c: cost.ComponentCost) -> ComponentCost:
        return cls(
            total_cost=c.total_cost,
            currency=c.currency,
            synced_at=c.synced_at,
            budget_usd=c.budget_usd,
            component_id=strawberry.ID(c.component_id),
        )


@strawberry.type(description="A team's 30-day cost, and its components by cost, largest first.")
class TeamCostSummary:
    total_cost: float = strawberry.field(description="Of all the team's components.")
    currency: str
    window: str
    start: date
    end: date
    all_components: strawberry.Private[list[cost.ComponentCost]]

    @strawberry.field(
        description="The team's largest components by 30-day cost (all of them are in totalCost)."
    )
    def components(
        self,
        limit: Annotated[
            int, strawberry.argument(description=f"1..{SUMMARY_COMPONENTS_MAX}")
        ] = SUMMARY_COMPONENTS_DEFAULT,
    ) -> list[ComponentCost]:
        cost.check_limit(limit, SUMMARY_COMPONENTS_MAX)
        return [ComponentCost.of(c) for c in self.all_components[:limit]]

    @classmethod
    def of(cls, s: cost.TeamSummary) -> TeamCostSummary:
        return cls(
            total_cost=s.total_cost,
            currency=s.currency,
            window=s.window,
            start=s.start,
            end=s.end,
            all_components=s.components,
        )


@strawberry.type
class Team:
    id: strawberry.ID
    name: str
    slug: str
    cost30d: float = strawberry.field(
        description="Sum of the cost30d of the team's own components (sub-teams not included): "
        "what teams(orderBy: COST_30D_DESC / COST_30D_ASC) sorts by (kept by the sync)."
    )
    parent_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="The team this one is a sub-team of (Backstage spec.parent).")
    async def parent(self, info: CtxInfo) -> Team | None:
        if self.parent_id is None:
            return None
        found = await info.context.loaders.team.load(self.parent_id)
        return Team.of(found) if found is not None else None

    @strawberry.field(description="Direct sub-teams by slug, cursor-paginated.")
    async def children(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = catalog.PAGE_DEFAULT,
        after: str | None = None,
    ) -> TeamConnection:
        team_id = uuid.UUID(self.id)
        page = await info.context.loaders.team_children.load((team_id, first, after))
        info.context.loaders.team.know({t.id: t for t in page.items})
        catalog_service, scope = info.context.services.catalog, info.context.scope
        return TeamConnection.of(page, lambda: catalog_service.count_children(team_id, scope))

    @strawberry.field(
        description="The team's components by name, cursor-paginated like `components`."
    )
    async def components(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = catalog.PAGE_DEFAULT,
        after: str | None = None,
        order_by: ComponentOrder = catalog.ComponentOrder.NAME,
        search: Annotated[str | None, strawberry.argument(description=SEARCH_DESCRIPTION)] = None,
        over_budget: Annotated[
            bool | None, strawberry.argument(description=OVER_BUDGET_DESCRIPTION)
        ] = None,
        min_cost30d: Annotated[
            float | None, strawberry.argument(description=MIN_COST_DESCRIPTION)
        ] = None,
    ) -> ComponentConnection:
        loaders = info.context.loaders
        team_id = uuid.UUID(self.id)
        filters = catalog.ComponentFilter(
            search=search, over_budget=over_budget, min_cost_30d=min_cost30d
        ).checked()
        page = await loaders.team_components.load((team_id, first, after, order_by, filters))
        loaders.component.know({c.id: c for c in page.items})  # later loads reuse these rows
        return ComponentConnection.of(
            page, lambda: loaders.team_component_count.load((team_id, filters))
        )

    @strawberry.field(description="30-day cost of the team's components, from persisted records.")
    async def cost_summary(self, info: CtxInfo) -> TeamCostSummary:
        return TeamCostSummary.of(await info.context.loaders.team_summary.load(uuid.UUID(self.id)))

    @strawberry.field(
        description="Persisted cost of the team's components over a range (with its sub-teams' "
        "unless includeSubTeams is false)."
    )
    async def cost(
        self,
        info: CtxInfo,
        range: DateRange,
        granularity: Granularity = Granularity.DAY,
        include_sub_teams: bool = True,
        clusters: ClustersArg = None,
    ) -> CostSeries:
        key = (
            uuid.UUID(self.id),
            range.resolve(info),
            granularity,
            include_sub_teams,
            cost.check_clusters(clusters),
        )
        return CostSeries.of(await info.context.loaders.team_series.load(key))

    @strawberry.field(
        description=f"The team's cost by group, largest first (first: 1..{BREAKDOWN_MAX})."
    )
    async def cost_breakdown(
        self,
        info: CtxInfo,
        range: DateRange,
        group_by: Dimension,
        first: int = BREAKDOWN_DEFAULT,
        include_sub_teams: bool = True,
        clusters: ClustersArg = None,
    ) -> CostGroupConnection:
        key = (
            uuid.UUID(self.id),
            range.resolve(info),
            group_by,
            first,
            include_sub_teams,
            cost.check_clusters(clusters),
        )
        return CostGroupConnection.of(await info.context.loaders.team_breakdown.load(key))

    @strawberry.field(
        description="The team's budget and where it stands (its sub-teams' cost included); "
        "null when it has none."
    )
    async def budget_status(self, info: CtxInfo) -> BudgetStatus | None:
        return BudgetStatus.of(await info.context.loaders.team_budget.load(uuid.UUID(self.id)))

    @strawberry.field(
        description="Daily cost forecast of the team's components (with its sub-teams' unless "
        "includeSubTeams is false)."
    )
    async def forecast(
        self,
        info: CtxInfo,
        days: Annotated[int, strawberry.argument(description=FORECAST_DAYS)],
        include_sub_teams: bool = True,
    ) -> Forecast:
        forecasting.check_days(days)
        key = (uuid.UUID(self.id), days, include_sub_teams)
        return Forecast.of(await info.context.loaders.team_forecast.load(key))

    @strawberry.field(
        description="Alerts of the team (and of its sub-teams unless includeSubTeams is false), "
        "newest first, cursor-paginated."
    )
    async def alerts(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = ALERTS_DEFAULT,
        after: str | None = None,
        status: Annotated[
            AlertStatus | None, strawberry.argument(description=ALERT_STATUS_DESCRIPTION)
        ] = None,
        include_sub_teams: bool = True,
    ) -> AlertConnection:
        team_id = uuid.UUID(self.id)
        key = (team_id, first, after, status, include_sub_teams)
        page = await info.context.loaders.team_alerts.load(key)
        service = info.context.services.alerts
        only = alerting.AlertFilter(
            status=status, team_id=team_id, include_sub_teams=include_sub_teams
        )
        scope = info.context.scope
        return AlertConnection.of(page, lambda: service.count_alerts(only, scope))

    @classmethod
    def of(cls, t: models.Team) -> Team:
        return cls(
            id=strawberry.ID(str(t.id)),
            name=t.name,
            slug=t.slug,
            cost30d=money(t.cost_30d),
            parent_id=_uuid_or_none(t.parent_id),
        )


def _uuid(value: object) -> uuid.UUID:
    """A model's UUID column as a UUID: it is one already (asyncpg's is a subclass), unless it
    was set from text."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _uuid_or_none(value: object) -> uuid.UUID | None:
    return _uuid(value) if value is not None else None


@strawberry.type(description="Backstage kind: Domain, a group of systems.")
class Domain:
    id: strawberry.ID
    name: str
    slug: str
    owner_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="The owning team (Backstage spec.owner).")
    async def owner(self, info: CtxInfo) -> Team | None:
        return await _team(info, self.owner_id)

    @strawberry.field(description="The domain's systems by slug, cursor-paginated.")
    async def systems(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = catalog.PAGE_DEFAULT,
        after: str | None = None,
    ) -> SystemConnection:
        page = await info.context.loaders.domain_systems.load((uuid.UUID(self.id), first, after))
        for item in page.items:
            info.context.loaders.system.prime(item.id, item)
        return SystemConnection.of(page)

    @strawberry.field(
        description="Persisted cost of the domain's systems' components over a range, "
        "whichever team owns them (under AUTHZ_MODE=team, those the principal sees), bucketed "
        "by granularity."
    )
    async def cost(
        self,
        info: CtxInfo,
        range: DateRange,
        granularity: Granularity = Granularity.DAY,
        clusters: ClustersArg = None,
    ) -> CostSeries:
        loader = info.context.loaders.domain_series
        return await _series(loader, self.id, info, range, granularity, clusters)

    @classmethod
    def of(cls, d: models.Domain) -> Domain:
        return cls(
            id=strawberry.ID(str(d.id)),
            name=d.name,
            slug=d.slug,
            owner_id=_uuid_or_none(d.owner_id),
        )


@strawberry.type(description="Backstage kind: System, the components that make one product.")
class System:
    id: strawberry.ID
    name: str
    slug: str
    domain_id: strawberry.Private[uuid.UUID | None]
    owner_id: strawberry.Private[uuid.UUID | None]

    @strawberry.field(description="The domain the system belongs to (Backstage spec.domain).")
    async def domain(self, info: CtxInfo) -> Domain | None:
        if self.domain_id is None:
            return None
        found = await info.context.loaders.domain.load(self.domain_id)
        return Domain.of(found) if found is not None else None

    @strawberry.field(description="The owning team (Backstage spec.owner).")
    async def owner(self, info: CtxInfo) -> Team | None:
        return await _team(info, self.owner_id)

    @strawberry.field(description="The system's components by name, cursor-paginated.")
    async def components(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = catalog.PAGE_DEFAULT,
        after: str | None = None,
    ) -> ComponentConnection:
        system_id = uuid.UUID(self.id)
        page = await info.context.loaders.system_components.load((system_id, first, after))
        info.context.loaders.component.know({c.id: c for c in page.items})
        catalog_service, scope = info.context.services.catalog, info.context.scope
        only_system = catalog.ComponentFilter(system_id=system_id)
        return ComponentConnection.of(
            page, lambda: catalog_service.count_components(only_system, scope)
        )

    @strawberry.field(
        description="Persisted cost of the system's components over a range, whichever team owns "
        "them (under AUTHZ_MODE=team, those the principal sees), bucketed by granularity."
    )
    async def cost(
        self,
        info: CtxInfo,
        range: DateRange,
        granularity: Granularity = Granularity.DAY,
        clusters: ClustersArg = None,
    ) -> CostSeries:
        loader = info.context.loaders.system_series
        return await _series(loader, self.id, info, range, granularity, clusters)

    @classmethod
    def of(cls, s: models.System) -> System:
        return cls(
            id=strawberry.ID(str(s.id)),
            name=s.name,
            slug=s.slug,
            domain_id=_uuid_or_none(s.domain_id),
            owner_id=_uuid_or_none(s.owner_id),
        )


async def _series(
    loader: DataLoader[SeriesKey, cost.CostSeries],
    subject_id: str,
    info: CtxInfo,
    range: DateRange,
    granularity: Granularity,
    clusters: list[str] | None = None,
) -> CostSeries:
    """A component's, system's or domain's series through its DataLoader."""
    key = (uuid.UUID(subject_id), range.resolve(info), granularity, cost.check_clusters(clusters))
    return CostSeries.of(await loader.load(key))


async def _team(info: CtxInfo, team_id: uuid.UUID | None) -> Team | None:
    if team_id is None:
        return None
    found = await info.context.loaders.team.load(team_id)
    return Team.of(found) if found is not None else None


async def _load_team(loader: DataLoader[uuid.UUID, models.Team | None], team_id: uuid.UUID) -> Team:
    found = await loader.load(team_id)
    assert found is not None  # a foreign key guarantees it
    return Team.of(found)


@strawberry.type
class Component:
    id: strawberry.ID
    name: str
    budget_usd: float | None = strawberry.field(
        description="The amount of the component's ROLLING_30_DAYS budget (null without a "
        "budget or with a MONTHLY one); see budgetStatus."
    )
    opencost_aggregate: str
    opencost_key: str = strawberry.field(description="Key in OpenCost's answer (default: name).")
    cost30d: float = strawberry.field(
        description="Sum of the last 30 complete UTC days of persisted cost (kept by the sync)."
    )
    cost_synced_at: datetime | None
    team_id: strawberry.Private[uuid.UUID]
    model: strawberry.Private[models.Component]
    system_id: strawberry.Private[uuid.UUID | None]
    # The team when the component's statement read it (a page's), else None: what `team`
    # answers first, and what the executor reads without calling it (execution.PRELOADED).
    loaded_team: strawberry.Private[Team | None]

    @strawberry.field(description="The system the component belongs to (Backstage spec.system).")
    async def system(self, info: CtxInfo) -> System | None:
        if self.system_id is None:
            return None
        found = await info.context.loaders.system.load(self.system_id)
        return System.of(found) if found is not None else None

    @strawberry.field(
        description="cost30d above budgetUsd, compared unrounded like the sync's budget alert "
        "and the overBudget filter."
    )
    def over_budget(self) -> bool:
        return self.budget_usd is not None and self.model.cost_30d > self.budget_usd

    @strawberry.field(graphql_type=Team, metadata={PRELOADED: "loaded_team"})
    def team(self, info: CtxInfo) -> Team | Awaitable[Team]:
        if self.loaded_team is not None:
            return self.loaded_team
        # Synchronous when the team is already loaded (primed by an earlier statement): an
        # awaitable per row would cost the executor a task per row.
        loader = info.context.loaders.team
        found = loaded(loader, self.team_id)
        if found is not None:
            return Team.of(found)
        return _load_team(loader, self.team_id)

    @strawberry.field(
        description=(
            "Live 7-day and 30-day cost from OpenCost. Null when OpenCost cannot answer, with an "
            "error of code OPENCOST_UNAVAILABLE at this field's path; the other fields (cost30d, "
            "history, ...) still come from the database."
        )
    )
    async def actual_cost(self, info: CtxInfo) -> ActualCost | None:
        actual = await info.context.services.costs.actual_cost(self.model)
        return ActualCost(
            seven_day=CostWindow.of(actual.seven_day), thirty_day=CostWindow.of(actual.thirty_day)
        )

    @strawberry.field(description="Persisted daily records, newest first.")
    async def history(
        self,
        info: CtxInfo,
        limit: Annotated[
            int, strawberry.argument(description=f"1..{cost.HISTORY_MAX}")
        ] = cost.HISTORY_DEFAULT,
    ) -> list[CostRecord]:
        cost.check_limit(limit, cost.HISTORY_MAX)
        records = await info.context.loaders.history(limit).load(uuid.UUID(self.id))
        return [CostRecord.of(r) for r in records]

    @strawberry.field(description="Persisted cost over a range, bucketed by granularity.")
    async def cost(
        self,
        info: CtxInfo,
        range: DateRange,
        granularity: Granularity = Granularity.DAY,
        clusters: ClustersArg = None,
    ) -> CostSeries:
        loader = info.context.loaders.component_series
        return await _series(loader, self.id, info, range, granularity, clusters)

    @strawberry.field(
        description="The clusters (OpenCost sources) where the component has persisted cost, "
        "by name."
    )
    async def clusters(self, info: CtxInfo) -> list[str]:
        return await info.context.loaders.component_clusters.load(uuid.UUID(self.id))

    @strawberry.field(description="The component's budget and where it stands; null without one.")
    async def budget_status(self, info: CtxInfo) -> BudgetStatus | None:
        found = await info.context.loaders.component_budget.load(uuid.UUID(self.id))
        return BudgetStatus.of(found)

    @strawberry.field(description="Daily cost forecast from the component's persisted costs.")
    async def forecast(
        self, info: CtxInfo, days: Annotated[int, strawberry.argument(description=FORECAST_DAYS)]
    ) -> Forecast:
        forecasting.check_days(days)
        key = (uuid.UUID(self.id), days)
        return Forecast.of(await info.context.loaders.component_forecast.load(key))

    @strawberry.field(description="The component's alerts, newest first, cursor-paginated.")
    async def alerts(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{catalog.PAGE_MAX}")
        ] = ALERTS_DEFAULT,
        after: str | None = None,
        status: Annotated[
            AlertStatus | None, strawberry.argument(description=ALERT_STATUS_DESCRIPTION)
        ] = None,
    ) -> AlertConnection:
        component_id = uuid.UUID(self.id)
        page = await info.context.loaders.component_alerts.load(
            (component_id, first, after, status)
        )
        service = info.context.services.alerts
        only = alerting.AlertFilter(status=status, component_id=component_id)
        scope = info.context.scope
        return AlertConnection.of(page, lambda: service.count_alerts(only, scope))

    @classmethod
    def of(cls, c: models.Component, teams: dict[int, Team] | None = None) -> Component:
        """`teams` shares one Team per team model among a page's rows."""
        team_model = c.__dict__.get("_team")  # set when the statement read the team
        loaded_team = None
        if isinstance(team_model, models.Team):
            if teams is None:
                loaded_team = Team.of(team_model)
            elif (loaded_team := teams.get(id(team_model))) is None:
                loaded_team = teams[id(team_model)] = Team.of(team_model)
        return cls(
            id=strawberry.ID(str(c.id)),
            name=c.name,
            budget_usd=c.budget_usd,
            opencost_aggregate=c.opencost_aggregate,
            opencost_key=c.selector_key,
            cost30d=money(c.cost_30d),
            cost_synced_at=c.cost_synced_at,
            team_id=_uuid(c.team_id),
            model=c,
            system_id=_uuid_or_none(c.system_id),
            loaded_team=loaded_team,
        )


CostEntity = Annotated[
    Team | Component | System | Domain,
    strawberry.union("CostEntity", description="What a breakdown group is the cost of."),
]


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool

    @classmethod
    def of(cls, page: catalog.Page[Any] | catalog.WrittenPage) -> PageInfo:
        return cls(end_cursor=page.end_cursor, has_next_page=page.has_next_page)


TOTAL_COUNT_DESCRIPTION = (
    "How many items match the filters (all pages); counted only when asked for."
)


@strawberry.type
class TeamConnection:
    nodes: list[Team]
    page_info: PageInfo
    counter: strawberry.Private[Counter]

    @strawberry.field(description=TOTAL_COUNT_DESCRIPTION)
    async def total_count(self) -> int:
        return await self.counter()

    @classmethod
    def of(cls, page: catalog.Page[models.Team], counter: Counter) -> TeamConnection:
        return cls(
            nodes=[Team.of(t) for t in page.items],
            page_info=PageInfo.of(page),
            counter=counter,
        )


@strawberry.type
class SystemConnection:
    nodes: list[System]
    page_info: PageInfo

    @classmethod
    def of(cls, page: catalog.Page[models.System]) -> SystemConnection:
        return cls(
            nodes=[System.of(s) for s in page.items],
            page_info=PageInfo.of(page),
        )


@strawberry.type
class DomainConnection:
    nodes: list[Domain]
    page_info: PageInfo

    @classmethod
    def of(cls, page: catalog.Page[models.Domain]) -> DomainConnection:
        return cls(
            nodes=[Domain.of(d) for d in page.items],
            page_info=PageInfo.of(page),
        )


def _asks(selections: Sequence[Selection], name: str) -> bool:
    """Whether a selection set asks for field `name`, through fragments too."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            if selection.name == name:
                return True
        elif _asks(selection.selections, name):
            return True
    return False


class EarlyCount:
    """A connection's totalCount started beside its page when the query asks for it: the count
    then runs while the page is read and shaped (on a second pooled connection on PostgreSQL)
    instead of after it. Not asked, never counted. `cancel` when the page fails."""

    def __init__(self, info: CtxInfo, count: Counter, asked: bool | None = None) -> None:
        """`asked`: whether totalCount is asked, when the caller collected the selection
        already (graphql/rows.py); None looks at info.selected_fields."""
        self._count = count
        self._task: asyncio.Future[int] | None = None
        if asked is None:
            asked = _asks([s for f in info.selected_fields for s in f.selections], "totalCount")
        if asked:
            self._task = asyncio.ensure_future(count())
            # Retrieved even when no totalCount resolver awaits it (the request failed).
            self._task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def __call__(self) -> int:
        return await (self._task if self._task is not None else self._count())


@strawberry.type
class ComponentConnection:
    nodes: list[Component]
    page_info: PageInfo
    counter: strawberry.Private[Counter]

    @strawberry.field(description=TOTAL_COUNT_DESCRIPTION)
    async def total_count(self) -> int:
        return await self.counter()

    @classmethod
    def of(cls, page: catalog.Page[models.Component], counter: Counter) -> ComponentConnection:
        teams: dict[int, Team] = {}
        return cls(
            nodes=[Component.of(c, teams) for c in page.items],
            page_info=PageInfo.of(page),
            counter=counter,
        )

    @classmethod
    def prerendered(cls, page: catalog.WrittenPage, counter: Counter) -> ComponentConnection:
        """A page whose nodes the database wrote as JSON (graphql/rows.py)."""
        return cls(
            nodes=rows.prerendered(page.json),
            page_info=PageInfo.of(page),
            counter=counter,
        )


@strawberry.type(description="One OpenCost source's (cluster's) health check.")
class SourceAvailability:
    name: str
    available: bool
    error: str | None


@strawberry.type
class Availability:
    available: bool
    reason: str | None
    sources: list[SourceAvailability] = strawberry.field(
        description="Each OpenCost source (OPENCOST_SOURCES; `default` for OPENCOST_URL)."
    )

    @classmethod
    def of(cls, health: cost.Availability) -> Availability:
        return cls(
            available=health.available,
            reason=health.reason,
            sources=[
                SourceAvailability(name=s.name, available=s.available, error=s.reason)
                for s in health.sources
            ],
        )


@strawberry.type(
    description="An aggregate whose request to one OpenCost source failed after its retries."
)
class SyncFailure:
    source: str = strawberry.field(
        description="The OpenCost source (cluster) asked; `default` for OPENCOST_URL."
    )
    aggregate: str
    error: str
    attempts: int = strawberry.field(description="Requests made, retries included.")
    first_day: date | None = strawberry.field(
        description="First missing day; the next run fetches from here."
    )
    last_day: date | None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> SyncFailure:
        first, last = raw.get("firstDay"), raw.get("lastDay")
        return cls(
            # Runs recorded before several sources existed asked the one source, `default`.
            source=str(raw.get("source", DEFAULT_SOURCE)),
            aggregate=str(raw.get("aggregate", "")),
            error=str(raw.get("error", "")),
            attempts=int(raw.get("attempts", 0)),
            first_day=date.fromisoformat(first) if first else None,
            last_day=date.fromisoformat(last) if last else None,
        )


FAILURES_DEFAULT = 20
FAILURES_MAX = 100


@strawberry.type
class SyncRun:
    id: strawberry.ID
    status: str = strawberry.field(
        description="running, succeeded, partial (some aggregates failed: see failedAggregates; "
        "the others were written) or failed (nothing written; abandoned runs say so in error)."
    )
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    first_day: date | None
    last_day: date | None
    days: int
    components: int
    records: int
    opencost_requests: int
    error: str | None
    heartbeat_at: datetime | None = strawberry.field(
        description="Last renewal of the running sync's lease."
    )
    failures: strawberry.Private[list[SyncFailure]]

    @strawberry.field(
        description="Aggregates that failed in this run (the first `limit`, 1..100); the next "
        "run fetches their missing days. failedAggregateCount has them all."
    )
    def failed_aggregates(self, limit: int = FAILURES_DEFAULT) -> list[SyncFailure]:
        cost.check_limit(limit, FAILURES_MAX)
        return self.failures[:limit]

    @strawberry.field(description="How many aggregates failed in this run.")
    def failed_aggregate_count(self) -> int:
        return len(self.failures)

    @classmethod
    def of(cls, r: models.SyncRun) -> SyncRun:
        return cls(
            id=strawberry.ID(str(r.id)),
            status=r.status,
            trigger=r.trigger,
            started_at=r.started_at,
            finished_at=r.finished_at,
            first_day=r.first_day,
            last_day=r.last_day,
            days=r.days,
            components=r.components,
            records=r.records,
            opencost_requests=r.opencost_requests,
            error=r.error,
            heartbeat_at=r.heartbeat_at,
            failures=[SyncFailure.of(f) for f in r.failed_aggregates or []],
        )


@strawberry.type
class SyncJob:
    job_id: str
    status: str = strawberry.field(description="queued, or already_queued when a run is pending.")


# -- alerts ----------------------------------------------------------------------------------------


@strawberry.input(description="Every given field must match.")
class AlertFilter:
    status: AlertStatus | None = None
    kind: AlertKind | None = None
    team_id: strawberry.ID | None = strawberry.field(
        default=None, description="The team's alerts and its sub-teams'."
    )
    component_id: strawberry.ID | None = None

    def resolve(self) -> alerting.AlertFilter:
        return alerting.AlertFilter(
            status=self.status,
            kind=self.kind,
            team_id=cost.parse_uuid(str(self.team_id), "teamId") if self.team_id else None,
            component_id=cost.parse_uuid(str(self.component_id), "componentId")
            if self.component_id
            else None,
        )


@strawberry.type(description="What a COST_ANOMALY alert found.")
class CostAnomaly:
    day: date
    actual_cost: float
    expected_cost: float = strawberry.field(
        description="The median of the trailing window's days on the same weekday (or of all "
        "its days, with too little history for a weekly pattern)."
    )
    score: float = strawberry.field(
        description="(actual - expected) / (1.4826 x MAD of the window's residuals)."
    )
    resource: str = strawberry.field(
        description="The resource with the largest change: cpu, memory, pv, network, gpu, "
        "loadBalancer, shared or external."
    )
    resource_delta: float
    weekly: bool = strawberry.field(description="Whether the weekday pattern was used.")


@strawberry.type(description="The budget behind a BUDGET_THRESHOLD or BUDGET_FORECAST alert.")
class AlertBudget:
    period: str
    amount: float
    spent: float
    ratio: float | None
    threshold: float | None = strawberry.field(description="The threshold crossed (a ratio).")
    forecast_spend: float | None
    currency: str


@strawberry.type(description="Delivery to ALERT_WEBHOOK_URL.")
class WebhookDelivery:
    status: str = strawberry.field(description="pending, delivered or failed.")
    attempts: int
    delivered_at: datetime | None
    last_error: str | None


@strawberry.type(description="One change of an alert.")
class AlertEvent:
    at: datetime
    actor: str = strawberry.field(description="The token's subject, or system (the evaluator).")
    action: str = strawberry.field(
        description="raised, acknowledged, snoozed, reopened or resolved."
    )
    from_status: AlertStatus | None
    to_status: AlertStatus
    note: str | None

    @classmethod
    def of(cls, e: models.AlertEvent) -> AlertEvent:
        return cls(
            at=e.at,
            actor=e.actor,
            action=e.action,
            from_status=AlertStatus(e.from_status) if e.from_status else None,
            to_status=AlertStatus(e.to_status),
            note=e.note,
        )


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@strawberry.type
class Alert:
    id: strawberry.ID
    kind: AlertKind
    status: AlertStatus
    title: str
    subject: str = strawberry.field(
        description="What it is about: component:<id>, team:<id> or sync:<source>."
    )
    period: str = strawberry.field(
        description="Which period of it: the anomaly's day, the budget period and threshold "
        "(rolling-30d@1), latest for a sync. One unresolved alert per kind, subject and period."
    )
    raised_at: datetime
    updated_at: datetime = strawberry.field(description="The last change of status.")
    last_seen_at: datetime = strawberry.field(
        description="The last evaluation that found the condition true."
    )
    snoozed_until: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None = strawberry.field(description="A subject, or system.")
    model: strawberry.Private[models.Alert]

    @strawberry.field(description="The owning team: its members may act on the alert.")
    async def team(self, info: CtxInfo) -> Team | None:
        return await _team(info, _uuid_or_none(self.model.team_id))

    @strawberry.field
    async def component(self, info: CtxInfo) -> Component | None:
        component_id = _uuid_or_none(self.model.component_id)
        if component_id is None:
            return None
        found = await info.context.loaders.component.load(component_id)
        return Component.of(found) if found is not None else None

    @strawberry.field(description="The anomaly (COST_ANOMALY alerts only).")
    def anomaly(self) -> CostAnomaly | None:
        d = self.model.details
        if self.model.kind != AlertKind.COST_ANOMALY.value:
            return None
        return CostAnomaly(
            day=date.fromisoformat(str(d.get("day"))),
            actual_cost=float(d.get("actual", 0.0)),
            expected_cost=float(d.get("expected", 0.0)),
            score=float(d.get("score", 0.0)),
            resource=str(d.get("resource", "")),
            resource_delta=float(d.get("resourceDelta", 0.0)),
            weekly=bool(d.get("weekly", False)),
        )

    @strawberry.field(description="The budget (BUDGET_* alerts only).")
    def budget(self) -> AlertBudget | None:
        d = self.model.details
        if not self.model.kind.startswith("BUDGET_"):
            return None
        return AlertBudget(
            period=str(d.get("period", "")),
            amount=float(d.get("amount", 0.0)),
            spent=float(d.get("spent", 0.0)),
            ratio=_num(d.get("ratio")),
            threshold=_num(d.get("threshold")),
            forecast_spend=_num(d.get("forecastSpend")),
            currency=str(d.get("currency", "")),
        )

    @strawberry.field(description="The failed or partial sync run (SYNC_FAILED alerts only).")
    def sync_run_id(self) -> strawberry.ID | None:
        run = self.model.details.get("syncRunId")
        return strawberry.ID(str(run)) if run is not None else None

    @strawberry.field(description="Null when no ALERT_WEBHOOK_URL was set at its raising.")
    def webhook(self) -> WebhookDelivery | None:
        a = self.model
        if a.webhook_status is None:
            return None
        return WebhookDelivery(
            status=a.webhook_status,
            attempts=a.webhook_attempts,
            delivered_at=a.webhook_delivered_at,
            last_error=a.webhook_error,
        )

    @strawberry.field(description="Its history, newest first.")
    async def events(
        self,
        info: CtxInfo,
        first: Annotated[
            int, strawberry.argument(description=f"1..{alerting.EVENTS_MAX}")
        ] = alerting.EVENTS_DEFAULT,
    ) -> list[AlertEvent]:
        found = await info.context.loaders.alert_events.load((self.model.id, first))
        return [AlertEvent.of(e) for e in found]

    @classmethod
    def of(cls, a: models.Alert) -> Alert:
        return cls(
            id=strawberry.ID(str(a.id)),
            kind=AlertKind(a.kind),
            status=AlertStatus(a.status),
            title=a.title,
            subject=a.subject,
            period=a.period,
            raised_at=a.raised_at,
            updated_at=a.updated_at,
            last_seen_at=a.last_seen_at,
            snoozed_until=a.snoozed_until,
            acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by,
            resolved_at=a.resolved_at,
            resolved_by=a.resolved_by,
            model=a,
        )


@strawberry.type
class AlertConnection:
    nodes: list[Alert]
    page_info: PageInfo
    counter: strawberry.Private[Counter]

    @strawberry.field(description=TOTAL_COUNT_DESCRIPTION)
    async def total_count(self) -> int:
        return await self.counter()

    @classmethod
    def of(cls, page: catalog.Page[models.Alert], counter: Counter) -> AlertConnection:
        return cls(
            nodes=[Alert.of(a) for a in page.items],
            page_info=PageInfo.of(page),
            counter=counter,
        )
