"""The one cost service: REST, GraphQL, the CLI and the worker all ask it, so their numbers agree.

It knows nothing of Starlette or Strawberry; it returns plain dataclasses and raises the errors in
finops_gql.errors and OpenCostUnavailable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from finops_gql.access import EVERYTHING, Scope
from finops_gql.catalog import tree
from finops_gql.config import DEFAULT_SOURCE, SOURCE_NAME
from finops_gql.costs import coverage as coverage_sums
from finops_gql.costs import explorer, export
from finops_gql.costs import forecast as forecasting
from finops_gql.costs.ranges import (
    DayRange,
    Granularity,
    Preset,
    check_retention,
    explicit_range,
    preset_range,
)
from finops_gql.costs.windows import as_date, money, money_column, rollup_range
from finops_gql.db import inline
from finops_gql.db.models import Component, Team
from finops_gql.db.setup import SqlParams, connection, dialect, placeholders, sql_value
from finops_gql.errors import InvalidInput, NotFound
from finops_gql.opencost.client import Health, OpenCostClient
from finops_gql.opencost.parse import Allocation
from finops_gql.validation import parse_uuid as parse_uuid  # re-exported for the adapters

HISTORY_DEFAULT = 30
HISTORY_MAX = 400
TOP_DEFAULT = 10
TOP_MAX = 100
LIVE_WINDOWS = ("7d", "30d")


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    cpu_cost: float
    memory_cost: float
    pv_cost: float
    network_cost: float
    gpu_cost: float
    load_balancer_cost: float
    shared_cost: float
    external_cost: float
    total_cost: float

    @classmethod
    def of(cls, a: Allocation) -> CostBreakdown:
        return cls(
            cpu_cost=money(a.cpu_cost),
            memory_cost=money(a.ram_cost),
            pv_cost=money(a.pv_cost),
            network_cost=money(a.network_cost),
            gpu_cost=money(a.gpu_cost),
            load_balancer_cost=money(a.load_balancer_cost),
            shared_cost=money(a.shared_cost),
            external_cost=money(a.external_cost),
            total_cost=money(a.total_cost),
        )

    @classmethod
    def from_sums(cls, sums: Sequence[float]) -> CostBreakdown:
        """From the range engine's sums, in explorer.COLUMNS order."""
        return cls(*(money(value) for value in sums))

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> CostBreakdown:
        """From a raw cost_record row."""
        return cls(
            cpu_cost=money(row["cpu_cost"]),
            memory_cost=money(row["ram_cost"]),
            pv_cost=money(row["pv_cost"]),
            network_cost=money(row["network_cost"]),
            gpu_cost=money(row["gpu_cost"]),
            load_balancer_cost=money(row["load_balancer_cost"]),
            shared_cost=money(row["shared_cost"]),
            external_cost=money(row["external_cost"]),
            total_cost=money(row["total_cost"]),
        )


@dataclass(frozen=True, slots=True)
class CostWindow:
    window: str
    start: datetime
    end: datetime
    currency: str
    breakdown: CostBreakdown


@dataclass(frozen=True, slots=True)
class ActualCost:
    component_id: uuid.UUID
    seven_day: CostWindow | None
    thirty_day: CostWindow | None


@dataclass(frozen=True, slots=True)
class DailyCost:
    component_id: uuid.UUID
    day: date
    currency: str
    synced_at: datetime
    breakdown: CostBreakdown


@dataclass(frozen=True, slots=True)
class ComponentCost:
    """A component's persisted 30-day cost (the rollup the sync keeps).

    Ids are canonical UUID text: this is the hot path of team pages and the top-N, and every
    adapter writes them as text anyway.
    """

    component_id: str
    name: str
    team_id: str
    total_cost: float
    currency: str
    synced_at: datetime | None
    budget_usd: float | None


@dataclass(frozen=True, slots=True)
class ComponentCostColumns:
    """Components' persisted 30-day costs as parallel columns, row i of each being one
    component's (what ComponentCost holds, less the name and the team)."""

    currency: str
    component_ids: list[str]
    totals: list[float]
    synced_at: list[datetime | None]
    budgets: list[float | None]


@dataclass(frozen=True, slots=True)
class TeamSummary:
    team_id: uuid.UUID
    total_cost: float
    currency: str
    window: str
    start: date
    end: date
    components: list[ComponentCost]


@dataclass(frozen=True, slots=True)
class TeamCostColumns:
    """A team's 30-day summary as two parallel columns, by 30-day cost (what the REST summary
    writes): component ids as canonical UUID text and their money() totals."""

    team_id: uuid.UUID
    total_cost: float
    currency: str
    component_ids: list[str]
    totals: list[float]


@dataclass(frozen=True, slots=True)
class CostPoint:
    start: date
    end: date
    complete: bool
    total_cost: float
    # The bucket's sums in explorer.COLUMNS order: its breakdown is rounded when asked for (a
    # chart asks for the total alone, and rounding 9 figures was a third of a point's cost).
    sums: tuple[float, ...]

    @property
    def breakdown(self) -> CostBreakdown:
        return CostBreakdown.from_sums(self.sums)


