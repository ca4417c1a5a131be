"""Showback export: one CSV row per component and month, streamed in keyset batches.

The one function behind `GET /api/v1/cost/export.csv` and `finops-gql export`. Its input is
checked before the first byte is produced (a bad month is InvalidInput, an unknown team
NotFound), so an adapter can still answer an error; then the rows come out in batches of
EXPORT_BATCH components, one statement each, so neither the database answer nor the CSV text is
ever held whole in memory.

Rows: components ordered by name then id, each with the sums of its daily records over the
month (every resource column and the total, SQL sums printed with repr: the precision stored,
no rounding). A component with no record in the month has no row: an export of a month before
it existed, or of a month with no data at all, is the header alone. The team is the component's
team NOW (the catalog keeps no history), its slug; the system the same, empty when none. A team
filter covers the team and its sub-teams (team_subtrees), like every team figure.

Scope (access.py): the REST route passes the caller's, so a scoped principal's export holds only
its visible components (a team it cannot see is NotFound, like a missing one); the CLI exports
everything.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import date, timedelta
from typing import Any

from finops_gql.access import EVERYTHING, Scope
from finops_gql.catalog import tree
from finops_gql.costs.explorer import COLUMNS
from finops_gql.db.setup import SqlParams, connection
from finops_gql.errors import InvalidInput, NotFound
from finops_gql.validation import shown

EXPORT_BATCH = 500
MONTH_RE = re.compile(r"([0-9]{4})-([0-9]{2})")
# cost_record's money columns under the export's names (ram_cost is memory, as in the API).
MONEY_HEADER = ["memory_cost" if c == "ram_cost" else c for c in COLUMNS]
HEADER = ["month", "component_id", "component", "team", "system", *MONEY_HEADER, "currency"]


def parse_month(text: str | None, today: date) -> tuple[date, date]:
    """`YYYY-MM` as its first and last day; a month that has not begun is refused (it cannot
    have cost), the current one runs to its last complete day like every range."""
    if text is None or text == "":
        raise InvalidInput("month is required, as YYYY-MM (e.g. 2026-01)")
    found = MONTH_RE.fullmatch(text)
    if found is None or not 1 <= int(found[2]) <= 12 or int(found[1]) < 1:
        raise InvalidInput(f"month {shown(text)} is not a month: give YYYY-MM (e.g. 2026-01)")
    first = date(int(found[1]), int(found[2]), 1)
    if first > today - timedelta(days=1):
        raise InvalidInput(
            f"month {text} has no complete day yet (the last complete UTC day is "
            f"{today - timedelta(days=1)})"
        )
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, min(following - timedelta(days=1), today - timedelta(days=1))


async def showback_csv(
    month: str | None,
    team_id: uuid.UUID | None,
    today: date,
    batch: int | None = None,
    scope: Scope = EVERYTHING,
) -> AsyncIterator[str]:
    """Check the input, then return the CSV text as an async iterator of chunks (RFC 4180:
    CRLF line ends, fields quoted when they hold a comma, a quote or a line break): the header,
    then one chunk per batch of components."""
    first, last = parse_month(month, today)
    teams: list[uuid.UUID] | None = None
    if team_id is not None:
        teams = (await tree.team_subtrees([team_id]))[team_id]
        if not teams or not scope.can_see_team(team_id):
            raise NotFound("team", team_id)
    return _chunks(first.strftime("%Y-%m"), first, last, teams, batch or EXPORT_BATCH, scope)


def _csv(rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue()


async def _chunks(
    label: str,
    first: date,
    last: date,
    teams: list[uuid.UUID] | None,
    batch: int,
    scope: Scope,
) -> AsyncIterator[str]:
    yield _csv([HEADER])
    after: tuple[str, uuid.UUID] | None = None
    while True:
        rows = await _batch(first, last, teams, after, batch, scope)
        if not rows:
            return
        out = [
            [
                label,
                str(uuid.UUID(str(row["id"]))),
                row["name"],
                row["team"],
                row["system"] or "",
                *(repr(float(row[c])) for c in COLUMNS),
                row["currency"],
            ]
            for row in rows
            if row["days"]  # scanned, but no record in the month: no row
        ]
        if out:
            yield _csv(out)
        if len(rows) < batch:
            return
        after = (rows[-1]["name"], uuid.UUID(str(rows[-1]["id"])))


async def _batch(
    first: date,
    last: date,
    teams: list[uuid.UUID] | None,
    after: tuple[str, uuid.UUID] | None,
    batch: int,
    scope: Scope,
) -> list[dict[str, Any]]:
    """The next `batch` components by (name, id) after `after`, each with its month's sums (or
    none: `days` 0), in one statement, of the components `scope` sees. Markers are made in text
    order (SQLite's `?`)."""
    p = SqlParams()
    where = []
    if teams is not None:
        where.append(f"c.team_id IN ({', '.join(p(t) for t in teams)})")
    where.extend(scope.teams_sql("c.team_id", p))
    if after is not None:
        where.append(f"(c.name, c.id) > ({p(after[0])}, {p(after[1])})")
    page = (
        "SELECT c.id, c.name, c.team_id, c.system_id FROM component c"  # noqa: S608 (placeholders only)
        f"{' WHERE ' + ' AND '.join(where) if where else ''} "
        f"ORDER BY c.name, c.id LIMIT {p(batch)}"
    )
    sums = ", ".join(f"COALESCE(SUM(r.{c}), 0) AS {c}" for c in COLUMNS)
    sql = (
        f"SELECT c.id AS id, c.name AS name, t.slug AS team, s.slug AS system, "  # noqa: S608 (placeholders only)
        f"COUNT(DISTINCT r.day) AS days, MAX(r.currency) AS currency, {sums} FROM ({page}) c "
        "JOIN team t ON t.id = c.team_id LEFT JOIN system s ON s.id = c.system_id "
        f"LEFT JOIN cost_record r ON r.component_id = c.id AND r.day >= {p.day(first)} "
        f"AND r.day <= {p.day(last)} "
        "GROUP BY c.id, c.name, t.slug, s.slug ORDER BY c.name, c.id"
    )
    return await connection().execute_query_dict(sql, p.values)
