"""Catalog reads and writes (teams, components, budgets), shared by GraphQL, the CLI and the import."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from finops_gql.db.models import DEFAULT_AGGREGATE, Component, Team
from finops_gql.db.setup import connection, placeholders, sql_value
from finops_gql.errors import Conflict, InvalidInput, NotFound

PAGE_DEFAULT = 50
PAGE_MAX = 100
SLUG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,98}[a-z0-9])?$")
# OpenCost's aggregate parameter: comma-separated properties, labels as label:<name>.
AGGREGATE_RE = re.compile(
    r"^(cluster|node|namespace|controllerKind|controller|service|pod|container|"
    r"(label|annotation):[A-Za-z0-9_./-]+)(,(cluster|node|namespace|controllerKind|controller|"
    r"service|pod|container|(label|annotation):[A-Za-z0-9_./-]+))*$"
)

T = TypeVar("T")

# Read paths load only what GraphQL shows: every extra DatetimeField costs an ISO parse per row.
TEAM_FIELDS = ("id", "name", "slug")
COMPONENT_FIELDS = (
    "id",
    "name",
    "team_id",
    "budget_usd",
    "opencost_aggregate",
    "opencost_key",
    "cost_30d",
    "cost_synced_at",
)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    end_cursor: str | None
    has_next_page: bool


def _encode_cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode()


def _decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error):
        raise InvalidInput("after: not a cursor this API issued") from None
    if (
        not isinstance(parts, list)
        or len(parts) != size
        or not all(isinstance(p, str) for p in parts)
    ):
        raise InvalidInput("after: not a cursor this API issued")
    return parts


def _component_keyset(after: str) -> tuple[str, uuid.UUID]:
    """The (name, id) a component cursor points after."""
    name, last_id = _decode_cursor(after, 2)
    try:
        return name, uuid.UUID(last_id)
    except ValueError:
        raise InvalidInput("after: not a cursor this API issued") from None


def _component_page(rows: list[Component], first: int) -> Page[Component]:
    items = rows[:first]
    cursor = _encode_cursor(items[-1].name, str(items[-1].id)) if items else None
    return Page(items, cursor, len(rows) > first)


def _check_first(first: int) -> None:
    if not 1 <= first <= PAGE_MAX:
        raise InvalidInput(f"first must be between 1 and {PAGE_MAX}, got {first}")


def check_name(name: str, what: str = "name") -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput(f"{what} must be 1 to 200 characters")
    return name


def check_slug(slug: str) -> str:
    if not SLUG_RE.match(slug):
        raise InvalidInput(
            f"slug {slug!r} must be lowercase letters, digits and dashes (1-100 characters)"
        )
    return slug


def check_budget(budget: float | None) -> float | None:
    if budget is not None and (not math.isfinite(budget) or budget < 0):
        raise InvalidInput(f"budgetUsd must be a finite number >= 0, got {budget}")
    return budget


def check_aggregate(aggregate: str) -> str:
    if not AGGREGATE_RE.match(aggregate):
        raise InvalidInput(
            f"OpenCost aggregate {aggregate!r} is not valid (e.g. label:app, namespace)"
        )
    return aggregate


def check_key(key: str | None) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 253:
        raise InvalidInput("OpenCost key must be 1 to 253 characters")
    return key


class CatalogService:
    # -- reads ----------------------------------------------------------------------------------

    async def teams_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Team]:
        return {t.id: t for t in await Team.filter(id__in=list(ids)).only(*TEAM_FIELDS)}

    async def team_by_slug(self, slug: str) -> Team | None:
        return await Team.filter(slug=slug).only(*TEAM_FIELDS).first()

    async def components_by_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Component]:
        found = await Component.filter(id__in=list(ids)).only(*COMPONENT_FIELDS)
        return {c.id: c for c in found}

    async def team_component_pages(
        self, team_ids: Sequence[uuid.UUID], first: int = PAGE_DEFAULT, after: str | None = None
    ) -> dict[uuid.UUID, Page[Component]]:
        """One page of each team's components, by (name, id) like `list_components`, in one
        statement whatever the number of teams (for the Team.components DataLoader)."""
        _check_first(first)
        pages: dict[uuid.UUID, list[Component]] = {tid: [] for tid in team_ids}
        if not team_ids:
            return dict.fromkeys(pages, Page([], None, False))
        params: list[object] = [sql_value(t) for t in team_ids]
        marks = placeholders(len(params) + 4)
        where = f"c.team_id IN ({', '.join(marks[: len(params)])})"
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
            "ROW_NUMBER() OVER (PARTITION BY c.team_id ORDER BY c.name, c.id) AS rn "
            f"FROM component c WHERE {where}) ranked "
            f"WHERE rn <= {marks[len(params)]} ORDER BY team_id, rn"
        )
        for row in await connection().execute_query_dict(sql, [*params, first + 1]):
            component = Component._init_from_db(**row)
            pages[uuid.UUID(str(component.team_id))].append(component)
        return {tid: _component_page(rows, first) for tid, rows in pages.items()}

    async def list_teams(self, first: int = PAGE_DEFAULT, after: str | None = None) -> Page[Team]:
        _check_first(first)
        query = Team.all().only(*TEAM_FIELDS).order_by("slug")
        if after is not None:
            (slug,) = _decode_cursor(after, 1)
            query = query.filter(slug__gt=slug)
        rows = await query.limit(first + 1)
        items = rows[:first]
        cursor = _encode_cursor(items[-1].slug) if items else None
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

    async def create_team(self, name: str, slug: str, team_id: uuid.UUID | None = None) -> Team:
        name, slug = check_name(name), check_slug(slug)
        if await Team.filter(slug=slug).exists():
            raise Conflict(f"a team with slug {slug!r} already exists")
        return await Team.create(id=team_id or uuid.uuid4(), name=name, slug=slug)

    async def update_team(
        self, team_id: uuid.UUID, name: str | None = None, slug: str | None = None
    ) -> Team:
        team = await Team.get_or_none(id=team_id)
        if team is None:
            raise NotFound("team", team_id)
        if name is not None:
            team.name = check_name(name)
        if slug is not None and slug != team.slug:
            if await Team.filter(slug=check_slug(slug)).exists():
                raise Conflict(f"a team with slug {slug!r} already exists")
            team.slug = slug
        await team.save()
        return team

    async def delete_team(self, team_id: uuid.UUID) -> None:
        async with in_transaction():
            team = await Team.get_or_none(id=team_id)
            if team is None:
                raise NotFound("team", team_id)
            if await Component.filter(team_id=team_id).exists():
                raise Conflict("the team still owns components: move or delete them first")
            await team.delete()

    async def create_component(
        self,
        name: str,
        team_id: uuid.UUID,
        budget_usd: float | None = None,
        opencost_aggregate: str | None = None,
        opencost_key: str | None = None,
        component_id: uuid.UUID | None = None,
    ) -> Component:
        if not await Team.filter(id=team_id).exists():
            raise NotFound("team", team_id)
        return await Component.create(
            id=component_id or uuid.uuid4(),
            name=check_name(name),
            team_id=team_id,
            budget_usd=check_budget(budget_usd),
            opencost_aggregate=check_aggregate(opencost_aggregate or DEFAULT_AGGREGATE),
            opencost_key=check_key(opencost_key),
        )

    async def update_component(
        self,
        component_id: uuid.UUID,
        *,
        name: str | None = None,
        team_id: uuid.UUID | None = None,
        opencost_aggregate: str | None = None,
        opencost_key: str | None = None,
    ) -> Component:
        component = await Component.get_or_none(id=component_id)
        if component is None:
            raise NotFound("component", component_id)
        if name is not None:
            component.name = check_name(name)
        if team_id is not None:
            if not await Team.filter(id=team_id).exists():
                raise NotFound("team", team_id)
            component.team_id = str(team_id)
        if opencost_aggregate is not None:
            component.opencost_aggregate = check_aggregate(opencost_aggregate)
        if opencost_key is not None:
            component.opencost_key = check_key(opencost_key)
        await component.save()
        return component

    async def set_budget(self, component_id: uuid.UUID, budget_usd: float | None) -> Component:
        component = await Component.get_or_none(id=component_id)
        if component is None:
            raise NotFound("component", component_id)
        component.budget_usd = check_budget(budget_usd)
        await component.save(update_fields=["budget_usd", "updated_at"])
        return component

    async def delete_component(self, component_id: uuid.UUID) -> None:
        deleted = await Component.filter(id=component_id).delete()
        if not deleted:
            raise NotFound("component", component_id)
