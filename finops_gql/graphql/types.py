"""GraphQL types: thin views over catalog models and the cost service's dataclasses."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Annotated, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info

from finops_gql.catalog import service as catalog
from finops_gql.costs import service as cost
from finops_gql.costs.explorer import Dimension
from finops_gql.costs.ranges import DayRange, Granularity, Preset
from finops_gql.costs.service import BREAKDOWN_DEFAULT, BREAKDOWN_MAX
from finops_gql.costs.windows import money
from finops_gql.db import models
from finops_gql.graphql.context import Context, loaded

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
SEARCH_DESCRIPTION = (
    f"Case-insensitive substring of the name (1..{catalog.SEARCH_MAX} characters; % and _ match "
    "themselves; an empty string filters nothing)."
)
OVER_BUDGET_DESCRIPTION = "true: only components over budget; false: only those not over it."
MIN_COST_DESCRIPTION = "Only components whose cost30d is at least this (finite, >= 0)."
Counter = Callable[[], Awaitable[int]]

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
    breakdown: CostBreakdown

    @classmethod
    def of(cls, p: cost.CostPoint) -> CostPoint:
        return cls(
            start=p.start,
            end=p.end,
            complete=p.complete,
            total_cost=p.breakdown.total_cost,
            breakdown=CostBreakdown.of(p.breakdown),
        )


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
    def of(cls, s: cost.CostSeries) -> CostSeries:
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


strawberry.enum(
    Dimension,
    name="CostDimension",
    description="TEAM, COMPONENT or RESOURCE (cpu, memory, pv, network, gpu, loadBalancer, "
    "shared, external).",
)


def _change(c: cost.CostChange) -> CostChange:
    return CostChange(previous_total=c.previous_total, amount=c.amount, ratio=c.ratio)


@strawberry.type(description="One group of a breakdown.")
class CostGroup:
    key: str = strawberry.field(description="The team or component id, or the resource name.")
    label: str = strawberry.field(description="The team or component name, or the resource.")
    total: float
    share: float | None = strawberry.field(
        description="total / the breakdown's total; null when that is 0."
    )
    change: CostChange


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
                    key=n.key, label=n.label, total=n.total, share=n.share, change=_change(n.change)
                )
                for n in g.groups
            ],
        )


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
        for t in page.items:
            info.context.loaders.team.prime(t.id, t)
        catalog_service = info.context.services.catalog
        return TeamConnection.of(page, lambda: catalog_service.count_children(team_id))

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
        for c in page.items:  # later Component loads reuse these rows
            loaders.component.prime(c.id, c)
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
    ) -> CostSeries:
        key = (uuid.UUID(self.id), range.resolve(info), granularity, include_sub_teams)
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
    ) -> CostGroupConnection:
        found = await info.context.services.costs.cost_breakdown(
            range.resolve(info), group_by, first, uuid.UUID(self.id), include_sub_teams
        )
        return CostGroupConnection.of(found)

    @classmethod
    def of(cls, t: models.Team) -> Team:
        return cls(
            id=strawberry.ID(str(t.id)),
            name=t.name,
            slug=t.slug,
            parent_id=_uuid_or_none(t.parent_id),
        )


def _uuid_or_none(value: object) -> uuid.UUID | None:
    return uuid.UUID(str(value)) if value is not None else None


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
        for c in page.items:
            info.context.loaders.component.prime(c.id, c)
        catalog_service = info.context.services.catalog
        only_system = catalog.ComponentFilter(system_id=system_id)
        return ComponentConnection.of(page, lambda: catalog_service.count_components(only_system))

    @classmethod
    def of(cls, s: models.System) -> System:
        return cls(
            id=strawberry.ID(str(s.id)),
            name=s.name,
            slug=s.slug,
            domain_id=_uuid_or_none(s.domain_id),
            owner_id=_uuid_or_none(s.owner_id),
        )


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
    budget_usd: float | None
    opencost_aggregate: str
    opencost_key: str = strawberry.field(description="Key in OpenCost's answer (default: name).")
    cost30d: float = strawberry.field(
        description="Sum of the last 30 complete UTC days of persisted cost (kept by the sync)."
    )
    cost_synced_at: datetime | None
    team_id: strawberry.Private[uuid.UUID]
    model: strawberry.Private[models.Component]
    system_id: strawberry.Private[uuid.UUID | None]

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

    @strawberry.field(graphql_type=Team)
    def team(self, info: CtxInfo) -> Team | Awaitable[Team]:
        # Synchronous when the team is already loaded (a page's statement reads its teams): an
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
        self, info: CtxInfo, range: DateRange, granularity: Granularity = Granularity.DAY
    ) -> CostSeries:
        key = (uuid.UUID(self.id), range.resolve(info), granularity)
        return CostSeries.of(await info.context.loaders.component_series.load(key))

    @classmethod
    def of(cls, c: models.Component) -> Component:
        return cls(
            id=strawberry.ID(str(c.id)),
            name=c.name,
            budget_usd=c.budget_usd,
            opencost_aggregate=c.opencost_aggregate,
            opencost_key=c.selector_key,
            cost30d=money(c.cost_30d),
            cost_synced_at=c.cost_synced_at,
            team_id=uuid.UUID(str(c.team_id)),
            model=c,
            system_id=_uuid_or_none(c.system_id),
        )


@strawberry.type
class PageInfo:
    end_cursor: str | None
    has_next_page: bool


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
            page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
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
            page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
        )


@strawberry.type
class DomainConnection:
    nodes: list[Domain]
    page_info: PageInfo

    @classmethod
    def of(cls, page: catalog.Page[models.Domain]) -> DomainConnection:
        return cls(
            nodes=[Domain.of(d) for d in page.items],
            page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
        )


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
        return cls(
            nodes=[Component.of(c) for c in page.items],
            page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page),
            counter=counter,
        )


@strawberry.type
class Availability:
    available: bool
    reason: str | None


@strawberry.type(description="An aggregate whose OpenCost request failed after its retries.")
class SyncFailure:
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
