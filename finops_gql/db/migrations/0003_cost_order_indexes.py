from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Indexes in the exact order of the top-N and team-summary queries (cost_30d DESC, name).

    Tortoise's Index cannot say DESC, so these live here as SQL (same text on SQLite and
    PostgreSQL). Without them both databases sort every component for a top-10.
    """

    dependencies = [("models", "0002_component_name_id_index")]

    initial = False

    operations = [
        ops.RunSQL(
            [
                'CREATE INDEX "component_top_idx" ON "component" ("cost_30d" DESC, "name")',
                'CREATE INDEX "component_team_top_idx" ON "component" ("team_id", "cost_30d" DESC, "name")',
            ],
            reverse_sql=[
                'DROP INDEX "component_top_idx"',
                'DROP INDEX "component_team_top_idx"',
            ],
        ),
    ]
