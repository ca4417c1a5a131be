"""The range engine: (subjects, day range, granularity) -> every bucket's cost, from cost_record.

Every explorer figure (component, team and platform series, and later the group-by table, the
export, budgets) is answered here, so none of them writes its own SUM. One statement per answer:
the database sums each day's money per subject (components: their daily records; teams and the
platform: daily totals summed in SQL by refresh_daily_totals, inside the transaction of every
write that changes them), and Python folds those <= 2 x 400 days into the buckets of
`ranges.buckets`, filling the days without records with zeros so a chart needs no gap handling.
The statement spans the range and the one before it (`DayRange.previous()`), so the change
against the previous period costs nothing extra. Money is rounded only by `money()`, on the way
out.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from finops_gql.access import EVERYTHING, Scope
from finops_gql.costs.ranges import Bucket, DayRange, Granularity, buckets
from finops_gql.costs.windows import as_date, money
from finops_gql.db.setup import SqlParams, connection, placeholders, sql_value

# cost_record's money columns, in CostBreakdown's order (ram_cost is the API's memoryCost).
COLUMNS = (
    "cpu_cost",
    "ram_cost",
    "pv_cost",
    "network_cost",
    "gpu_cost",
    "load_balancer_cost",
    "shared_cost",
    "external_cost",
    "total_cost",
)
TOTAL = COLUMNS.index("total_cost")
# The longest range a series may span: it bounds a series' points, which the GraphQL query cost
# needs as a static figure (graphql/cost.py). COST_RETENTION_DAYS may be shorter, never longer.
MAX_RANGE_DAYS = 400

Sums = list[float]  # one float per COLUMNS entry


class Subject(enum.Enum):
    """What a series is of: components by id, teams by id (their components), systems and
    domains by id (their components, whichever team owns them), or everything."""

    COMPONENT = "component"
    TEAM = "team"
    PLATFORM = "platform"
    SYSTEM = "system"
    DOMAIN = "domain"


# Where each subject's daily sums are read: (subject key, source as `t`, GROUP BY needed).
# Teams and the platform have one row per subject and day already; a component has one per
# cluster and day (summed); a system's days are summed over the teams of
# team_system_daily_cost, a domain's over its systems too.
_SUBJECT_SOURCES = {
    Subject.COMPONENT: ("t.component_id", "cost_record t", True),
    Subject.TEAM: ("t.team_id", "team_daily_cost t", False),
    Subject.PLATFORM: (None, "platform_daily_cost t", False),
    Subject.SYSTEM: ("t.system_id", "team_system_daily_cost t", True),
    Subject.DOMAIN: (
        "s.domain_id",
        "team_system_daily_cost t JOIN system s ON s.id = t.system_id",
        True,
    ),
}


# With a cluster filter the all-cluster pre-aggregates cannot answer: every subject is summed
# from cost_record (its rows of those clusters), through the component's current team and
# system. (subject key, source as `t`, the owning team's column).
_RECORDS = "cost_record t JOIN component c ON c.id = t.component_id"
_CLUSTER_SOURCES = {
    Subject.COMPONENT: ("t.component_id", "cost_record t", None),
    Subject.TEAM: ("c.team_id", _RECORDS, "c.team_id"),
    Subject.PLATFORM: (None, "cost_record t", None),
    Subject.SYSTEM: ("c.system_id", _RECORDS, "c.team_id"),
    Subject.DOMAIN: ("s.domain_id", f"{_RECORDS} JOIN system s ON s.id = c.system_id", "c.team_id"),
}

Clusters = tuple[str, ...] | None  # a cluster filter: these clusters' cost only; None: all


PLATFORM_KEY = "platform"


ZEROS = (0.0,) * len(COLUMNS)


def zeros() -> Sums:
    return [0.0] * len(COLUMNS)


def add(into: Sums, other: Sequence[float]) -> None:
    for i, value in enumerate(other):
        into[i] += value


@dataclass(frozen=True, slots=True)
class Point:
    bucket: Bucket
    sums: tuple[float, ...]  # unrounded; money() when it leaves the service


@dataclass(frozen=True, slots=True)
class Series:
    chosen: DayRange
    granularity: Granularity
    sums: tuple[float, ...]
    previous_sums: tuple[float, ...]
    points: list[Point]

    @property
    def total(self) -> float:
        return money(self.sums[TOTAL])

    @property
    def previous_total(self) -> float:
        return money(self.previous_sums[TOTAL])


async def daily_sums(
    subject: Subject,
    ids: Sequence[uuid.UUID],
    first: date,
    last: date,
    scope: Scope = EVERYTHING,
    summed: bool = False,
    columns: Sequence[str] = COLUMNS,
    clusters: Clusters = None,
) -> dict[str, dict[date, tuple[float, ...]]]:
    """Per subject key (canonical UUID text, or PLATFORM_KEY) and day, each column's sum over
    first..last, in ONE statement. Days without records are absent (the caller fills zeros).
    `summed`: the ids' days added up in SQL, under PLATFORM_KEY (one subject made of many).
    `columns` (a subset of COLUMNS, in the tuples' order) trims what a bulk reader needs.

    Components read cost_record (one row per day already), those `scope` sees; teams, systems,
    domains and the platform read the daily pre-aggregates, which hold exactly these sums
    (refresh_daily_totals keeps them true). Team callers pass only visible teams (access.py);
    systems and domains are summed over the visible teams' rows of the team x system cube, so a
    scoped principal's system is its visible components' cost. `clusters`: only those clusters'
    records, summed from cost_record for every subject (_CLUSTER_SOURCES)."""
    if not set(columns) <= set(COLUMNS):
        raise ValueError(f"not cost columns: {sorted(set(columns) - set(COLUMNS))}")
    key, table, grouped = _SUBJECT_SOURCES[subject]
    team_column: str | None = "t.team_id"
    if clusters is not None:
        key, table, team_column = _CLUSTER_SOURCES[subject]
        grouped = True
    p = SqlParams()
    where = [f"t.day >= {p.day(first)}", f"t.day <= {p.day(last)}"]
    if clusters is not None:
        where.append(f"t.cluster IN ({', '.join(p(c) for c in clusters)})")
    if key is not None:
        if not ids:
            return {}
        where.append(f"{key} IN ({', '.join(p(i) for i in ids)})")
        if subject is Subject.COMPONENT:
            where.extend(scope.components_sql(key, p))
        elif grouped and team_column is not None:
            where.extend(scope.teams_sql(team_column, p))
    if summed and key:
        key, grouped = None, True
    selected = ", ".join(f"SUM(t.{c}) AS {c}" if grouped else f"t.{c} AS {c}" for c in columns)
    select = f"{key} AS subject, t.day AS day, {selected}" if key else f"t.day AS day, {selected}"
    sql = f"SELECT {select} FROM {table} WHERE {' AND '.join(where)}"  # noqa: S608 (placeholders only)
    if grouped:
        sql += f" GROUP BY {key + ', ' if key else ''}t.day"
    result: dict[str, dict[date, tuple[float, ...]]] = {}
    names: dict[object, str] = {}  # driver value -> canonical UUID text, parsed once per subject
    for row in await connection().execute_query_dict(sql, p.values):
        if key:
            subject_value = row["subject"]
            name = names.get(subject_value)
            if name is None:
                name = names[subject_value] = str(uuid.UUID(str(subject_value)))
        else:
            name = PLATFORM_KEY
        result.setdefault(name, {})[as_date(row["day"])] = tuple(
            float(row[c] or 0.0) for c in columns
        )
    return result


async def refresh_daily_totals(
    *,
    first: date | None = None,
    last: date | None = None,
    team_ids: Sequence[uuid.UUID] | None = None,
    platform: bool = True,
) -> None:
    """Rewrite the daily pre-aggregates from cost_record: the days first..last (all days when
    omitted), of `team_ids` (all teams when None), and the platform's unless `platform` is
    False (moving a component between teams leaves the platform's days as they are).

    Callers run it inside the transaction of the change (the sync's write, a component moved or
    deleted, a catalog import), so a reader never sees records and totals disagree."""
    if team_ids is not None and not team_ids and not platform:
        return
    columns = ", ".join(COLUMNS)
    sums = ", ".join(f"SUM(r.{c})" for c in COLUMNS)
    values: list[object] = [sql_value(d) for d in (first, last) if d is not None]
    marks = iter(placeholders(len(values)))
    days = [
        f"{{day}} {op} {next(marks)}" for d, op in ((first, ">="), (last, "<=")) if d is not None
    ]

    def where(*conditions: str, day: str = "day") -> str:
        chosen = [c.format(day=day) for c in days] + list(conditions)
        return f" WHERE {' AND '.join(chosen)}" if chosen else ""

    db = connection()
    if team_ids is None or team_ids:
        teams: list[str] = []
        team_values = list(values)
        if team_ids:
            team_marks = placeholders(len(team_ids), start=len(values) + 1)
            team_values.extend(sql_value(t) for t in team_ids)
            teams = [f"team_id IN ({', '.join(team_marks)})"]
        await db.execute_query(f"DELETE FROM team_daily_cost{where(*teams)}", team_values)  # noqa: S608
        await db.execute_query(
            f"INSERT INTO team_daily_cost (team_id, day, {columns}) "  # noqa: S608 (placeholders only)
            f"SELECT c.team_id, r.day, {sums} FROM cost_record r "
            "JOIN component c ON c.id = r.component_id"
            f"{where(*(f'c.{t}' for t in teams), day='r.day')} GROUP BY c.team_id, r.day",
            team_values,
        )
        # The team x system cube of the SYSTEM and DOMAIN breakdowns: same teams, same days.
        # The systems those teams' rows were in before and are in after: their system totals
        # follow (all of them when every team is rewritten).
        touched = None if not team_ids else await _cube_systems(team_ids, first, last)
        await db.execute_query(
            f"DELETE FROM team_system_daily_cost{where(*teams)}",  # noqa: S608 (placeholders only)
            team_values,
        )
        await db.execute_query(
            f"INSERT INTO team_system_daily_cost (team_id, system_id, day, {columns}) "  # noqa: S608 (placeholders only)
            f"SELECT c.team_id, c.system_id, r.day, {sums} FROM cost_record r "
            "JOIN component c ON c.id = r.component_id"
            f"{where(*(f'c.{t}' for t in teams), day='r.day')} "
            "GROUP BY c.team_id, c.system_id, r.day",
            team_values,
        )
        if touched is not None and team_ids:
            touched |= await _cube_systems(team_ids, first, last)
        await _refresh_system_totals(first, last, touched)
        await refresh_team_costs(team_ids)
    if platform:
        await db.execute_query(f"DELETE FROM platform_daily_cost{where()}", values)  # noqa: S608
        await db.execute_query(
            f"INSERT INTO platform_daily_cost (day, {columns}) "  # noqa: S608 (placeholders only)
            f"SELECT r.day, {sums} FROM cost_record r{where(day='r.day')} GROUP BY r.day",
            values,
        )


async def _cube_systems(
    team_ids: Sequence[uuid.UUID], first: date | None, last: date | None
) -> set[uuid.UUID | None]:
    """The systems (None: in no system) the cube rows of `team_ids` in first..last are in."""
    p = SqlParams()
    where = [f"team_id IN ({', '.join(p(t) for t in team_ids)})"]
    where += [f"day {op} {p(d)}" for d, op in ((first, ">="), (last, "<=")) if d is not None]
    rows = await connection().execute_query_dict(
        f"SELECT DISTINCT system_id FROM team_system_daily_cost WHERE {' AND '.join(where)}",  # noqa: S608 (placeholders only)
        p.values,
    )
    return {None if r["system_id"] is None else uuid.UUID(str(r["system_id"])) for r in rows}


async def _refresh_system_totals(
    first: date | None, last: date | None, systems: set[uuid.UUID | None] | None
) -> None:
    """Rewrite system_daily_cost from the cube (just rewritten) for first..last (all days when
    omitted), of `systems` (None in it: the cost in no system; all systems when None)."""
    if systems is not None and not systems:
        return
    p = SqlParams()
    where = [f"day {op} {p(d)}" for d, op in ((first, ">="), (last, "<=")) if d is not None]
    if systems is not None:
        ids = sorted(s for s in systems if s is not None)
        chosen = [f"system_id IN ({', '.join(p(i) for i in ids)})"] if ids else []
        if None in systems:
            chosen.append("system_id IS NULL")
        where.append(f"({' OR '.join(chosen)})")
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    columns = ", ".join(COLUMNS)
    sums = ", ".join(f"SUM({c})" for c in COLUMNS)
    db = connection()
    await db.execute_query(f"DELETE FROM system_daily_cost{condition}", p.values)  # noqa: S608 (placeholders only)
    await db.execute_query(
        f"INSERT INTO system_daily_cost (system_id, day, {columns}) "  # noqa: S608 (placeholders only)
        f"SELECT system_id, day, {sums} FROM team_system_daily_cost{condition} "
        "GROUP BY system_id, day",
        p.values,
    )


async def refresh_team_costs(team_ids: Sequence[uuid.UUID] | None = None) -> None:
    """Rewrite team.cost_30d, the sum of each team's own components' cost_30d (what
    `teams(orderBy: COST_30D_*)` sorts by), of `team_ids` (all teams when None), in one
    statement. Run after the components' rollups change (CostService.refresh_rollups) and when
    components move or go (refresh_daily_totals), in the same transaction."""
    if team_ids is not None and not team_ids:
        return
    sql = (
        "UPDATE team SET cost_30d = COALESCE((SELECT SUM(c.cost_30d) FROM component c "
        "WHERE c.team_id = team.id), 0)"
    )
    p = SqlParams()
    if team_ids is not None:
        sql += f" WHERE id IN ({', '.join(p(t) for t in team_ids)})"
    await connection().execute_query(sql, p.values)


async def drop_daily_totals_before(cutoff: date) -> None:
    """Retention: the pre-aggregates of days whose records the sync deleted (and the coverage
    figures of those days, costs/coverage.py)."""
    (mark,) = placeholders(1)
    for table in (
        "team_daily_cost",
        "platform_daily_cost",
        "team_system_daily_cost",
        "system_daily_cost",
        "coverage_daily",
        "unmapped_cost",
    ):
        await connection().execute_query(
            f"DELETE FROM {table} WHERE day < {mark}",  # noqa: S608 (placeholders only)
            [sql_value(cutoff)],
        )


def _column_sums(rows: Sequence[Sequence[float]]) -> tuple[float, ...]:
    return tuple(map(sum, zip(*rows, strict=True))) if rows else ZEROS


def fold(days: dict[date, tuple[float, ...]], chosen: DayRange, granularity: Granularity) -> Series:
    """Days into every bucket of the range, in order, zeros where no day had cost; the days of
    the previous range into its total."""
    spans = buckets(chosen, granularity)
    at: dict[date, int] = {}
    for i, bucket in enumerate(spans):
        for offset in range((bucket.end - bucket.start).days + 1):
            at[bucket.start + timedelta(days=offset)] = i
    rows: list[list[tuple[float, ...]]] = [[] for _ in spans]
    before = chosen.previous()
    previous: list[tuple[float, ...]] = []
    for day, sums in days.items():
        found = at.get(day)
        if found is not None:
            rows[found].append(sums)
        elif before.start <= day <= before.end:
            previous.append(sums)
    points = [Point(bucket, _column_sums(found)) for bucket, found in zip(spans, rows, strict=True)]
    total = _column_sums([p.sums for p in points])
    return Series(chosen, granularity, total, _column_sums(previous), points)


async def series(
    subject: Subject,
    scopes: Mapping[uuid.UUID, Sequence[uuid.UUID]],
    chosen: DayRange,
    granularity: Granularity,
    visible: Scope = EVERYTHING,
    clusters: Clusters = None,
) -> dict[uuid.UUID, Series]:
    """The series of each requested subject, in one statement for all of them.

    `scopes` maps each requested id to the ids its cost is made of (a component: itself; a team:
    itself and, when asked, its sub-teams). PLATFORM takes `{uuid.UUID(int=0): []}`. `visible`
    filters components (teams come filtered by their caller). `clusters`: those clusters only.
    """
    span = chosen.previous()
    found = await scoped_daily_sums(subject, scopes, span.start, chosen.end, visible, clusters)
    return {requested: fold(days, chosen, granularity) for requested, days in found.items()}


async def scoped_daily_sums(
    subject: Subject,
    scopes: Mapping[uuid.UUID, Sequence[uuid.UUID]],
    first: date,
    last: date,
    visible: Scope = EVERYTHING,
    clusters: Clusters = None,
) -> dict[uuid.UUID, dict[date, tuple[float, ...]]]:
    """Each requested subject's column sums per day over first..last, its scope's ids added up
    (a team and its sub-teams), in ONE statement for all of them; days without records absent.
    `scopes`, `visible` and `clusters` are as for `series`."""
    if subject is not Subject.PLATFORM and len(scopes) == 1:
        ((requested, ids),) = scopes.items()
        if len(ids) > 1:
            # One subject made of many (a team with its sub-teams, the teams a principal sees):
            # the database adds their days up.
            found = await daily_sums(
                subject, ids, first, last, visible, summed=True, clusters=clusters
            )
            return {requested: found.get(PLATFORM_KEY, {})}
    wanted = list(dict.fromkeys(i for ids in scopes.values() for i in ids))
    found = await daily_sums(subject, wanted, first, last, visible, clusters=clusters)
    result: dict[uuid.UUID, dict[date, tuple[float, ...]]] = {}
    for requested, ids in scopes.items():
        if subject is Subject.PLATFORM:
            days = found.get(PLATFORM_KEY, {})
        elif len(ids) == 1:
            days = found.get(str(ids[0]), {})
        else:
            merged: dict[date, Sums] = {}
            for i in ids:
                for day, sums in found.get(str(i), {}).items():
                    add(merged.setdefault(day, zeros()), sums)
            days = {day: tuple(sums) for day, sums in merged.items()}
        result[requested] = days
    return result


async def daily_totals(
    subject: Subject,
    scopes: Mapping[uuid.UUID, Sequence[uuid.UUID]],
    first: date,
    last: date,
    visible: Scope = EVERYTHING,
) -> dict[uuid.UUID, dict[date, float]]:
    """Like scoped_daily_sums, the total cost only (budgets and forecasts read this)."""
    found = await scoped_daily_sums(subject, scopes, first, last, visible)
    return {
        requested: {day: sums[TOTAL] for day, sums in days.items()}
        for requested, days in found.items()
    }


class Dimension(enum.Enum):
    """What a breakdown groups by."""

    TEAM = "TEAM"
    COMPONENT = "COMPONENT"
    RESOURCE = "RESOURCE"
    SYSTEM = "SYSTEM"
    DOMAIN = "DOMAIN"
    CLUSTER = "CLUSTER"


# The SYSTEM / DOMAIN group of cost in no system (or in a system of no domain). Not a UUID, so
# it never collides with an id; stable, so a client can key on it.
UNASSIGNED = "unassigned"


# RESOURCE groups: the API's name of each resource column (total_cost is the grand total).
RESOURCES = {
    "cpu_cost": "cpu",
    "ram_cost": "memory",
    "pv_cost": "pv",
    "network_cost": "network",
    "gpu_cost": "gpu",
    "load_balancer_cost": "loadBalancer",
    "shared_cost": "shared",
    "external_cost": "external",
}

RESOURCE_TOTAL = "total"


Totals = dict[str, tuple[float, float]]


async def group_totals(
    dimension: Dimension,
    team_ids: Sequence[uuid.UUID] | None,
    chosen: DayRange,
    clusters: Clusters = None,
) -> Totals:
    """Per group key (canonical UUID text, UNASSIGNED, or a RESOURCES name): (its total over
    `chosen`, its total over `chosen.previous()`), in ONE statement, over every team (None) or
    `team_ids`.

    Teams read the team daily totals, components their records, systems and domains the system
    daily totals (the platform) or the team x system cube (teams), resources the team or
    platform daily totals (with RESOURCE_TOTAL, the grand total); clusters (CLUSTER) and any
    cluster filter read cost_record; money is summed in SQL."""
    if team_ids is None:
        return (await _group_rows(dimension, None, chosen, clusters)).get(None, {})
    return merge_totals((await team_group_totals(dimension, team_ids, chosen, clusters)).values())


async def team_group_totals(
    dimension: Dimension,
    team_ids: Sequence[uuid.UUID],
    chosen: DayRange,
    clusters: Clusters = None,
) -> dict[str, Totals]:
    """group_totals of each team of `team_ids` on its own (its components only; a caller sums a
    subtree with merge_totals), in ONE statement for all of them: a page of teams' breakdowns."""
    if not team_ids:
        return {}
    found = await _group_rows(dimension, team_ids, chosen, clusters)
    return {str(owner): totals for owner, totals in found.items()}


def merge_totals(parts: Iterable[Totals]) -> Totals:
    merged: dict[str, list[float]] = {}
    for part in parts:
        for key, (current, previous) in part.items():
            into = merged.setdefault(key, [0.0, 0.0])
            into[0] += current
            into[1] += previous
    return {key: (current, previous) for key, (current, previous) in merged.items()}


def _group_source(
    dimension: Dimension, scoped: bool, filtered: bool = False
) -> tuple[str | None, str, str, list[str]]:
    """(group key, source as `t`, the owning team's column, the money columns summed).
    `filtered` (a cluster filter) and CLUSTER read cost_record: the pre-aggregates hold the
    all-cluster sums only."""
    total = ["total_cost"]
    if filtered or dimension is Dimension.CLUSTER:
        return _cluster_group_source(dimension, scoped)
    if dimension is Dimension.TEAM:
        return "t.team_id", "team_daily_cost t", "t.team_id", total
    if dimension is Dimension.COMPONENT:
        join = " JOIN component c ON c.id = t.component_id" if scoped else ""
        return "t.component_id", f"cost_record t{join}", "c.team_id", total
    # Systems and domains: the platform's read the system totals (one row per system and
    # day); a team's (or a scoped principal's) the cube, whose rows carry the owning team.
    cube = "team_system_daily_cost" if scoped else "system_daily_cost"
    if dimension is Dimension.SYSTEM:
        return "t.system_id", f"{cube} t", "t.team_id", total
    if dimension is Dimension.DOMAIN:
        source = f"{cube} t LEFT JOIN system s ON s.id = t.system_id"
        return "s.domain_id", source, "t.team_id", total
    source = "team_daily_cost t" if scoped else "platform_daily_cost t"
    return None, source, "t.team_id", [*RESOURCES, "total_cost"]


def _cluster_group_source(
    dimension: Dimension, scoped: bool
) -> tuple[str | None, str, str, list[str]]:
    """_group_source from cost_record: the component joined for its team (and system)."""
    total = ["total_cost"]
    keys = {
        Dimension.TEAM: "c.team_id",
        Dimension.COMPONENT: "t.component_id",
        Dimension.SYSTEM: "c.system_id",
        Dimension.DOMAIN: "s.domain_id",
        Dimension.CLUSTER: "t.cluster",
        Dimension.RESOURCE: None,
    }
    key = keys[dimension]
    joined = scoped or dimension in (Dimension.TEAM, Dimension.SYSTEM, Dimension.DOMAIN)
    source = _RECORDS if joined else "cost_record t"
    if dimension is Dimension.DOMAIN:
        source += " LEFT JOIN system s ON s.id = c.system_id"
    columns = [*RESOURCES, "total_cost"] if key is None else total
    return key, source, "c.team_id", columns


async def _group_rows(
    dimension: Dimension,
    team_ids: Sequence[uuid.UUID] | None,
    chosen: DayRange,
    clusters: Clusters = None,
) -> dict[str | None, Totals]:
    """Per owning team (canonical UUID text; None when `team_ids` is None, the platform), per
    group key: (current, previous) totals, in one statement."""
    span = chosen.previous()
    mark = SqlParams()
    filtered = clusters is not None
    key, source, owner, columns = _group_source(dimension, team_ids is not None, filtered)
    picked = [f"{key} AS k"] if key else []
    if team_ids is not None:
        picked.append(f"{owner} AS o")
    # The flag is computed once per row, so the range's first day is one parameter on both
    # dialects (SQLite's `?` cannot be repeated by number).
    inner = (
        f"SELECT {''.join(c + ', ' for c in picked)}"  # noqa: S608 (placeholders only)
        f"{', '.join(f't.{c} AS {c}' for c in columns)}, "
        f"CASE WHEN t.day >= {mark.day(chosen.start)} THEN 1 ELSE 0 END AS cur FROM {source} "
        f"WHERE t.day >= {mark.day(span.start)} AND t.day <= {mark.day(chosen.end)}"
    )
    if team_ids is not None:
        inner += f" AND {owner} IN ({', '.join(mark(t) for t in team_ids)})"
    if clusters is not None:
        inner += f" AND t.cluster IN ({', '.join(mark(c) for c in clusters)})"
    sums = ", ".join(
        f"SUM(CASE WHEN cur = 1 THEN {c} ELSE 0 END) AS {c}, "
        f"SUM(CASE WHEN cur = 0 THEN {c} ELSE 0 END) AS prev_{c}"
        for c in columns
    )
    groups = [g for g, used in (("o", team_ids is not None), ("k", key is not None)) if used]
    sql = f"SELECT {''.join(g + ', ' for g in groups)}{sums} FROM ({inner}) t"  # noqa: S608 (placeholders only)
    if groups:
        sql += f" GROUP BY {', '.join(groups)}"
    found: dict[str | None, Totals] = {}
    owners: dict[object, str] = {}  # driver value -> canonical UUID text, parsed once
    for row in await connection().execute_query_dict(sql, mark.values):
        if team_ids is None:
            team = None
        else:
            team = owners.get(row["o"])
            if team is None:
                team = owners[row["o"]] = str(uuid.UUID(str(row["o"])))
        totals = found.setdefault(team, {})
        if key is None:
            for c, name in {**RESOURCES, "total_cost": RESOURCE_TOTAL}.items():
                totals[name] = (float(row[c] or 0.0), float(row[f"prev_{c}"] or 0.0))
        else:
            if dimension is Dimension.CLUSTER:
                group = str(row["k"])  # the source's name
            else:
                group = UNASSIGNED if row["k"] is None else str(uuid.UUID(str(row["k"])))
            totals[group] = (float(row["total_cost"] or 0.0), float(row["prev_total_cost"] or 0.0))
    return found
