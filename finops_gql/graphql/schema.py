"""The Strawberry schema: queries read through the service layer, mutations need the admin role."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.permission import BasePermission
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from finops_gql.alerts.service import MAX_SNOOZE, parse_alert_id
from finops_gql.catalog.service import ComponentFilter
from finops_gql.catalog.service import ComponentOrder as ServiceComponentOrder
from finops_gql.catalog.service import TeamOrder as ServiceTeamOrder
from finops_gql.costs.explorer import Dimension
from finops_gql.costs.forecast import check_days
from finops_gql.costs.ranges import Granularity
from finops_gql.costs.service import (
    BREAKDOWN_DEFAULT,
    BREAKDOWN_MAX,
    TOP_DEFAULT,
    check_clusters,
    parse_uuid,
)
from finops_gql.errors import InvalidInput
from finops_gql.graphql import rows
from finops_gql.graphql.context import Context
from finops_gql.graphql.documents import stable_rules
from finops_gql.graphql.execution import FastExecutor, lean_resolvers
from finops_gql.graphql.formatting import formatted
from finops_gql.graphql.limits import OperationGuard
from finops_gql.graphql.live import Subscription
from finops_gql.graphql.permissions import IsAdmin
from finops_gql.graphql.scalars import DateTime
from finops_gql.graphql.types import (
    ALERTS_DEFAULT,
    FORECAST_DAYS,
    Alert,
    AlertConnection,
    AlertFilter,
    Availability,
    BudgetInput,
    ClustersArg,
    Component,
    ComponentConnection,
    ComponentCost,
    ComponentOrder,
    CostGroupConnection,
    CtxInfo,
    DateRange,
    Domain,
    DomainConnection,
    EarlyCount,
    Forecast,
    PlatformCostSeries,
    SyncJob,
    SyncRun,
    System,
    SystemConnection,
    Team,
    TeamConnection,
    TeamOrder,
)
from finops_gql.graphql.types import (
    MIN_COST_DESCRIPTION as MIN_COST,
)
from finops_gql.graphql.types import (
    OVER_BUDGET_DESCRIPTION as OVER_BUDGET,
)
from finops_gql.graphql.types import (
    SEARCH_DESCRIPTION as SEARCH,
)

PAGE_DEFAULT = 50
MAX_DEPTH = 10
MAX_ALIASES = 20


def _id(value: strawberry.ID, what: str = "id") -> uuid.UUID:
    return parse_uuid(str(value), what)


@strawberry.type
class Query:
    @strawberry.field
    async def component(self, info: CtxInfo, id: strawberry.ID) -> Component | None:
        found = await info.context.loaders.component.load(_id(id))
        return Component.of(found) if found is not None else None

    @strawberry.field(description="A team by id or by slug.")
    async def team(
        self, info: CtxInfo, id: strawberry.ID | None = None, slug: str | None = None
    ) -> Team | None:
        services = info.context.services
        if (id is None) == (slug is None):
            raise InvalidInput("give exactly one of id or slug")
        if id is not None:
            found = await info.context.loaders.team.load(_id(id))
        else:
            found = await services.catalog.team_by_slug(str(slug), info.context.scope)
        return Team.of(found) if found is not None else None

    @strawberry.field(
        description="Teams, by slug unless orderBy says otherwise, cursor-paginated "
        "(first: 1..100; a cursor pages only the orderBy and search it was issued for)."
    )
    async def teams(
        self,
        info: CtxInfo,
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        order_by: TeamOrder = ServiceTeamOrder.SLUG,
        search: Annotated[
            str | None,
            strawberry.argument(description="Case-insensitive substring of the name or slug."),
        ] = None,
    ) -> TeamConnection:
        catalog, scope = info.context.services.catalog, info.context.scope
        page = await catalog.list_teams(first, after, order_by, search, scope)
        return TeamConnection.of(page, lambda: catalog.count_teams(search, scope))

    @strawberry.field(
        description="Components, by name unless orderBy says otherwise, filtered, "
        "cursor-paginated (first: 1..100; a cursor pages only the orderBy and filters it was "
        "issued for)."
    )
    async def components(
        self,
        info: CtxInfo,
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        team_id: strawberry.ID | None = None,
        order_by: ComponentOrder = ServiceComponentOrder.NAME,
        search: Annotated[str | None, strawberry.argument(description=SEARCH)] = None,
        over_budget: Annotated[bool | None, strawberry.argument(description=OVER_BUDGET)] = None,
        min_cost30d: Annotated[float | None, strawberry.argument(description=MIN_COST)] = None,
        system_id: strawberry.ID | None = None,
    ) -> ComponentConnection:
        catalog, scope = info.context.services.catalog, info.context.scope
        filters = ComponentFilter(
            team_id=_id(team_id, "teamId") if team_id is not None else None,
            system_id=_id(system_id, "systemId") if system_id is not None else None,
            search=search,
            over_budget=over_budget,
            min_cost_30d=min_cost30d,
        ).checked()
        plan = rows.connection_plan(info)
        count = EarlyCount(
            info,
            lambda: catalog.count_components(filters, scope),
            plan.asks_total if plan is not None else None,
        )
        try:
            if plan is not None and plan.shape is not None:
                written = await catalog.list_components_json(
                    plan.shape, first, after, order=order_by, filters=filters, scope=scope
                )
                if written is not None:
                    return ComponentConnection.prerendered(written, count)
            page = await catalog.list_components(
                first, after, order=order_by, filters=filters, scope=scope
            )
        except BaseException:
            count.cancel()
            raise
        loaders = info.context.loaders
        # Later Component.team / cost loads reuse these rows; the page's statement read the teams.
        loaders.component.know({c.id: c for c in page.items})
        loaders.team.know({c.team.id: c.team for c in page.items})
        return ComponentConnection.of(page, count)

    @strawberry.field(
        description="Top components by 30-day cost (limit 1..100), of those the principal may "
        "see (AUTHZ_MODE)."
    )
    async def top_components(self, info: CtxInfo, limit: int = TOP_DEFAULT) -> list[ComponentCost]:
        found = await info.context.services.costs.top_components(limit, info.context.scope)
        return [ComponentCost.of(c) for c in found]

    @strawberry.field(
        description="Persisted cost of every component the principal may see (AUTHZ_MODE) "
        "over a range, with the cluster's cost beside it (coverage, unmappedKeys: for "
        "principals that see everything)."
    )
    async def platform_cost(
        self,
        info: CtxInfo,
        range: DateRange,
        granularity: Granularity = Granularity.DAY,
        clusters: ClustersArg = None,
    ) -> PlatformCostSeries:
        costs = info.context.services.costs
        chosen, only = range.resolve(info), check_clusters(clusters)
        found = await costs.platform_series(chosen, granularity, info.context.scope, only)
        return PlatformCostSeries.of(found)

    @strawberry.field(description="Daily cost forecast of every component together.")
    async def platform_forecast(
        self, info: CtxInfo, days: Annotated[int, strawberry.argument(description=FORECAST_DAYS)]
    ) -> Forecast:
        costs = info.context.services.costs
        found = await costs.platform_forecast(check_days(days), info.context.scope)
        return Forecast.of(found)

    @strawberry.field(
        description="The cost of every component the principal may see (AUTHZ_MODE) by group, "
        f"largest first (first: 1..{BREAKDOWN_MAX})."
    )
    async def cost_breakdown(
        self,
        info: CtxInfo,
        range: DateRange,
        group_by: Dimension,
        first: int = BREAKDOWN_DEFAULT,
        clusters: ClustersArg = None,
    ) -> CostGroupConnection:
        costs = info.context.services.costs
        found = await costs.cost_breakdown(
            range.resolve(info),
            group_by,
            first,
            scope=info.context.scope,
            clusters=check_clusters(clusters),
        )
        return CostGroupConnection.of(found)

    @strawberry.field(
        description="Alerts, newest first, filtered, cursor-paginated (first: 1..100; a cursor "
        "pages any filter)."
    )
    async def alerts(
        self,
        info: CtxInfo,
        filter: AlertFilter | None = None,
        first: int = ALERTS_DEFAULT,
        after: str | None = None,
    ) -> AlertConnection:
        service = info.context.services.alerts
        filters = (filter or AlertFilter()).resolve()
        scope = info.context.scope
        page = await service.list_alerts(filters, first, after, scope)
        return AlertConnection.of(page, lambda: service.count_alerts(filters, scope))

    @strawberry.field(description="An alert by id.")
    async def alert(self, info: CtxInfo, id: strawberry.ID) -> Alert | None:
        alert_id = parse_alert_id(id)
        found = await info.context.services.alerts.alerts_by_ids([alert_id], info.context.scope)
        return Alert.of(found[alert_id]) if alert_id in found else None

    @strawberry.field(
        description="Whether OpenCost answers its health check: true only when every source "
        "(OPENCOST_SOURCES) does."
    )
    async def opencost_availability(self, info: CtxInfo) -> Availability:
        health = await info.context.services.costs.availability()
        return Availability.of(health)

    @strawberry.field(
        description="The latest cost sync runs, newest first (limit 1..100); empty unless "
        "the principal may see every team (AUTHZ_MODE)."
    )
    async def sync_runs(self, info: CtxInfo, limit: int = 10) -> list[SyncRun]:
        runs = await info.context.services.sync.latest_runs(limit, info.context.scope)
        return [SyncRun.of(r) for r in runs]

    @strawberry.field(description="A system (Backstage kind: System) by id or by slug.")
    async def system(
        self, info: CtxInfo, id: strawberry.ID | None = None, slug: str | None = None
    ) -> System | None:
        if (id is None) == (slug is None):
            raise InvalidInput("give exactly one of id or slug")
        if id is not None:
            found = await info.context.loaders.system.load(_id(id))
        else:
            found = await info.context.services.catalog.system_by_slug(
                str(slug), info.context.scope
            )
        return System.of(found) if found is not None else None

    @strawberry.field(description="Systems by slug, cursor-paginated (first: 1..100).")
    async def systems(
        self, info: CtxInfo, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> SystemConnection:
        page = await info.context.services.catalog.list_systems(first, after, info.context.scope)
        return SystemConnection.of(page)

    @strawberry.field(description="A domain (Backstage kind: Domain) by id or by slug.")
    async def domain(
        self, info: CtxInfo, id: strawberry.ID | None = None, slug: str | None = None
    ) -> Domain | None:
        if (id is None) == (slug is None):
            raise InvalidInput("give exactly one of id or slug")
        if id is not None:
            found = await info.context.loaders.domain.load(_id(id))
        else:
            found = await info.context.services.catalog.domain_by_slug(
                str(slug), info.context.scope
            )
        return Domain.of(found) if found is not None else None

    @strawberry.field(description="Domains by slug, cursor-paginated (first: 1..100).")
    async def domains(
        self, info: CtxInfo, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> DomainConnection:
        page = await info.context.services.catalog.list_domains(first, after, info.context.scope)
        return DomainConnection.of(page)


@strawberry.input
class CreateTeamInput:
    name: str
    slug: str


@strawberry.input
class UpdateTeamInput:
    id: strawberry.ID
    name: str | None = None
    slug: str | None = None


@strawberry.input
class CreateComponentInput:
    name: str
    team_id: strawberry.ID
    budget_usd: float | None = None
    opencost_aggregate: str | None = strawberry.field(
        default=None, description="OpenCost aggregate (default label:app)."
    )
    opencost_key: str | None = strawberry.field(
        default=None, description="Key in OpenCost's answer (default: the name)."
    )


@strawberry.input
class UpdateComponentInput:
    id: strawberry.ID
    name: str | None = None
    team_id: strawberry.ID | None = None
    opencost_aggregate: str | None = None
    opencost_key: str | None = None


ALERT_ACTORS = (
    "Admins, and members of the alert's team or of a team above it (JWT_TEAMS_CLAIM); "
    "others get FORBIDDEN."
)


ADMIN: list[type[BasePermission]] = [IsAdmin]


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=ADMIN)
    async def create_team(self, info: CtxInfo, input: CreateTeamInput) -> Team:
        return Team.of(await info.context.services.catalog.create_team(input.name, input.slug))

    @strawberry.mutation(permission_classes=ADMIN)
    async def update_team(self, info: CtxInfo, input: UpdateTeamInput) -> Team:
        team = await info.context.services.catalog.update_team(
            _id(input.id), input.name, input.slug
        )
        return Team.of(team)

    @strawberry.mutation(permission_classes=ADMIN, description="Refused while it owns components.")
    async def delete_team(self, info: CtxInfo, id: strawberry.ID) -> bool:
        await info.context.services.catalog.delete_team(_id(id))
        return True

    @strawberry.mutation(permission_classes=ADMIN)
    async def create_component(self, info: CtxInfo, input: CreateComponentInput) -> Component:
        component = await info.context.services.catalog.create_component(
            input.name,
            _id(input.team_id, "teamId"),
            budget_usd=input.budget_usd,
            opencost_aggregate=input.opencost_aggregate,
            opencost_key=input.opencost_key,
        )
        return Component.of(component)

    @strawberry.mutation(permission_classes=ADMIN)
    async def update_component(self, info: CtxInfo, input: UpdateComponentInput) -> Component:
        component = await info.context.services.catalog.update_component(
            _id(input.id),
            name=input.name,
            team_id=_id(input.team_id, "teamId") if input.team_id is not None else None,
            opencost_aggregate=input.opencost_aggregate,
            opencost_key=input.opencost_key,
        )
        return Component.of(component)

    @strawberry.mutation(permission_classes=ADMIN, description="Also deletes its cost records.")
    async def delete_component(self, info: CtxInfo, id: strawberry.ID) -> bool:
        await info.context.services.catalog.delete_component(_id(id))
        return True

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="The component's budget becomes ROLLING_30_DAYS of budgetUsd (thresholds "
        "kept); null removes its budget, whatever its period.",
    )
    async def set_budget(
        self, info: CtxInfo, component_id: strawberry.ID, budget_usd: float | None
    ) -> Component:
        component = await info.context.services.catalog.set_budget(
            _id(component_id, "componentId"), budget_usd
        )
        return Component.of(component)

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Set a component's budget (replacing its budget); a ROLLING_30_DAYS one is "
        "also its budgetUsd.",
    )
    async def set_component_budget(
        self, info: CtxInfo, component_id: strawberry.ID, budget: BudgetInput
    ) -> Component:
        component = await info.context.services.budgets.set_component_budget(
            _id(component_id, "componentId"), budget.spec(info)
        )
        return Component.of(component)

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Set a team's budget (replacing its budget); it covers its sub-teams' cost.",
    )
    async def set_team_budget(
        self, info: CtxInfo, team_id: strawberry.ID, budget: BudgetInput
    ) -> Team:
        team = await info.context.services.budgets.set_team_budget(
            _id(team_id, "teamId"), budget.spec(info)
        )
        return Team.of(team)

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Remove the budget of a component or a team (exactly one of the two); "
        "false when it had none.",
    )
    async def remove_budget(
        self,
        info: CtxInfo,
        component_id: strawberry.ID | None = None,
        team_id: strawberry.ID | None = None,
    ) -> bool:
        return await info.context.services.budgets.remove_budget(
            _id(component_id, "componentId") if component_id is not None else None,
            _id(team_id, "teamId") if team_id is not None else None,
        )

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Make a team a sub-team of another (parentId null: top-level). A parent "
        "inside the team's own subtree is refused with CONFLICT.",
    )
    async def set_team_parent(
        self, info: CtxInfo, team_id: strawberry.ID, parent_id: strawberry.ID | None
    ) -> Team:
        team = await info.context.services.catalog.set_team_parent(
            _id(team_id, "teamId"), _id(parent_id, "parentId") if parent_id is not None else None
        )
        return Team.of(team)

    @strawberry.mutation(
        permission_classes=ADMIN,
        description="Queue one cost sync on the worker; runs never overlap.",
    )
    async def trigger_cost_sync(self, info: CtxInfo) -> SyncJob:
        job_id, status = await info.context.services.enqueue_sync()
        return SyncJob(job_id=job_id, status=status)

    @strawberry.mutation(
        description=f"OPEN or SNOOZED -> ACKNOWLEDGED (CONFLICT otherwise). {ALERT_ACTORS}"
    )
    async def acknowledge_alert(self, info: CtxInfo, id: strawberry.ID) -> Alert:
        service = info.context.services.alerts
        context = info.context
        return Alert.of(
            await service.acknowledge(parse_alert_id(id), context.principal, context.scope)
        )

    @strawberry.mutation(
        description="Any unresolved status -> SNOOZED until `until` (in the future, at most "
        f"{MAX_SNOOZE.days} days ahead); it opens again then if its condition still holds. "
        f"{ALERT_ACTORS}"
    )
    async def snooze_alert(self, info: CtxInfo, id: strawberry.ID, until: datetime) -> Alert:
        service = info.context.services.alerts
        context = info.context
        alert = await service.snooze(parse_alert_id(id), until, context.principal, context.scope)
        return Alert.of(alert)

    @strawberry.mutation(
        description=f"Any unresolved status -> RESOLVED (CONFLICT if resolved). {ALERT_ACTORS}"
    )
    async def resolve_alert(self, info: CtxInfo, id: strawberry.ID) -> Alert:
        service = info.context.services.alerts
        context = info.context
        return Alert.of(await service.resolve(parse_alert_id(id), context.principal, context.scope))


LIMIT_RULES = tuple(stable_rules(max_depth_rule(MAX_DEPTH, None), max_aliases_rule(MAX_ALIASES)))


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Client mistakes are answers, not incidents: the view logs only unexpected errors.

        Over a WebSocket, Strawberry sends `error.formatted` as it is: the errors get their
        extensions.code (and an unexpected one its "internal error" wording) here instead."""
        context = execution_context.context if execution_context is not None else None
        if isinstance(context, Context) and context.connection is not None:
            for error in errors:
                body = formatted(error)
                error.message = body["message"]
                error.extensions = body["extensions"]


schema = GatewaySchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map={datetime: DateTime}),
    execution_context_class=FastExecutor,
    extensions=[
        # Document size, tokens and fields bounded before parsing and validation (frontends
        # send the same few documents over and over, so small ones are parsed and validated
        # once), with Strawberry's QueryDepthLimiter and MaxAliasesLimiter rules made once so
        # that their verdict is cached with the document's; the cost computed on the validated
        # document just before execution; the operation timed (limits.OperationGuard).
        lambda: OperationGuard(LIMIT_RULES),
    ],
)
lean_resolvers(schema)
