from tortoise import migrations
from tortoise.migrations import operations as ops

from finops_gql.errors import MigrationRefused

# Components that share an OpenCost selector with another one: (aggregate, key), the key
# defaulting to the component's name, exactly as the sync and the live figures match them.
DUPLICATES = (
    'SELECT c."opencost_aggregate" AS "aggregate", COALESCE(c."opencost_key", c."name") AS "key", '
    'c."name" AS "name", t."slug" AS "team" FROM "component" c '
    'JOIN "team" t ON t."id" = c."team_id" WHERE EXISTS (SELECT 1 FROM "component" o '
    'WHERE o."id" <> c."id" AND o."opencost_aggregate" = c."opencost_aggregate" '
    'AND COALESCE(o."opencost_key", o."name") = COALESCE(c."opencost_key", c."name")) '
    'ORDER BY 1, 2, 4, 3'
)
SHOWN_GROUPS = 20


async def refuse_duplicate_selectors(apps, schema_editor) -> None:
    """Stop with the list of rows to fix, rather than fail on the index or delete data."""
    rows = await schema_editor.client.execute_query_dict(DUPLICATES)
    if not rows:
        return
    groups: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        groups.setdefault((row["aggregate"], row["key"]), []).append(
            f"{row['name']!r} (team {row['team']!r})"
        )
    lines = [
        f"  aggregate {aggregate} key {key!r}: {', '.join(names)}"
        for (aggregate, key), names in list(groups.items())[:SHOWN_GROUPS]
    ]
    if len(groups) > SHOWN_GROUPS:
        lines.append(f"  ... and {len(groups) - SHOWN_GROUPS} more")
    raise MigrationRefused(
        f"migration 0006 makes each OpenCost selector belong to one component, but "
        f"{len(groups)} selector(s) are claimed by several, whose cost is counted more than "
        "once:\n" + "\n".join(lines) + "\nGive all but one of each an explicit OpenCost key "
        "(GraphQL updateComponent opencostKey, or the catalog annotation opencost.io/key) or "
        "delete the extra components, then migrate again. Nothing was changed."
    )


class Migration(migrations.Migration):
    """One component per OpenCost selector: two components matching one key in OpenCost's answer
    would both get its cost, and team and platform totals would count it twice.

    The key defaults to the component's name, so the unique index is over an expression (SQLite
    3.9+ and PostgreSQL alike); the service checks it first for a clear message, and this index
    settles races between concurrent writers.
    """

    dependencies = [("models", "0005_sync_lease_progress")]

    initial = False

    operations = [
        ops.RunPython(refuse_duplicate_selectors, ops.RunPython.noop),
        ops.RunSQL(
            [
                'CREATE UNIQUE INDEX "component_selector_uniq" ON "component" '
                '("opencost_aggregate", COALESCE("opencost_key", "name"))',
            ],
            reverse_sql=['DROP INDEX "component_selector_uniq"'],
        ),
    ]
