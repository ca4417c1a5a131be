"""Catalog reads and writes (teams, components, budgets), shared by GraphQL, the CLI and the import."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache
from typing import Any, Generic, NamedTuple, TypeVar, cast

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from finops_gql.access import EVERYTHING, Mark, Scope
from finops_gql.catalog import rowjson, tree
from finops_gql.costs import budgets, explorer
from finops_gql.db import dataversion
from finops_gql.db.inline import fetch_rows
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
from finops_gql.db.setup import SqlParams as _Sql
from finops_gql.db.setup import connection, partial_from_db, placeholders, sql_value
from finops_gql.errors import Conflict, InvalidInput, NotFound, ServiceError
from finops_gql.validation import (
    BUDGET_MAX_USD,
    check_amount,
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
N = TypeVar("N", System, Domain)

# Read paths load only what GraphQL shows: every extra DatetimeField costs an ISO parse per row.
TEAM_FIELDS = ("id", "name", "slug", "parent_id", "cost_30d")
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


# A component row's team, joined in: `team__<field>` columns.
TEAM_COLUMNS = ", ".join(f"t.{f} AS team__{f}" for f in TEAM_FIELDS)


_TEAM_KEYS = tuple((f"team__{f}", f) for f in TEAM_FIELDS)


def _with_teams(rows: list[dict[str, object]]) -> list[Component]:
    """Components from rows that carry their team's TEAM_COLUMNS (one Team per team; the
    component's model ignores the team's keys)."""
    teams: dict[object, Team] = {}
    components = []
    for row in rows:
        team = teams.get(team_id := row["team__id"])
        if team is None:
            team = teams[team_id] = partial_from_db(Team, {f: row[k] for k, f in _TEAM_KEYS})
        component = partial_from_db(Component, row)
        # Where Tortoise keeps a fetched relation (as its select_related does): `component.team`
        # is then this Team, without Model.__setattr__'s per-call relation check.
        object.__setattr__(component, "_team", team)
        components.append(component)
    return components


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    end_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True)
class WrittenPage:
    """A page whose rows the database wrote as one JSON array (list_components_json)."""

    json: str
    end_cursor: str | None
    has_next_page: bool


# A search is a substring of a name: longer than a name, it could match nothing.
SEARCH_MAX = NAME_MAX
# LIKE's escape character; the pattern escapes it, % and _ so a search matches them literally.
LIKE_ESCAPE = "\\"


class ComponentOrder(enum.Enum):
    """Component list orderings; each ends with the id, so every row has one place (keysets)."""

    NAME = "name"  # name, id
    COST_30D_DESC = "cost_desc"  # cost_30d desc, name, id
    COST_30D_ASC = "cost_asc"  # cost_30d asc, name, id


class TeamOrder(enum.Enum):
    SLUG = "slug"  # slug (unique)
    NAME = "name"  # name, id
    # team.cost_30d: the sum of the team's OWN components' cost_30d (sub-teams not included,
    # like costSummary.totalCost), a rollup kept by the sync and the catalog; ties by slug.
    COST_30D_DESC = "cost_desc"  # cost_30d desc, slug
    COST_30D_ASC = "cost_asc"  # cost_30d asc, slug


TEAM_ORDER_SQL = {
    TeamOrder.SLUG: "t.slug",
    TeamOrder.NAME: "t.name, t.id",
    TeamOrder.COST_30D_DESC: "t.cost_30d DESC, t.slug",
    TeamOrder.COST_30D_ASC: "t.cost_30d, t.slug",
}


ORDER_SQL = {
    ComponentOrder.NAME: "c.name, c.id",
    ComponentOrder.COST_30D_DESC: "c.cost_30d DESC, c.name, c.id",
    ComponentOrder.COST_30D_ASC: "c.cost_30d, c.name, c.id",
}


def check_search(search: str | None) -> str | None:
    """A name substring to look for; an empty one (a cleared search box) filters nothing."""
    if search is None or search == "":
        return None
    return check_text(search, "search", SEARCH_MAX)


def like_contains(search: str) -> str:
    """A LIKE pattern (ESCAPE LIKE_ESCAPE) matching names that contain `search`, lowercased."""
    escaped = (
        search.lower()
        .replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return f"%{escaped}%"


@lru_cache(maxsize=1024)  # every page computes it for its cursor: the same few lists
def _filter_key(filters: ComponentFilter) -> str:
    parts = [
        str(filters.team_id) if filters.team_id is not None else None,
        str(filters.system_id) if filters.system_id is not None else None,
        filters.search,
        filters.over_budget,
        # + 0.0: -0.0 equals 0.0, so the cache answers both with one key.
        (filters.min_cost_30d + 0.0).hex() if filters.min_cost_30d is not None else None,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ComponentFilter:
    """Which components a list shows; each field narrows it (AND). Checked by `checked()`."""

    team_id: uuid.UUID | None = None
    system_id: uuid.UUID | None = None
    search: str | None = None
    over_budget: bool | None = None
    min_cost_30d: float | None = None

    def checked(self) -> ComponentFilter:
        return ComponentFilter(  # a new field: add it here, in key() and in conditions()
            team_id=self.team_id,
            system_id=self.system_id,
            search=check_search(self.search),
            over_budget=self.over_budget,
            min_cost_30d=check_amount(self.min_cost_30d, "minCost30d"),
        )

    def key(self) -> str:
        """A digest of the filters, carried by cursors: a cursor pages only the list it came from."""
        return _filter_key(self)

    def conditions(self, p: _Sql) -> list[str]:
        """SQL conditions on `component c`, one per filter given (a new filter is one line)."""
        where: list[str] = []
        if self.team_id is not None:
            where.append(f"c.team_id = {p(self.team_id)}")
        if self.system_id is not None:
            where.append(f"c.system_id = {p(self.system_id)}")
        if self.search is not None:
            where.append(f"c.name {p.ilike} {p(like_contains(self.search))} ESCAPE '{LIKE_ESCAPE}'")
        if self.over_budget is True:
            where.append("c.budget_usd IS NOT NULL AND c.cost_30d > c.budget_usd")
        elif self.over_budget is False:
            where.append("(c.budget_usd IS NULL OR c.cost_30d <= c.budget_usd)")
        if self.min_cost_30d is not None:
            where.append(f"c.cost_30d >= {p(self.min_cost_30d)}")
        return where


@dataclass(frozen=True)
class _ComponentKeyset:
    cost: float
    name: str
    id: uuid.UUID

    def condition(self, order: ComponentOrder, p: _Sql) -> str:
        """Rows strictly after this one in `order`. The leading bound on cost_30d gives the
        index a range to start from; the row comparison settles ties on (name, id).
        Markers are made in text order (SQLite's `?` are positional)."""
        if order is ComponentOrder.NAME:
            return f"(c.name, c.id) > ({p(self.name)}, {p(self.id)})"
        if order is ComponentOrder.COST_30D_DESC:
            bound, strict = "<=", "<"
        else:
            bound, strict = ">=", ">"
        start = f"c.cost_30d {bound} {p(self.cost)}"
        past_cost = f"c.cost_30d {strict} {p(self.cost)}"
        return f"{start} AND ({past_cost} OR (c.name, c.id) > ({p(self.name)}, {p(self.id)}))"


def _cursor_mismatch(what: str) -> InvalidInput:
    return InvalidInput(
        f"after: this cursor was issued for {what}: page with the same orderBy and filters it "
        "was issued for, or start again without after"
    )


def _component_keyset(after: str, order: ComponentOrder, key: str) -> _ComponentKeyset:
    """The row a component cursor points after; it must come from the same ordering and filters."""
    issued_order, issued_key, cost_hex, name, last = decode_cursor(after, 5)
    try:
        issued = ComponentOrder(issued_order)
        last_id = parse_uuid(last, "after")
        cost = float.fromhex(cost_hex) if cost_hex else 0.0
    except (ValueError, InvalidInput):
        raise _not_issued() from None
    if not fits_column(name, NAME_MAX) or not math.isfinite(cost):
        raise _not_issued()
    if issued is not order:
        raise _cursor_mismatch(f"orderBy {issued.name}, not {order.name}")
    if issued_key != key:
        raise _cursor_mismatch("other filters (teamId, search, overBudget, minCost30d)")
    return _ComponentKeyset(cost, name, last_id)


async def _by_ids(
    table: str, fields: Sequence[str], team_column: str, ids: Sequence[uuid.UUID], scope: Scope
) -> list[dict[str, Any]]:
    """The rows of `table` with these ids that the scope lets through (on `team_column`), in one
    hand-written statement: a DataLoader's batch (`component(id)`, `Component.team`) costs the
    round trip, not a query builder's SQL generation."""
    if not ids:
        return []
    p = _Sql()
    where = [f"o.id IN ({', '.join(p(i) for i in dict.fromkeys(ids))})"]
    where += scope.teams_sql(f"o.{team_column}", p)
    sql = (
        f"SELECT {', '.join('o.' + f for f in fields)} FROM {table} o "  # noqa: S608 (placeholders only)
        f"WHERE {' AND '.join(where)}"
    )
    return await connection().execute_query_dict(sql, p.values)


class _RowKey(NamedTuple):
    """What a component cursor is made of (the keyset of every ordering)."""

    name: str
    id: object
    cost_30d: float


def _component_page_sql(
    columns: str,
    join_team: bool,
    first: int,
    after: str | None,
    order: ComponentOrder,
    filters: ComponentFilter,
    scope: Scope,
    p: _Sql,
) -> str:
    """The statement of a page of components (`c`, the team joined as `t` when asked): one
    row more than `first` (checked by the caller), which tells whether there is a next page."""
    where = filters.conditions(p) + scope.teams_sql("c.team_id", p)
    if after is not None:
        where.append(_component_keyset(after, order, filters.key()).condition(order, p))
    # LIMIT as a literal (int(), of a checked int): the first page of a list is then a statement
    # without parameters, whose plan PostgreSQL keeps and reuses (plan_cache_mode only forces a
    # new plan per execution for statements with parameters, db/setup.py): planning it cost
    # more than running it.
    return (
        f"SELECT {columns} FROM component c "  # noqa: S608 (placeholders, and an int)
        f"{'JOIN team t ON t.id = c.team_id ' if join_team else ''}"
        f"{'WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY {ORDER_SQL[order]} LIMIT {int(first) + 1}"
    )


def _cursor(last: Component | _RowKey | None, order: ComponentOrder, key: str) -> str | None:
    """The cursor after a page's last row (None for an empty page)."""
    if last is None:
        return None
    cost = float(last.cost_30d).hex() if order is not ComponentOrder.NAME else ""
    return encode_cursor(order.value, key, cost, last.name, str(last.id))


def _page_of(rows: list[Component], first: int, order: ComponentOrder, key: str) -> Page[Component]:
    """A page of the first `first` rows of a statement that read one more."""
    items = rows[:first]
    return Page(items, _cursor(items[-1] if items else None, order, key), len(rows) > first)


def _team_keyset(after: str, order: TeamOrder, key: str, p: _Sql) -> str:
    """The condition for team rows strictly after a `teams` cursor, which must come from the
    same ordering and search. Cost cursors carry (cost hex, slug), the others (sort key, id)."""
    issued_order, issued_key, sort_key, last = decode_cursor(after, 4)
    try:
        issued = TeamOrder(issued_order)
        if issued in (TeamOrder.SLUG, TeamOrder.NAME):
            last_id = parse_uuid(last, "after")
        else:
            cost = float.fromhex(sort_key)
    except (ValueError, InvalidInput):
        raise _not_issued() from None
    if issued in (TeamOrder.COST_30D_DESC, TeamOrder.COST_30D_ASC):
        if not fits_column(last, SLUG_MAX) or not math.isfinite(cost):
            raise _not_issued()
    elif not fits_column(sort_key, max(NAME_MAX, SLUG_MAX)):
        raise _not_issued()
    if issued is not order:
        raise _cursor_mismatch(f"orderBy {issued.name}, not {order.name}")
    if issued_key != key:
        raise _cursor_mismatch("another search")
    if order is TeamOrder.SLUG:
        return f"t.slug > {p(sort_key)}"
    if order is TeamOrder.NAME:
        return f"(t.name, t.id) > ({p(sort_key)}, {p(last_id)})"
    # The leading bound gives the index a range to start from; the slug settles ties.
    bound, strict = ("<=", "<") if order is TeamOrder.COST_30D_DESC else (">=", ">")
    return f"t.cost_30d {bound} {p(cost)} AND (t.cost_30d {strict} {p(cost)} OR t.slug > {p(last)})"


def _slug_keyset(after: str) -> str:
    (slug,) = decode_cursor(after, 1)
    if not fits_column(slug, SLUG_MAX):
        raise _not_issued()
    return slug


def _slug_page(rows: list[T], first: int) -> Page[T]:
    items = rows[:first]
    cursor = encode_cursor(getattr(items[-1], "slug")) if items else None  # noqa: B009
    return Page(items, cursor, len(rows) > first)


def _after_slug(after: str | None) -> Callable[[_Sql], list[str]]:
    """The condition of a slug page's cursor (none for the first page)."""
    if after is None:
        return lambda p: []
    slug = _slug_keyset(after)  # a bad cursor is refused before any statement
    return lambda p: [f"o.slug > {p(slug)}"]


def check_first(first: int, maximum: int = PAGE_MAX) -> None:
    if not 1 <= first <= maximum:
        raise InvalidInput(f"first must be between 1 and {maximum}, got {first}")


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
    def __init__(self, *, budget_max_usd: float = BUDGET_MAX_USD, currency: str = "USD") -> None:
        self.budget_max_usd = budget_max_usd
        self.currency = currency  # COST_CURRENCY: budgetUsd is a budget in it

    # -- reads ----------------------------------------------------------------------------------

    # Every read takes the caller's Scope (finops_gql/access.py): what it may not see is
    # missing from lookups, pages, counts and cursors alike.

    async def teams_by_ids(
        self, ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, Team]:
        rows = await _by_ids("team", TEAM_FIELDS, "id", ids, scope)
        return {t.id: t for t in (partial_from_db(Team, r) for r in rows)}

    async def team_by_slug(self, slug: str, scope: Scope = EVERYTHING) -> Team | None:
        check_text(slug, "slug", SLUG_MAX)
        return await Team.filter(scope.q("id"), slug=slug).only(*TEAM_FIELDS).first()

    async def components_by_ids(
        self, ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, Component]:
        rows = await _by_ids("component", COMPONENT_FIELDS, "team_id", ids, scope)
        return {c.id: c for c in (partial_from_db(Component, r) for r in rows)}

    async def team_component_pages(
        self,
        team_ids: Sequence[uuid.UUID],
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        order: ComponentOrder = ComponentOrder.NAME,
        filters: ComponentFilter = ComponentFilter(),
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, Page[Component]]:
        """One page of each team's components, ordered and filtered like `list_components`, in
        one statement whatever the number of teams (for the Team.components DataLoader).
        A team's list is `components(teamId: ...)`: the same cursors page both."""
        return await self._owned_component_pages(
            "team_id", team_ids, first, after, order, filters, scope
        )

    async def system_component_pages(
        self,
        system_ids: Sequence[uuid.UUID],
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        order: ComponentOrder = ComponentOrder.NAME,
        filters: ComponentFilter = ComponentFilter(),
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, Page[Component]]:
        """One page of each system's components, like `components(systemId: ...)`."""
        return await self._owned_component_pages(
            "system_id", system_ids, first, after, order, filters, scope
        )

    async def _owned_component_pages(
        self,
        column: str,
        owner_ids: Sequence[uuid.UUID],
        first: int,
        after: str | None,
        order: ComponentOrder,
        filters: ComponentFilter,
        scope: Scope,
    ) -> dict[uuid.UUID, Page[Component]]:
        check_first(first)
        filters = filters.checked()
        if not owner_ids:
            return {}
        pages: dict[uuid.UUID, list[Component]] = {oid: [] for oid in owner_ids}

        def own_list(oid: uuid.UUID) -> ComponentFilter:
            # An owner's list is `components(teamId: ...)` or `components(systemId: ...)`: the
            # same cursors page both.
            if column == "team_id":
                return replace(filters, team_id=oid)
            return replace(filters, system_id=oid)

        keys = {oid: own_list(oid).key() for oid in owner_ids}
        p = _Sql()
        where = [
            f"c.{column} IN ({', '.join(p(o) for o in owner_ids)})",
            *filters.conditions(p),
            *scope.teams_sql("c.team_id", p),
        ]
        if after is not None:
            # A cursor belongs to one owner's list (the DataLoader asks one owner at a time then).
            keysets = {_component_keyset(after, order, keys[oid]) for oid in owner_ids}
            where.append(keysets.pop().condition(order, p))
        columns = ", ".join(COMPONENT_FIELDS)
        # ROW_NUMBER keeps it one statement for any number of owners (SQLite >= 3.25, PG); one
        # extra row per owner tells whether it has a next page.
        sql = (
            f"SELECT {columns} FROM (SELECT {', '.join('c.' + f for f in COMPONENT_FIELDS)}, "  # noqa: S608 (placeholders only)
            f"ROW_NUMBER() OVER (PARTITION BY c.{column} ORDER BY {ORDER_SQL[order]}) AS rn "
            f"FROM component c WHERE {' AND '.join(where)}) ranked "
            f"WHERE rn <= {p(first + 1)} ORDER BY {column}, rn"
        )
        for row in await connection().execute_query_dict(sql, p.values):
            component = Component._init_from_db(**row)
            pages[uuid.UUID(str(getattr(component, column)))].append(component)
        return {oid: _page_of(rows, first, order, keys[oid]) for oid, rows in pages.items()}

    # -- the team tree, systems and domains ------------------------------------------------------

    async def team_subtrees(
        self, team_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[uuid.UUID]]:
        return await tree.team_subtrees(team_ids)

    async def team_children_pages(
        self,
        team_ids: Sequence[uuid.UUID],
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, Page[Team]]:
        """One page of each team's direct sub-teams by slug, in one statement."""
        return await self._slug_pages(
            Team,
            TEAM_FIELDS,
            "parent_id",
            team_ids,
            first,
            after,
            lambda p: scope.teams_sql("o.id", p),
        )

    async def domain_system_pages(
        self,
        domain_ids: Sequence[uuid.UUID],
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, Page[System]]:
        """One page of each domain's systems by slug, in one statement."""
        return await self._slug_pages(
            System,
            SYSTEM_FIELDS,
            "domain_id",
            domain_ids,
            first,
            after,
            lambda p: scope.systems_sql("o", p),
        )

    async def _slug_pages(
        self,
        model: type[M],
        fields: Sequence[str],
        column: str,
        owner_ids: Sequence[uuid.UUID],
        first: int,
        after: str | None,
        visible: Callable[[Mark], list[str]],
    ) -> dict[uuid.UUID, Page[M]]:
        check_first(first)
        pages: dict[uuid.UUID, list[M]] = {oid: [] for oid in owner_ids}
        if not owner_ids:
            return {}
        p: _Sql = _Sql()
        where = [f"o.{column} IN ({', '.join(p(t) for t in pages)})", *visible(p)]
        if after is not None:
            where.append(f"o.slug > {p(_slug_keyset(after))}")
        table = model._meta.db_table
        sql = (
            f"SELECT {', '.join(fields)} FROM (SELECT {', '.join('o.' + f for f in fields)}, "  # noqa: S608 (placeholders only)
            f"ROW_NUMBER() OVER (PARTITION BY o.{column} ORDER BY o.slug) AS rn "
            f"FROM {table} o WHERE {' AND '.join(where)}) ranked "
            f"WHERE rn <= {p(first + 1)} ORDER BY {column}, rn"
        )
        for row in await connection().execute_query_dict(sql, p.values):
            item = model._init_from_db(**row)
            pages[uuid.UUID(str(row[column]))].append(item)
        return {oid: _slug_page(rows, first) for oid, rows in pages.items()}

    # Systems and domains: raw SQL, because their visibility (access.py) looks through their
    # components and systems.

    async def _visible(
        self,
        model: type[N],
        scope: Scope,
        where: Callable[[_Sql], list[str]],
        first: int | None = None,
    ) -> list[N]:
        """Rows of `model` (a system or a domain) matching `where` that `scope` sees, by slug."""
        fields = SYSTEM_FIELDS if model is System else DOMAIN_FIELDS
        p = _Sql()
        conditions = where(p)
        if model is System:
            conditions += scope.systems_sql("o", p)
        else:
            conditions += scope.domains_sql("o", p)
        sql = (
            f"SELECT {', '.join('o.' + f for f in fields)} FROM {model._meta.db_table} o"  # noqa: S608 (placeholders only)
            f"{' WHERE ' + ' AND '.join(conditions) if conditions else ''} ORDER BY o.slug"
        )
        if first is not None:
            sql += f" LIMIT {int(first) + 1}"  # see _component_page_sql
        return [
            model._init_from_db(**r) for r in await connection().execute_query_dict(sql, p.values)
        ]

    async def systems_by_ids(
        self, ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, System]:
        if not ids:
            return {}
        found = await self._visible(
            System, scope, lambda p: [f"o.id IN ({', '.join(p(i) for i in ids)})"]
        )
        return {s.id: s for s in found}

    async def domains_by_ids(
        self, ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, Domain]:
        if not ids:
            return {}
        found = await self._visible(
            Domain, scope, lambda p: [f"o.id IN ({', '.join(p(i) for i in ids)})"]
        )
        return {d.id: d for d in found}

    async def system_by_slug(self, slug: str, scope: Scope = EVERYTHING) -> System | None:
        check_text(slug, "slug", SLUG_MAX)
        found = await self._visible(System, scope, lambda p: [f"o.slug = {p(slug)}"])
        return found[0] if found else None

    async def domain_by_slug(self, slug: str, scope: Scope = EVERYTHING) -> Domain | None:
        check_text(slug, "slug", SLUG_MAX)
        found = await self._visible(Domain, scope, lambda p: [f"o.slug = {p(slug)}"])
        return found[0] if found else None

    async def list_systems(
        self, first: int = PAGE_DEFAULT, after: str | None = None, scope: Scope = EVERYTHING
    ) -> Page[System]:
        check_first(first)
        return _slug_page(await self._visible(System, scope, _after_slug(after), first), first)

    async def list_domains(
        self, first: int = PAGE_DEFAULT, after: str | None = None, scope: Scope = EVERYTHING
    ) -> Page[Domain]:
        check_first(first)
        return _slug_page(await self._visible(Domain, scope, _after_slug(after), first), first)

    async def team_component_counts(
        self,
        team_ids: Sequence[uuid.UUID],
        filters: ComponentFilter = ComponentFilter(),
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, int]:
        """How many components of each team match `filters`, in one statement."""
        filters = filters.checked()
        if not team_ids:
            return {}
        p = _Sql()
        where = [
            f"c.team_id IN ({', '.join(p(t) for t in team_ids)})",
            *filters.conditions(p),
            *scope.teams_sql("c.team_id", p),
        ]
        sql = (
            "SELECT c.team_id AS team_id, COUNT(*) AS n FROM component c "  # noqa: S608 (placeholders only)
            f"WHERE {' AND '.join(where)} GROUP BY c.team_id"
        )
        counts = dict.fromkeys(team_ids, 0)
        for row in await connection().execute_query_dict(sql, p.values):
            counts[uuid.UUID(str(row["team_id"]))] = int(row["n"])
        return counts

    async def list_teams(
        self,
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        order: TeamOrder = TeamOrder.SLUG,
        search: str | None = None,
        scope: Scope = EVERYTHING,
    ) -> Page[Team]:
        check_first(first)
        search = check_search(search)
        key = ComponentFilter(search=search).key()
        p = _Sql()
        where = self._team_conditions(search, p) + scope.teams_sql("t.id", p)
        if after is not None:
            where.append(_team_keyset(after, order, key, p))
        sql = (
            f"SELECT {', '.join('t.' + f for f in TEAM_FIELDS)} FROM team t "  # noqa: S608 (placeholders only)
            f"{'WHERE ' + ' AND '.join(where) if where else ''} "
            f"ORDER BY {TEAM_ORDER_SQL[order]} LIMIT {int(first) + 1}"  # see _component_page_sql
        )
        rows = [
            Team._init_from_db(**r) for r in await connection().execute_query_dict(sql, p.values)
        ]
        items = rows[:first]
        cursor = None
        if items:
            last_team = items[-1]
            if order is TeamOrder.SLUG:
                parts = (last_team.slug, str(last_team.id))
            elif order is TeamOrder.NAME:
                parts = (last_team.name, str(last_team.id))
            else:
                parts = (float(last_team.cost_30d).hex(), last_team.slug)
            cursor = encode_cursor(order.value, key, *parts)
        return Page(items, cursor, len(rows) > first)

    @staticmethod
    def _team_conditions(search: str | None, p: _Sql) -> list[str]:
        if search is None:
            return []
        pattern = like_contains(search)
        return [
            f"(t.name {p.ilike} {p(pattern)} ESCAPE '{LIKE_ESCAPE}' "
            f"OR t.slug {p.ilike} {p(pattern)} ESCAPE '{LIKE_ESCAPE}')"
        ]

    async def count_teams(self, search: str | None = None, scope: Scope = EVERYTHING) -> int:
        p = _Sql()
        where = self._team_conditions(check_search(search), p) + scope.teams_sql("t.id", p)
        sql = "SELECT COUNT(*) AS n FROM team t" + (  # noqa: S608 (placeholders only)
            f" WHERE {' AND '.join(where)}" if where else ""
        )
        rows = await connection().execute_query_dict(sql, p.values)
        return int(rows[0]["n"])

    async def list_components(
        self,
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        team_id: uuid.UUID | None = None,
        order: ComponentOrder = ComponentOrder.NAME,
        filters: ComponentFilter | None = None,
        scope: Scope = EVERYTHING,
    ) -> Page[Component]:
        """A page of components; `team_id` is shorthand for ComponentFilter(team_id=...).
        Cursors hold the last row's sort key only: one issued under a wider scope pages on
        over the visible rows. Each component comes with its team (`component.team`), read by
        the same statement: a page shown with its teams costs one round trip, not two."""
        check_first(first)  # before the filters, as ever: the first problem is the one told
        filters = (filters or ComponentFilter(team_id=team_id)).checked()
        p = _Sql()
        sql = _component_page_sql(
            f"{', '.join('c.' + f for f in COMPONENT_FIELDS)}, {TEAM_COLUMNS}",
            True,
            first,
            after,
            order,
            filters,
            scope,
            p,
        )
        rows = _with_teams(await connection().execute_query_dict(sql, p.values))
        return _page_of(rows, first, order, filters.key())

    async def list_components_json(
        self,
        shape: rowjson.Shape,
        first: int = PAGE_DEFAULT,
        after: str | None = None,
        order: ComponentOrder = ComponentOrder.NAME,
        filters: ComponentFilter | None = None,
        scope: Scope = EVERYTHING,
    ) -> WrittenPage | None:
        """list_components with the page written as JSON by the database, each component in
        `shape` (catalog/rowjson.py): the same rows, cursors and errors, the text byte for byte
        what the answer's writer makes of the models. None when a row holds a value the database
        cannot write exactly: list_components then reads the page."""
        check_first(first)
        filters = (filters or ComponentFilter()).checked()
        p = _Sql()
        row = rowjson.row_json(shape, "postgres" if p.postgres else "sqlite")
        # The last row's sort key comes with every row: gathering the page into one row in the
        # database (string_agg, and the key by a window) cost PostgreSQL more than the 50 rows
        # cost the driver (0.2 ms against 0.05 ms).
        sql = _component_page_sql(
            f"{row}, c.name, c.id, c.cost_30d",
            rowjson.needs_team(shape),
            first,
            after,
            order,
            filters,
            scope,
            p,
        )
        rows = await fetch_rows(sql, p.values)
        texts = [r[0] for r in rows[:first]]
        if None in texts:
            return None
        key = _RowKey(*rows[len(texts) - 1][1:]) if texts else None
        return WrittenPage(
            rowjson.json_array(cast(list[str], texts)),
            _cursor(key, order, filters.key()),
            len(rows) > first,
        )

    async def count_children(self, team_id: uuid.UUID, scope: Scope = EVERYTHING) -> int:
        """How many direct sub-teams a team has (Team.children's totalCount)."""
        return await Team.filter(scope.q("id"), parent_id=team_id).count()

    async def count_components(
        self, filters: ComponentFilter = ComponentFilter(), scope: Scope = EVERYTHING
    ) -> int:
        """How many components match `filters` (a list's totalCount)."""
        p = _Sql()
        where = filters.checked().conditions(p) + scope.teams_sql("c.team_id", p)
        sql = "SELECT COUNT(*) AS n FROM component c" + (  # noqa: S608 (placeholders only)
            f" WHERE {' AND '.join(where)}" if where else ""
        )
        rows = await connection().execute_query_dict(sql, p.values)
        return int(rows[0]["n"])

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
            team = await Team.create(id=team_id or uuid.uuid4(), name=name, slug=slug)
        except IntegrityError:
            raise await self._team_conflict(slug, team_id) from None
        await dataversion.bump()  # after the write (no transaction): see db/dataversion.py
        return team

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
        await dataversion.bump()
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
            await dataversion.bump()
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
                await dataversion.bump()
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
            async with in_transaction():
                component = await Component.create(
                    id=component_id,
                    name=name,
                    team_id=team_id,
                    budget_usd=budget_usd,
                    opencost_aggregate=aggregate,
                    opencost_key=key,
                )
                if budget_usd is not None:
                    await budgets.write_component_budget(component_id, self._rolling(budget_usd))
                await dataversion.bump()
                return component
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
                await dataversion.bump()
        except IntegrityError:
            raise await self._component_conflict(
                component.opencost_aggregate,
                component.selector_key,
                component.id,
                uuid.UUID(str(component.team_id)),
            ) from None
        return component

    def _rolling(
        self, budget_usd: float, thresholds: tuple[float, ...] | None = None
    ) -> budgets.BudgetSpec:
        """budgetUsd's budget: ROLLING_30_DAYS in the cost currency."""
        return budgets.BudgetSpec(
            budget_usd,
            self.currency,
            budgets.Period.ROLLING_30_DAYS,
            thresholds or budgets.DEFAULT_THRESHOLDS,
        )

    async def set_budget(self, component_id: uuid.UUID, budget_usd: float | None) -> Component:
        """budgetUsd: the component's budget becomes ROLLING_30_DAYS of this amount (thresholds
        kept if it had a budget); null removes its budget, whatever its period."""
        budget_usd = check_budget(budget_usd, self.budget_max_usd)
        try:
            async with in_transaction():
                component = await Component.get_or_none(id=component_id)
                if component is None:
                    raise NotFound("component", component_id)
                spec = None
                if budget_usd is not None:
                    spec = self._rolling(budget_usd, await budgets.kept_thresholds(component_id))
                await budgets.write_component_budget(component_id, spec)
                component.budget_usd = budget_usd
                await component.save(update_fields=["budget_usd", "updated_at"])
                await dataversion.bump()
        except IntegrityError:
            raise _retry() from None
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
            await dataversion.bump()


def _day(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


# Module-level so a test can stand in for a writer that raced past the check.
async def _owns_components(team_id: uuid.UUID) -> bool:
    return await Component.filter(team_id=team_id).exists()
