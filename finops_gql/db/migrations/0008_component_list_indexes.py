from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Indexes in the exact order of every component list ordering (GraphQL `components` and
    `Team.components` orderBy), each ending with the id the keyset cursors compare.

    The (cost_30d DESC, name) indexes of 0003 become (cost_30d DESC, name, id): same prefix for
    the top-N and team summaries, plus the id for keyset pages. Cost ascending and per-team name
    order get their own. As SQL because Tortoise's Index cannot say DESC (same text on SQLite and
    PostgreSQL).
    """

    dependencies = [("models", "0007_catalog_rollups")]

    initial = False

    operations = [
        ops.RunSQL(
            [
                'CREATE INDEX "component_cost_desc_idx" ON "component" '
                '("cost_30d" DESC, "name", "id")',
                'CREATE INDEX "component_team_cost_desc_idx" ON "component" '
                '("team_id", "cost_30d" DESC, "name", "id")',
                'CREATE INDEX "component_cost_asc_idx" ON "component" ("cost_30d", "name", "id")',
                'CREATE INDEX "component_team_cost_asc_idx" ON "component" '
                '("team_id", "cost_30d", "name", "id")',
                'CREATE INDEX "component_team_name_idx" ON "component" ("team_id", "name", "id")',
                'DROP INDEX "component_top_idx"',
                'DROP INDEX "component_team_top_idx"',
            ],
            reverse_sql=[
                'CREATE INDEX "component_top_idx" ON "component" ("cost_30d" DESC, "name")',
                'CREATE INDEX "component_team_top_idx" ON "component" '
                '("team_id", "cost_30d" DESC, "name")',
                'DROP INDEX "component_cost_desc_idx"',
                'DROP INDEX "component_team_cost_desc_idx"',
                'DROP INDEX "component_cost_asc_idx"',
                'DROP INDEX "component_team_cost_asc_idx"',
                'DROP INDEX "component_team_name_idx"',
            ],
        ),
    ]
