"""The team tree: which teams a team's figures cover. Shared by the catalog and the cost service,
so every team figure (series, breakdowns, summaries) sees the same sub-teams."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from finops_gql.db.setup import connection, placeholders, sql_value


def subtree_cte(marks: str) -> str:
    """`WITH RECURSIVE tree(root, id)`: each team whose id is among `marks` (parameter markers)
    as a root, with itself and every descendant as ids. For statements that join the tree.

    UNION, not UNION ALL: a row already reached is not walked again, so even a cycle that
    slipped past the import's and the service's checks (two concurrent writers) ends."""
    return (
        "WITH RECURSIVE tree(root, id) AS ("  # noqa: S608 (placeholders only)
        f"SELECT id, id FROM team WHERE id IN ({marks}) "
        "UNION SELECT tree.root, t.id FROM team t JOIN tree ON t.parent_id = tree.id)"
    )


async def team_subtrees(team_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Each team with all its descendants (sub-teams, their sub-teams, ...), the team first;
    an unknown id maps to []. One statement, a recursive CTE (SQLite and PostgreSQL)."""
    found: dict[uuid.UUID, list[uuid.UUID]] = {tid: [] for tid in team_ids}
    if not team_ids:
        return found
    sql = f"{subtree_cte(', '.join(placeholders(len(found))))} SELECT root, id FROM tree"  # noqa: S608
    rows = await connection().execute_query_dict(sql, [sql_value(t) for t in found])
    for row in rows:
        root, tid = uuid.UUID(str(row["root"])), uuid.UUID(str(row["id"]))
        members = found[root]
        if tid == root:
            members.insert(0, tid)
        else:
            members.append(tid)
    return found
