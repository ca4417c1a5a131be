from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields

class Migration(migrations.Migration):
    """The sync's lease (SyncRun.heartbeat_at), partial runs (SyncRun.failed_aggregates) and
    progress per aggregate (sync_progress).

    Until now every run was all-or-nothing, so every aggregate of the catalog was stored up to the
    last day of the latest succeeded run: seed sync_progress with that, or the first run after
    the upgrade would re-fetch 30 days of everything."""

    dependencies = [('models', '0004_one_running_sync')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SyncProgress',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('source', fields.CharField(default='default', max_length=100)),
                ('aggregate', fields.CharField(max_length=200)),
                ('last_day', fields.DateField()),
                ('updated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sync_progress', 'app': 'models', 'unique_together': (('source', 'aggregate'),), 'pk_attr': 'id', 'table_description': 'The last complete day the sync stored for one OpenCost aggregate and source.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='SyncRun',
            name='failed_aggregates',
            field=fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='SyncRun',
            name='heartbeat_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.RunSQL(
            [
                'INSERT INTO "sync_progress" ("source", "aggregate", "last_day") '
                "SELECT DISTINCT 'default', c.\"opencost_aggregate\", r.\"last_day\" "
                'FROM "component" c, (SELECT MAX("last_day") AS "last_day" FROM "sync_run" '
                "WHERE \"status\" = 'succeeded') r "
                'WHERE r."last_day" IS NOT NULL',
            ],
            reverse_sql=['DELETE FROM "sync_progress"'],
        ),
    ]
