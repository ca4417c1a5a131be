"""Coverage: how much of the cluster's cost the catalog explains, and what it does not.

OpenCost reports all of a cluster's cost in every aggregate's view (label:app, namespace, ...):
keys that a component of that aggregate matches (mapped), keys none matches (unmapped: labels to
fix or components to add), `__unallocated__` (workloads without the aggregate's label),
`__idle__` (capacity no workload used; asked for with includeIdle=true and never shared into the
keys) and `__unmounted__` (volumes no pod mounts). The sync keeps, per aggregate and day, the sum
of each (coverage_daily) and the unmapped keys themselves (unmapped_cost), in the transaction of
that aggregate's cost records (`rows`, `replace`).

No double counting with several aggregates: the same cluster cost is reported once per
aggregate, so the figures of a day are read from ONE view, the aggregate whose components explain
the most that day (largest `mapped`; ties by name). With one aggregate that is simply it. Then:

- clusterCost: everything OpenCost reported in that view (mapped + unmapped + unallocated + idle
  + unmounted), exactly; days without any coverage row (synced before coverage existed) count
  their catalog cost only, since nothing more is known of them (`reported_days` says how many
  days had a view);
- catalogCost: the platform's cost (every component, whatever its aggregate: platformCost.total);
- unmapped, unallocated, idle and unmounted: that view's. With one aggregate,
  catalog + unmapped + unallocated + idle + unmounted = cluster exactly. Components of other
  aggregates are part of the catalog, and OpenCost reports their cost in the view's unmapped keys
  or `__unallocated__` (a namespace component's pods have no app label): the parts then overlap
  the catalog by that much, while the cluster total and the ratio stay exact;
- ratio: catalogCost / clusterCost (null when that is 0).

unmappedKeys lists the view's unmapped keys over the range, largest first. Reads are indexed
(by day) and one statement each; the figures read coverage_daily only (one row per aggregate and
day), the key list the view's days of unmapped_cost. Money is summed in SQL, rounded by money()
in the service.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from operator import attrgetter
from typing import Any

from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.models import COVERAGE_KEY_MAX
from finops_gql.db.setup import SqlParams, connection, placeholders, sql_value
from finops_gql.opencost.parse import Allocation

# OpenCost's synthetic keys (parse.SYNTHETIC_KEYS) and the coverage_daily column of each.
SYNTHETIC_COLUMNS = {
    "__unallocated__": "unallocated_cost",
    "__idle__": "idle_cost",
    "__unmounted__": "unmounted_cost",
}
# coverage_daily's money, in this order: what the catalog explains, then the rest by cause.
DAILY_COLUMNS = ("mapped_cost", "unmapped_cost", *SYNTHETIC_COLUMNS.values())
PARTS = DAILY_COLUMNS[1:]
BATCH_SIZE = 2000  # rows per executemany call, as the sync's records
DAILY_ROW = ["source", "aggregate", "day", *DAILY_COLUMNS]
UNMAPPED_ROW = ["source", "aggregate", "key", "day", *COLUMNS]

# An allocation's money in explorer.COLUMNS order (cost_record's and unmapped_cost's): the
# Allocation fields have the columns' names. One C call: the sync reads 300,000 of these.
columns: Callable[[Allocation], tuple[float, ...]] = attrgetter(*COLUMNS)


@dataclass
class Rows:
    """One aggregate's coverage rows (see `rows`), as the driver takes them."""

    daily: list[list[Any]]
    unmapped: list[list[Any]]


def rows(
    source: str,
    aggregate: str,
    steps: Iterable[dict[str, Allocation]],
    span: tuple[date, date],
    mapped: Container[str],
) -> Rows:
    """Coverage rows of one aggregate's answer over its days `span` (other days ignored, like
    the cost records): per day, one coverage_daily row (written even when every part is 0, so
    the day has a view) and one unmapped_cost row per unmapped key. A synthetic key is never
    mapped, even if a component were named like one. A repeated step replaces the earlier one's
    keys, as for the records; keys past COVERAGE_KEY_MAX are cut, and keys cut alike summed.
    (The sync reduces its streamed answer as it comes, sync.Answer, and calls `add_day`.)"""
    first, last = span
    days: dict[date, dict[str, Allocation]] = {}
    for step in steps:
        for key, allocation in step.items():
            day = allocation.start.date()
            if first <= day <= last:
                days.setdefault(day, {})[key] = allocation
    result = Rows([], [])
    for day, keyed in days.items():
        matched = (
            a.total_cost
            for key, a in keyed.items()
            if key not in SYNTHETIC_COLUMNS and key in mapped
        )
        others = {
            key: a for key, a in keyed.items() if key in SYNTHETIC_COLUMNS or key not in mapped
        }
        add_day(result, source, aggregate, day, matched, others)
    return result


