"""Catalog reads and writes (teams, components, budgets), shared by GraphQL, the CLI and the import."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from finops_gql.catalog import tree
from finops_gql.costs import explorer
from finops_gql.db.models import (
    AGGREGATE_MAX,
    DEFAULT_AGGREGATE,
    KEY_MAX,
    NAME_MAX,
    SLUG_MAX,
    Component,
    Domain,
    System,
    Team,
)
from finops_gql.db.setup import connection, placeholders, sql_value
from finops_gql.errors import Conflict, InvalidInput, NotFound, ServiceError
from finops_gql.validation import (
    BUDGET_MAX_USD,
    check_money,
    check_text,
    decode_cursor,
    encode_cursor,
    fits_column,
    parse_uuid,
    shown,
)

PAGE_DEFAULT = 50
PAGE_MAX = 100
SLUG_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?")
# OpenCost's aggregate parameter: comma-separated properties, labels as label:<name>.
AGGREGATE_RE = re.compile(
    r"(cluster|node|namespace|controllerKind|controller|service|pod|container|"
    r"(label|annotation):[A-Za-z0-9_./-]+)(,(cluster|node|namespace|controllerKind|controller|"
    r"service|pod|container|(label|annotation):[A-Za-z0-9_./-]+))*"
)

T = TypeVar("T")
M = TypeVar("M", Team, System)

# Read paths load only what GraphQL shows: every extra DatetimeField costs an ISO parse per row.
TEAM_FIELDS = ("id", "name", "slug", "parent_id")
SYSTEM_FIELDS = ("id", "name", "slug", "domain_id", "owner_id")
DOMAIN_FIELDS = ("id", "name", "slug", "owner_id")
COMPONENT_FIELDS = (
    "id",
    "name",
    "team_id",
    "budget_usd",
    "opencost_aggregate",
    "opencost_key",
    "cost_30d",
    "cost_synced_at",
    "system_id",
)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    end_cursor: str | None
    has_next_page: bool


def _component_keyset(after: str) -> tuple[str, uuid.UUID]:
    """The (name, id) a component cursor points after; anything else was not issued here."""
    name, last = decode_cursor(after, 2)
    try:
        last_id = parse_uuid(last, "after")
    except InvalidInput:
        raise _not_issued() from None
    if not fits_column(name, NAME_MAX):
        raise _not_issued()
    return name, last_id


def _component_page(rows: list[Component], first: int) -> Page[Component]:
    items = rows[:first]
    cursor = encode_cursor(items[-1].name, str(items[-1].id)) if items else None
    return Page(items, cursor, len(rows) > first)


def _slug_keyset(after: str) -> str:
    (slug,) = decode_cursor(after, 1)
    if not fits_column(slug, SLUG_MAX):
        raise _not_issued()
    return slug


def _slug_page(rows: list[T], first: int) -> Page[T]:
    items = rows[:first]
    cursor = encode_cursor(getattr(items[-1], "slug")) if items else None  # noqa: B009
    return Page(items, cursor, len(rows) > first)


def _check_first(first: int) -> None:
    if not 1 <= first <= PAGE_MAX:
        raise InvalidInput(f"first must be between 1 and {PAGE_MAX}, got {first}")


def _not_issued(what: str = "after") -> InvalidInput:
    return InvalidInput(f"{what}: not a cursor this API issued")


def check_name(name: str, what: str = "name") -> str:
    return check_text(name, what, NAME_MAX, strip=True)


def check_slug(slug: str) -> str:
    check_text(slug, "slug", SLUG_MAX)
    if not SLUG_RE.fullmatch(slug):
        raise InvalidInput(
            f"slug {shown(slug)} must be lowercase letters, digits and dashes "
            f"(1-{SLUG_MAX} characters)"
        )
    return slug


def check_budget(budget: float | None, maximum: float = BUDGET_MAX_USD) -> float | None:
    return check_money(budget, "budgetUsd", maximum, "BUDGET_MAX_USD")


def check_aggregate(aggregate: str) -> str:
    check_text(aggregate, "OpenCost aggregate", AGGREGATE_MAX)
    if not AGGREGATE_RE.fullmatch(aggregate):
        raise InvalidInput(
            f"OpenCost aggregate {shown(aggregate)} is not valid (e.g. label:app, namespace)"
        )
    return aggregate


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    return check_text(key, "OpenCost key", KEY_MAX, strip=True)


async def selector_owner(
    aggregate: str, key: str, exclude: Sequence[uuid.UUID] = ()
) -> Component | None:
    """The component that claims OpenCost's (aggregate, key), the key defaulting to its name.

    Two claims on one key would count its cost twice in team and platform totals; migration 0006
    makes (opencost_aggregate, COALESCE(opencost_key, name)) unique, this finds who holds it.
    """
    claim = Q(opencost_key=key)
    if len(key) <= NAME_MAX:  # a longer key is no component's name (asyncpg would refuse it)
        claim |= Q(opencost_key__isnull=True, name=key)
    query = Component.filter(claim, opencost_aggregate=aggregate)
    if exclude:
        query = query.exclude(id__in=list(exclude))
    return await query.only("id", "name", "team_id").first()


async def describe(component: Component) -> str:
    """`component 'checkout' of team 'payments'`, for messages that name another component."""
    team = await Team.filter(id=component.team_id).only("id", "slug").first()
    return f"component {component.name!r} of team {team.slug if team else '?'!r}"


async def selector_conflict(aggregate: str, key: str, holder: Component) -> Conflict:
    return Conflict(
        f"{await describe(holder)} already claims OpenCost aggregate {aggregate} key {key!r}; "
        "two components on one key would count its cost twice: set another opencostKey"
    )


def _retry() -> Conflict:
    return Conflict("the change conflicts with a concurrent change: read the current state, retry")


class CatalogService:
    def __init__(self, *, budget_max_usd: float = BUDGET_MAX_USD) -> None:
        self.budget_max_usd = budget_max_usd

    # -- reads ----------------------------------------------------------------------------------

    async def teams_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Team]:
        return {t.id: t for t in await Team.filter(id__in=list(ids)).only(*TEAM_FIELDS)}

    async def team_by_slug(self, slug: str) -> Team | None:
        check_text(slug, "slug", SLUG_MAX)
        return await Team.filter(slug=slug).only(*TEAM_FIELDS).first()

    async def components_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Component]:
        found = await Component.filter(id__in=list(ids)).only(*COMPONENT_FIELDS)
        return {c.id: c for c in found}

    async def team_component_pages(
        self, team_ids: Sequence[uuid.UUID], first: int = PAGE_DEFAULT, after: str | None = None
    ) -> dict[uuid.UUID, Page[Component]]:
        """One page of each team's components, by (name, id) like `list_components`, in one
        statement whatever the number of teams (for the Team.components DataLoader)."""
        return await self._component_pages("team_id", team_ids, first, after)

    async def system_component_pages(
        self, system_ids: Sequence[uuid.UUID], first: int = PAGE_DEFAULT, after: str | None = None
    ) -> dict[uuid.UUID, Page[Component]]:
        """One page of each system's components by (name, id), in one statement."""
        return await self._component_pages("system_id", system_ids, first, after)

    async def _component_pages(
        self, column: str, owner_ids: Sequence[uuid.UUID], first: int, after: str | None
    ) -> dict[uuid.UUID, Page[Component]]:
        _check_first(first)
        pages: dict[uuid.UUID, list[Component]] = {oid: [] for oid in owner_ids}
        if not owner_ids:
            return dict.fromkeys(pages, Page([], None, False))
        params: list[object] = [sql_value(t) for t in owner_ids]
        marks = placeholders(len(params) + 4)
        where = f"c.{column} IN ({', '.join(marks[: len(params)])})"
        if after is not None:
            name, last_id = _component_keyset(after)
            n1, n2, i = marks[len(params) : len(params) + 3]
            where += f" AND (c.name > {n1} OR (c.name = {n2} AND c.id > {i}))"
            params += [name, name, sql_value(last_id)]
        columns = ", ".join(COMPONENT_FIELDS)
        # ROW_NUMBER keeps it one statement for any number of teams (SQLite >= 3.25, PG); one
        # extra row per team tells whether it has a next page.
        sql = (
            f"SELECT {columns} FROM (SELECT {', '.join('c.' + f for f in COMPONENT_FIELDS)}, "  # noqa: S608 (placeholders only)
            f"ROW_NUMBER() OVER (PARTITION BY c.{column} ORDER BY c.name, c.id) AS rn "
            f"FROM component c WHERE {where}) ranked "
            f"WHERE rn <= {marks[len(params)]} ORDER BY {column}, rn"
        )
        for row in await connection().execute_query_dict(sql, [*params, first + 1]):
            component = Component._init_from_db(**row)
            pages[uuid.UUID(str(getattr(component, column)))].append(component)
        return {oid: _component_page(rows, first) for oid, rows in pages.items()}

    # -- the team tree, systems and domains ------------------------------------------------------

    async def team_subtrees(
        self, team_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[uuid.UUID]]:
        return await tree.team_subtrees(team_ids)

    async def team_children_pages(
        self, team_ids: Sequence[uuid.UUID], first: int = PAGE_DEFAULT, after: str | None = None
    ) -> dict[uuid.UUID, Page[Team]]:
        """One page of each team's direct sub-teams by slug, in one statement."""
        return await self._slug_pages(Team, TEAM_FIELDS, "parent_id", team_ids, first, after)

    async def domain_system_pages(
        self, domain_ids: Sequence[uuid.UUID], first: int = PAGE_DEFAULT, after: str | None = None
    ) -> dict[uuid.UUID, Page[System]]:
        """One page of each domain's systems by slug, in one statement."""
        return await self._slug_pages(System, SYSTEM_FIELDS, "domain_id", domain_ids, first, after)

    async def _slug_pages(
        self,
        model: type[M],
        fields: Sequence[str],
        column: str,
        owner_ids: Sequence[uuid.UUID],
        first: int,
        after: str | None,
    ) -> dict[uuid.UUID, Page[M]]:
        _check_first(first)
        pages: dict[uuid.UUID, list[M]] = {oid: [] for oid in owner_ids}
        if not owner_ids:
            return {}
        params: list[object] = [sql_value(t) for t in pages]
        marks = placeholders(len(params) + 2)
        where = f"{column} IN ({', '.join(marks[: len(params)])})"
        if after is not None:
            where += f" AND slug > {marks[len(params)]}"
            params.append(_slug_keyset(after))
        table = model._meta.db_table
        sql = (
            f"SELECT {', '.join(fields)} FROM (SELECT {', '.join(fields)}, "  # noqa: S608 (placeholders only)
            f"ROW_NUMBER() OVER (PARTITION BY {column} ORDER BY slug) AS rn "
            f"FROM {table} WHERE {where}) ranked "
            f"WHERE rn <= {marks[len(params)]} ORDER BY {column}, rn"
        )
        for row in await connection().execute_query_dict(sql, [*params, first + 1]):
            item = model._init_from_db(**row)
            pages[uuid.UUID(str(row[column]))].append(item)
        return {oid: _slug_page(rows, first) for oid, rows in pages.items()}

    async def systems_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, System]:
        return {s.id: s for s in await System.filter(id__in=list(ids)).only(*SYSTEM_FIELDS)}

    async def domains_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Domain]:
        return {d.id: d for d in await Domain.filter(id__in=list(ids)).only(*DOMAIN_FIELDS)}

    async def system_by_slug(self, slug: str) -> System | None:
        check_text(slug, "slug", SLUG_MAX)
        return await System.filter(slug=slug).only(*SYSTEM_FIELDS).first()

    async def domain_by_slug(self, slug: str) -> Domain | None:
        check_text(slug, "slug", SLUG_MAX)
        return await Domain.filter(slug=slug).only(*DOMAIN_FIELDS).first()

    async def list_systems(
        self, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> Page[System]:
        _check_first(first)
        query = System.all().only(*SYSTEM_FIELDS).order_by("slug")
        if after is not None:
            query = query.filter(slug__gt=_slug_keyset(after))
        return _slug_page(await query.limit(first + 1), first)

    async def list_domains(
        self, first: int = PAGE_DEFAULT, after: str | None = None
    ) -> Page[Domain]:
        _check_first(first)
        query = Domain.all().only(*DOMAIN_FIELDS).order_by("slug")
        if after is not None:
            query = query.filter(slug__gt=_slug_keyset(after))
        return _slug_page(await query.limit(first + 1), first)

    async def list_teams(self, first: int = PAGE_DEFAULT, after: str | None = None) -> Page[Team]:
        _check_first(first)
        query = Team.all().only(*TEAM_FIELDS).order_by("slug")
        if after is not None:
            (slug,) = decode_cursor(after, 1)
            if not fits_column(slug, SLUG_MAX):
                raise _not_issued()
            query = query.filter(slug__gt=slug)
        rows = await query.limit(first + 1)
        items = rows[:first]
        cursor = encode_cursor(items[-1].slug) if items else None
        return Page(items, cursor, len(rows) > first)

    async def list_components(
        self, first: int = PAGE_DEFAULT, after: str | None = None, team_id: uuid.UUID | None = None
    ) -> Page[Component]:
        _check_first(first)
        query = Component.all().only(*COMPONENT_FIELDS).order_by("name", "id")
        if team_id is not None:
            query = query.filter(team_id=team_id)
        if after is not None:
            name, last_id = _component_keyset(after)
            query = query.filter(Q(name__gt=name) | Q(name=name, id__gt=last_id))
        return _component_page(await query.limit(first + 1), first)

    # -- writes ---------------------------------------------------------------------------------
    # Each write checks its rules first for a clear message, and translates the database's own
    # refusal (a concurrent writer got there between the check and the write) into the same
    # Conflict: a unique violation is the client's race, never an internal error.

    async def _team_conflict(self, slug: str, team_id: uuid.UUID | None = None) -> ServiceError:
        if await Team.filter(slug=slug).exclude(id=team_id).exists():
            return Conflict(f"a team with slug {slug!r} already exists")
        if team_id is not None and await Team.filter(id=team_id).exists():
            return Conflict(f"a team with id {team_id} already exists")
        return _retry()

    async def create_team(self, name: str, slug: str, team_id: uuid.UUID | None = None) -> Team:
        name, slug = check_name(name), check_slug(slug)
        if await Team.filter(slug=slug).exists():
            raise Conflict(f"a team with slug {slug!r} already exists")
        try:
            return await Team.create(id=team_id or uuid.uuid4(), name=name, slug=slug)
        except IntegrityError:
            raise await self._team_conflict(slug, team_id) from None

    async def update_team(
        self, team_id: uuid.UUID, name: str | None = None, slug: str | None = None
    ) -> Team:
        name = check_name(name) if name is not None else None
        slug = check_slug(slug) if slug is not None else None
        team = await Team.get_or_none(id=team_id)
        if team is None:
            raise NotFound("team", team_id)
        if name is not None:
            team.name = name
        if slug is not None and slug != team.slug:
            if await Team.filter(slug=slug).exists():
                raise Conflict(f"a team with slug {slug!r} already exists")
            team.slug = slug
        try:
            await team.save()
        except IntegrityError:
            raise await self._team_conflict(team.slug) from None
        return team

    async def set_team_parent(self, team_id: uuid.UUID, parent_id: uuid.UUID | None) -> Team:
        """Move a team under another one (None: make it top-level); a team cannot become its own
        ancestor, so a parent inside the team's subtree is a Conflict."""
        async with in_transaction():
            team = await Team.get_or_none(id=team_id)
            if team is None:
                raise NotFound("team", team_id)
            if parent_id is not None:
                parent = await Team.filter(id=parent_id).only("id", "slug").first()
                if parent is None:
                    raise NotFound("team", parent_id)
                subtree = (await self.team_subtrees([team_id]))[team_id]
                if parent_id in subtree:
                    raise Conflict(
                        f"team {parent.slug!r} is {team.slug!r} or one of its sub-teams: "
                        "the team tree cannot have a cycle"
                    )
            team.parent_id = str(parent_id) if parent_id is not None else None
            await team.save(update_fields=["parent_id", "updated_at"])
        return team

    async def delete_team(self, team_id: uuid.UUID) -> None:
        owns = Conflict("the team still owns components: move or delete them first")
        try:
            async with in_transaction():
                team = await Team.get_or_none(id=team_id)
                if team is None:
                    raise NotFound("team", team_id)
                if await _owns_components(team_id):
                    raise owns
                await team.delete()
        except IntegrityError:
            # A component was added meanwhile: the foreign key (ON DELETE RESTRICT) refused.
            raise owns from None

    async def _component_conflict(
        self, aggregate: str, key: str, component_id: uuid.UUID, team_id: uuid.UUID
    ) -> ServiceError:
        holder = await selector_owner(aggregate, key, exclude=[component_id])
        if holder is not None:
            return await selector_conflict(aggregate, key, holder)
        if not await Team.filter(id=team_id).exists():
            return NotFound("team", team_id)
        return _retry()

    async def _check_selector(
        self, aggregate: str, key: str, component_id: uuid.UUID | None = None
    ) -> None:
        holder = await selector_owner(aggregate, key, [component_id] if component_id else [])
        if holder is not None:
            raise await selector_conflict(aggregate, key, holder)

    async def create_component(
        self,
        name: str,
        team_id: uuid.UUID,
        budget_usd: float | None = None,
        opencost_aggregate: str | None = None,
        opencost_key: str | None = None,
        component_id: uuid.UUID | None = None,
    ) -> Component:
        name = check_name(name)
        budget_usd = check_budget(budget_usd, self.budget_max_usd)
        aggregate = check_aggregate(opencost_aggregate or DEFAULT_AGGREGATE)
        key = check_key(opencost_key)
        if not await Team.filter(id=team_id).exists():
            raise NotFound("team", team_id)
        await self._check_selector(aggregate, key or name)
        component_id = component_id or uuid.uuid4()
        try:
            return await Component.create(
                id=component_id,
                name=name,
                team_id=team_id,
                budget_usd=budget_usd,
                opencost_aggregate=aggregate,
                opencost_key=key,
            )
        except IntegrityError:
            raise await self._component_conflict(
                aggregate, key or name, component_id, team_id
            ) from None

    async def update_component(
        self,
        component_id: uuid.UUID,
        *,
        name: str | None = None,
        team_id: uuid.UUID | None = None,
        opencost_aggregate: str | None = None,
        opencost_key: str | None = None,
    ) -> Component:
        name = check_name(name) if name is not None else None
        aggregate = check_aggregate(opencost_aggregate) if opencost_aggregate is not None else None
        key = check_key(opencost_key)
        component = await Component.get_or_none(id=component_id)
        if component is None:
            raise NotFound("component", component_id)
        moved_from = uuid.UUID(str(component.team_id))
        if name is not None:
            component.name = name
        if team_id is not None:
            if not await Team.filter(id=team_id).exists():
                raise NotFound("team", team_id)
            component.team_id = str(team_id)
        if aggregate is not None:
            component.opencost_aggregate = aggregate
        if key is not None:
            component.opencost_key = key
        # A rename moves the default key too: check the selector whatever changed.
        await self._check_selector(
            component.opencost_aggregate, component.selector_key, component.id
        )
        try:
            async with in_transaction():
                await component.save()
                if team_id is not None and team_id != moved_from:
                    # Its cost moves with it: both teams' daily totals, in the same transaction.
                    await explorer.refresh_daily_totals(
                        team_ids=[moved_from, team_id], platform=False
                    )
        except IntegrityError:
            raise await self._component_conflict(
                component.opencost_aggregate,
                component.selector_key,
                component.id,
                uuid.UUID(str(component.team_id)),
            ) from None
        return component

    async def set_budget(self, component_id: uuid.UUID, budget_usd: float | None) -> Component:
        budget_usd = check_budget(budget_usd, self.budget_max_usd)
        component = await Component.get_or_none(id=component_id)
        if component is None:
            raise NotFound("component", component_id)
        component.budget_usd = budget_usd
        await component.save(update_fields=["budget_usd", "updated_at"])
        return component

    async def delete_component(self, component_id: uuid.UUID) -> None:
        async with in_transaction():
            found = await Component.filter(id=component_id).only("id", "team_id").first()
            if found is None:
                raise NotFound("component", component_id)
            days = await connection().execute_query_dict(
                "SELECT MIN(day) AS first, MAX(day) AS last FROM cost_record "  # noqa: S608 (placeholders only)
                f"WHERE component_id = {placeholders(1)[0]}",
                [sql_value(component_id)],
            )
            await Component.filter(id=component_id).delete()  # its records go with it
            first, last = days[0]["first"], days[0]["last"]
            if first is not None:
                # The days it had cost no longer count for its team or the platform.
                await explorer.refresh_daily_totals(
                    first=_day(first), last=_day(last), team_ids=[uuid.UUID(str(found.team_id))]
                )


def _day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# Module-level so a test can stand in for a writer that raced past the check.
async def _owns_components(team_id: uuid.UUID) -> bool:
    return await Component.filter(team_id=team_id).exists()
