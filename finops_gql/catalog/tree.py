"""The team tree: which teams a team's figures cover. Shared by the catalog and the cost service,
so every team figure (series, breakdowns, summaries) sees the same sub-teams."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from finops_gql.db.setup import connection, placeholders, sql_value


async def team_subtrees(team_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each team with all its descendants (sub-teams, their sub-teams, ...), the team first;
    an unknown id maps to []. One statement, a recursive CTE (SQLite and PostgreSQL)."""
    found: dict[uuid.UUID, list[uuid.UUID]] = {tid: [] for tid in team_ids}
    for root, tid in await _walk("id", [sql_value(t) for t in found]):
        root_id = uuid.UUID(str(root))
        members = found[root_id]
        if tid == root_id:
            members.insert(0, tid)
        else:
            members.append(tid)
    return found


async def slug_subtrees(slugs: Collection[str]) -> set[uuid.UUID]:
    """The teams named by `slugs` with all their descendants, in one statement; a slug no team
    has adds nothing (the principal's teams, access.scope_for)."""
    return {tid for _, tid in await _walk("slug", list(slugs))}


def subtree_cte(marks: str, column: str = "id") -> str:
    """`WITH RECURSIVE tree(root, id)`: each team whose `column` is among `marks` (parameter
    markers), as `root` (that column's value), with itself and every descendant as `id`. For
    statements that join the tree (alerts of teams with their sub-teams, too).

    UNION, not UNION ALL: a row already reached is not walked again, so even a cycle that
    slipped past the import's and the service's checks (two concurrent writers) ends."""
    return (
        "WITH RECURSIVE tree(root, id) AS ("  # noqa: S608 (placeholders only)
        f"SELECT {column}, id FROM team WHERE {column} IN ({marks}) "
        "UNION SELECT tree.root, t.id FROM team t JOIN tree ON t.parent_id = tree.id)"
    )


async def _walk(column: str, starts: list[object]) -> list[tuple[object, uuid.UUID]]:
    """(the start's `column` value, a team id) for the teams whose `column` is in `starts` and
    every descendant of theirs: one recursive CTE."""
    if not starts:
        return []
    cte = subtree_cte(", ".join(placeholders(len(starts))), column)
    sql = f"{cte} SELECT root, id FROM tree"  # noqa: S608 (placeholders only)
    rows = await connection().execute_query_dict(sql, starts)
    return [(row["root"], uuid.UUID(str(row["id"]))) for row in rows]