@dataclass(frozen=True, slots=True)
class CostChange:
    previous_total: float
    amount: float
    ratio: float | None  # None when the previous total is 0: no ratio of nothing


@dataclass(frozen=True, slots=True)
class CostSeries:
    start: date
    end: date
    granularity: Granularity
    currency: str
    breakdown: CostBreakdown
    points: list[CostPoint]
    change: CostChange

    @property
    def total(self) -> float:
        return self.breakdown.total_cost

    @classmethod
    def of(cls, s: explorer.Series, currency: str) -> CostSeries:
        # The change is computed from the rounded figures, so a client dividing them agrees.
        total, previous = s.total, s.previous_total
        change = _change(total, previous)
        return cls(
            start=s.chosen.start,
            end=s.chosen.end,
            granularity=s.granularity,
            currency=currency,
            breakdown=CostBreakdown.from_sums(s.sums),
            points=[
                CostPoint(
                    p.bucket.start,
                    p.bucket.end,
                    p.bucket.complete,
                    money(p.sums[explorer.TOTAL]),
                    p.sums,
                )
                for p in s.points
            ],
            change=change,
        )


BREAKDOWN_DEFAULT = 20
BREAKDOWN_MAX = 100


@dataclass(frozen=True, slots=True)
class CostGroup:
    key: str
    label: str
    total: float
    share: float | None  # of the grand total; None when the grand total is 0
    change: CostChange


@dataclass(frozen=True, slots=True)
class CostGroups:
    start: date
    end: date
    dimension: explorer.Dimension
    total: float
    currency: str
    total_count: int
    groups: list[CostGroup]

    def labelled(self, labels: dict[str, str]) -> CostGroups:
        groups = [replace(g, label=labels.get(g.key, g.key)) for g in self.groups]
        return replace(self, groups=groups)


UNMAPPED_KEYS_DEFAULT = 20
UNMAPPED_KEYS_MAX = 100


@dataclass(frozen=True, slots=True)
class CostCoverage:
    """How much of the cluster's cost the catalog explains over a range (costs/coverage.py)."""

    start: date
    end: date
    currency: str
    catalog_cost: float
    cluster_cost: float
    unmapped_cost: float
    unallocated_cost: float
    idle_cost: float
    unmounted_cost: float
    ratio: float | None  # catalog / cluster; None when the cluster cost is 0
    reported_days: int


# Reads the coverage sums of a range: CostService.read_coverage, or a request's memo of it.
CoverageReader = Callable[[DayRange], Awaitable[coverage_sums.CoverageSums]]


@dataclass(frozen=True, slots=True)
class UnmappedKey:
    aggregate: str
    key: str
    total: float
    share: float | None  # of the cluster cost; None when that is 0


def _change(total: float, previous: float) -> CostChange:
    return CostChange(
        previous_total=previous,
        amount=money(total - previous),
        ratio=money(total - previous) / previous if previous else None,
    )


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """One OpenCost source's health check."""

    name: str
    available: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class Availability:
    """Every source's health: available only when every source answers. `listed`: the sources
    came from OPENCOST_SOURCES, so REST lists them (OPENCOST_URL alone keeps the legacy body)."""

    available: bool
    reason: str | None
    sources: list[SourceHealth]
    listed: bool = False


CLUSTERS_MAX = 50


def check_clusters(clusters: Sequence[str] | None) -> explorer.Clusters:
    """A `clusters` filter as the range engine takes it: None (every cluster), or the names,
    deduplicated and sorted (so equal filters batch together). A name is an OPENCOST_SOURCES
    name; one no source has (any more) is allowed and simply has no cost."""
    if clusters is None:
        return None
    if not clusters:
        raise InvalidInput("clusters: give at least one cluster name, or omit the filter")
    if len(clusters) > CLUSTERS_MAX:
        raise InvalidInput(f"clusters: at most {CLUSTERS_MAX} names, got {len(clusters)}")
    for name in clusters:
        if not SOURCE_NAME.fullmatch(name):
            raise InvalidInput(
                f"clusters: {name[:70]!r} is not a cluster name (1-63 characters of a-z, 0-9 "
                "and -, starting with a letter or digit)"
            )
    return tuple(sorted(set(clusters)))


def check_limit(limit: int, maximum: int, what: str = "limit") -> int:
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"{what} must be between 1 and {maximum}, got {limit}")
    return limit


def _records_of(component_ids: Sequence[uuid.UUID], scope: Scope, mark: SqlParams) -> list[str]:
    """The conditions on `cost_record r` for these components, of those the scope lets through."""
    return [
        f"r.component_id IN ({', '.join(mark(cid) for cid in component_ids)})",
        *scope.components_sql("r.component_id", mark),
    ]