def add_day(
    result: Rows,
    source: str,
    aggregate: str,
    day: date,
    matched: Iterable[float],
    others: dict[str, Allocation],
) -> None:
    """One day's rows into `result`: `matched`, the totals of the keys a component matched, in
    the order they came; `others`, every other key (synthetic or unmapped) with its allocation."""
    day_value = sql_value(day)
    mapped_cost = 0.0
    for total in matched:  # in order, one by one: sums equal to the last bit, however computed
        mapped_cost += total
    parts = dict.fromkeys(PARTS, 0.0)
    unmapped: dict[str, list[float]] = {}
    for key, allocation in others.items():
        synthetic = SYNTHETIC_COLUMNS.get(key)
        if synthetic is not None:
            parts[synthetic] += allocation.total_cost
            continue
        parts["unmapped_cost"] += allocation.total_cost
        money = unmapped.get(key[:COVERAGE_KEY_MAX])
        if money is None:
            unmapped[key[:COVERAGE_KEY_MAX]] = list(columns(allocation))
        else:
            for i, value in enumerate(columns(allocation)):
                money[i] += value
    result.daily.append([source, aggregate, day_value, mapped_cost, *parts.values()])
    result.unmapped.extend(
        [source, aggregate, key, day_value, *money] for key, money in unmapped.items()
    )


def _insert(table: str, names: Sequence[str]) -> str:
    marks = ", ".join(placeholders(len(names)))
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})"  # noqa: S608 (constants)


async def replace(spans: dict[tuple[str, str], tuple[date, date]], new: Rows) -> None:
    """Replace each (source, aggregate)'s days `spans` with `new`, in the caller's transaction
    (the sync's write), so a re-sync never double counts and a failed pair keeps what it had."""
    db = connection()
    marks = placeholders(4)
    for (source, aggregate), (first, last) in spans.items():
        for table in ("coverage_daily", "unmapped_cost"):
            await db.execute_query(
                f"DELETE FROM {table} WHERE source = {marks[0]} AND aggregate = {marks[1]} "  # noqa: S608 (placeholders only)
                f"AND day >= {marks[2]} AND day <= {marks[3]}",
                [source, aggregate, sql_value(first), sql_value(last)],
            )
    for table, names, found in (
        ("coverage_daily", DAILY_ROW, new.daily),
        ("unmapped_cost", UNMAPPED_ROW, new.unmapped),
    ):
        for i in range(0, len(found), BATCH_SIZE):
            await db.execute_many(_insert(table, names), found[i : i + BATCH_SIZE])


@dataclass(frozen=True, slots=True)
class CoverageSums:
    """Unrounded sums over a range (see the module's docstring for what each means)."""

    catalog: float
    cluster: float
    unmapped: float
    unallocated: float
    idle: float
    unmounted: float
    reported_days: int


def _views(mark: SqlParams, first: date, last: date) -> str:
    """CTE `views`: the coverage_daily row read for each source and day over first..last, the
    aggregate whose components explain the most (ties by name)."""
    return (
        "WITH ranked AS (SELECT d.*, ROW_NUMBER() OVER (PARTITION BY source, day "  # noqa: S608 (placeholders only)
        "ORDER BY mapped_cost DESC, aggregate) AS rn FROM coverage_daily d "
        f"WHERE day >= {mark.day(first)} AND day <= {mark.day(last)}), "
        "views AS (SELECT * FROM ranked WHERE rn = 1) "
    )


async def sums(first: date, last: date) -> CoverageSums:
    """The coverage figures over first..last, in ONE statement."""
    mark = SqlParams()
    views = _views(mark, first, last)
    catalog = (
        f"SELECT SUM(total_cost) FROM platform_daily_cost WHERE day >= {mark.day(first)} "  # noqa: S608 (placeholders only)
        f"AND day <= {mark.day(last)}"
    )
    unreported = (
        "SELECT SUM(p.total_cost) FROM platform_daily_cost p "  # noqa: S608 (placeholders only)
        f"WHERE p.day >= {mark.day(first)} AND p.day <= {mark.day(last)} "
        "AND NOT EXISTS (SELECT 1 FROM coverage_daily c WHERE c.day = p.day)"
    )
    sql = (
        f"{views}SELECT ({catalog}) AS catalog, ({unreported}) AS unreported, "  # noqa: S608 (placeholders only)
        + ", ".join(f"SUM({c}) AS {c}" for c in DAILY_COLUMNS)
        + ", COUNT(DISTINCT day) AS days FROM views"
    )
    found = await connection().execute_query_dict(sql, mark.values)
    row = found[0] if found else {}

    def number(name: str) -> float:
        return float(row.get(name) or 0.0)

    return CoverageSums(
        catalog=number("catalog"),
        cluster=sum(number(c) for c in DAILY_COLUMNS) + number("unreported"),
        unmapped=number("unmapped_cost"),
        unallocated=number("unallocated_cost"),
        idle=number("idle_cost"),
        unmounted=number("unmounted_cost"),
        reported_days=int(row.get("days") or 0),
    )


async def unmapped_keys(first: date, last: date, limit: int) -> list[tuple[str, str, float]]:
    """The `limit` largest unmapped keys of each day's view over first..last, as (aggregate, key,
    unrounded total), largest first (ties by aggregate and key), in ONE statement."""
    mark = SqlParams()
    views = _views(mark, first, last)
    sql = (
        f"{views}SELECT u.aggregate AS aggregate, u.key AS key, SUM(u.total_cost) AS total "  # noqa: S608 (placeholders only)
        "FROM views v JOIN unmapped_cost u ON u.source = v.source AND u.aggregate = v.aggregate "
        f"AND u.day = v.day GROUP BY u.aggregate, u.key ORDER BY total DESC, u.aggregate, u.key "
        f"LIMIT {mark(limit)}"
    )
    return [
        (row["aggregate"], row["key"], float(row["total"] or 0.0))
        for row in await connection().execute_query_dict(sql, mark.values)
    ]
