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
from collections.abc import Mapping, Sequence
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
    """What a series is of: components by id, teams by id (their components), or everything."""

    COMPONENT = "component"
    TEAM = "team"
    PLATFORM = "platform"


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
) -> dict[str, dict[date, tuple[float, ...]]]:
    """Per subject key (canonical UUID text, or PLATFORM_KEY) and day, each column's sum over
    first..last, in ONE statement. Days without records are absent (the caller fills zeros).
    `summed`: the ids' days added up in SQL, under PLATFORM_KEY (one subject made of many).
    `columns` (a subset of COLUMNS, in the tuples' order) trims what a bulk reader needs.

    Components read cost_record (one row per day already), those `scope` sees; teams and the
    platform read the daily pre-aggregates, which hold exactly these sums (refresh_daily_totals
    keeps them true): their callers pass only visible teams (access.py)."""
    if not set(columns) <= set(COLUMNS):
        raise ValueError(f"not cost columns: {sorted(set(columns) - set(COLUMNS))}")
    p = SqlParams()
    where = [f"day >= {p(first)}", f"day <= {p(last)}"]
    selected = ", ".join(columns)
    if subject is Subject.PLATFORM:
        key, table = None, "platform_daily_cost"
    else:
        if not ids:
            return {}
        key = "component_id" if subject is Subject.COMPONENT else "team_id"
        table = "cost_record" if subject is Subject.COMPONENT else "team_daily_cost"
        where.append(f"{key} IN ({', '.join(p(i) for i in ids)})")
        if subject is Subject.COMPONENT:
            where.extend(scope.components_sql(key, p))
    group = ""
    if summed and key:
        key, group = None, " GROUP BY day"
        selected = ", ".join(f"SUM({c}) AS {c}" for c in columns)
    select = f"{key} AS subject, day, {selected}" if key else f"day, {selected}"
    sql = f"SELECT {select} FROM {table} WHERE {' AND '.join(where)}{group}"  # noqa: S608 (placeholders only)
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
    if platform:
        await db.execute_query(f"DELETE FROM platform_daily_cost{where()}", values)  # noqa: S608
        await db.execute_query(
            f"INSERT INTO platform_daily_cost (day, {columns}) "  # noqa: S608 (placeholders only)
            f"SELECT r.day, {sums} FROM cost_record r{where(day='r.day')} GROUP BY r.day",
            values,
        )


async def drop_daily_totals_before(cutoff: date) -> None:
    """Retention: the pre-aggregates of days whose records the sync deleted (and the coverage
    figures of those days, costs/coverage.py)."""
    (mark,) = placeholders(1)
    for table in ("team_daily_cost", "platform_daily_cost", "coverage_daily", "unmapped_cost"):
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
) -> dict[uuid.UUID, Series]:
    """The series of each requested subject, in one statement for all of them.

    `scopes` maps each requested id to the ids its cost is made of (a component: itself; a team:
    itself and, when asked, its sub-teams). PLATFORM takes `{uuid.UUID(int=0): []}`. `visible`
    filters components (teams come filtered by their caller).
    """
    span = chosen.previous()
    found = await scoped_daily_sums(subject, scopes, span.start, chosen.end, visible)
    return {requested: fold(days, chosen, granularity) for requested, days in found.items()}


async def scoped_daily_sums(
    subject: Subject,
    scopes: Mapping[uuid.UUID, Sequence[uuid.UUID]],
    first: date,
    last: date,
    visible: Scope = EVERYTHING,
) -> dict[uuid.UUID, dict[date, tuple[float, ...]]]:
    """Each requested subject's column sums per day over first..last, its scope's ids added up
    (a team and its sub-teams), in ONE statement for all of them; days without records absent.
    `scopes` and `visible` are as for `series`."""
    if subject is not Subject.PLATFORM and len(scopes) == 1:
        ((requested, ids),) = scopes.items()
        if len(ids) > 1:
            # One subject made of many (a team with its sub-teams, the teams a principal sees):
            # the database adds their days up.
            found = await daily_sums(subject, ids, first, last, visible, summed=True)
            return {requested: found.get(PLATFORM_KEY, {})}
    wanted = list(dict.fromkeys(i for ids in scopes.values() for i in ids))
    found = await daily_sums(subject, wanted, first, last, visible)
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
    """What a breakdown groups by (SYSTEM and DOMAIN come with the catalog roll-ups)."""

    TEAM = "TEAM"
    COMPONENT = "COMPONENT"
    RESOURCE = "RESOURCE"


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


async def group_totals(
    dimension: Dimension, team_ids: Sequence[uuid.UUID] | None, chosen: DayRange
) -> dict[str, tuple[float, float]]:
    """Per group key (canonical UUID text, or a RESOURCES name): (its total over `chosen`, its
    total over `chosen.previous()`), in ONE statement, over every team (None) or `team_ids`.

    Teams read the team daily totals, components their records, resources the team or
    platform daily totals (with RESOURCE_TOTAL, the grand total); money is summed in SQL."""
    if team_ids is not None and not team_ids:
        # No team (a principal that sees none): no group, or every resource at zero.
        if dimension is Dimension.RESOURCE:
            return dict.fromkeys([*RESOURCES.values(), RESOURCE_TOTAL], (0.0, 0.0))
        return {}
    span = chosen.previous()
    values: list[object] = []

    def mark(value: object) -> str:
        values.append(sql_value(value))
        return placeholders(1, start=len(values))[0]

    if dimension is Dimension.TEAM:
        key, source, owner = "team_id", "team_daily_cost", "team_id"
        columns = ["total_cost"]
    elif dimension is Dimension.COMPONENT:
        key, owner = "component_id", "c.team_id"
        source = "cost_record r" + (
            "" if team_ids is None else " JOIN component c ON c.id = r.component_id"
        )
        columns = ["total_cost"]
    else:
        key, owner = None, "team_id"
        source = "platform_daily_cost" if team_ids is None else "team_daily_cost"
        columns = [*RESOURCES, "total_cost"]
    # The flag is computed once per row, so the range's first day is one parameter on both
    # dialects (SQLite's `?` cannot be repeated by number).
    inner = (
        f"SELECT {key + ', ' if key else ''}{', '.join(columns)}, "  # noqa: S608 (placeholders only)
        f"CASE WHEN day >= {mark(chosen.start)} THEN 1 ELSE 0 END AS cur FROM {source} "
        f"WHERE day >= {mark(span.start)} AND day <= {mark(chosen.end)}"
    )
    if team_ids is not None:
        inner += f" AND {owner} IN ({', '.join(mark(t) for t in team_ids)})"
    sums = ", ".join(
        f"SUM(CASE WHEN cur = 1 THEN {c} ELSE 0 END) AS {c}, "
        f"SUM(CASE WHEN cur = 0 THEN {c} ELSE 0 END) AS prev_{c}"
        for c in columns
    )
    sql = f"SELECT {key + ' AS subject, ' if key else ''}{sums} FROM ({inner}) t"  # noqa: S608 (placeholders only)
    if key:
        sql += f" GROUP BY {key}"
    rows = await connection().execute_query_dict(sql, values)
    if key is None:
        row = rows[0] if rows else {}
        return {
            name: (float(row.get(c) or 0.0), float(row.get(f"prev_{c}") or 0.0))
            for c, name in {**RESOURCES, "total_cost": RESOURCE_TOTAL}.items()
        }
    return {
        str(uuid.UUID(str(row["subject"]))): (
            float(row["total_cost"] or 0.0),
            float(row["prev_total_cost"] or 0.0),
        )
        for row in rows
    }