class CostService:
    def __init__(
        self,
        opencost: OpenCostClient,
        *,
        currency: str = "USD",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retention_days: int = 400,
        sources: Mapping[str, OpenCostClient] | None = None,
        list_sources: bool = False,
    ) -> None:
        self.opencost = opencost
        # Every OpenCost source (cluster) by name; the one client is `default` without them.
        self.sources: dict[str, OpenCostClient] = dict(sources or {DEFAULT_SOURCE: opencost})
        self.list_sources = list_sources
        self.currency = currency
        self.clock = clock
        self.retention_days = retention_days

    # -- catalog lookups -------------------------------------------------------------------------

    # Every read takes the caller's Scope (finops_gql/access.py): an invisible row is missing.

    async def component(self, component_id: uuid.UUID, scope: Scope = EVERYTHING) -> Component:
        found = await Component.filter(scope.q(), id=component_id).first()
        if found is None:
            raise NotFound("component", component_id)
        return found

    async def team(self, team_id: uuid.UUID, scope: Scope = EVERYTHING) -> Team:
        found = await Team.filter(scope.q("id"), id=team_id).first()
        if found is None:
            raise NotFound("team", team_id)
        return found

    # -- live figures from OpenCost --------------------------------------------------------------

    async def live_window(self, component: Component, window: str) -> CostWindow | None:
        """One component's cost over a live window, summed over every source (cluster). The
        OpenCost query is per (source, aggregate, window) and shared, so asking for many
        components costs each source one request per window. Any source failing fails the
        figure (OpenCostUnavailable): a sum missing a cluster would be a wrong total."""
        answers = await asyncio.gather(
            *(
                client.allocation(
                    window=window, aggregate=component.opencost_aggregate, accumulate=True
                )
                for client in self.sources.values()
            )
        )
        found = [a for steps in answers if (a := _first_match(steps, component.selector_key))]
        if not found:
            return None
        total = found[0] if len(found) == 1 else _summed(found)
        return CostWindow(window, total.start, total.end, self.currency, CostBreakdown.of(total))

    async def actual_cost(self, component: Component) -> ActualCost:
        seven, thirty = await asyncio.gather(
            *(self.live_window(component, window) for window in LIVE_WINDOWS)
        )
        return ActualCost(component.id, seven, thirty)

    async def availability(self) -> Availability:
        """Every source's health check, concurrently; available only when all answer."""
        names = list(self.sources)
        checks: list[Health] = await asyncio.gather(
            *(self.sources[name].health() for name in names)
        )
        sources = [
            SourceHealth(n, h.available, h.reason) for n, h in zip(names, checks, strict=True)
        ]
        down = [s for s in sources if not s.available]
        if not down:
            reason = None
        elif len(sources) == 1:
            reason = down[0].reason
        else:
            reason = "; ".join(f"{s.name}: {s.reason}" for s in down)
        return Availability(not down, reason, sources, self.list_sources)

    # -- persisted figures ----------------------------------------------------------------------

    async def history(
        self, component_id: uuid.UUID, limit: int = HISTORY_DEFAULT, scope: Scope = EVERYTHING
    ) -> list[DailyCost]:
        check_limit(limit, HISTORY_MAX)
        if not scope.everything:
            await self.component(component_id, scope)  # invisible: the same NotFound as missing
        marks = placeholders(2)
        rows = await connection().execute_query_dict(
            f"SELECT {_DAY_SUMS} FROM cost_record r WHERE r.component_id = "  # noqa: S608 (placeholders only)
            # Ordered like the grouping (component_id is fixed): both databases then read the
            # (component, day, cluster) index backwards and stop after `limit` days, no sort.
            f"{marks[0]} GROUP BY r.component_id, r.day "
            f"ORDER BY r.component_id DESC, r.day DESC LIMIT {marks[1]}",
            [sql_value(component_id), limit],
        )
        # Records imply the component exists; only an empty answer needs the extra lookup.
        if not rows and not await Component.filter(id=component_id).exists():
            raise NotFound("component", component_id)
        return [_daily_cost(row) for row in rows]

    async def histories(
        self,
        component_ids: Sequence[uuid.UUID],
        limit: int = HISTORY_DEFAULT,
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, list[DailyCost]]:
        """The newest `limit` daily records of each component, in one query (for DataLoaders)."""
        check_limit(limit, HISTORY_MAX)
        result: dict[uuid.UUID, list[DailyCost]] = {cid: [] for cid in component_ids}
        if not component_ids:
            return result
        mark = SqlParams()
        where = _records_of(component_ids, scope, mark)
        # ROW_NUMBER keeps it one statement for any number of components (SQLite >= 3.25, PG).
        sql = (
            "SELECT * FROM (SELECT d.*, ROW_NUMBER() OVER "  # noqa: S608 (placeholders only)
            "(PARTITION BY d.component_id ORDER BY d.day DESC) AS rn FROM "
            f"(SELECT {_DAY_SUMS} FROM cost_record r WHERE {' AND '.join(where)} "
            "GROUP BY r.component_id, r.day) d) ranked "
            f"WHERE rn <= {mark(limit)} ORDER BY component_id, day DESC"
        )
        for row in await connection().execute_query_dict(sql, mark.values):
            daily = _daily_cost(row)
            result[daily.component_id].append(daily)
        return result

    async def component_clusters(
        self, component_ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, list[str]]:
        """The clusters where each component has cost records, by name, in one statement (for
        DataLoaders); an invisible component has none."""
        result: dict[uuid.UUID, list[str]] = {cid: [] for cid in component_ids}
        if not component_ids:
            return result
        mark = SqlParams()
        where = _records_of(component_ids, scope, mark)
        sql = (
            "SELECT DISTINCT r.component_id AS component_id, r.cluster AS cluster "  # noqa: S608 (placeholders only)
            f"FROM cost_record r WHERE {' AND '.join(where)} ORDER BY r.component_id, r.cluster"
        )
        for row in await connection().execute_query_dict(sql, mark.values):
            result[uuid.UUID(str(row["component_id"]))].append(row["cluster"])
        return result

    def _component_cost(self, row: Mapping[str, Any]) -> ComponentCost:
        synced = row["cost_synced_at"]
        return ComponentCost(
            component_id=str(row["id"]),
            name=row["name"],
            team_id=str(row["team_id"]),
            total_cost=money(row["cost_30d"]),
            currency=self.currency,
            synced_at=None if synced is None else _as_datetime(synced),
            budget_usd=row["budget_usd"],
        )

    async def _component_costs(
        self, where: str, values: list[object], *, short: bool = False
    ) -> list[ComponentCost]:
        # Hand-written SQL, no model objects: building Tortoise models (and parsing their
        # datetimes with iso8601) cost 15 ms for a 500-component team; this reads the indexed
        # rollup columns and converts only what the answer needs. A `short` read (bounded by a
        # LIMIT) runs in the loop's thread on SQLite (db/inline.py).
        sql = (
            "SELECT id, name, team_id, cost_30d, cost_synced_at, budget_usd FROM component "  # noqa: S608 (placeholders only)
            f"{where}"
        )
        if short:
            rows: Sequence[Any] = await inline.fetch_rows(sql, values, named=True)
        else:
            rows = await connection().execute_query_dict(sql, values)
        return [self._component_cost(row) for row in rows]

    async def team_cost_columns(
        self, team_id: uuid.UUID, scope: Scope = EVERYTHING
    ) -> TeamCostColumns:
        """One team's 30-day summary as columns (NotFound when the team is missing or invisible):
        its components' ids and totals by 30-day cost, straight from the driver's rows.

        No object per component: building a ComponentCost was about 2.7 us a row, most of a
        500-component team's summary. Only the two columns the answer needs are read, from the
        component table alone; an empty answer is the one case that needs the team looked up.
        """
        mark = SqlParams()
        where = [f"team_id = {mark(team_id)}", *scope.teams_sql("team_id", mark)]
        rows = await inline.fetch_rows(
            f"SELECT id, cost_30d FROM component WHERE {' AND '.join(where)} "  # noqa: S608 (placeholders only)
            "ORDER BY cost_30d DESC, name",
            mark.values,
        )
        if not rows:
            await self.team(team_id, scope)  # missing or invisible: NotFound; else no components
        totals = money_column([row[1] for row in rows])
        return TeamCostColumns(
            team_id=team_id,
            # Summed in the same order as team_summaries sums its ComponentCost objects.
            total_cost=money(sum(totals)),
            currency=self.currency,
            component_ids=[str(row[0]) for row in rows],
            totals=totals,
        )

    def _summary(self, team_id: uuid.UUID, components: list[ComponentCost]) -> TeamSummary:
        start, end = rollup_range(self.clock())
        return TeamSummary(
            team_id=team_id,
            total_cost=money(sum(c.total_cost for c in components)),
            currency=self.currency,
            window="30d",
            start=start,
            end=end,
            components=components,
        )

    async def team_summaries(
        self, team_ids: Sequence[uuid.UUID], scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, TeamSummary]:
        """Each team's 30-day summary; an invisible team's is empty (it has no visible component)."""
        by_team: dict[str, list[ComponentCost]] = defaultdict(list)
        if team_ids:
            mark = SqlParams()
            where = [
                f"team_id IN ({', '.join(mark(t) for t in team_ids)})",
                *scope.teams_sql("team_id", mark),
            ]
            costs = await self._component_costs(
                f"WHERE {' AND '.join(where)} ORDER BY cost_30d DESC, name", mark.values
            )
            for cost in costs:
                by_team[cost.team_id].append(cost)
        return {team_id: self._summary(team_id, by_team[str(team_id)]) for team_id in team_ids}

    @staticmethod
    def _top_sql(limit: int, scope: Scope) -> tuple[str, list[object]]:
        """The WHERE, ORDER and LIMIT of the top-N by 30-day cost, and its parameters."""
        check_limit(limit, TOP_MAX)
        mark = SqlParams()
        where = " AND ".join(scope.teams_sql("team_id", mark))
        # LIMIT as a literal (an int checked above): without a scope it is then a statement
        # without parameters, whose plan PostgreSQL reuses (catalog's _component_page_sql).
        sql = (
            f"{'WHERE ' + where + ' ' if where else ''}ORDER BY cost_30d DESC, name "
            f"LIMIT {int(limit)}"
        )
        return sql, mark.values

    async def top_components(
        self, limit: int = TOP_DEFAULT, scope: Scope = EVERYTHING
    ) -> list[ComponentCost]:
        return await self._component_costs(*self._top_sql(limit, scope), short=True)

    async def top_component_columns(
        self, limit: int = TOP_DEFAULT, scope: Scope = EVERYTHING
    ) -> ComponentCostColumns:
        """top_components as columns, without an object per row: what the REST top-N writes
        (the busiest REST route, where each row's object and dumps' walk over it were a tenth
        of a request)."""
        where, values = self._top_sql(limit, scope)
        rows = await inline.fetch_rows(
            f"SELECT id, cost_30d, cost_synced_at, budget_usd FROM component {where}",  # noqa: S608 (placeholders only)
            values,
        )
        return ComponentCostColumns(
            currency=self.currency,
            component_ids=[str(row[0]) for row in rows],
            totals=money_column([row[1] for row in rows]),
            synced_at=[None if row[2] is None else _as_datetime(row[2]) for row in rows],
            budgets=[row[3] for row in rows],
        )

    async def refresh_rollups(self, component_ids: Iterable[uuid.UUID] | None = None) -> None:
        """Recompute each component's 30-day total from its daily records, in one statement."""
        start, end = rollup_range(self.clock())
        marks = placeholders(2)
        values: list[object] = [sql_value(start), sql_value(end)]
        teams = None  # the teams whose sums follow (teams(orderBy: COST_30D_*)): all, or ...
        ids = ""  # the chosen components' markers; every component when empty
        if component_ids is not None:
            chosen = list(component_ids)
            if not chosen:
                return
            ids = ", ".join(placeholders(len(chosen), start=3))
            values.extend(sql_value(cid) for cid in chosen)
            owners = await Component.filter(id__in=chosen).values_list("team_id", flat=True)
            teams = [uuid.UUID(str(t)) for t in dict.fromkeys(owners)]  # ... these components'
        if dialect() == "postgres":
            sql = _rollups_grouped(marks, ids)
        else:
            sql = (
                "UPDATE component SET "  # noqa: S608 (placeholders only)
                "cost_30d = COALESCE((SELECT SUM(r.total_cost) FROM cost_record r "
                f"WHERE r.component_id = component.id AND r.day >= {marks[0]} "
                f"AND r.day <= {marks[1]}), 0), "
                "cost_synced_at = (SELECT MAX(r.synced_at) FROM cost_record r "
                "WHERE r.component_id = component.id)"
            )
            if ids:
                sql += f" WHERE id IN ({ids})"
        await connection().execute_query(sql, values)
        await explorer.refresh_team_costs(teams)

    # -- the cost explorer: every figure through the range engine (costs/explorer.py) -----------

    def resolve_range(
        self, preset: Preset | None = None, start: date | None = None, end: date | None = None
    ) -> DayRange:
        """A client's range: exactly one of `preset` or both `start` and `end`, checked against
        today's UTC date, COST_RETENTION_DAYS and the longest series (explorer.MAX_RANGE_DAYS)."""
        today = self.clock().astimezone(UTC).date()
        if preset is not None and start is None and end is None:
            chosen = check_retention(preset_range(preset, today), self.retention_days)
        elif preset is None and start is not None and end is not None:
            chosen = explicit_range(start, end, today, self.retention_days)
        else:
            raise InvalidInput("range: give either preset, or both from and to (not both)")
        if chosen.days > explorer.MAX_RANGE_DAYS:
            raise InvalidInput(
                f"range: {chosen.days} days is longer than the {explorer.MAX_RANGE_DAYS} days a "
                "cost series may span"
            )
        return chosen

    async def team_scopes(
        self, team_ids: Sequence[uuid.UUID], include_sub_teams: bool = True
    ) -> dict[uuid.UUID, list[uuid.UUID]]:
        """The teams whose components make up each team's cost: the ONE place that decides it.

        With `include_sub_teams` (the default) a team covers its whole subtree, read in one
        statement for all the teams; without it, only itself. Every team figure follows."""
        if not include_sub_teams:
            return {team_id: [team_id] for team_id in team_ids}
        return await tree.team_subtrees(team_ids)

    async def team_scope(
        self, team_id: uuid.UUID, include_sub_teams: bool = True
    ) -> list[uuid.UUID]:
        return (await self.team_scopes([team_id], include_sub_teams))[team_id]

    async def component_series(
        self,
        component_ids: Sequence[uuid.UUID],
        chosen: DayRange,
        granularity: Granularity,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> dict[uuid.UUID, CostSeries]:
        """Each component's series, one statement for all of them (an invisible one: zeros)."""
        return await self.subject_series(
            explorer.Subject.COMPONENT, component_ids, chosen, granularity, scope, clusters
        )

    async def team_series(
        self,
        team_ids: Sequence[uuid.UUID],
        chosen: DayRange,
        granularity: Granularity,
        include_sub_teams: bool = True,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> dict[uuid.UUID, CostSeries]:
        """Each team's series over its scope (team_scopes) as far as `scope` sees it, one
        statement for all of them."""
        scopes = await self.team_scopes(team_ids, include_sub_teams)
        visible = {t: scope.visible_teams(ids) for t, ids in scopes.items()}
        found = await explorer.series(
            explorer.Subject.TEAM, visible, chosen, granularity, clusters=clusters
        )
        return {t: CostSeries.of(s, self.currency) for t, s in found.items()}

    async def platform_series(
        self,
        chosen: DayRange,
        granularity: Granularity,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> CostSeries:
        """Every component's cost together: the platform's daily totals, or for a scoped
        principal the sum of its visible teams' daily totals."""
        everything = uuid.UUID(int=0)
        if scope.team_ids is None:
            found = await explorer.series(
                explorer.Subject.PLATFORM, {everything: []}, chosen, granularity, clusters=clusters
            )
        else:
            teams = {everything: sorted(scope.team_ids)}
            found = await explorer.series(
                explorer.Subject.TEAM, teams, chosen, granularity, clusters=clusters
            )
        return CostSeries.of(found[everything], self.currency)

    # -- forecasts (costs/forecast.py) from the same daily data ------------------------------------

    async def forecasts(
        self,
        subject: explorer.Subject,
        scopes: Mapping[uuid.UUID, Sequence[uuid.UUID]],
        days: int,
        visible: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, forecasting.Forecast]:
        """Each subject's forecast of the `days` days from today, one statement for all."""
        forecasting.check_days(days)
        first, last = forecasting.history_range(self.clock().astimezone(UTC).date())
        found = await explorer.daily_totals(subject, scopes, first, last, visible)
        return {
            key: forecasting.forecast(forecasting.observed(history, last), last, days)
            for key, history in found.items()
        }

    async def component_forecasts(
        self, component_ids: Sequence[uuid.UUID], days: int, scope: Scope = EVERYTHING
    ) -> dict[uuid.UUID, forecasting.Forecast]:
        """Each component's forecast (an invisible one: no history, zeros)."""
        return await self.forecasts(
            explorer.Subject.COMPONENT, {c: [c] for c in component_ids}, days, scope
        )

    async def team_forecasts(
        self,
        team_ids: Sequence[uuid.UUID],
        days: int,
        include_sub_teams: bool = True,
        scope: Scope = EVERYTHING,
    ) -> dict[uuid.UUID, forecasting.Forecast]:
        """Each team's forecast over its scope (team_scopes) as far as `scope` sees it."""
        forecasting.check_days(days)
        scopes = await self.team_scopes(team_ids, include_sub_teams)
        visible = {t: scope.visible_teams(ids) for t, ids in scopes.items()}
        return await self.forecasts(explorer.Subject.TEAM, visible, days)

    async def platform_forecast(self, days: int, scope: Scope = EVERYTHING) -> forecasting.Forecast:
        """Every component's cost together, or for a scoped principal its visible teams'."""
        everything = uuid.UUID(int=0)
        if scope.team_ids is None:
            found = await self.forecasts(explorer.Subject.PLATFORM, {everything: []}, days)
        else:
            teams = {everything: sorted(scope.team_ids)}
            found = await self.forecasts(explorer.Subject.TEAM, teams, days)
        return found[everything]

    async def cost_breakdown(
        self,
        chosen: DayRange,
        dimension: explorer.Dimension,
        first: int = BREAKDOWN_DEFAULT,
        team_id: uuid.UUID | None = None,
        include_sub_teams: bool = True,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> CostGroups:
        """The groups of a dimension by total, largest first (the first `first`), with the
        grand total, the number of groups, each one's share and change: the whole platform, or
        one team's scope (team_scopes), as far as `scope` sees them; `clusters`: theirs only."""
        if team_id is not None:
            found = await self.cost_breakdowns(
                chosen, dimension, [team_id], first, include_sub_teams, scope, clusters
            )
            return found[team_id]
        check_limit(first, BREAKDOWN_MAX, "first")
        # The platform, or for a scoped principal the sum over its visible teams (access.py).
        teams = None if scope.team_ids is None else sorted(scope.team_ids)
        totals = await explorer.group_totals(dimension, teams, chosen, clusters)
        ranked = self._ranked(chosen, dimension, first, totals)
        labels = await self._labels(dimension, [g.key for g in ranked.groups])
        return ranked.labelled(labels)

    async def cost_breakdowns(
        self,
        chosen: DayRange,
        dimension: explorer.Dimension,
        team_ids: Sequence[uuid.UUID],
        first: int = BREAKDOWN_DEFAULT,
        include_sub_teams: bool = True,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> dict[uuid.UUID, CostGroups]:
        """cost_breakdown of each team's scope as far as `scope` sees it, in three statements
        whatever the number of teams (their subtrees, every visible scope team's groups, the
        labels): Team.costBreakdown's DataLoader."""
        check_limit(first, BREAKDOWN_MAX, "first")
        scopes = {
            t: scope.visible_teams(ids)
            for t, ids in (await self.team_scopes(team_ids, include_sub_teams)).items()
        }
        wanted = list(dict.fromkeys(t for ids in scopes.values() for t in ids))
        per_team = await explorer.team_group_totals(dimension, wanted, chosen, clusters)
        ranked = {
            team_id: self._ranked(
                chosen,
                dimension,
                first,
                explorer.merge_totals(per_team.get(str(t), {}) for t in scopes[team_id]),
            )
            for team_id in team_ids
        }
        keys = list(dict.fromkeys(g.key for r in ranked.values() for g in r.groups))
        labels = await self._labels(dimension, keys)
        return {team_id: r.labelled(labels) for team_id, r in ranked.items()}

    def _ranked(
        self,
        chosen: DayRange,
        dimension: explorer.Dimension,
        first: int,
        found: explorer.Totals,
    ) -> CostGroups:
        """The groups by total (largest first, then key), unlabelled (labels are the keys)."""
        if dimension is explorer.Dimension.RESOURCE:
            # Every resource is a group, with or without cost.
            found = {
                name: found.get(name, (0.0, 0.0))
                for name in [*explorer.RESOURCES.values(), explorer.RESOURCE_TOTAL]
            }
            grand = money(found.pop(explorer.RESOURCE_TOTAL)[0])
        else:
            grand = money(sum(current for current, _ in found.values()))
        ranked = sorted(found.items(), key=lambda item: (-money(item[1][0]), item[0]))
        groups = [
            CostGroup(
                key=key,
                label=key,
                total=money(current),
                share=money(current) / grand if grand else None,
                change=_change(money(current), money(previous)),
            )
            for key, (current, previous) in ranked[:first]
        ]
        return CostGroups(
            chosen.start, chosen.end, dimension, grand, self.currency, len(found), groups
        )

    async def _labels(self, dimension: explorer.Dimension, keys: list[str]) -> dict[str, str]:
        """Each group's name: the team's, component's, system's or domain's; UNASSIGNED_LABELS
        for the cost in no system / domain; a resource is its own label."""
        table = LABEL_TABLES.get(dimension)
        labels = {}
        if explorer.UNASSIGNED in keys and dimension in UNASSIGNED_LABELS:
            labels[explorer.UNASSIGNED] = UNASSIGNED_LABELS[dimension]
        if table is None:
            return labels
        ids = [uuid.UUID(k) for k in keys if k != explorer.UNASSIGNED]
        if not ids:
            return labels
        p = SqlParams()
        rows = await connection().execute_query_dict(
            f"SELECT id, name FROM {table} "  # noqa: S608 (placeholders only)
            f"WHERE id IN ({', '.join(p(i) for i in ids)})",
            p.values,
        )
        labels.update((str(uuid.UUID(str(row["id"]))), row["name"]) for row in rows)
        return labels

    async def showback_csv(
        self, month: str | None, team_id: uuid.UUID | None = None, scope: Scope = EVERYTHING
    ) -> AsyncIterator[str]:
        """The showback export of a month (YYYY-MM), of every component `scope` sees or of a
        team's subtree: checked now (InvalidInput, NotFound), then CSV chunks (costs/export.py)."""
        today = self.clock().astimezone(UTC).date()
        return await export.showback_csv(month, team_id, today, scope=scope)

    async def subject_series(
        self,
        subject: explorer.Subject,
        ids: Sequence[uuid.UUID],
        chosen: DayRange,
        granularity: Granularity,
        scope: Scope = EVERYTHING,
        clusters: explorer.Clusters = None,
    ) -> dict[uuid.UUID, CostSeries]:
        """Each system's or domain's (or component's) series, one statement for all of them: a
        system's cost is its components', whichever team owns them; a domain's its systems'.
        As far as `scope` sees: a scoped principal's system or domain is the cost of its visible
        components in it (their teams' rows of the team x system cube)."""
        found = await explorer.series(
            subject, {i: [i] for i in ids}, chosen, granularity, scope, clusters
        )
        return {i: CostSeries.of(s, self.currency) for i, s in found.items()}

    # -- coverage: the cluster's cost beside the catalog's (costs/coverage.py) ---------------------

    async def read_coverage(self, chosen: DayRange) -> coverage_sums.CoverageSums:
        """The coverage sums over a range, unrounded, in one statement, whoever asks: only
        `coverage` and `unmapped_keys` call it (directly, or through the `read` they are given,
        a request's memo of it), after their scope check."""
        return await coverage_sums.sums(chosen.start, chosen.end)

    async def coverage(
        self, chosen: DayRange, scope: Scope = EVERYTHING, read: CoverageReader | None = None
    ) -> CostCoverage | None:
        """The catalog's cost, the cluster's, and what the catalog does not explain, over a
        range: one statement (`read`, when given, answers it: a request that also asks
        unmapped_keys reads the sums once). None for a scoped principal: no team owns the
        cluster's cost beyond the catalog (access.py), and unmapped keys name other teams'
        workloads."""
        if not scope.everything:
            return None
        found = await (read or self.read_coverage)(chosen)
        catalog, cluster = money(found.catalog), money(found.cluster)
        return CostCoverage(
            start=chosen.start,
            end=chosen.end,
            currency=self.currency,
            catalog_cost=catalog,
            cluster_cost=cluster,
            unmapped_cost=money(found.unmapped),
            unallocated_cost=money(found.unallocated),
            idle_cost=money(found.idle),
            unmounted_cost=money(found.unmounted),
            ratio=catalog / cluster if cluster else None,
            reported_days=found.reported_days,
        )

    async def unmapped_keys(
        self,
        chosen: DayRange,
        first: int = UNMAPPED_KEYS_DEFAULT,
        scope: Scope = EVERYTHING,
        read: CoverageReader | None = None,
    ) -> list[UnmappedKey] | None:
        """The OpenCost keys no component matched, largest first (the first `first`), each with
        its share of the cluster's cost: two statements, the second the coverage sums (`read`,
        as for `coverage`). None for a scoped principal (see `coverage`)."""
        check_limit(first, UNMAPPED_KEYS_MAX, "first")
        if not scope.everything:
            return None
        found = await coverage_sums.unmapped_keys(chosen.start, chosen.end, first)
        if not found:
            return []
        cluster = money((await (read or self.read_coverage)(chosen)).cluster)
        return [
            UnmappedKey(aggregate, key, money(total), money(total) / cluster if cluster else None)
            for aggregate, key, total in found
        ]


# The table naming each dimension's groups.
LABEL_TABLES = {
    explorer.Dimension.TEAM: "team",
    explorer.Dimension.COMPONENT: "component",
    explorer.Dimension.SYSTEM: "system",
    explorer.Dimension.DOMAIN: "domain",
}
# The label of the UNASSIGNED group (key "unassigned", no entity).
UNASSIGNED_LABELS = {
    explorer.Dimension.SYSTEM: "(no system)",
    explorer.Dimension.DOMAIN: "(no domain)",
}


def _first_match(steps: list[dict[str, Allocation]], key: str) -> Allocation | None:
    for step in steps:
        allocation = step.get(key)
        if allocation is not None:
            return allocation
    return None


def _summed(found: Sequence[Allocation]) -> Allocation:
    """One allocation per source for the same key and window, added up: the window spans them
    all."""
    money_fields = explorer.COLUMNS
    sums = {f: sum(getattr(a, f) for a in found) for f in money_fields}
    return Allocation(
        key=found[0].key,
        start=min(a.start for a in found),
        end=max(a.end for a in found),
        **sums,
    )


# A component's day over every cluster: its records summed (one per cluster), the latest sync.
_DAY_SUMS = (
    "r.component_id AS component_id, r.day AS day, MAX(r.currency) AS currency, "
    "MAX(r.synced_at) AS synced_at, " + ", ".join(f"SUM(r.{c}) AS {c}" for c in explorer.COLUMNS)
)


def _daily_cost(row: dict[str, Any]) -> DailyCost:
    return DailyCost(
        component_id=uuid.UUID(str(row["component_id"])),
        day=as_date(row["day"]),
        currency=row["currency"],
        synced_at=_as_datetime(row["synced_at"]),
        breakdown=CostBreakdown.from_row(row),
    )


@lru_cache(maxsize=1024)  # the few sync instants of a list's rows, as SQLite's text or a datetime
def _as_datetime(value: object) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rollups_grouped(marks: list[str], ids: str) -> str:
    """PostgreSQL's refresh_rollups: the records read in one grouped pass (one hash aggregate
    over cost_record) instead of two correlated subqueries per component (two index probes and
    heap visits each: about 0.4-0.6 s more for 10,000 components and 300,000 records, measured,
    whose plan's cost also started JIT compilation, 0.16 s). The same figures: the 30 days'
    sum (0 without records in them), the newest synced_at of any record (NULL without
    records). `ids`: the chosen components' markers (every component when empty)."""
    only = f" WHERE component_id IN ({ids})" if ids else ""
    chosen = f" AND k.id IN ({ids})" if ids else ""
    return (
        "UPDATE component SET cost_30d = COALESCE(s.total, 0), cost_synced_at = s.synced "  # noqa: S608 (placeholders only)
        "FROM component k LEFT JOIN (SELECT component_id, "
        f"SUM(total_cost) FILTER (WHERE day >= {marks[0]} AND day <= {marks[1]}) AS total, "
        f"MAX(synced_at) AS synced FROM cost_record{only} GROUP BY component_id) s "
        f"ON s.component_id = k.id WHERE component.id = k.id{chosen}"
    )
