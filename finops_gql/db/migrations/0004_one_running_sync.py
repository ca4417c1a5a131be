from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """At most one SyncRun may be `running`: a partial unique index (SQLite and PostgreSQL alike)
    makes the second concurrent start fail atomically, whichever process it comes from."""

    dependencies = [("models", "0003_cost_order_indexes")]

    initial = False

    operations = [
        ops.RunSQL(
            [
                'CREATE UNIQUE INDEX "sync_run_one_running" ON "sync_run" ("status") '
                "WHERE \"status\" = 'running'",
            ],
            reverse_sql=['DROP INDEX "sync_run_one_running"'],
        ),
    ]
