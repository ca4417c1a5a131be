"""The Strawberry schema: queries read through the service layer, mutations need the admin role."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry
from graphql import GraphQLError
from strawberry.extensions import AddValidationRules
from strawberry.extensions.max_aliases import create_validator as max_aliases_rule
from strawberry.extensions.query_depth_limiter import create_validator as max_depth_rule
from strawberry.permission import BasePermission
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from finops_gql.catalog.service import ComponentFilter
from finops_gql.catalog.service import ComponentOrder as ServiceComponentOrder
from finops_gql.catalog.service import TeamOrder as ServiceTeamOrder
from finops_gql.costs.explorer import Dimension
from finops_gql.costs.ranges import Granularity
from finops_gql.costs.service import BREAKDOWN_DEFAULT, BREAKDOWN_MAX, TOP_DEFAULT, parse_uuid
from finops_gql.errors import InvalidInput
from finops_gql.graphql.documents import DocumentLimits, stable_rules
from finops_gql.graphql.execution import FastExecutor, lean_resolvers
from finops_gql.graphql.limits import QueryCost
from finops_gql.graphql.permissions import IsAdmin
from finops_gql.graphql.scalars import DateTime
from finops_gql.graphql.types import (
    MIN_COST_DESCRIPTION as MIN_COST,
)
from finops_gql.graphql.types import (
    OVER_BUDGET_DESCRIPTION as OVER_BUDGET,
)
from finops_gql.graphql.types import (
    SEARCH_DESCRIPTION as SEARCH,
)
from finops_gql.graphql.types import (
    Availability,
    Component,
    ComponentConnection,
    ComponentCost,
    ComponentOrder,
    CostGroupConnection,
    CostSeries,
    CtxInfo,
    DateRange,
    Domain,
    DomainConnection,
    SyncJob,
    SyncRun,
    System,
    SystemConnection,
    Team,
    TeamConnection,
    TeamOrder,
)
from finops_gql.observability import GraphQLMetrics

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
            found = await services.catalog.team_by_slug(str(slug))
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
        catalog = info.context.services.catalog
        page = await catalog.list_teams(first, after, order_by, search)
        return TeamConnection.of(page, lambda: catalog.count_teams(search))

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
        catalog = info.context.services.catalog
        filters = ComponentFilter(
            team_id=_id(team_id, "teamId") if team_id is not None else None,
            system_id=_id(system_id, "systemId") if system_id is not None else None,
            search=search,
            over_budget=over_budget,
            min_cost_30d=min_cost30d,
        ).checked()
        page = await catalog.list_components(first, after, order=order_by, filters=filters)
        loaders = info.context.loaders
        for c in page.items:  # later Component.team / cost loads reuse these rows
            loaders.component.prime(c.id, c)
            loaders.team.prime(c.team.id, c.team)  # the page's statement read the teams
        return ComponentConnection.of(page, lambda: catalog.count_components(filters))

    @strawberry.field(description="Top components platform-wide by 30-day cost (limit 1..100).")
    async def top_components(self, info: CtxInfo, limit: int = TOP_DEFAULT) -> list[ComponentCost]:
        return [
            ComponentCost.of(c) for c in await info.context.services.costs.top_components(limit)
        ]

    @strawberry.field(description="Persisted cost of every component over a range.")
    async def platform_cost(
        self, info: CtxInfo, range: DateRange, granularity: Granularity = Granularity.DAY
    ) -> CostSeries:
        costs = info.context.services.costs
        return CostSeries.of(await costs.platform_series(range.resolve(info), granularity))

    @strawberry.field(
        description=f"Every component's cost by group, largest first (first: 1..{BREAKDOWN_MAX})."
    )
    async def cost_breakdown(
        self, info: CtxInfo, range: DateRange, group_by: Dimension, first: int = BREAKDOWN_DEFAULT
    ) -> CostGroupConnection:
        costs = info.context.services.costs
        found = await costs.cost_breakdown(range.resolve(info), group_by, first)
        return CostGroupConnection.of(found)

    @strawberry.field(description="Whether OpenCost answers its health check.")
    async def opencost_availability(self, info: CtxInfo) -> Availability:
        health = await info.context.services.costs.availability()
        return Availability(available=health.available, reason=health.reason)

    @strawberry.field(description="The latest cost sync runs, newest first (limit 1..100).")
    async def sync_runs(self, info: CtxInfo, limit: int = 10) -> list[SyncRun]:
        return [SyncRun.of(r) for r in await info.context.services.sync.latest_runs(limit)]

    @strawberry.field(description="A system (Backstage kind: System) by id or by slug.")
    async def system(
        self, info: CtxInfo, id: strawberry.ID | None = None, slug: str | None = None
    ) -> System | None:
        if (id is None) == (slug is None):
            raise InvalidInput("give exactly one of id or slug")
        if id is not None:
            found = await info.context.loaders.system.load(_id(id))
        else:
            found = await info.context.services.catalog.system_by_slug(str(slug))
        return System.of(found) if found is not None else None

    @strawberry.field(description="Systems by slug, cursor-paginated (first: 1..100).")
    async def systems(
        self, info: CtxInfo, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> SystemConnection:
        page = await info.context.services.catalog.list_systems(first, after)
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
            found = await info.context.services.catalog.domain_by_slug(str(slug))
        return Domain.of(found) if found is not None else None

    @strawberry.field(description="Domains by slug, cursor-paginated (first: 1..100).")
    async def domains(
        self, info: CtxInfo, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> DomainConnection:
        page = await info.context.services.catalog.list_domains(first, after)
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

    @strawberry.mutation(permission_classes=ADMIN, description="null clears the budget.")
    async def set_budget(
        self, info: CtxInfo, component_id: strawberry.ID, budget_usd: float | None
    ) -> Component:
        component = await info.context.services.catalog.set_budget(
            _id(component_id, "componentId"), budget_usd
        )
        return Component.of(component)

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


LIMIT_RULES = stable_rules(max_depth_rule(MAX_DEPTH, None), max_aliases_rule(MAX_ALIASES))


class GatewaySchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Client mistakes are answers, not incidents: the view logs only unexpected errors."""


schema = GatewaySchema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(scalar_map={datetime: DateTime}),
    execution_context_class=FastExecutor,
    extensions=[
        # Bound the work one document can ask for (team -> components -> team -> ... nests):
        # Strawberry's QueryDepthLimiter and MaxAliasesLimiter rules, made once so that their
        # verdict is cached with the document's (DocumentGuard.validate).
        lambda: AddValidationRules(LIMIT_RULES),
        # Document size, tokens and fields bounded before parsing and validation; frontends send
        # the same few documents over and over, so small ones are parsed and validated once.
        DocumentLimits,
        GraphQLMetrics,
        # Last, so the cost is computed on a validated document, just before execution.
        QueryCost,
    ],
)
lean_resolvers(schema)
