"""Coverage: how much of the cluster's cost the catalog explains, and what it does not.

OpenCost reports all of a cluster's cost in every aggregate's view (label:app, namespace, ...):
keys that a component of that aggregate matches (mapped), keys none matches (unmapped: labels to
fix or components to add), `__unallocated__` (workloads without the aggregate's label),
`__idle__` (capacity no workload used; asked for with includeIdle=true and never shared into the
keys) and `__unmounted__` (volumes no pod mounts). The sync keeps each aggregate's non-catalog
part per day in coverage_cost, plus one `mapped` row with the sum of its matched keys, in the
transaction of that aggregate's cost records (`rows`, `replace`).

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
(coverage_cost by day) and one statement each; money is summed in SQL, rounded by money() in the
service.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from finops_gql.costs.explorer import COLUMNS, add, zeros
from finops_gql.db.models import COVERAGE_KEY_MAX
from finops_gql.db.setup import connection, placeholders, sql_value
from finops_gql.opencost.parse import Allocation

MAPPED = "mapped"
UNMAPPED = "unmapped"
# OpenCost's synthetic keys (parse.SYNTHETIC_KEYS) and the kind each is kept as.
SYNTHETIC_KINDS = {
    "__unallocated__": "unallocated",
    "__idle__": "idle",
    "__unmounted__": "unmounted",
}
# The parts of a cluster's cost beside the catalog, in CoverageSums order.
PARTS = (UNMAPPED, *SYNTHETIC_KINDS.values())
BATCH_SIZE = 2000  # rows per executemany call, as the sync's records
ROW_COLUMNS = ["source", "aggregate", "kind", "key", "day", *COLUMNS]
_INSERT = f"INSERT INTO coverage_cost ({', '.join(ROW_COLUMNS)}) VALUES ({{marks}})"  # noqa: S608 (constants)


def columns(a: Allocation) -> tuple[float, ...]:
    """An allocation's money in explorer.COLUMNS order (cost_record's and coverage_cost's)."""
    return (
        a.cpu_cost,
        a.ram_cost,
        a.pv_cost,
        a.network_cost,
        a.gpu_cost,
        a.load_balancer_cost,
        a.shared_cost,
        a.external_cost,
        a.total_cost,
    )


def kind_of(key: str, mapped: Container[str]) -> str:
    """How a (normalized) key of an aggregate's answer counts. A synthetic key is never mapped,
    even if a component were named like one."""
    return SYNTHETIC_KINDS.get(key) or (MAPPED if key in mapped else UNMAPPED)


def rows(
    source: str,
    aggregate: str,
    steps: Iterable[dict[str, Allocation]],
    span: tuple[date, date],
    mapped: Container[str],
) -> list[list[Any]]:
    """coverage_cost rows of one aggregate's answer over its days `span` (other days ignored, like
    the cost records): per day, one row per unmapped or synthetic key and one `mapped` row (key
    "") with the sum of the matched keys. A repeated step replaces the earlier one, as for the
    records; keys past COVERAGE_KEY_MAX are cut, and keys cut alike are summed."""
    first, last = span
    days: dict[date, dict[str, Allocation]] = {}
    for step in steps:
        for key, allocation in step.items():
            day = allocation.start.date()
            if first <= day <= last:
                days.setdefault(day, {})[key] = allocation
    sums: dict[tuple[date, str, str], list[float]] = {}
    for day, keyed in days.items():
        for key, allocation in keyed.items():
            kind = kind_of(key, mapped)
            row_key = "" if kind == MAPPED else key[:COVERAGE_KEY_MAX]
            add(sums.setdefault((day, kind, row_key), zeros()), columns(allocation))
    return [
        [source, aggregate, kind, key, sql_value(day), *money]
        for (day, kind, key), money in sums.items()
    ]


async def replace(
    source: str, spans: dict[str, tuple[date, date]], new_rows: Sequence[list[Any]]
) -> None:
    """Replace each aggregate's days `spans` with `new_rows`, in the caller's transaction (the
    sync's write), so a re-sync never double counts and a failed aggregate keeps what it had."""
    db = connection()
    marks = placeholders(4)
    for aggregate, (first, last) in spans.items():
        await db.execute_query(
            f"DELETE FROM coverage_cost WHERE source = {marks[0]} AND aggregate = {marks[1]} "  # noqa: S608 (placeholders only)
            f"AND day >= {marks[2]} AND day <= {marks[3]}",
            [source, aggregate, sql_value(first), sql_value(last)],
        )
    insert = _INSERT.format(marks=", ".join(placeholders(len(ROW_COLUMNS))))
    for i in range(0, len(new_rows), BATCH_SIZE):
        await db.execute_many(insert, list(new_rows[i : i + BATCH_SIZE]))


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


class _Params:
    """Positional parameters in the current dialect, one marker per use (SQLite's `?` cannot be
    repeated by number)."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        self.values.append(value)
        return placeholders(1, start=len(self.values))[0]


def _views(mark: _Params, first: date, last: date, parts: bool) -> str:
    """CTEs `per` (each source, day and aggregate's sums by kind) and `views` (the aggregate read
    for each source and day: the largest mapped cost, ties by name), over first..last."""
    by_kind = [MAPPED, *(PARTS if parts else ())]
    sums = ", ".join(
        f"SUM(CASE WHEN kind = {mark(kind)} THEN total_cost ELSE 0 END) AS {kind}"
        for kind in by_kind
    )
    return (
        f"WITH per AS (SELECT source, day, aggregate, {sums}, SUM(total_cost) AS reported "  # noqa: S608 (placeholders only)
        f"FROM coverage_cost WHERE day >= {mark(sql_value(first))} AND day <= "
        f"{mark(sql_value(last))} GROUP BY source, day, aggregate), "
        "views AS (SELECT per.*, ROW_NUMBER() OVER (PARTITION BY source, day "
        "ORDER BY mapped DESC, aggregate) AS rn FROM per) "
    )


async def sums(first: date, last: date) -> CoverageSums:
    """The coverage figures over first..last, in ONE statement."""
    mark = _Params()
    views = _views(mark, first, last, parts=True)
    catalog = (
        f"SELECT SUM(total_cost) FROM platform_daily_cost WHERE day >= {mark(sql_value(first))} "  # noqa: S608 (placeholders only)
        f"AND day <= {mark(sql_value(last))}"
    )
    unreported = (
        "SELECT SUM(p.total_cost) FROM platform_daily_cost p "  # noqa: S608 (placeholders only)
        f"WHERE p.day >= {mark(sql_value(first))} AND p.day <= {mark(sql_value(last))} "
        "AND NOT EXISTS (SELECT 1 FROM coverage_cost c WHERE c.day = p.day)"
    )
    parts = ", ".join(f"SUM({part}) AS {part}" for part in PARTS)
    sql = (
        f"{views}SELECT ({catalog}) AS catalog, ({unreported}) AS unreported, {parts}, "  # noqa: S608 (placeholders only)
        "SUM(reported) AS reported, COUNT(DISTINCT day) AS days FROM views WHERE rn = 1"
    )
    rows_found = await connection().execute_query_dict(sql, mark.values)
    row = rows_found[0] if rows_found else {}

    def number(name: str) -> float:
        return float(row.get(name) or 0.0)

    return CoverageSums(
        catalog=number("catalog"),
        cluster=number("reported") + number("unreported"),
        unmapped=number(UNMAPPED),
        unallocated=number("unallocated"),
        idle=number("idle"),
        unmounted=number("unmounted"),
        reported_days=int(row.get("days") or 0),
    )


async def unmapped_keys(first: date, last: date, limit: int) -> list[tuple[str, str, float]]:
    """The `limit` largest unmapped keys of each day's view over first..last, as (aggregate, key,
    unrounded total), largest first (ties by aggregate and key), in ONE statement."""
    mark = _Params()
    views = _views(mark, first, last, parts=False)
    sql = (
        f"{views}SELECT c.aggregate AS aggregate, c.key AS key, SUM(c.total_cost) AS total "  # noqa: S608 (placeholders only)
        "FROM coverage_cost c JOIN views v ON v.source = c.source AND v.day = c.day "
        f"AND v.aggregate = c.aggregate AND v.rn = 1 WHERE c.kind = {mark(UNMAPPED)} "
        f"AND c.day >= {mark(sql_value(first))} AND c.day <= {mark(sql_value(last))} "
        f"GROUP BY c.aggregate, c.key ORDER BY total DESC, c.aggregate, c.key LIMIT {mark(limit)}"
    )
    return [
        (row["aggregate"], row["key"], float(row["total"] or 0.0))
        for row in await connection().execute_query_dict(sql, mark.values)
    ]
